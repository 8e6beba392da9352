"""Small shared helpers for the benchmarks: timing, rounding and the simulator in a process of its own."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


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


def best_interleaved(runs: dict[str, Callable[[], int]], repeat: int) -> dict[str, tuple[float, float]]:
    """Best (ops per wall-clock second, ops per CPU second) of each run over ``repeat`` rounds.

    Each run returns how many operations it did. The runs take turns within each
    round, each after a ``gc.collect()``, so that a shared machine's changing load
    weighs on each of them alike rather than on whichever ran last.
    """
    best = dict.fromkeys(runs, (0.0, 0.0))
    for _ in range(repeat):
        for name, fn in runs.items():
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            done = fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best_wall, best_per_cpu = best[name]
            best[name] = (max(best_wall, done / wall), max(best_per_cpu, done / max(cpu, 1e-9)))
    return best


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("inf")


def rounded(x: float) -> float:
    return round(x, 1)


@contextmanager
def simulator_process(*args: str) -> Iterator[tuple[str, int]]:
    """``eventbus simulate`` in a process of its own (as a user runs it); yields its base URL and pid."""
    with subprocess.Popen(
        [sys.executable, "-m", "eventbus", "simulate", "--port", "0", "--item-time", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line.startswith("listening on "):
                raise RuntimeError(f"the simulator did not start: {line!r}")
            yield line.split()[-1], proc.pid
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
