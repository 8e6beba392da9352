"""``eventbus bench``: run the benchmarks (same as ``python -m benchmarks``)."""

from __future__ import annotations

import argparse

NAME = "bench"
HELP = "run the benchmarks and print JSON (same as python -m benchmarks)"
ORDER = 90


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from benchmarks.__main__ import add_arguments as add

    add(parser)


def run(args: argparse.Namespace) -> int:
    from benchmarks.__main__ import run as run_benchmarks

    return run_benchmarks(args)
