"""Follow InsideView or Mautic jobs submitted earlier to their end, by their ids; print their progress and results.

For jobs whose submit was interrupted, or that another run or tool submitted:
each job's status is polled, and once it has ended its results are read
(InsideView's results file, Mautic's job details) and shown, or written as
JSON lines with --json (each contact's data is in its item_succeeded event).
Exit 0 only if every job completed.

With --submitted, the --results file of the eventbus submit that sent the
jobs: the jobs its rows still wait on are followed (when no JOB_ID is given),
and its rows are written to --results, each with what its job reported of it.

Credentials and base URL come from the environment, as for eventbus submit:
INSIDEVIEW_CLIENT_ID/INSIDEVIEW_CLIENT_SECRET or MAUTIC_CLIENT_ID/MAUTIC_CLIENT_SECRET,
and <PROVIDER>_BASE_URL or --base-url.

Datananas and Pronto jobs cannot be picked up this way: Datananas reports a
job only on its WebSocket while it runs and replays nothing, and Pronto posts
its results to the webhook given at submit (receive them with eventbus serve).
"""

from __future__ import annotations

import argparse
from typing import Any

from eventbus.cli import (
    console_width,
    count,
    journal_option,
    journal_path,
    plural,
    positive,
    say,
    stdout_closed,
    stdout_console,
    stop_on_sigterm,
    stop_reason,
)
from eventbus.cli.submit import request_settings, results_path, subscribe_outputs

NAME = "follow"
HELP = "follow InsideView or Mautic jobs submitted earlier to their end, by their ids"
ORDER = 25

PROVIDERS = ("insideview", "mautic", "datananas", "pronto")  # the last two are refused, saying why


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "job_ids", nargs="*", metavar="JOB_ID", help="the jobs' ids, as submit printed them (or see --submitted)"
    )
    parser.add_argument("--provider", required=True, choices=PROVIDERS)
    parser.add_argument("--base-url", help="the provider's API base URL (default: <PROVIDER>_BASE_URL or the real one)")
    parser.add_argument("--json", action="store_true", help="write every event as one JSON line on stdout")
    journal_option(parser)
    parser.add_argument("--items", action="store_true", help="print one line per contact too (readable output)")
    parser.add_argument(
        "--results",
        metavar="FILE",
        type=results_path,
        help="write each contact reported (job, key, succeeded/failed, the provider's data) to FILE, .csv or .jsonl; "
        "also when the run is interrupted",
    )
    parser.add_argument(
        "--submitted",
        metavar="FILE",
        type=results_path,
        help="the --results file of the eventbus submit that sent the jobs: its jobs still 'submitted' are followed "
        "(unless JOB_IDs are given), and its rows are written to --results with what the jobs reported of them",
    )
    parser.add_argument("--timeout", type=positive, default=3600.0, help="give up after this many seconds")
    parser.add_argument(
        "--stuck-after", type=positive, default=300.0, help="report a job silent for this many seconds (JobStuck)"
    )
    parser.add_argument(
        "--poll-cap",
        type=positive,
        default=5.0,
        metavar="SECONDS",
        help="the longest wait between two status polls of a job that does not move (default: 5)",
    )
    parser.add_argument(
        "--request-timeout",
        type=positive,
        default=30.0,
        metavar="SECONDS",
        help="how long one request may wait for its answer (default: 30)",
    )
    parser.add_argument(
        "--max-attempts", type=count, default=8, metavar="N", help="attempts per request on 429/5xx (default: 8)"
    )
    parser.add_argument("--rate-limit", type=positive, metavar="N", help="at most N requests per second (N > 0)")
    parser.add_argument(
        "--concurrency",
        type=count,
        default=8,
        metavar="N",
        help="jobs watched at once (default: 8); the others wait their turn, in the order given",
    )
    parser.set_defaults(_follow_parser=parser)


