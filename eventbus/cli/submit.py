"""Submit contacts from a file to a provider; print a summary, or every event as JSON lines with --json.

Credentials come from the environment: INSIDEVIEW_CLIENT_ID/INSIDEVIEW_CLIENT_SECRET,
MAUTIC_CLIENT_ID/MAUTIC_CLIENT_SECRET, DATANANAS_TOKEN, PRONTO_API_KEY, and the
base URL from <PROVIDER>_BASE_URL or --base-url.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from eventbus import events as ev
from eventbus.cli import (
    console_width,
    count,
    guard_stdout,
    journal_option,
    journal_path,
    json_lines,
    plural,
    positive,
    redact_userinfo,
    say,
    stdout_closed,
    stdout_console,
    stop_on_sigterm,
    stop_reason,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from adapters.http import Settings
    from eventbus.subscribers.board import JobBoard

NAME = "submit"
HELP = "submit contacts from a CSV, JSON Lines or id file to a provider"
ORDER = 20

PROVIDERS = ("insideview", "mautic", "datananas", "pronto")


_SHOWN = 20  # jobs, invalid rows, rejected chunks listed in the summary; the rest are counted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("file", metavar="FILE", help="contacts: .csv, .jsonl/.ndjson, or .txt (ids, one per line)")
    parser.add_argument("--provider", required=True, choices=PROVIDERS)
    parser.add_argument("--base-url", help="the provider's API base URL (default: <PROVIDER>_BASE_URL or the real one)")
    parser.add_argument("--json", action="store_true", help="write every event as one JSON line on stdout")
    journal_option(parser)
    parser.add_argument("--format", choices=("csv", "jsonl", "ids"), help="the file's format (default: from suffix)")
    parser.add_argument(
        "--encoding",
        type=_encoding,
        metavar="NAME",
        help="the file's text encoding, e.g. cp1252 for a CSV saved by Excel on Windows "
        "(default: UTF-8, or UTF-16 after a UTF-16 byte order mark)",
    )
    parser.add_argument("--strict", action="store_true", help="refuse the whole file if any row is invalid")
    parser.add_argument(
        "--rows",
        type=_row_spec,
        metavar="SPEC",
        help="send only these rows of FILE, numbered from 0 as events and messages number them: e.g. 20000-29999, "
        "5,7,100- (what an interrupted run prints for the rows it did not send)",
    )
    parser.add_argument(
        "--results",
        metavar="FILE",
        type=results_path,
        help="write each input row's fate (succeeded/failed with the provider's data, invalid, rejected, submitted, "
        "...) to FILE, .csv or .jsonl; also when the run is interrupted",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check and chunk the file and say what would be sent; send nothing (no credentials needed)",
    )
    parser.set_defaults(_submit_parser=parser)
    follow = parser.add_argument_group("following the jobs to their end")
    follow.add_argument(
        "--follow", action="store_true", help="watch every job until it ends; exit 0 only if all completed"
    )
    follow.add_argument(
        "--webhook-listen",
        metavar="HOST:PORT",
        default="127.0.0.1:0",
        help="where the local webhook receiver listens (default: 127.0.0.1, a free port)",
    )
    follow.add_argument("--timeout", type=positive, default=3600.0, help="give up following after this many seconds")
    follow.add_argument(
        "--stuck-after", type=positive, default=300.0, help="report a job silent for this many seconds (JobStuck)"
    )
    follow.add_argument("--items", action="store_true", help="print one line per contact too (readable output)")
    parser.add_argument("--concurrency", type=count, default=4, help="chunks in flight at once (default: 4)")
    parser.add_argument("--rate-limit", type=positive, metavar="N", help="at most N requests per second (N > 0)")
    parser.add_argument(
        "--request-timeout",
        type=positive,
        default=30.0,
        metavar="SECONDS",
        help="how long one request may wait for its answer (default: 30); a submit not answered in time is "
        "reported, never sent again",
    )
    parser.add_argument(
        "--max-attempts", type=count, default=8, metavar="N", help="attempts per request on 429/5xx (default: 8)"
    )
    group = parser.add_argument_group("provider options")
    group.add_argument(
        "--endpoint", help="insideview: job (default) or fetch; mautic: new (default), put, patch, batch"
    )
    group.add_argument(
        "--enrichment-type",
        default="email",
        choices=("email", "phone", "personal_email"),
        help="pronto: what to find (default: email)",
    )
    group.add_argument("--country", action="append", metavar="CC", help="pronto: phone country code (repeatable)")
    group.add_argument("--webhook-url", help="pronto: where results are POSTed; insideview: status callbacks")
    group.add_argument("--list", help="datananas: the list id to add contacts to")
    group.add_argument("--move-existing", action="store_true", help="datananas: move existing contacts to the list")
    group.add_argument("--replace-owner", action="store_true", help="datananas: replace existing contacts' owner")


def provider_options(args: argparse.Namespace) -> dict:
    """The provider-specific keyword arguments for adapters.submit.submit."""
    match args.provider:
        case "pronto":
            return {
                "enrichment_type": args.enrichment_type,
                "webhook_url": args.webhook_url,
                "phone_country_codes": args.country,
            }
        case "datananas":
            return {"list": args.list, "move_existing": args.move_existing, "replace_owner": args.replace_owner}
        case "insideview":
            return {"endpoint": args.endpoint or "job", "webhook": args.webhook_url}
        case _:
            return {"endpoint": args.endpoint or "new"}


def _row_spec(text: str) -> list[tuple[int, int | None]]:
    """--rows' type: comma-separated rows and ranges (``A``, ``A-B``, ``A-`` to the end), from 0."""
    spans: list[tuple[int, int | None]] = []
    for part in text.split(","):
        first, dash, last = (p.strip() for p in part.partition("-"))
        if not (_digits(first) and (not dash or not last or _digits(last))):
            raise argparse.ArgumentTypeError(
                f"expected rows such as 5, 20000-29999 or 100- (from 0, comma-separated), not {text[:60]!r}"
            )
        start = int(first)
        end = None if dash and not last else int(last or first)
        if end is not None and end < start:
            raise argparse.ArgumentTypeError(f"a range must go up: {part.strip()!r}")
        spans.append((start, end))
    return spans


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 12


