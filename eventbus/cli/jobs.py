"""What became of every job a journal, a store or a RedisBus's stream holds: one row per job (or refused chunk).

A journal's events, or those of the stream a RedisBus writes on a Redis URL
(redis://HOST:PORT/DB, rediss://, unix://; --stream NAME, default eventbus),
are replayed from the start into the same per-job summary `eventbus demo`
and `eventbus submit --follow` print at their end; a store
(eventbus.subscribers.store) holds that summary already: state, total,
contacts that succeeded and failed, created and updated, seconds, and the
reason of a job that failed or a chunk that was refused. The source is only
read, also while other processes write it (no consumer group is made or
moved). With --items and one --job, that job's contacts instead, one line
each: key, status, outcome or code, message. Rows or entries that cannot be
decoded are named on stderr and passed over.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from eventbus.cli import comma_list, list_option, say, write_all
from eventbus.cli._sources import URL_HELP, add_stream_option, is_redis_url, open_journal, open_stream
from eventbus.subscribers.board import TERMINAL_STATES

if TYPE_CHECKING:
    from eventbus.subscribers.board import JobBoard, JobRow
    from eventbus.subscribers.store import ItemRecord, JobRecord

NAME = "jobs"
HELP = "one row per job a journal, store file or RedisBus stream holds: state, contacts that succeeded and failed"
ORDER = 56  # after tail (55): both read a journal or a stream

_BATCH = 1000  # rows (stream entries) read at once

STATES = ("submitted", "accepted", "running", "stuck", *sorted(TERMINAL_STATES))
"""Every state a job's row can be in (eventbus.subscribers.board): the open ones, then the ended ones."""


def _known_states(states: list[str]) -> None:
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown state {unknown[0]!r}; known states: {', '.join(STATES)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "journal",
        metavar="SOURCE",
        help=f"a journal file (Bus(journal=...) or --journal), a store file (Store(path)), or {URL_HELP}",
    )
    add_stream_option(parser)
    list_option(parser, "--provider", "providers", comma_list("provider names"), "PROVIDER", "only these providers")
    states = comma_list("states", _known_states)
    list_option(parser, "--state", "states", states, "STATE", f"only jobs in these states: {', '.join(STATES)}")
    list_option(parser, "--job", "jobs", comma_list("job ids"), "JOB_ID", "only these jobs")
    parser.add_argument("--json", action="store_true", help="one JSON object per job, one per line, and nothing else")
    parser.add_argument(
        "--items", action="store_true", help="the contacts of the one job given with --job, one line each"
    )
    parser.set_defaults(_jobs_parser=parser)


def run(args: argparse.Namespace) -> int:
    import anyio

    from eventbus.cli._sources import redis_client_missing

    parser = args._jobs_parser
    if args.items and (not args.jobs or len(args.jobs) != 1 or args.states):
        parser.error("--items lists the contacts of one job: give exactly one --job ID (and no --state)")
    redis = is_redis_url(parser, args.journal, args.stream, "a journal or store file")
    if redis and redis_client_missing("jobs"):
        return 2
    try:
        return anyio.run(_main, args, redis)
    except KeyboardInterrupt:
        say("eventbus jobs: interrupted")
        return 130


async def _main(args: argparse.Namespace, redis: bool) -> int:
    import anyio

    from eventbus.cli._sources import say_never_written
    from eventbus.subscribers.store import file_kind

    if not redis and await anyio.to_thread.run_sync(file_kind, args.journal) == "store":
        return await _from_store(args)
    async with AsyncExitStack() as stack:
        if redis:
            opened = await open_stream(args.journal, args.stream, "jobs", stack)
            if opened is None:
                return 2
            bus, last = opened
            if last == "0":
                say_never_written(bus, "jobs")
            where = f"the stream {bus.stream!r} at {bus.url}"  # (the URL's password hidden)
            return await _replay(bus.read, "0", args, "stream", where, "entries of the stream")
        journal = await open_journal(args.journal, "jobs")  # (also says why a file is neither)
        if journal is None:
            return 2
        stack.push_async_callback(journal.close)
        return await _replay(journal.read, 0, args, "journal", args.journal, "rows of the journal")


async def _replay(
    read: Callable[..., Awaitable[Any]], start: Any, args: argparse.Namespace, kind: str, where: str, rows_of: str
) -> int:
    """Read every page from ``start`` (Journal.read or RedisBus.read), in order, into the rows or the contacts; print.

    Each row or entry that cannot be decoded is named on stderr (with its seq or entry id) and passed over.
    """
    from eventbus.subscribers.board import JobBoard

    board = JobBoard()
    items: dict[tuple[str, str, str], ItemRecord] = {}
    if args.items:
        filters: dict[str, Any] = {"providers": args.providers, "jobs": args.jobs, "types": _ITEM_TYPES}
    else:
        filters = {"providers": args.providers}
    skipped = 0
    at = start
    while True:
        page = await read(at, limit=_BATCH, **filters)
        for entry in page.entries:
            if args.items:
                _keep_item(items, entry.event)
            else:
                board(entry.event)
        for _, why in page.skipped:
            say(f"eventbus jobs: skipped: {why}")
        skipped += len(page.skipped)
        at = page.upto
        if not page.more:
            break
    if args.items:
        _print_items(sorted(items.values(), key=lambda i: (i.provider, len(i.key), i.key)), as_json=args.json)
    else:
        rows = _selected(board, args)
        if args.json:
            _print_json(rows)
        else:
            _print_tables(rows, args, kind, where)
    if skipped:
        say(f"eventbus jobs: {skipped} {rows_of} could not be decoded and were passed over")
    return 0


