#!/usr/bin/python3
"""CPU time of torch.nn.MultiheadAttention forward + backward, the shapes of jobs/bench/attn_step_cpu.c.

    /usr/bin/python3 jobs/bench/torch_attn_cpu.py [B T D heads [reps]]

Self-attention with the causal mask on x [B, T, D] (batch_first), one thread, float32; the best block
of 10 passes in process CPU time, as attn_step_cpu.c reports it.
"""
import sys
import time

import torch

torch.set_num_threads(1)
B, T, D, H = (int(a) for a in (sys.argv[1:5] if len(sys.argv) >= 5 else (32, 64, 128, 4)))
reps = int(sys.argv[5]) if len(sys.argv) > 5 else 200
m = torch.nn.MultiheadAttention(D, H, batch_first=True)
x = torch.randn(B, T, D, requires_grad=True)
dy = torch.randn(B, T, D)
mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
best = float("inf")
for _ in range(reps // 10):
    t0 = time.process_time()
    for _ in range(10):
        y, _ = m(x, x, x, attn_mask=mask, need_weights=False)
        y.backward(dy)
    best = min(best, (time.process_time() - t0) / 10)
print(f"torch {torch.__version__} MultiheadAttention B={B} T={T} D={D} heads={H}: {best * 1e3:.3f} ms per "
      f"forward+backward (best of {reps // 10} blocks of 10)")
