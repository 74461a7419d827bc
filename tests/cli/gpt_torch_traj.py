"""gpt_torch_traj.py INIT_CKPT TRAIN.h5 METRICS FINAL_CKPT [--report]: ddtrain's 20-step GPT trajectory
redone in PyTorch (float64) and compared (tests/cli/test_gpt_torch.sh; the tolerances are derived there).

INIT_CKPT holds the step-0 parameters (float32), FINAL_CKPT the run's last parameters and its config; the
run is that config for len(steps in METRICS) steps, full batch (train.batch_size = every sample of TRAIN.h5, so the order
of the samples within the batch does not matter), AdamW with optim.decay: weights, optim.clip_norm and a
cosine schedule with linear warmup in steps. The PyTorch side is stock PyTorch: torch.optim.AdamW with two
parameter groups (nanoGPT's split), torch.nn.utils.clip_grad_norm_, and
ChainedScheduler([LinearLR(start_factor, total_iters=W), CosineAnnealingLR(T_max, eta_min)]) stepped per step.
Environment knobs for checking that the comparison can fail: DD_TRAJ_BETA2 (a wrong beta2),
DD_TRAJ_NOCLIP=1 (no clipping), DD_TRAJ_DECAY_ALL=1 (decay every parameter).
Prints the worst differences; exits 1 naming what is over its tolerance."""
import json
import math
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.environ.get("DD_SRC", "."), "jobs", "lib"))
import ddtrain_torch  # noqa: E402

# tolerances (derived in tests/cli/test_gpt_torch.sh)
TOL_LOSS = float(os.environ.get("DD_TRAJ_TOL_LOSS", "1e-6"))     # |loss_ddtrain - loss_torch| per step
TOL_LR = 1e-8                                                    # relative, lr as logged (9 digits)
TOL_NORM = 1e-5                                                  # relative, the gradient norm before clipping
TOL_PARAM = float(os.environ.get("DD_TRAJ_TOL_PARAM", "2e-5"))   # |p_ddtrain - p_torch| after the run

init, data, metrics, final = sys.argv[1:5]
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)           # the machine is shared; the float64 result does not need more
model, _ = ddtrain_torch.load(init, torch.float64)    # the step-0 parameters (its config has lr 0)
model.train()
fin, cfg = ddtrain_torch.load(final, torch.float64)    # the run's parameters after the steps, its config
c = cfg["config"]
opt_c, sch_c, train_c = c["optim"], c["schedule"], c["train"]
assert opt_c["name"] == "adamw" and opt_c.get("decay") == "weights", opt_c
assert sch_c["name"] == "cosine" and sch_c["unit"] == "steps", sch_c

with h5py.File(data, "r") as f:
    x = torch.from_numpy(f["x"][()].astype(np.int64))
    y = torch.from_numpy(f["y"][()].astype(np.int64))
assert int(train_c["batch_size"]) == len(x), "the test needs a full batch"
steps = [e for e in map(json.loads, open(metrics)) if e["event"] == "step"]
nsteps = len(steps)
assert [e["step"] for e in steps] == list(range(1, nsteps + 1)), "a step record per step (train.log_every 1)"

# nanoGPT's parameter groups, as ddtrain's decay: weights (docs/optimizers.md): the weight matrices (dense
# and attention weights, the lm_head / tied wte) decay; biases, layernorms, wpe (and an untied wte) do not
decay, no_decay = [], []
for name, p in model.named_parameters():  # a tied table is listed once, as transformer.wte.weight
    matrix = p.dim() == 2 and name != "transformer.wpe.weight" and (cfg["tied"] or name != "transformer.wte.weight")
    (decay if matrix or os.environ.get("DD_TRAJ_DECAY_ALL") else no_decay).append(p)
lr0 = float(opt_c["lr"])           # ref_batch_size unset: no scaling
if opt_c.get("ref_batch_size"):
    lr0 *= int(train_c["batch_size"]) / float(opt_c["ref_batch_size"])