def _selected(spans: list[tuple[int, int | None]], n: int) -> list[int]:
    """The rows --rows names, in order, each once; a row past the file's end is a ConfigError."""
    from eventbus.exceptions import ConfigError

    rows: set[int] = set()
    for start, end in spans:
        last = n - 1 if end is None else end
        if max(start, last) >= n:
            raise ConfigError(f"--rows: the file has {n} contacts (rows 0-{n - 1}); row {max(start, last)} is not one")
        rows.update(range(start, last + 1))
    return sorted(rows)


def rows_spec(rows: Iterable[int]) -> str:
    """Rows as --rows takes them: runs of consecutive rows as ranges (``0-9999,20000-29999``)."""
    spans: list[list[int]] = []
    for row in sorted(rows):
        if spans and row == spans[-1][1] + 1:
            spans[-1][1] = row
        else:
            spans.append([row, row])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in spans)


def results_path(path: str) -> str:
    """--results' type: a .csv or .jsonl path (anything else exits 2 before any work)."""
    from adapters.results import results_format
    from eventbus.exceptions import ConfigError

    try:
        results_format(path)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return path


def _write_results(args: argparse.Namespace, results: Any, contacts: list, run: Any) -> None:
    """Write --results (when asked) from the run's report, or from a plan of the contacts when interrupted.

    ``results`` has seen every chunk's events as they were published (it is the run's tap, see ``_Record``),
    so a chunk it never heard of was never sent.
    """
    if results is None:
        return
    if run is None:  # interrupted before the report: the same contacts chunk the same way
        run = _plan_of(args, contacts)
    if run is None:
        say(f"eventbus submit: {args.results} not written: the file's chunks could not be found")
        return
    counts = results.write(args.results, contacts, run, args.numbers)
    shown = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
    say(f"eventbus submit: results of {plural(len(contacts), 'row')} in {args.results} ({shown})")


