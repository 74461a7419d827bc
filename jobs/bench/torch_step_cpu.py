#!/usr/bin/python3
"""torch_step_cpu - CPU time per training step of torch_ref.py's CNN at 1 thread (the PyTorch side of
jobs/bench/cnn_step_cpu.c): batch 64, zero_grad, forward, loss, backward, SGD step; best block of 10 steps
in thread CPU time.   Usage: /usr/bin/python3 jobs/bench/torch_step_cpu.py [steps]"""
import os
import sys

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
import time  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_ref import build_model  # noqa: E402

torch.set_num_threads(1)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 600
torch.manual_seed(1)
model = build_model("cnn")
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
crit = torch.nn.CrossEntropyLoss()
x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))


def step():
    opt.zero_grad(set_to_none=False)
    crit(model(x), y).backward()
    opt.step()


for _ in range(20):
    step()
best = float("inf")
for _ in range(steps // 10):
    t = time.thread_time()
    for _ in range(10):
        step()
    best = min(best, (time.thread_time() - t) / 10)
print(f"torch best block: {best * 1e6:.1f} us CPU per step = {64 / best:.0f} samples/s")