betas = [float(b) for b in opt_c.get("betas", [0.9, 0.999])]
if "DD_TRAJ_BETA2" in os.environ:
    betas[1] = float(os.environ["DD_TRAJ_BETA2"])
opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(opt_c.get("weight_decay", 0.01))},
                         {"params": no_decay, "weight_decay": 0.0}],
                        lr=lr0, betas=tuple(betas), eps=float(opt_c.get("eps", 1e-8)))
W = int(sch_c.get("warmup_steps", 0))
t_max = int(sch_c.get("t_max", int(train_c["epochs"]) * 1))   # unit steps, 1 step per epoch (full batch)
chain = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=float(sch_c.get("eta_min", 0)))]
if W:
    chain.insert(0, torch.optim.lr_scheduler.LinearLR(opt, start_factor=float(sch_c.get("warmup_start_factor", 1 / 3)),
                                                      total_iters=W))
sched = torch.optim.lr_scheduler.ChainedScheduler(chain)
clip = float(opt_c.get("clip_norm", 0))

worst = {"loss": 0.0, "lr": 0.0, "grad_norm": 0.0}
clipped = 0
for k, rec in enumerate(steps):
    lr = opt.param_groups[0]["lr"]
    opt.zero_grad()
    _, loss = model(x, y)     # mean over every (sample, step): ddtrain's per-target mean over the global batch
    loss.backward()
    clipping = clip > 0 and not os.environ.get("DD_TRAJ_NOCLIP")
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clipping else float("inf")))
    clipped += clipping and norm > clip
    opt.step()
    sched.step()
    worst["loss"] = max(worst["loss"], abs(float(loss) - rec["train_loss"]))
    worst["lr"] = max(worst["lr"], abs(lr - rec["lr"]) / lr)
    worst["grad_norm"] = max(worst["grad_norm"], abs(norm - rec["grad_norm"]) / norm)

# the final parameters; the key part of each qkv_bias (entries D..2D-1) is left out: its true gradient is
# exactly 0 (it adds q_i . b_k to a whole row of scores), so both sides move it by Adam-normalised rounding
# noise, up to lr per step, different on each side (docs/layers.md, attention)
assert cfg["step"] == nsteps, f"the final checkpoint is at step {cfg['step']}, not {nsteps}"
D = cfg["dim"]
worst_p, where, kbias = 0.0, "", 0.0
ours = dict(model.named_parameters())
for name, q in fin.named_parameters():
    a, b = ours[name].detach(), q.detach()
    d = (a - b).abs()
    if name.endswith("attn.c_attn.bias"):
        kbias = max(kbias, float(d[D:2 * D].max()))
        d = torch.cat([d[:D], d[2 * D:]])
    m = float(d.max())
    if m > worst_p:
        worst_p, where = m, name
moved = max(float((ours[n].detach() - p.detach()).abs().max())
            for n, p in ddtrain_torch.load(init, torch.float64)[0].named_parameters())
print(f"{nsteps} steps ({clipped} clipped): worst |loss diff| {worst['loss']:.3g}, lr rel {worst['lr']:.3g}, "
      f"grad_norm rel {worst['grad_norm']:.3g}; worst |param diff| {worst_p:.3g} ({where}); largest move "
      f"from the init {moved:.3g}; key part of qkv_bias (not compared) differs by up to {kbias:.3g}")
bad = []
if worst["loss"] > TOL_LOSS:
    bad.append(f"per-step loss differs by {worst['loss']:.3g} > {TOL_LOSS:g}")
if worst["lr"] > TOL_LR:
    bad.append(f"the schedule's lr differs by {worst['lr']:.3g} (relative) > {TOL_LR:g}")
if worst["grad_norm"] > TOL_NORM:
    bad.append(f"the gradient norm differs by {worst['grad_norm']:.3g} (relative) > {TOL_NORM:g}")
if worst_p > TOL_PARAM:
    bad.append(f"final parameter {where} differs by {worst_p:.3g} > {TOL_PARAM:g}")
if not math.isfinite(worst_p):
    bad.append("non-finite parameters")
if bad:
    print("FAIL: " + "; ".join(bad))
    sys.exit(1)
