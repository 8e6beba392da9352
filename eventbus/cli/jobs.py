"""What became of every job a journal or a store holds: one row per job (or chunk that never became one).

A journal's events are replayed into the same per-job summary `eventbus
demo` and `eventbus submit --follow` print at their end; a store
(eventbus.subscribers.store) holds that summary already: state, total,
contacts that succeeded and failed, created and updated, seconds, and the
reason of a job that failed or a chunk that was refused. The file is only
read, also while other processes write it. With --items and one --job, that
job's contacts instead, one line each: key, status, outcome or code, message.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from eventbus.cli import comma_list, list_option, say, write_all
from eventbus.subscribers.board import TERMINAL_STATES

if TYPE_CHECKING:
    from eventbus.subscribers.board import JobBoard, JobRow
    from eventbus.subscribers.store import ItemRecord, JobRecord

NAME = "jobs"
HELP = "one row per job a journal or store file holds: state, contacts that succeeded and failed, reason"
ORDER = 56  # after tail (55): both read a journal

STATES = ("submitted", "accepted", "running", "stuck", *sorted(TERMINAL_STATES))
"""Every state a job's row can be in (eventbus.subscribers.board): the open ones, then the ended ones."""


def _known_states(states: list[str]) -> None:
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown state {unknown[0]!r}; known states: {', '.join(STATES)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "journal", metavar="FILE", help="a journal file (Bus(journal=...) or --journal) or a store file (Store(path))"
    )
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

    if args.items and (not args.jobs or len(args.jobs) != 1 or args.states):
        args._jobs_parser.error("--items lists the contacts of one job: give exactly one --job ID (and no --state)")
    try:
        return anyio.run(_main, args)
    except KeyboardInterrupt:
        say("eventbus jobs: interrupted")
        return 130


async def _main(args: argparse.Namespace) -> int:
    import anyio

    from eventbus.cli.tail import open_journal
    from eventbus.subscribers.board import JobBoard
    from eventbus.subscribers.store import file_kind

    if await anyio.to_thread.run_sync(file_kind, args.journal) == "store":
        return await _from_store(args)
    journal = await open_journal(args.journal, "jobs")  # (also says why a file is neither)
    if journal is None:
        return 2
    board = JobBoard()
    items: dict[tuple[str, str, str], ItemRecord] = {}
    if args.items:
        replay = journal.replay(providers=args.providers, jobs=args.jobs, types=("item_succeeded", "item_failed"))
    else:
        replay = journal.replay(providers=args.providers)
    try:
        async for entry in replay:
            if args.items:
                _keep_item(items, entry.event)
            else:
                board(entry.event)
    finally:
        await journal.close()
    skipped = replay.skipped
    if args.items:
        _print_items(sorted(items.values(), key=lambda i: (i.provider, len(i.key), i.key)), as_json=args.json)
    else:
        rows = _selected(board, args)
        if args.json:
            _print_json(rows)
        else:
            _print_tables(rows, args, "journal")
    if skipped:
        say(f"eventbus jobs: {skipped} rows of the journal could not be decoded and were passed over")
    return 0


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
        _print_tables(rows, args, "store")
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


def _print_tables(rows: list[JobRow], args: argparse.Namespace, kind: str) -> None:
    from eventbus.cli import console_width, plural, stdout_console
    from eventbus.subscribers.board import JobBoard
    from eventbus.subscribers.console import provider_table, summary_table

    console = stdout_console(width=console_width())
    if not rows:
        console.print("no jobs" + (" match" if args.states or args.jobs or args.providers else f" in this {kind}"))
        return
    shown = JobBoard()
    shown.rows = {(r.provider, r.job_id): r for r in rows}
    console.print(summary_table(shown, title=f"{plural(len(rows), 'job')} in {args.journal}"))
    console.print(provider_table(shown))
