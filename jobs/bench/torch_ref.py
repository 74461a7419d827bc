#!/usr/bin/python3
"""PyTorch reference throughput for ddtrain (the PyTorch side of jobs/bench).

What it measures
----------------
Training throughput (samples/second) of PyTorch on the CPU of this machine,
for the same three models, data shapes, batch sizes and optimizer that
ddtrain implements in C, so the benchmark can report ddtrain/PyTorch ratios.

* Models (must stay identical to the C implementations):
    mlp : 784 -> Linear(784,512) -> ReLU -> Linear(512,512) -> ReLU
              -> Linear(512,10); CrossEntropyLoss; x ~ N(0,1), y in [0,10).
    cnn : 1x28x28 -> Conv2d(1,16,5) -> ReLU -> MaxPool2d(2)
              -> Conv2d(16,32,5) -> ReLU -> MaxPool2d(2) -> Flatten(512)
              -> Linear(512,10); CrossEntropyLoss.
    lstm: char LM, T=64 tokens in [0,65) -> Embedding(65,64)
              -> LSTM(64,256, 1 layer, batch_first) -> Linear(256,65) at every
              step; CrossEntropyLoss averaged over all B*T positions.
              One "sample" is one sequence.
  Optimizer: SGD(lr=0.01, momentum=0.9) for all models.
* Data is synthetic float32 (int64 ids/labels), generated in memory from a
  fixed seed. Each epoch is reshuffled with torch.randperm from a seeded
  generator; global batches are taken in order, including the last partial
  batch (no drop_last).
* Each timed step is: zero_grad, forward, loss, backward, optimizer step.
  --warmup-steps steps are run first and not timed; then --epochs full epochs
  are timed with time.perf_counter(). samples/s = samples processed in the
  timed epochs / elapsed seconds. This is repeated --repeats times (fresh
  model each time); the median and all values are reported.
* Every process uses exactly one intra-op and one inter-op thread
  (OMP_NUM_THREADS=MKL_NUM_THREADS=1, torch.set_num_threads(1),
  torch.set_num_interop_threads(1)).

Modes
-----
single : one process, batch = --batch.
ddp    : --procs processes via torch.multiprocessing.spawn, gloo backend over
         127.0.0.1 on a free port, model wrapped in DistributedDataParallel.
         Every rank walks the same global batches as single mode and takes its
         contiguous share of each one (B//N, plus one for the first B%N
         ranks). The local loss is scaled by local_b*N/B so that DDP's gradient
         averaging yields exactly the global-batch mean gradient even when the
         shares are unequal. Rank 0 reports global samples/s, with a barrier
         before starting and before stopping the clock.

Output
------
Exactly one JSON line on stdout at the end; progress goes to stderr.

Usage
-----
    /usr/bin/python3 jobs/bench/torch_ref.py --model mlp --mode single
    /usr/bin/python3 jobs/bench/torch_ref.py --model mlp --mode ddp --procs 2
    /usr/bin/python3 jobs/bench/torch_ref.py --model cnn --mode single \\
        --samples 2048 --repeats 1

Use Debian's /usr/bin/python3 (python3-torch); other interpreters on PATH may
not have torch installed.
"""

import os

# Must be set before torch is imported (also inherited by spawned ranks).
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

import argparse
import json
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

SEQ_LEN = 64
VOCAB = 65

DEFAULT_SAMPLES = {"mlp": 60000, "cnn": 60000, "lstm": 8192}
DEFAULT_BATCH = {"mlp": 128, "cnn": 64, "lstm": 64}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def blas_kernels():
    """The OpenBLAS kernel set of this process: torch's dense and recurrent layers call OpenBLAS
    through libblas, so run.sh gives torch the kernel set ddtrain runs (OPENBLAS_CORETYPE)."""
    import ctypes
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            f = ctypes.CDLL(name).openblas_get_corename
        except (OSError, AttributeError):
            continue
        f.restype = ctypes.c_char_p
        return f().decode()
    return "unknown"


def set_threads():
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        # Already set (or inter-op pool already started) in this process.
        pass


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

class CharLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 64)
        self.lstm = nn.LSTM(input_size=64, hidden_size=256, num_layers=1,
                            batch_first=True)
        self.head = nn.Linear(256, VOCAB)

    def forward(self, x):              # x: (B, T) int64
        h, _ = self.lstm(self.embed(x))  # (B, T, 256)
        return self.head(h)            # (B, T, 65)


def build_model(name):
    if name == "mlp":
        return nn.Sequential(
            nn.Linear(784, 512), nn.ReLU(),
            nn.Linear(512, 512), nn.ReLU(),
            nn.Linear(512, 10),
        )
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),                      # 32*4*4 = 512
            nn.Linear(32 * 4 * 4, 10),
        )
    if name == "lstm":
        return CharLSTM()
    raise ValueError(name)


def make_data(name, n, seed):
    g = torch.Generator().manual_seed(seed)
    if name == "mlp":
        x = torch.randn(n, 784, generator=g, dtype=torch.float32)
        y = torch.randint(0, 10, (n,), generator=g)
    elif name == "cnn":
        x = torch.randn(n, 1, 28, 28, generator=g, dtype=torch.float32)
        y = torch.randint(0, 10, (n,), generator=g)
    elif name == "lstm":
        x = torch.randint(0, VOCAB, (n, SEQ_LEN), generator=g)
        y = torch.randint(0, VOCAB, (n, SEQ_LEN), generator=g)
    else:
        raise ValueError(name)
    return x, y


def compute_loss(name, criterion, out, y):
    if name == "lstm":
        return criterion(out.reshape(-1, VOCAB), y.reshape(-1))
    return criterion(out, y)


