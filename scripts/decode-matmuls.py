"""The tiny model's decode-sized matrix products (rows x hidden) against a 1024^3 product, 2 threads:
do small products reach the peak? (results/experiments/2026-12-01-bench-rollout-step.md)"""
import time

import torch

torch.set_num_threads(2)
def rate(m, k, n, reps=None):
    a = torch.randn(m, k)
    b = torch.randn(k, n)
    for _ in range(3):
        a @ b
    reps = reps or max(3, int(2e9 / (2 * m * k * n)))
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    dt = (time.perf_counter() - t) / reps
    return 2 * m * k * n / dt / 1e9
peak = max(rate(1024, 1024, 1024) for _ in range(3))
print(f"1024^3: {peak:.1f} GFLOP/s")
# the tiny model's decode products (hidden 128, 4 heads x 32, 2 kv heads, ffn 512, vocab 1024) at rows = sequences decoded together
for rows in (16, 128, 512, 1024):
    shapes = {"q/o proj 128x128": (rows, 128, 128), "kv proj 128x64": (rows, 128, 64), "ffn up/gate 128x512": (rows, 128, 512),
              "ffn down 512x128": (rows, 512, 128), "output 128x1024": (rows, 128, 1024)}
    cells = ", ".join(f"{k} {100 * max(rate(*s) for _ in range(3)) / peak:.0f}%" for k, s in shapes.items())
    print(f"rows {rows}: {cells}")
