"""The benchmarks import and are listed (running them is `eventbus bench`, never part of the tests)."""

from __future__ import annotations

import subprocess
import sys


def test_every_benchmark_module_imports_and_is_listed() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--list"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    names = proc.stdout.split()
    assert {"bus", "contacts", "submit", "webhook_receiver", "websocket_ingest"} <= set(names), names
    assert len(names) == len(set(names))


def test_an_unknown_benchmark_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "nope"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 2 and "unknown benchmark(s): nope; see --list" in proc.stderr
