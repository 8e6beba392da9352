"""Print the events of a journal, the SQLite file a bus writes (Bus(journal="events.db")); with -f, follow it.

Each event is one line: its position in the journal, then the event as
`eventbus serve` logs it on a terminal (secrets redacted). With --json, each
event is its own JSON, one line (eventbus.events.decode reads it back) and
nothing else. The file is only read, also while other processes write it; -f
prints new events as they are committed, until Ctrl-C or SIGTERM, which end
it with exit 0 and one line on stderr: the --after that goes on from there.

Rows this version cannot decode (written by a newer eventbus, or damaged)
are named on stderr with their position; the others are printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from eventbus.cli import (
    comma_list,
    guard_stdout,
    list_option,
    number,
    plural,
    positive,
    say,
    stdout_closed,
    whole,
    write_all,
)

if TYPE_CHECKING:
    from eventbus.journal import Entry, Journal, Page

NAME = "tail"
HELP = "print the events of a journal file (Bus(journal=...)); with -f, follow it as it is written"
ORDER = 55  # after serve (50), which writes what tail reads

position = number(int, minimum=0)
"""--after's type: a journal position, a whole number 0 or more."""

_BATCH = 1000  # rows read at once


def _known_types(tags: list[str]) -> None:
    from eventbus.journal import type_tags

    type_tags(tags)  # ConfigError naming the known ones


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("journal", metavar="JOURNAL", help="the journal file, as given to Bus(journal=...)")
    parser.add_argument(
        "-f", "--follow", action="store_true", help="then print new events as they are committed, until Ctrl-C"
    )
    filters = parser.add_argument_group("filters (combined: an event must match each one given)")
    types = comma_list("event types", _known_types)
    list_option(filters, "--type", "types", types, "TYPE", "only events of these types, e.g. job_completed,job_failed")
    list_option(filters, "--provider", "providers", comma_list("provider names"), "PROVIDER", "only these providers")
    list_option(filters, "--job", "jobs", comma_list("job ids"), "JOB_ID", "only events of these jobs")
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--after", type=position, metavar="SEQ", help="start after this position (default: from the first event)"
    )
    start.add_argument(
        "--last",
        type=whole,
        metavar="N",
        help="start with the last N events that match (0: none, only what comes next, with -f)",
    )
    parser.add_argument("--json", action="store_true", help="write each event as one JSON line, and nothing else")
    parser.add_argument(
        "--poll",
        type=positive,
        default=0.25,
        metavar="SECONDS",
        help="with -f, how often to look for new events (default: 0.25)",
    )
    parser.add_argument(
        "--cursors",
        action="store_true",
        help="print each durable subscriber's cursor and the journal's last position instead of events",
    )
    parser.set_defaults(_tail_parser=parser)


def run(args: argparse.Namespace) -> int:
    import anyio

    events_asked = (args.follow, args.types, args.providers, args.jobs, args.after is not None, args.last is not None)
    if args.cursors and any(events_asked):
        args._tail_parser.error("--cursors prints the cursors, not events: give it alone (or with --json)")
    try:
        return anyio.run(_main, args)
    except KeyboardInterrupt:  # Ctrl-C before the run listened for it (while opening): nothing was printed
        return 0


async def _main(args: argparse.Namespace) -> int:
    import anyio

    journal = await open_journal(args.journal, "tail")
    if journal is None:
        return 2
    try:
        if args.cursors:
            await _print_cursors(journal, as_json=args.json)
            return 0
        return await _tail(journal, args)
    finally:
        with anyio.CancelScope(shield=True):
            await journal.close()


async def open_journal(path: str, command: str) -> Journal | None:
    """The journal at ``path``, open read-only; or None, having said why on stderr (the caller exits 2).

    Missing, a directory, not SQLite, another application's database, a newer layout: one line each.
    """
    from eventbus.exceptions import ConfigError, JournalError
    from eventbus.journal import Journal

    journal = Journal(path, readonly=True)
    try:
        await journal.open()
    except (ConfigError, JournalError) as exc:
        say(f"eventbus {command}: error: {exc}")
        return None
    return journal