def _encoding(name: str) -> str:
    """--encoding's type: a text encoding Python knows (an unknown one exits 2, naming the option)."""
    from adapters.contacts import check_encoding
    from eventbus.exceptions import ConfigError

    try:
        return check_encoding(name)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    import anyio

    from adapters.results import Results
    from adapters.submit import Tapped, submit
    from eventbus.bus import Bus

    if args.dry_run:
        if args.follow:
            args._submit_parser.error("--dry-run sends nothing, so there is nothing to --follow")
        return _dry_run(args, _read(args))
    stop_on_sigterm()  # a stopped container still says which chunks were taken
    # Refuse a malformed address before doing any work (follow() refuses one it cannot listen on).
    listen = _listen(args.webhook_listen) if args.follow else None
    settings = request_settings(args)
    contacts = _read(args)
    if args.results:
        Results.check_writable(args.results)  # before anything is sent, not after
    if listen is not None:
        return _follow(args, settings, contacts, listen)
    write_json = json_lines()
    results = Results(args.provider) if args.results else None
    record = _Record(results)
    done: list[Any] = []  # the report, once there is one

    async def main() -> int:
        async with Bus(journal=journal_path(args)) as bus:
            if args.json:
                bus.on(guard_stdout(write_json), name="json-lines", buffer=65_536)
            report = await submit(
                args.provider,
                contacts,
                Tapped(bus, record.note),
                settings=settings,
                concurrency=args.concurrency,
                strict=args.strict,
                rows=args.numbers,
                **provider_options(args),
            )
            done.append(report)
            await bus.drain()
        _write_results(args, results, contacts, report)
        # With --json, stdout holds the events only: the summary goes to stderr (the jobs are in the events).
        out = sys.stderr if args.json else sys.stdout
        repeated = f", {report.repeated} repeated (each sent once)" if report.repeated else ""
        say(
            f"{args.provider}: {plural(report.contacts, 'contact')}, {_invalid(report)}{repeated}, "
            f"{plural(report.chunks, 'chunk')}, {len(report.accepted)} accepted, {report.rejected_chunks} rejected",
            out,
        )
        accepted = sorted(report.accepted, key=lambda j: j.chunk_index)
        if not args.json:
            for job in accepted[:_SHOWN]:
                say(f"  job {job.job_id}: {plural(len(job.rows), 'contact')} (chunk {job.chunk_index})", sys.stdout)
            if len(accepted) > _SHOWN:
                say(f"  ... and {len(accepted) - _SHOWN} more jobs (each one in --json or --results)", sys.stdout)
            polled = [job.job_id for job in accepted if not ev.is_chunk_ref(job.job_id)]  # (not synchronous answers)
            hint = resume_hint(args.provider, polled, again=False, results=args.results)
            if hint and (args.results or len(accepted) <= _SHOWN):  # (with --results, the hint names no job)
                say(f"  {hint}", sys.stdout)
        _print_invalid(report.invalid)
        refused = sorted((r for r in report.rejected if r.sent), key=lambda r: r.chunk_index)
        for r in refused[:_SHOWN]:
            status = f"HTTP {r.status}, " if r.status is not None else ""
            again = "may be sent again" if r.retriable else "do not send again as is"
            say(f"  rejected chunk {r.chunk_index} ({plural(len(r.rows), 'contact')}; {status}{again}): {r.reason}")
        if len(refused) > _SHOWN:
            say(f"  ... and {len(refused) - _SHOWN} more rejected chunks")
        _print_stopped(report)
        return 0 if report.ok and not report.invalid else 1

    try:
        return anyio.run(main)
    except KeyboardInterrupt:
        why, status = stop_reason()
        planned = _plan_of(args, contacts)  # once, for both what to send again and the results file
        say(f"eventbus submit: {why}. {record.summary()}{_unsent_rows(planned, record.fates.sent)}")
        _write_results(args, results, contacts, done[0] if done else planned)
        return status


def _print_invalid(problems: list) -> None:
    """The first problems found before sending, one line each on stderr, and how many more there are."""
    for problem in problems[:_SHOWN]:
        say(f"  invalid: {problem}")
    if len(problems) > _SHOWN:
        say(f"  ... and {len(problems) - _SHOWN} more problems")


def _print_stopped(report: Any) -> None:
    """Why the run stopped, if it did, and the rows of the chunks not taken that may be sent again as they are."""
    if report.stopped:
        unsent = sum(not r.sent for r in report.rejected)
        say(f"  stopped ({plural(unsent, 'chunk')} not sent): {report.stopped}")
    later = report.rows_to_send_later  # also chunks refused for the account's or a passing reason: none taken
    if later:
        say(f"  to send them later: --rows {rows_spec(later)}")