def run(args: argparse.Namespace) -> int:
    import anyio

    from adapters.follow import check_job_ids, check_resumable, follow_jobs
    from adapters.results import ItemResults, Results, read_results, waiting_jobs
    from eventbus.bus import Bus
    from eventbus.exceptions import ConfigError
    from eventbus.subscribers.board import JobBoard
    from eventbus.subscribers.console import ConsoleView, summary_table

    parser = args._follow_parser
    if args.submitted and not args.results:
        parser.error("--submitted needs --results FILE: where its rows go, with the results (it may be the same file)")
    if not args.job_ids and not args.submitted:
        parser.error("name the jobs to follow (JOB_ID ...), or give the submit's --results file as --submitted FILE")
    args.rows = read_results(args.submitted) if args.submitted else None
    job_ids = args.job_ids or waiting_jobs(args.rows)
    if not job_ids:
        say(f"eventbus follow: no row of {args.submitted} waits on a job (none is 'submitted'): nothing to follow")
        return 0
    try:  # usage errors (exit 2), before credentials are looked for
        check_resumable(args.provider)
        ids = check_job_ids(args.provider, job_ids)
    except ConfigError as exc:
        parser.error(str(exc))
    stop_on_sigterm()
    settings = request_settings(args)
    if args.results:
        Results.check_writable(args.results)  # before anything is asked of the provider, not after
    results = ItemResults(args.provider) if args.results else None
    console = stdout_console(stderr=args.json, width=console_width())
    board = JobBoard()  # the output's own: also what to say if the run is interrupted
    view = ConsoleView(board, console, items=args.items)
    title = f"{args.provider} jobs"

    async def main() -> int:
        try:
            async with Bus(journal=journal_path(args)) as bus:
                subscribe_outputs(bus, args, view, board, results)
                result = await follow_jobs(
                    args.provider,
                    ids,
                    bus,
                    settings=settings,
                    timeout=args.timeout,
                    stuck_after=args.stuck_after,
                    poll_initial=min(0.5, args.poll_cap),
                    poll_cap=args.poll_cap,
                    concurrency=args.concurrency,
                )
                await bus.drain()
        finally:
            view.stop()
        _write_results(args, results, ids)
        console.print(summary_table(result.board, title=title))
        if result.ok:
            console.print(f"all {plural(len(ids), 'job')} completed")
            return 0
        say(f"eventbus follow: not everything completed: {'; '.join(problems(result, args.timeout))}")
        return 1

    try:
        return anyio.run(main)
    except KeyboardInterrupt:
        view.stop()
        if not stdout_closed():
            console.print(summary_table(board, title=f"{title} (interrupted)"))
        why, status = stop_reason()
        _write_results(args, results, ids)
        open_ = [j for j in ids if (row := board.rows.get((args.provider, j))) is None or not row.finished]
        still = f"{plural(len(open_), 'job')} not seen to end" + (f": {' '.join(open_)}" if open_ else "")
        say(f"eventbus follow: {why}. {still} (they go on at {args.provider}; the same command follows them again)")
        return status


def _write_results(args: argparse.Namespace, results: Any, ids: list[str]) -> None:
    """Write --results (when asked) from the contacts reported so far, and say so on stderr: the rows of
    --submitted with their results, or one line per contact reported."""
    if results is None:
        return
    from adapters.results import write_rows

    if args.rows is not None:  # the submit's rows, with what the jobs reported of them
        counts = write_rows(args.results, results.merged(args.rows))
        what = plural(sum(counts.values()), "row")
    else:
        counts = results.write(args.results, ids)
        what = plural(sum(counts.values()), "contact")
    shown = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items()) or "none reported"
    say(f"eventbus follow: {what} in {args.results} ({shown})")


def problems(result: Any, timeout: float) -> list[str]:
    """What kept the jobs of a :class:`adapters.follow.JobsResult` from completing, one phrase each."""
    from adapters.follow import accounted

    said: list[str] = []
    if result.not_found:
        expiry = "; Mautic forgets a job 48 hours after it ran" if result.provider == "mautic" else ""
        said.append(
            f"{plural(len(result.not_found), 'job')} unknown to {result.provider} (404 at the first poll: check the "
            f"id{expiry}): {', '.join(result.not_found)}"
        )
    open_ = [j for j in result.unfinished if j not in result.not_found]
    if open_:
        why = f"still open after {timeout:g}s" if result.timed_out else "no longer followed, their end not seen"
        said.append(f"{plural(len(open_), 'job')} {why}: {', '.join(open_)}")
    ended: dict[str, list[str]] = {}
    short: list[str] = []
    for job_id in result.job_ids:
        row = result.board.rows.get((result.provider, job_id))
        if row is not None and row.finished and row.state != "completed":
            ended.setdefault(row.state, []).append(job_id)
        elif row is not None and row.state == "completed" and not accounted(row):
            short.append(job_id)
    for state, jobs in sorted(ended.items()):
        said.append(f"{plural(len(jobs), 'job')} ended {state}: {', '.join(jobs)}")
    if short:
        said.append(
            f"{plural(len(short), 'completed job')} reported fewer contacts than their total: {', '.join(short)}"
        )
    return said