async def _tail(journal: Journal, args: argparse.Namespace) -> int:
    """Print the entries after the start, then (with -f) new ones; a signal ends the run, saying where it was."""
    import signal

    import anyio

    filters: dict[str, Any] = {"types": args.types, "providers": args.providers, "jobs": args.jobs}
    show = guard_stdout(_Printer(as_json=args.json))  # a closed stdout ends the run as SIGINT does, exit 141
    caught: list[int] = []
    at = args.after or 0
    if at > journal.last_seq:
        say(f"eventbus tail: --after {at} is past the journal's last position ({journal.last_seq})")
    async with anyio.create_task_group() as tg:
        await tg.start(_stop_on_signals, tg.cancel_scope, caught)
        if args.last is not None:
            at = await journal.start_of_last(args.last, **filters)
        while True:
            page = await journal.read(at, limit=_BATCH, **filters)
            show(page)
            at = page.upto
            if page.more:
                continue
            if not args.follow:
                break
            await anyio.sleep(args.poll)  # other processes' commits are not signalled: look again
        tg.cancel_scope.cancel()
    if not caught or stdout_closed():  # (stdout's reader is gone: main() exits 141, saying nothing)
        return 0
    (signum,) = caught
    again = f"--after {at} goes on from there"
    if args.follow:  # the usual way a follow ends
        say(f"eventbus tail: stopped after position {at} ({again})")
        return 0
    why = "interrupted" if signum == signal.SIGINT else "stopped: terminated (SIGTERM)"
    say(f"eventbus tail: {why} after position {at} ({again})")
    return 128 + signum


async def _stop_on_signals(scope: Any, caught: list[int], *, task_status: Any) -> None:
    """Cancel ``scope`` at the first SIGINT or SIGTERM, noting which; listening once ``task_status`` is started."""
    import signal

    import anyio

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            caught.append(signum)
            scope.cancel()
            return


class _Printer:
    """Writes a page's entries to stdout (one line each, flushed per page), its undecodable rows to stderr, in order."""

    def __init__(self, *, as_json: bool) -> None:
        import io

        self.as_json = as_json
        self._rendered = io.StringIO()
        if not as_json:
            from eventbus.subscribers.log import EventLogger

            self._log = EventLogger(self._rendered, json=False)  # the console line `eventbus serve` prints

    def __call__(self, page: Page) -> None:
        entries = page.entries
        i = 0
        for seq, why in page.skipped:
            j = i
            while j < len(entries) and entries[j].seq < seq:
                j += 1
            self._write(entries[i:j])  # (flushed first: on a terminal, the report shows where the row was)
            i = j
            say(f"eventbus tail: skipped: {why}")
        self._write(entries[i:])

    def _write(self, entries: list[Entry]) -> None:
        if not entries:
            return
        if self.as_json:
            from eventbus.events import encode

            data = b"".join(encode(entry.event) + b"\n" for entry in entries)
        else:
            encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
            data = "".join(map(self._line, entries)).encode(encoding, "backslashreplace")
        write_all(data)

    def _line(self, entry: Entry) -> str:
        from eventbus.events import printable

        self._log(entry.event)
        text = self._rendered.getvalue().rstrip("\n")
        self._rendered.seek(0)
        self._rendered.truncate()
        return printable(f"{entry.seq:>6} {text}") + "\n"


async def _print_cursors(journal: Journal, *, as_json: bool) -> None:
    """Each durable subscriber's cursor and how far behind the last position it is; or one JSON object."""
    cursors = await journal.cursors()
    last = journal.last_seq
    if as_json:
        import msgspec

        sys.stdout.buffer.write(msgspec.json.encode({"last": last, "cursors": cursors}) + b"\n")
        sys.stdout.buffer.flush()
        return
    out = sys.stdout
    say(f"journal {journal.path}: last position {last}, {plural(len(cursors), 'cursor')}", out)
    for name, seq in cursors.items():
        behind = last - seq
        say(f"  {name}: {seq} ({f'{behind} behind' if behind > 0 else 'up to date'})", out)
