"""Run the benchmarks and print one JSON document: ``python -m benchmarks [--only NAME] [--quick]``."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform
import sys
import time
from pathlib import Path


def discover() -> list:
    """Every ``benchmarks/bench_*.py`` module (each has NAME and run(quick) -> dict), by file name."""
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    return [importlib.import_module(f"benchmarks.{name}") for name in names]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs: a smoke run, not figures to quote")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")


def run(args: argparse.Namespace) -> int:
    modules = discover()
    if args.list:
        for module in modules:
            print(module.NAME)
        return 0
    wanted = set(args.only or [])
    unknown = wanted - {m.NAME for m in modules}
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; see --list", file=sys.stderr)
        return 2
    results = {}
    for module in modules:
        if wanted and module.NAME not in wanted:
            continue
        started = time.perf_counter()
        results[module.NAME] = module.run(args.quick)
        results[module.NAME]["seconds"] = round(time.perf_counter() - started, 2)
        print(f"# {module.NAME} done", file=sys.stderr, flush=True)
    report = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": args.quick,
        "results": results,
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
