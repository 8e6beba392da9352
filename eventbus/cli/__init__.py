"""The ``eventbus`` command line.

Each subcommand is one module in this package exposing ``NAME``, ``HELP``,
``ORDER`` (position in ``--help``), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are found by :func:`commands`; keep their
top-level imports light (import heavy dependencies inside ``run``).

Number options use the shared ``type=`` checks defined here (:func:`number`
and its instances :data:`port`, :data:`positive`, :data:`non_negative`,
:data:`count`, :data:`integer`), so NaN, infinities and out-of-range values
exit 2 with what was expected, before anything is sent. Addresses shown in
messages go through :func:`redact_userinfo`.

Subscribers that write to stdout are wrapped in :func:`guard_stdout`: when
the reader goes away (``eventbus submit --json | head``), the run ends the way
Ctrl-C ends it, and the command exits 141 (128 + SIGPIPE) instead of logging
one broken-pipe error per event.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import pkgutil
import select
import signal
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

from eventbus.exceptions import EventBusError, errors_of
from eventbus.subscribers.log import redact_userinfo

__all__ = [
    "build_parser",
    "comma_list",
    "commands",
    "count",
    "guard_stdout",
    "integer",
    "json_lines",
    "journal_option",
    "journal_path",
    "list_option",
    "main",
    "non_negative",
    "number",
    "plural",
    "port",
    "positive",
    "redact_userinfo",
    "stdout_closed",
    "stop_on_sigterm",
    "stop_reason",
    "write_all",
]

_N = TypeVar("_N", int, float)


def number(
    kind: type[_N],
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> Callable[[str], _N]:
    """An argparse ``type=`` that reads a finite ``kind`` within bounds, else exits 2 saying what is expected.

    ``minimum``/``maximum`` are inclusive, ``above`` exclusive. NaN and
    infinities are always refused: ``float()`` takes ``nan``, ``inf`` and
    ``1e400``, and each of them silently turns a check or a deadline off.
    """
    bounds = [] if above is None else [f"greater than {above:g}"]
    if minimum is not None and maximum is not None:
        bounds.append(f"from {minimum:g} to {maximum:g}")
    elif minimum is not None:
        bounds.append(f"of at least {minimum:g}")
    elif maximum is not None:
        bounds.append(f"at most {maximum:g}" if bounds else f"of at most {maximum:g}")
    wanted = " ".join(["a whole number" if kind is int else "a finite number", " and ".join(bounds)]).strip()

    def convert(text: str) -> _N:
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            value = None
        if (
            value is None
            or (kind is float and not math.isfinite(value))  # an int is finite (and may be too big for a float)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
            or (above is not None and not value > above)
        ):
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise argparse.ArgumentTypeError(f"expected {wanted}, not {shown!r}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in some messages
    return convert


port = number(int, minimum=0, maximum=65535)
"""A TCP port, 0 (pick a free one) to 65535."""
positive = number(float, above=0)
"""A finite number > 0: durations in seconds, rates per second."""
non_negative = number(float, minimum=0)
"""A finite number >= 0 (e.g. simulated work per item, where 0 means none)."""
count = number(int, minimum=1)
"""A whole number >= 1: sizes, limits, how many at once."""
whole = number(int, minimum=0)
"""A whole number >= 0 (e.g. how many of the last events, where 0 means none)."""
integer = number(int)
"""Any whole number (e.g. a random seed)."""


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


# Why a run was stopped early, when it was not Ctrl-C: (text for stderr, exit status).
_stopped: tuple[str, int] | None = None


def stop_reason() -> tuple[str, int]:
    """How to report a run ended by KeyboardInterrupt: Ctrl-C, a closed stdout or SIGTERM; and its exit status."""
    return _stopped or ("interrupted", 130)


def stdout_closed() -> bool:
    """True once a guarded subscriber found stdout closed (the run was then ended as by Ctrl-C)."""
    return _stopped is not None and _stopped[1] == 141


FILE_WIDTH = 160  # the width of tables written to a file or a pipe: a job table with whole 36-character ids


def console_width() -> int | None:
    """None (the terminal's width) when stdout is a terminal, else :data:`FILE_WIDTH`."""
    return None if sys.stdout.isatty() else FILE_WIDTH


def stdout_console(**kwargs: Any) -> Any:
    """A rich ``Console`` whose write to a closed stdout raises ``BrokenPipeError`` (for :func:`guard_stdout`).

    rich's own ``on_broken_pipe`` raises ``SystemExit(1)`` from inside the bus's handler task, which
    escapes the guard and the task group as a traceback, skips the interrupted-run report and exits 1.
    """
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True  # nothing more is written; the guard silences stdout and stops the run
            raise BrokenPipeError(32, "Broken pipe")

    return _Console(**kwargs)


def guard_stdout(handler: Callable[[Any], object]) -> Callable[[Any], object]:
    """``handler``, a subscriber writing to stdout, made to end the run when stdout's reader has gone away."""

    def guarded(event: Any) -> object:
        try:
            return handler(event)
        except BrokenPipeError:
            _end_for_closed_stdout()
            return None

    return guarded


def _stop_as_ctrl_c(why: str, status: int) -> None:
    global _stopped
    if _stopped is None:
        _stopped = (why, status)
        signal.raise_signal(signal.SIGINT)  # the command's Ctrl-C path says on stderr what was done


def _silence_stdout() -> None:
    """Nothing more goes to a closed stdout pipe (and the flush at exit cannot fail on it)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _stdout_gone() -> bool:
    """True when stdout is a pipe whose reader has gone away (polling its write end reports an error)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no fileno (replaced stdout), or no poll on this platform
        return False


def _end_for_closed_stdout() -> None:
    if stdout_closed():
        return
    _silence_stdout()
    _stop_as_ctrl_c("stopped: stdout was closed", 141)


def stop_on_sigterm() -> None:
    """Make SIGTERM (a container or service manager stopping us) end the run as Ctrl-C does, exit 143.

    For commands whose Ctrl-C path reports what was done (``eventbus submit``);
    without this, SIGTERM ends the process with no word of what was sent.
    """
    signal.signal(signal.SIGTERM, lambda _signum, _frame: _stop_as_ctrl_c("stopped: terminated (SIGTERM)", 143))


def say(text: str, file: Any = None) -> None:
    """Print one line for a person (stderr unless ``file`` is given), with no terminal escapes in it.

    Messages carry text from outside (a provider's reason, a job id, a value
    of the input file): its unprintable characters are shown escaped (see
    :func:`eventbus.events.printable`).
    """
    from eventbus.events import printable

    print(printable(text), file=sys.stderr if file is None else file)


def plural(count: int, word: str) -> str:
    """``count`` and ``word``, the word plural unless the count is one: "1 chunk", "2 chunks"."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def comma_list(what: str, check: Callable[[list[str]], None] | None = None) -> Callable[[str], list[str]]:
    """An argparse ``type=`` for one value or several, comma-separated (``--type a,b``); ``check`` may refuse some.

    ``check`` raises ``argparse.ArgumentTypeError`` (or :class:`ConfigError`) saying which and what is known.
    """

    def convert(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        if not names:
            raise argparse.ArgumentTypeError(f"expected {what}, one or comma-separated, not {text!r}")
        if check is not None:
            from eventbus.exceptions import ConfigError

            try:
                check(names)
            except ConfigError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        return names

    return convert


def list_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    dest: str,
    convert: Callable[[str], list[str]],
    metavar: str,
    help: str,
) -> None:
    """``flag`` taking one value or several (repeated, or comma-separated), gathered in ``args.<dest>``."""
    parser.add_argument(
        flag, dest=dest, action="extend", type=convert, metavar=metavar, help=f"{help} (repeatable, or comma-separated)"
    )


def journal_option(parser: argparse.ArgumentParser, default: str | None = None, *, retention: bool = False) -> None:
    """Add ``--journal PATH``: the run's bus writes every event to that SQLite journal (``eventbus tail`` reads it).

    ``retention=True`` (long-running commands) also adds ``--journal-max-entries`` and ``--journal-max-age``.
    """
    shown = f"default: {default}; '-' for none" if default else "default: none"
    parser.add_argument(
        "--journal",
        metavar="PATH",
        default=default,
        help=f"also write every event to this SQLite journal, appended to if it exists "
        f"(read it with: eventbus tail PATH) ({shown})",
    )
    if retention:
        parser.add_argument(
            "--journal-max-entries",
            type=count,
            metavar="N",
            help="keep the journal to about its last N entries (what a durable subscriber has not acknowledged stays)",
        )
        parser.add_argument(
            "--journal-max-age",
            type=positive,
            metavar="SECONDS",
            help="delete journal entries older than this (what a durable subscriber has not acknowledged stays)",
        )


def journal_for(args: argparse.Namespace) -> Any:
    """The ``Journal`` the options ask for (path and retention), or None; a limit without ``--journal`` is an error."""
    from eventbus.exceptions import ConfigError
    from eventbus.journal import Journal

    limits = {
        "max_entries": getattr(args, "journal_max_entries", None),
        "max_age": getattr(args, "journal_max_age", None),
    }
    path = journal_path(args)
    if path is None:
        given = [f"--journal-{name.replace('_', '-')}" for name, value in limits.items() if value is not None]
        if given:
            raise ConfigError(f"{' and '.join(given)}: there is no journal to keep small; add --journal PATH")
        return None
    return Journal(path, **limits)


def journal_path(args: argparse.Namespace) -> str | None:
    """The ``--journal`` given, or None for an in-memory bus (none given, or ``-``)."""
    value = getattr(args, "journal", None)
    return None if value in (None, "", "-") else value


def json_lines() -> Callable[[Any], None]:
    """A subscriber that writes each event to stdout as one JSON line, flushed at once (for ``--json``)."""
    from eventbus.events import encode

    def write_json(event: Any) -> None:
        write_all(encode(event) + b"\n")

    return write_json


def write_all(data: bytes) -> None:
    """Write ``data`` to stdout whole, and flush.

    An unbuffered stdout (``python -u``, ``PYTHONUNBUFFERED``) is a raw file: a
    signal arriving while it waits for the pipe's reader makes it take part of
    a write and drop the rest, losing lines.
    """
    out = sys.stdout.buffer
    view = memoryview(data)
    while view:
        view = view[out.write(view) or 0 :]  # (None: a non-blocking stdout was full; try again)
    out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventbus`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        status = int(args._run(args) or 0)
        return _stopped[1] if _stopped else status  # a command that ended gracefully once stopped
    except KeyboardInterrupt:  # a command with more to say (submit) says it itself and returns
        why, status = stop_reason()
        if status != 141:  # (a closed stdout has no reader to tell)
            say(f"eventbus {args.command}: {why}")
        return status
    except BrokenPipeError:
        if not _stdout_gone():
            raise  # some other pipe or socket: not ours to explain away
        _silence_stdout()  # a plain print found stdout's reader gone (`eventbus ... | head`): end quietly
        return 141
    except EventBusError as exc:
        say(f"eventbus {args.command}: error: {exc}")
        return 1
    except BaseExceptionGroup as group:
        # A ConfigError raised inside the bus's or a source's task group arrives wrapped;
        # it is still one line for the user. Anything else in the group is a bug: re-raise.
        errors = errors_of(group)
        if not errors:
            raise
        for message in dict.fromkeys(str(e) for e in errors):
            say(f"eventbus {args.command}: error: {message}")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
