"""What this machine can do, measured in the run that quotes it: the fp32 matmul rate that a bench's
achieved FLOP/s is a fraction of."""

from __future__ import annotations

import time

import torch


def matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large square fp32 matmul with torch's threads: the practical peak of this CPU."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - start)