def _read(args: argparse.Namespace) -> list:
    """FILE's contacts, or only those --rows names; ``args.numbers`` holds their row numbers (None: all)."""
    from adapters.contacts import read_contacts
    from eventbus.exceptions import ConfigError

    contacts = list(read_contacts(args.file, kind=args.format, encoding=args.encoding))
    if not contacts:  # a wrong file, or a pipe that brought nothing: say so rather than "0 contacts", exit 0
        where = "standard input" if str(args.file) == "-" else redact_userinfo(str(args.file))
        raise ConfigError(f"{where} holds no contacts (no rows after the header, or no lines): nothing to send")
    args.numbers = None
    if args.rows is not None:
        args.numbers = _selected(args.rows, len(contacts))
        contacts = [contacts[i] for i in args.numbers]
    return contacts


def _plan_of(args: argparse.Namespace, contacts: list) -> Any:
    """The run's chunks found again (the same contacts chunk the same way), for an interrupted run; None if not."""
    from adapters.submit import plan
    from eventbus.exceptions import EventBusError

    options = provider_options(args)
    if args.follow and args.provider == "pronto" and not options["webhook_url"]:
        options["webhook_url"] = "http://placeholder.invalid/"  # --follow gave it its own; the chunks are the same
    try:
        return plan(args.provider, contacts, rows=args.numbers, **options)
    except EventBusError:  # the run could not have sent anything either; the report says what was
        return None


def _unsent_rows(planned: Any, sent: set[int]) -> str:
    """For an interrupted run: the rows of the chunks never sent, as --rows takes them (none: empty)."""
    if planned is None:
        return ""
    unsent = [row for chunk in planned.chunks if chunk.chunk_index not in sent for row in chunk.rows]
    return f" To send the rows not sent: --rows {rows_spec(unsent)}" if unsent else ""


def _dry_run(args: argparse.Namespace, contacts: list) -> int:
    """What ``submit`` would send, printed; exit 0 when every row is valid, 1 otherwise. Nothing is sent.

    With --results, the file lists each row: ``invalid`` with why, or ``not_sent`` (valid; a dry run sends nothing).
    """
    from adapters.results import Results
    from adapters.submit import invalid_rows, plan

    if args.results:
        Results.check_writable(args.results)
    found = plan(args.provider, contacts, strict=args.strict, rows=args.numbers, **provider_options(args))
    if args.results:
        _write_results(args, Results(args.provider), contacts, found)
    out = sys.stderr if args.json else sys.stdout
    repeated = f", {found.repeated} repeated (each sent once)" if found.repeated else ""
    say(
        f"{args.provider} (dry run, nothing sent): {plural(found.contacts, 'contact')}, {_invalid(found)}{repeated}, "
        f"{plural(len(found.chunks), 'chunk')}, {plural(found.valid, 'contact')} in {_size(found.body_bytes)} "
        "of request bodies",
        out,
    )
    if found.fields:
        say(f"  fields: {_fields(found.fields)}", out)
    for chunk in found.chunks[:_SHOWN]:
        say(
            f"  chunk {chunk.chunk_index}: {chunk.method} {chunk.path}, {plural(len(chunk.rows), 'contact')} "
            f"(rows {ev.excerpt(rows_spec(chunk.rows), 60)}), {_size(chunk.body_bytes)}",
            out,
        )
    if len(found.chunks) > _SHOWN:
        say(f"  ... and {len(found.chunks) - _SHOWN} more chunks", out)
    if args.json:  # the ItemFailed events submit would publish, one JSON line each
        write_json = json_lines()
        for event in invalid_rows(args.provider, "dry-run", found.invalid):  # (a closed stdout ends the run, 141)
            write_json(event)
    else:
        _print_invalid(found.invalid)
    return 1 if found.invalid else 0


def _fields(targets: list[tuple[str, str | None, bool]], shown: int = 40) -> str:
    """Where each input field goes, for a dry run: "First Name -> firstname, Prénom -> vars.Prénom (custom)"."""
    said = [
        f"{ev.excerpt(name, 40)} -> "
        + ("not sent" if path is None else ev.excerpt(path, 60) + (" (custom)" if custom else ""))
        for name, path, custom in targets[:shown]
    ]
    more = f", ... and {len(targets) - shown} more" if len(targets) > shown else ""
    return ", ".join(said) + more


def _invalid(report: Any) -> str:
    """'N invalid', and how many problems when some contacts have more than one."""
    rows, problems = report.invalid_rows, len(report.invalid)
    return f"{rows} invalid" + (f" ({problems} problems)" if problems > rows else "")


