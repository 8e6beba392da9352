"""Small shared helpers for the benchmarks: timing and rounding."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_rate(fn: Callable[[], int], repeat: int = 5) -> float:
    """Run ``fn`` (which returns how many operations it did) ``repeat`` times; best ops/second."""
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        ops = fn()
        elapsed = time.perf_counter() - started
        best = max(best, ops / elapsed)
    return best


def best_cpu(fn: Callable[[], object], repeat: int = 5) -> float:
    """Run ``fn`` ``repeat`` times; the least process CPU time one run took, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return min(times)


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("inf")


def rounded(x: float) -> float:
    return round(x, 1)