# --------------------------------------------------------------------------
# Training loop (shared by single and ddp; single is rank 0 of world 1)
# --------------------------------------------------------------------------

def local_slice(gb, rank, world):
    """Contiguous share [lo, hi) of a global batch of size gb for `rank`."""
    base, extra = divmod(gb, world)
    lo = rank * base + min(rank, extra)
    hi = lo + base + (1 if rank < extra else 0)
    return lo, hi


def run(rank, world, args, result_queue):
    set_threads()
    distributed = world > 1
    if distributed:
        dist.init_process_group("gloo", init_method="env://",
                                rank=rank, world_size=world)

    x, y = make_data(args.model, args.samples, args.seed)
    n = args.samples
    B = args.batch
    steps_per_epoch = (n + B - 1) // B
    criterion = nn.CrossEntropyLoss()

    def train_step(model, opt, gidx):
        gb = gidx.numel()
        lo, hi = local_slice(gb, rank, world)
        idx = gidx[lo:hi]
        xb = x.index_select(0, idx)
        yb = y.index_select(0, idx)
        opt.zero_grad(set_to_none=False)
        out = model(xb)
        lb = hi - lo
        if lb > 0:
            loss = compute_loss(args.model, criterion, out, yb)
            if distributed and lb * world != gb:
                # DDP divides the summed gradient by world; rescale so the
                # result is the mean over the whole global batch.
                loss = loss * (lb * world / gb)
        else:
            loss = out.sum() * 0.0     # empty share: zero grads, keep graph
        loss.backward()
        opt.step()
        return loss

    rates = []
    elapsed_all = []
    for rep in range(args.repeats):
        torch.manual_seed(args.seed + 1000 * rep)
        model = build_model(args.model)
        if distributed:
            model = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        model.train()
        # Same shuffle stream on every rank -> identical global batches.
        shuf = torch.Generator().manual_seed(args.seed + 1 + 1000 * rep)

        # Warmup (untimed): first W global batches of a throwaway permutation.
        done = 0
        while done < args.warmup_steps:
            perm = torch.randperm(n, generator=shuf)
            for s in range(steps_per_epoch):
                if done >= args.warmup_steps:
                    break
                train_step(model, opt, perm[s * B:(s + 1) * B])
                done += 1

        if distributed:
            dist.barrier()
        t0 = time.perf_counter()
        processed = 0
        last_loss = None
        for ep in range(args.epochs):
            perm = torch.randperm(n, generator=shuf)
            for s in range(steps_per_epoch):
                gidx = perm[s * B:(s + 1) * B]
                last_loss = train_step(model, opt, gidx)
                processed += gidx.numel()   # global samples
        if distributed:
            dist.barrier()
        elapsed = time.perf_counter() - t0

        rate = processed / elapsed
        rates.append(rate)
        elapsed_all.append(elapsed)
        if rank == 0:
            log(f"[torch_ref] {args.model}/{args.mode} repeat {rep + 1}/"
                f"{args.repeats}: {processed} samples in {elapsed:.3f} s -> "
                f"{rate:.1f} samples/s (last loss "
                f"{float(last_loss.detach()):.4f})")

    if rank == 0 and result_queue is not None:
        result_queue.put((rates, elapsed_all))
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return rates, elapsed_all


def ddp_worker(rank, world, args, result_queue):
    run(rank, world, args, result_queue)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(
        description="PyTorch reference training throughput for ddtrain.")
    p.add_argument("--model", choices=["mlp", "cnn", "lstm"], required=True)
    p.add_argument("--mode", choices=["single", "ddp"], default="single")
    p.add_argument("--procs", type=int, default=2,
                   help="number of DDP processes (ddp mode only)")
    p.add_argument("--samples", type=int, default=None,
                   help="dataset size (default mlp 60000, cnn 60000, "
                        "lstm 8192)")
    p.add_argument("--batch", type=int, default=None,
                   help="GLOBAL batch size (default mlp 128, cnn 64, lstm 64)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args()

    if args.samples is None:
        args.samples = DEFAULT_SAMPLES[args.model]
    if args.batch is None:
        args.batch = DEFAULT_BATCH[args.model]
    procs = args.procs if args.mode == "ddp" else 1
    if args.samples < 1 or args.batch < 1 or args.epochs < 1 \
            or args.repeats < 1 or args.warmup_steps < 0 or procs < 1:
        p.error("samples, batch, epochs, repeats, procs must be >= 1 and "
                "warmup-steps >= 0")
    if args.mode == "ddp" and args.batch < procs:
        p.error("--batch must be >= --procs in ddp mode")

    log(f"[torch_ref] torch {torch.__version__}, model={args.model}, "
        f"mode={args.mode}, procs={procs}, batch={args.batch}, "
        f"samples={args.samples}, epochs={args.epochs}, "
        f"repeats={args.repeats}, warmup={args.warmup_steps}")

    if args.mode == "single":
        rates, elapsed = run(0, 1, args, None)
    else:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(free_port())
        ctx = mp.get_context("spawn")
        q = ctx.SimpleQueue()
        mp.spawn(ddp_worker, args=(procs, args, q), nprocs=procs, join=True)
        rates, elapsed = q.get()

    result = {
        "framework": "pytorch",
        "torch": torch.__version__,
        "model": args.model,
        "mode": args.mode,
        "procs": procs,
        "threads_per_proc": 1,
        "blas_kernels": blas_kernels(),
        "batch": args.batch,
        "samples": args.samples,
        "epochs": args.epochs,
        "warmup_steps": args.warmup_steps,
        "seed": args.seed,
        "samples_per_s_median": round(statistics.median(rates), 1),
        "samples_per_s": [round(r, 1) for r in rates],
        "elapsed_s": [round(e, 4) for e in elapsed],
        "repeats": args.repeats,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