def _size(n: int) -> str:
    return f"{n} bytes" if n < 10_000 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


class _Record:
    """Each chunk's fate, noted from the submit step's events as they are published: what to say if interrupted.

    ``note`` is the tap (see :class:`adapters.submit.Tapped`): an
    :class:`adapters.results.Results` when --results was asked for, whose
    chunk fates are then the record's, else the chunk fates alone.
    """

    def __init__(self, results: Any = None) -> None:
        from adapters.results import ChunkFates

        self.note: Callable[[ev.Event], None] = results if results is not None else ChunkFates()
        self.fates = results.chunks if results is not None else self.note

    def summary(self) -> str:
        """Which chunks were taken, which may have been, which were not sent: so that nothing is sent twice."""
        fates = self.fates
        if not fates.count:
            return "No chunk was sent."
        jobs = ", ".join(f"{job} (chunk {i})" for i, job in sorted(fates.jobs.items()))
        open_ = sorted(fates.sent - fates.jobs.keys() - fates.refused.keys())
        unsent = fates.count - len(fates.sent)
        parts = [f"{len(fates.jobs)} of {plural(fates.count, 'chunk')} accepted" + (f": {jobs}" if jobs else "")]
        if fates.refused:
            parts.append(f"{len(fates.refused)} rejected")
        if open_:
            shown = ", ".join(map(str, open_))
            parts.append(
                f"{len(open_)} sent without an answer yet (chunk {shown}): may have been taken, "
                "check the provider before sending again"
            )
        parts.append(f"{unsent} not sent")
        return "; ".join(parts) + "."


