"""The ``eventbus`` command line.

Each subcommand is one module in this package exposing ``NAME``, ``HELP``,
``ORDER`` (position in ``--help``), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are found by :func:`commands`; keep their
top-level imports light (import heavy dependencies inside ``run``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from eventbus.exceptions import EventBusError


def commands() -> list[ModuleType]:
    """Every subcommand module of this package, in ``--help`` order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            found.append(importlib.import_module(f"{__name__}.{info.name}"))
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="eventbus",
        description="Watch bulk contact jobs on InsideView, Mautic, Datananas and Pronto as one typed event stream.",
    )
    from eventbus import __version__

    parser.add_argument("--version", action="version", version=f"eventbus {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__)
        p.set_defaults(_run=module.run)
        module.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventbus`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except EventBusError as exc:
        print(f"eventbus {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
