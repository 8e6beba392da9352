"""Print the events of a journal or of a RedisBus's stream; with -f, follow it as it is written.

SOURCE is a journal, the SQLite file a bus writes (Bus(journal="events.db")),
or a Redis URL (redis://HOST:PORT/DB, rediss://, unix://): the stream a
RedisBus writes there (--stream NAME, default eventbus).

Each event is one line: its position (the journal's seq, the stream's entry
id), then the event as `eventbus serve` logs it on a terminal (secrets
redacted). With --json, each event is its own JSON, one line
(eventbus.events.decode reads it back) and nothing else. The source is only
read, also while other processes write it (no consumer group is made or
moved); -f prints new events as they are committed, until Ctrl-C or
SIGTERM, which end it with exit 0 and one line on stderr: the --after that
goes on from there.

Rows or entries this version cannot decode (written by a newer eventbus,
damaged, or another program's) are named on stderr with their position; the
others are printed.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Protocol

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
from eventbus.cli._sources import (
    URL_HELP,
    add_stream_option,
    is_redis_url,
    open_journal,
    open_stream,
    say_never_written,
)

if TYPE_CHECKING:
    from eventbus.backends.redis import RedisBus
    from eventbus.journal import Journal

NAME = "tail"
HELP = "print the events of a journal file (Bus(journal=...)) or a RedisBus's stream; with -f, follow it"
ORDER = 55  # after serve (50), which writes what tail reads

position = number(int, minimum=0)
"""--after's type with a journal: a journal position, a whole number 0 or more."""


_BATCH = 1000  # rows (stream entries) read at once


def stream_position(text: str) -> str:
    """--after's type with a Redis URL: a stream entry id such as 1700000000000-0 (0: from the start)."""
    from eventbus.backends._redis_reading import entry_key

    if entry_key(text) is None:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise argparse.ArgumentTypeError(
            f"expected a stream entry id like 1700000000000-0 (or 0: from the start), not {shown!r}"
        )
    return text


def _known_types(tags: list[str]) -> None:
    from eventbus.journal import type_tags

    type_tags(tags)  # ConfigError naming the known ones


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help=f"a journal file, as given to Bus(journal=...); or {URL_HELP}",
    )
    add_stream_option(parser)
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
        "--after",
        metavar="POSITION",
        help="start after this position: a journal's seq (e.g. 120), a stream's entry id (e.g. 1700000000000-0) "
        "(default: from the first event)",
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
        help="print the durable subscribers' cursors (a stream's consumer groups) and the last position, "
        "instead of events",
    )
    parser.set_defaults(_tail_parser=parser)


def run(args: argparse.Namespace) -> int:
    import anyio

    from eventbus.cli._sources import redis_client_missing

    parser = args._tail_parser
    redis = is_redis_url(parser, args.source, args.stream, "a journal file")
    if redis and redis_client_missing("tail"):
        return 2
    if args.after is not None:
        try:
            args.after = (stream_position if redis else position)(args.after)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument --after: {exc}")
    events_asked = (args.follow, args.types, args.providers, args.jobs, args.after is not None, args.last is not None)
    if args.cursors and any(events_asked):
        parser.error("--cursors prints the cursors, not events: give it alone (or with --json)")
    try:
        return anyio.run(_main, args, redis)
    except KeyboardInterrupt:  # Ctrl-C before the run listened for it (while opening): nothing was printed
        return 0


async def _main(args: argparse.Namespace, redis: bool) -> int:
    async with AsyncExitStack() as stack:
        source = await (_open_stream(args, stack) if redis else _open_journal(args.source, stack))
        if source is None:
            return 2
        if args.cursors:
            await source.print_cursors(as_json=args.json)
            return 0
        return await _tail(source, args)


async def _open_journal(path: str, stack: AsyncExitStack) -> _Source | None:
    import anyio

    journal = await open_journal(path, "tail")
    if journal is None:
        return None

    async def close() -> None:
        with anyio.CancelScope(shield=True):
            await journal.close()

    stack.push_async_callback(close)
    return _JournalSource(journal)


async def _open_stream(args: argparse.Namespace, stack: AsyncExitStack) -> _Source | None:
    """The RedisBus on the URL and stream given, entered; or None, having said why (unreachable, a bad URL)."""
    opened = await open_stream(args.source, args.stream, "tail", stack)
    return None if opened is None else _StreamSource(*opened)


class _Source(Protocol):
    """What tail reads, a journal or a Redis stream; a position is a seq (int) or an entry id (str)."""

    start: Any  # the position before the first event

    def check_start(self, after: Any) -> None:
        """Say on stderr (no error) when ``after`` is past the end, or the source looks wrong."""

    async def read(self, after: Any, filters: dict[str, Any]) -> Any:
        """A page (entries, upto, skipped, more) after ``after``, as Journal.read and RedisBus.read give."""

    async def start_of_last(self, n: int, filters: dict[str, Any]) -> Any: ...

    def position(self, entry: Any) -> Any:
        """The position of one of the page's entries."""

    def order(self, position: Any) -> Any:
        """``position`` as a key that sorts in reading order."""

    async def print_cursors(self, *, as_json: bool) -> None: ...