def _listen(value: str) -> tuple[str, int]:
    from eventbus.exceptions import ConfigError

    host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit() and len(port) <= 5) or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--webhook-listen must be HOST:PORT (e.g. 0.0.0.0:8000), not {redact_userinfo(value)!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _follow(args: argparse.Namespace, settings: Settings, contacts: list, listen: tuple[str, int]) -> int:
    """Submit and watch every job; readable lines (or JSON lines), a summary table, a clear exit status."""
    import anyio

    from adapters.follow import follow
    from adapters.results import Results
    from eventbus.bus import Bus
    from eventbus.subscribers.board import JobBoard
    from eventbus.subscribers.console import ConsoleView, summary_table

    host, port = listen
    options = provider_options(args)
    options.pop("webhook_url", None)
    options.pop("webhook", None)
    console = stdout_console(stderr=args.json, width=console_width())
    board = JobBoard()  # every job's row, also for what to say if the run is interrupted
    view = ConsoleView(board, console, items=args.items)
    results = Results(args.provider) if args.results else None
    record = _Record(results)  # the chunks' fates as they are published (the bus's subscribers may lag)
    done: list[Any] = []  # the report, once there is one

    async def main() -> int:
        try:
            async with Bus(journal=journal_path(args)) as bus:
                subscribe_outputs(bus, args, view, board, results)
                result = await follow(
                    args.provider,
                    contacts,
                    bus,
                    settings=settings,
                    webhook_url=args.webhook_url,
                    webhook_host=host,
                    webhook_port=port,
                    timeout=args.timeout,
                    stuck_after=args.stuck_after,
                    concurrency=args.concurrency,
                    strict=args.strict,
                    rows=args.numbers,
                    on_submit_event=record.note,
                    **options,
                )
                done.append(result.report)
                await bus.drain()
        finally:
            view.stop()
        _write_results(args, results, contacts, result.report)
        console.print(summary_table(result.board, title=f"{args.provider} jobs"))
        if result.ok:
            console.print(f"all {plural(len(result.report.accepted), 'job')} completed")
            return 0
        problems = _not_completed(result, args.provider, args.timeout, results=args.results)
        say(f"eventbus submit: not everything completed: {'; '.join(problems)}")
        _print_stopped(result.report)
        return 1

    try:
        return anyio.run(main)
    except KeyboardInterrupt:
        view.stop()
        if not stdout_closed():
            console.print(summary_table(board, title=f"{args.provider} jobs (interrupted)"))
        why, status = stop_reason()
        planned = _plan_of(args, contacts)
        say(f"eventbus submit: {why}. {_open_jobs(board, args.results)}{_unsent_rows(planned, record.fates.sent)}")
        _write_results(args, results, contacts, done[0] if done else planned)
        return status


def request_settings(args: argparse.Namespace) -> Settings:
    """The provider's settings: credentials and base URL from the environment, then the request options."""
    from adapters.http import Settings

    return Settings.from_env(
        args.provider,
        base_url=args.base_url,
        rate_limit=args.rate_limit,
        timeout=args.request_timeout,
        max_attempts=args.max_attempts,
    )


def subscribe_outputs(bus: Any, args: argparse.Namespace, view: Any, board: JobBoard, results: Any) -> None:
    """A followed run's subscribers: every event as a JSON line (--json) or the console view, on stdout; the
    board, which the view feeds otherwise; and the --results collector, when asked for."""
    bus.on(guard_stdout(json_lines() if args.json else view), name="output", buffer=65_536)
    if args.json:
        bus.on(board, name="board", buffer=65_536)
    if results is not None:
        bus.on(results, name="results", buffer=65_536)


def _not_completed(result: Any, provider: str, timeout: float, *, results: str | None = None) -> list[str]:
    """What kept a followed run from completing, one phrase each (for the line on stderr)."""
    from adapters.follow import accounted

    problems = []
    if result.report.invalid:
        problems.append(plural(result.report.invalid_rows, "invalid row"))
    if result.report.rejected_chunks:
        problems.append(f"{plural(result.report.rejected_chunks, 'chunk')} rejected")
    if result.unfinished:
        ids = ", ".join(result.unfinished)
        if result.timed_out:
            problems.append(f"{plural(len(result.unfinished), 'job')} still open after {timeout:g}s ({ids})")
        else:
            problems.append(f"{plural(len(result.unfinished), 'job')} no longer followed, their end not seen ({ids})")
        again = resume_hint(provider, result.unfinished, results=results)
        if again:
            problems.append(again)
        drops = result.board.websocket_drops()
        if drops:
            problems.append(
                f"the WebSocket was disconnected {plural(drops, 'time')} and "
                f"{provider} replays nothing: a job's last events may have been sent while it was down, "
                "so check the jobs still open at the provider"
            )
    told = set(result.unfinished)  # named above: their state is not how they ended
    ended = ("completed", "invalid", "rejected")
    states = [r.state for r in result.board.rows.values() if r.state not in ended and r.job_id not in told]
    if states:
        problems.append("jobs ended " + ", ".join(sorted(set(states))))
    short = [r.job_id for r in result.board.rows.values() if r.state == "completed" and not accounted(r)]
    if short:
        problems.append(f"{plural(len(short), 'completed job')} reported fewer contacts than they carried")
    return problems


def _open_jobs(board: JobBoard, results: str | None = None) -> str:
    """The jobs an interrupted follow leaves running at the provider, in full, and chunks with no answer yet."""
    open_ = [r for r in board.rows.values() if not r.finished]
    running = [r.job_id for r in open_ if not ev.is_chunk_ref(r.job_id)]
    unanswered = [r.job_id for r in open_ if ev.is_chunk_ref(r.job_id)]
    shown = f": {', '.join(running)}" if running else ""
    parts = [f"{plural(len(running), 'job')} still open at the provider{shown}"]
    again = resume_hint(open_[0].provider, running, results=results) if running else ""
    if again:
        parts.append(again)
    if unanswered:
        parts.append(
            f"{plural(len(unanswered), 'chunk')} sent without an answer yet "
            f"({', '.join(unanswered)}): may have been taken, "
            "check the provider before sending again"
        )
    return "; ".join(parts) + "."


def resume_hint(provider: str, job_ids: list[str], *, again: bool = True, results: str | None = None) -> str:
    """The command that follows ``job_ids`` (again), for the providers whose jobs can be followed by id; else "".

    With ``results`` (the run's --results file), the command that follows the jobs its rows wait on and writes
    their results into it.
    """
    import shlex

    from adapters.follow import RESUMABLE

    if provider not in RESUMABLE or not job_ids:
        return ""
    if results is not None:
        path = shlex.quote(results)
        return (
            f"to follow them{' again' if again else ''} and complete {results}: "
            f"eventbus follow --provider {provider} --submitted {path} --results {path}"
        )
    return f"to follow them{' again' if again else ''}: eventbus follow --provider {provider} {' '.join(job_ids)}"
