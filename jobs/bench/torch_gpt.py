#!/usr/bin/python3
"""PyTorch tokens/s for the GPT of jobs/configs/gpt-char.yaml (the PyTorch side of jobs/bench/gpt.sh).

    /usr/bin/python3 jobs/bench/torch_gpt.py --data X.h5 --mode single|ddp [--steps 60] [--batch 32] [--micro N]

The model is jobs/lib/ddtrain_torch.py's GPT (the module a ddtrain checkpoint loads into): 4 pre-LayerNorm
blocks of 4 heads, D 128, context 64, MLP 512, tanh GELU, the output tied to the token embedding with a bias;
AdamW (lr 0.003, betas 0.9/0.95, weight decay 0.1 on the weight matrices only, the tied table among them),
clip_grad_norm_ 1.0, float32, one thread per process. A step: zero_grad, forward, loss, backward, clip,
step, on a global batch of --batch sequences of the file's x/y (in file order, wrapping). ddp: 2 processes
(torch.multiprocessing spawn, gloo on loopback), each --batch / 2 sequences. 5 untimed steps, then --steps
timed with perf_counter; prints one JSON line: tokens_per_s (global), steps, batch, T, mode, micro.
--micro N: each process runs its share in micro-batches of N sequences (the losses scaled by N / share, the
gradients accumulating; under DDP all but the last in no_sync()), as ddtrain's train.micro_batch does.
"""
import argparse
import contextlib
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import ddtrain_torch  # noqa: E402

CFG = {"vocab": 96, "dim": 128, "context": 64, "ln_f_eps": 1e-5, "lm_head_bias": True, "tied": True,
       "blocks": [{"heads": 4, "mlp": 4, "bias": True, "causal": True, "dropout": 0.0, "eps": (1e-5, 1e-5)}] * 4}


def optimizer(model):
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # the tied table appears once, as wte.weight
        (decay if p.dim() == 2 and "wpe" not in name else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=0.003, betas=(0.9, 0.95), eps=1e-8)


def run(args, rank=0, world=1):
    torch.set_num_threads(1)
    torch.manual_seed(1)
    f = h5py.File(args.data, "r")
    x = torch.from_numpy(f["x"][:].astype(np.int64))
    y = torch.from_numpy(f["y"][:].astype(np.int64))
    model = ddtrain_torch.GPT(CFG)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = optimizer(model)
    B = args.batch // world
    N, T = x.shape

    micro = args.micro if args.micro > 0 else B
    chunks = [(c, min(micro, B - c)) for c in range(0, B, micro)]

    def step(i):
        lo = (i * args.batch + rank * B) % (N - B)
        opt.zero_grad(set_to_none=True)
        for k, (c, n) in enumerate(chunks):
            last = k == len(chunks) - 1
            ctx = model.no_sync() if world > 1 and not last else contextlib.nullcontext()
            with ctx:
                _, loss = model(x[lo + c:lo + c + n], y[lo + c:lo + c + n])
                (loss * (n / B) if len(chunks) > 1 else loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for i in range(5):
        step(i)
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(5 + i)
    if world > 1:
        dist.barrier()
    dt = time.perf_counter() - t0
    return {"tokens_per_s": args.steps * args.batch * T / dt, "steps": args.steps, "batch": args.batch, "T": T,
            "mode": args.mode, "micro": micro, "torch": torch.__version__}


def worker(rank, world, args, q):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(args.port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    r = run(args, rank, world)
    if rank == 0:
        q.put(r)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--mode", choices=("single", "ddp"), default="single")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--micro", type=int, default=0, help="sequences per micro-batch per process (0 = the whole share)")
    p.add_argument("--port", type=int, default=29511)
    args = p.parse_args()
    if args.mode == "single":
        r = run(args)
    else:
        ctx = mp.get_context("spawn")
        q = ctx.SimpleQueue()
        mp.spawn(worker, args=(2, args, q), nprocs=2, join=True)
        r = q.get()
    print(json.dumps(r))


if __name__ == "__main__":
    main()
