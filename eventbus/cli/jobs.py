"""What became of every job a journal holds: one row per job (or chunk that never became one), as the demo ends.

The journal's events are replayed into the same per-job summary `eventbus
demo` and `eventbus submit --follow` print at their end: state, total,
contacts that succeeded and failed, created and updated, seconds, and the
reason of a job that failed or a chunk that was refused. The file is only
read, also while other processes write it. For one job's contacts, use
`eventbus tail JOURNAL --job ID --type item_succeeded,item_failed`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from eventbus.cli import comma_list, list_option, say, write_all
from eventbus.subscribers.board import TERMINAL_STATES

if TYPE_CHECKING:
    from eventbus.subscribers.board import JobBoard, JobRow

NAME = "jobs"
HELP = "one row per job a journal file holds: state, contacts that succeeded and failed, reason"
ORDER = 56  # after tail (55): both read a journal

STATES = ("submitted", "accepted", "running", "stuck", *sorted(TERMINAL_STATES))
"""Every state a job's row can be in (eventbus.subscribers.board): the open ones, then the ended ones."""


def _known_states(states: list[str]) -> None:
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown state {unknown[0]!r}; known states: {', '.join(STATES)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("journal", metavar="JOURNAL", help="the journal file (Bus(journal=...) or --journal)")
    list_option(parser, "--provider", "providers", comma_list("provider names"), "PROVIDER", "only these providers")
    states = comma_list("states", _known_states)
    list_option(parser, "--state", "states", states, "STATE", f"only jobs in these states: {', '.join(STATES)}")
    list_option(parser, "--job", "jobs", comma_list("job ids"), "JOB_ID", "only these jobs")
    parser.add_argument("--json", action="store_true", help="one JSON object per job, one per line, and nothing else")


def run(args: argparse.Namespace) -> int:
    import anyio

    try:
        return anyio.run(_main, args)
    except KeyboardInterrupt:
        say("eventbus jobs: interrupted")
        return 130


async def _main(args: argparse.Namespace) -> int:
    from eventbus.cli.tail import open_journal
    from eventbus.subscribers.board import JobBoard

    journal = await open_journal(args.journal, "jobs")
    if journal is None:
        return 2
    board = JobBoard()
    replay = journal.replay(providers=args.providers)
    try:
        async for entry in replay:
            board(entry.event)
    finally:
        await journal.close()
    skipped = replay.skipped
    rows = _selected(board, args)
    if args.json:
        _print_json(rows)
    else:
        _print_tables(board, rows, args)
    if skipped:
        say(f"eventbus jobs: {skipped} rows of the journal could not be decoded and were passed over")
    return 0


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


def _print_tables(board: JobBoard, rows: list[JobRow], args: argparse.Namespace) -> None:
    from eventbus.cli import plural, stdout_console
    from eventbus.subscribers.board import JobBoard
    from eventbus.subscribers.console import provider_table, summary_table

    console = stdout_console() if sys.stdout.isatty() else stdout_console(width=120)
    if not rows:
        console.print("no jobs" + (" match" if args.states or args.jobs or args.providers else " in this journal"))
        return
    shown = JobBoard()
    shown.rows = {(r.provider, r.job_id): r for r in rows}
    console.print(summary_table(shown, title=f"{plural(len(rows), 'job')} in {args.journal}"))
    console.print(provider_table(shown))