_ITEM_TYPES = ("item_succeeded", "item_failed")


async def _from_store(args: argparse.Namespace) -> int:
    """The same output from a store file, which holds the rows (and the contacts) already."""
    from eventbus.exceptions import ConfigError, JournalError
    from eventbus.subscribers.store import Store

    store = Store(args.journal, readonly=True)
    try:
        await store.__aenter__()
    except (ConfigError, JournalError) as exc:
        say(f"eventbus jobs: error: {exc}")
        return 2
    try:
        records = await store.jobs(provider=args.providers)
        if args.jobs:
            wanted = set(args.jobs)
            records = [r for r in records if r.job_id in wanted]
        if args.items:
            items: list[ItemRecord] = []
            for record in records:
                after: str | None = None
                while page := await store.items(record.provider, record.job_id, after_key=after):
                    items += page
                    after = page[-1].key
            _print_items(items, as_json=args.json)
            return 0
    finally:
        await store.__aexit__(None, None, None)
    rows = [_row_of(r) for r in records if not args.states or r.state in args.states]
    if args.json:
        _print_json(rows)
    else:
        _print_tables(rows, args, "store", args.journal)
    return 0


def _row_of(record: JobRecord) -> JobRow:
    from eventbus.subscribers.board import JobRow

    return JobRow(
        record.provider,
        record.job_id,
        state=record.state,
        total=record.total,
        done=record.done,
        succeeded=record.succeeded,
        failed=record.failed,
        created=record.created,
        updated=record.updated,
        reason=record.reason,
        started=record.started,
        ended=record.ended,
    )


def _keep_item(items: dict[tuple[str, str, str], ItemRecord], event: Any) -> None:
    """Keep a contact's report as a store would: once per key, the earliest by (at, id) if it came more than once."""
    from eventbus.subscribers.store import item_record

    key = (event.provider, event.job_id, event.key)
    known = items.get(key)
    if known is not None and (known.at, known.event_id) <= (event.at, event.id):
        return
    items[key] = item_record(event)


def _print_items(items: list[ItemRecord], *, as_json: bool) -> None:
    """One line per contact: key, status, outcome or code, message; or one JSON object each."""
    if as_json:
        import msgspec

        encode = msgspec.json.Encoder().encode
        write_all(b"".join(encode(item) + b"\n" for item in items))
        return
    from eventbus.events import printable

    if not items:
        say("no contacts of this job", sys.stdout)
        return
    width = max(len(item.key) for item in items)
    lines = (
        printable(f"{item.key:<{width}}  {item.status:<9}  {item.outcome or item.code}  {item.message}".rstrip())
        for item in items
    )
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    write_all("".join(line + "\n" for line in lines).encode(encoding, "backslashreplace"))


def _selected(board: JobBoard, args: argparse.Namespace) -> list[JobRow]:
    rows = list(board.rows.values())
    if args.states:
        rows = [r for r in rows if r.state in args.states]
    if args.jobs:
        wanted = set(args.jobs)
        rows = [r for r in rows if r.job_id in wanted]
    return rows


def _print_json(rows: list[JobRow]) -> None:
    import msgspec

    encode = msgspec.json.Encoder().encode

    def record(row: JobRow) -> dict[str, Any]:
        return {
            "provider": row.provider,
            "job_id": row.job_id,
            "state": row.state,
            "total": row.total,
            "done": row.progress,
            "succeeded": row.succeeded,
            "failed": row.failed,
            "created": row.created,
            "updated": row.updated,
            "reason": row.reason,
            "started": row.started,
            "ended": row.ended,
            "seconds": row.seconds,
        }

    write_all(b"".join(encode(record(row)) + b"\n" for row in rows))


def _print_tables(rows: list[JobRow], args: argparse.Namespace, kind: str, where: str) -> None:
    from eventbus.cli import console_width, plural, stdout_console
    from eventbus.subscribers.board import JobBoard
    from eventbus.subscribers.console import provider_table, summary_table

    console = stdout_console(width=console_width())
    if not rows:
        console.print("no jobs" + (" match" if args.states or args.jobs or args.providers else f" in this {kind}"))
        return
    shown = JobBoard()
    shown.rows = {(r.provider, r.job_id): r for r in rows}
    console.print(summary_table(shown, title=f"{plural(len(rows), 'job')} in {where}"))
    console.print(provider_table(shown))