class _JournalSource:
    """A journal, read through Journal.read: positions are seqs."""

    start = 0

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def check_start(self, after: int) -> None:
        if after > self.journal.last_seq:
            say(f"eventbus tail: --after {after} is past the journal's last position ({self.journal.last_seq})")

    async def read(self, after: int, filters: dict[str, Any]) -> Any:
        return await self.journal.read(after, limit=_BATCH, **filters)

    async def start_of_last(self, n: int, filters: dict[str, Any]) -> int:
        return await self.journal.start_of_last(n, **filters)

    def position(self, entry: Any) -> int:
        return entry.seq

    def order(self, position: int) -> int:
        return position

    async def print_cursors(self, *, as_json: bool) -> None:
        """Each durable subscriber's cursor and how far behind the last position it is; or one JSON object."""
        journal = self.journal
        cursors = await journal.cursors()
        last = journal.last_seq
        if as_json:
            import msgspec

            write_all(msgspec.json.encode({"last": last, "cursors": cursors}) + b"\n")
            return
        out = sys.stdout
        say(f"journal {journal.path}: last position {last}, {plural(len(cursors), 'cursor')}", out)
        for name, seq in cursors.items():
            behind = last - seq
            say(f"  {name}: {seq} ({f'{behind} behind' if behind > 0 else 'up to date'})", out)


class _StreamSource:
    """A RedisBus's stream, read through RedisBus.read (no consumer group): positions are entry ids."""

    start = "0"

    def __init__(self, bus: RedisBus, last: str) -> None:
        self.bus = bus
        self.last = last  # the stream's last entry id when it was opened

    def check_start(self, after: str) -> None:
        from eventbus.backends._redis_reading import id_key

        bus, last = self.bus, self.last
        if last == "0":
            say_never_written(bus, "tail")
        elif id_key(after) > id_key(last):
            say(f"eventbus tail: --after {after} is past the stream's last entry ({last})")

    async def read(self, after: str, filters: dict[str, Any]) -> Any:
        return await self.bus.read(after, limit=_BATCH, **filters)

    async def start_of_last(self, n: int, filters: dict[str, Any]) -> str:
        return await self.bus.start_of_last(n, **filters)

    def position(self, entry: Any) -> str:
        return entry.id

    def order(self, position: str) -> tuple[int, int]:
        from eventbus.backends._redis_reading import id_key

        return id_key(position)

    async def print_cursors(self, *, as_json: bool) -> None:
        """Each consumer group's last delivered entry, lag (entries not yet delivered) and pending; or one object."""
        bus = self.bus
        groups = await bus.groups()
        last = await bus.start_of_last(0)
        if as_json:
            import msgspec

            described = {
                g.name: {
                    "last_delivered": g.last_delivered,
                    "pending": g.pending,
                    "lag": g.lag,
                    "consumers": g.consumers,
                }
                for g in groups
            }
            write_all(msgspec.json.encode({"stream": bus.stream, "last": last, "groups": described}) + b"\n")
            return
        out = sys.stdout
        say(f"stream {bus.stream!r} at {bus.url}: last entry {last}, {plural(len(groups), 'group')}", out)
        for g in groups:
            behind = "lag unknown" if g.lag is None else f"{g.lag} behind" if g.lag > 0 else "up to date"
            say(
                f"  {g.name}: {g.last_delivered} ({behind}, {g.pending} pending, {plural(g.consumers, 'consumer')})",
                out,
            )


async def _tail(source: _Source, args: argparse.Namespace) -> int:
    """Print the entries after the start, then (with -f) new ones; a signal ends the run, saying where it was."""
    import signal

    import anyio

    from eventbus.exceptions import EventBusError

    filters: dict[str, Any] = {"types": args.types, "providers": args.providers, "jobs": args.jobs}
    show = guard_stdout(_Printer(source, as_json=args.json))  # a closed stdout ends the run as SIGINT does, exit 141
    caught: list[int] = []
    at = source.start if args.after is None else args.after
    source.check_start(at)
    failed: EventBusError | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(_stop_on_signals, tg.cancel_scope, caught)
        try:
            if args.last is not None:
                at = await source.start_of_last(args.last, filters)
            while True:
                page = await source.read(at, filters)
                show(page)
                at = page.upto
                if page.more:
                    continue
                if not args.follow:
                    break
                await anyio.sleep(args.poll)  # other processes' commits are not signalled: look again
        except EventBusError as exc:  # the file or the server failed mid-way: say how far it got
            failed = exc
        tg.cancel_scope.cancel()
    again = f"--after {at} goes on from there"
    if failed is not None:
        say(f"eventbus tail: error: {failed} (stopped after position {at}; {again})")
        return 1
    if not caught or stdout_closed():  # (stdout's reader is gone: main() exits 141, saying nothing)
        return 0
    (signum,) = caught
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

    def __init__(self, source: _Source, *, as_json: bool) -> None:
        import io

        self.source = source
        self.as_json = as_json
        self._rendered = io.StringIO()
        if not as_json:
            from eventbus.subscribers.log import EventLogger

            self._log = EventLogger(self._rendered, json=False)  # the console line `eventbus serve` prints

    def __call__(self, page: Any) -> None:
        entries = page.entries
        position, order = self.source.position, self.source.order
        i = 0
        for where, why in page.skipped:
            j = i
            while j < len(entries) and order(position(entries[j])) < order(where):
                j += 1
            self._write(entries[i:j])  # (flushed first: on a terminal, the report shows where the row was)
            i = j
            say(f"eventbus tail: skipped: {why}")
        self._write(entries[i:])

    def _write(self, entries: list[Any]) -> None:
        if not entries:
            return
        if self.as_json:
            from eventbus.events import encode

            data = b"".join(encode(entry.event) + b"\n" for entry in entries)
        else:
            encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
            data = "".join(map(self._line, entries)).encode(encoding, "backslashreplace")
        write_all(data)

    def _line(self, entry: Any) -> str:
        from eventbus.events import printable

        self._log(entry.event)
        text = self._rendered.getvalue().rstrip("\n")
        self._rendered.seek(0)
        self._rendered.truncate()
        return printable(f"{self.source.position(entry):>6} {text}") + "\n"
