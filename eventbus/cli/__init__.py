"""The ``eventbus`` command line.

Each subcommand is one module exposing ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``; :data:`COMMANDS` lists them in the order ``--help``
shows them. Modules are imported only when their command runs, so ``eventbus
tail`` does not pay for starting the simulator's dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from eventbus.exceptions import EventBusError

# name -> (module, one-line help). Keep in --help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("eventbus.cli.bench", "run the benchmarks and print JSON"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="eventbus",
        description="Watch bulk contact jobs on InsideView, Mautic, Datananas and Pronto as one typed event stream.",
    )
    from eventbus import __version__

    parser.add_argument("--version", action="version", version=f"eventbus {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventbus`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except EventBusError as exc:
        print(f"eventbus {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
