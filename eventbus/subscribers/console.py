"""Human-readable rendering of the event stream: one line per notable event, live bars, a summary table.

:func:`describe` turns one event into a short sentence (pure, testable);
:class:`ConsoleView` is a subscriber that prints those lines through rich and,
on a terminal, keeps a progress bar per job; :func:`summary_table` renders a
:class:`~eventbus.subscribers.board.JobBoard` at the end of a run.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from eventbus import events as ev
from eventbus.subscribers.board import JobBoard

__all__ = ["ConsoleView", "describe", "provider_table", "summary_table"]

_STATE_STYLE = {
    "completed": "green",
    "failed": "red",
    "rejected": "red",
    "expired": "yellow",
    "cancelled": "yellow",
    "stuck": "yellow",
}


_PER_CONTACT = frozenset({ev.ItemSucceeded, ev.ItemFailed, ev.JobProgress})


def _short(job_id: str, width: int = 14) -> str:
    return job_id if len(job_id) <= width else job_id[: width - 1] + "…"


def describe(event: ev.Event, *, items: bool = False) -> str | None:
    """A one-line description of ``event``, or None for events not worth a line.

    Item and progress events are only described when ``items`` is true: a
    10,000-contact job would otherwise print 10,000 lines.
    """
    if not items and type(event) in _PER_CONTACT:  # most events: answered before the match, case by case
        return None
    match event:
        case ev.BatchSubmitted():
            return f"submitted chunk {event.chunk_index + 1}/{event.chunk_count} ({event.size} contacts)"
        case ev.JobAccepted():
            total = f" ({event.total} contacts)" if event.total is not None else ""
            return f"accepted{total}"
        case ev.SubmitRejected():
            status = f"HTTP {event.status}" if event.status else "no answer"
            retry = "retriable" if event.retriable else "not retriable"
            return f"rejected: {status}, {event.reason} ({retry})"
        case ev.Throttled():
            return f"throttled (attempt {event.attempt}): waiting {event.retry_after:.1f}s"
        case ev.QuotaExhausted():
            return f"quota exhausted: {event.reason} (HTTP {event.status})" + (
                f" — {event.message}" if event.message else ""
            )
        case ev.JobCompleted():
            parts = [f"{event.succeeded} ok", f"{event.failed} failed"]
            if event.created or event.updated:
                parts.append(f"{event.created} created, {event.updated} updated")
            return "completed: " + ", ".join(parts)
        case ev.JobFailed():
            return f"FAILED: {event.reason}"
        case ev.JobCancelled():
            return "cancelled" + (f": {event.reason}" if event.reason else "")
        case ev.JobExpired():
            return "expired" + (f": {event.reason}" if event.reason else "")
        case ev.JobStuck():
            return f"silent for {event.silent_for:.0f}s (last: {event.last_type or 'nothing'})"
        case ev.SourceState():
            detail = f": {event.detail}" if event.detail else ""
            attempt = f" (attempt {event.attempt})" if event.attempt else ""
            state = event.state
            if event.source != "websocket":  # an HTTP request tried again, not a connection
                state = {"reconnecting": "retrying", "connected": "ok"}.get(state, state)
            return f"{event.source} {state}{attempt}{detail}"
        case ev.InvalidSignal():
            status = f" [{event.status}]" if event.status else ""
            return f"invalid {event.source} signal{status}: {event.reason}"
        case ev.JobProgress() if items:
            total = f"/{event.total}" if event.total is not None else ""
            return f"progress {event.done}{total}"
        case ev.ItemSucceeded() if items:
            return f"item {event.key}: {event.outcome}"
        case ev.ItemFailed() if items:
            return f"item {event.key} failed: {event.code} {event.message}"
    return None


class ConsoleView:
    """Prints notable events and, on a terminal, one progress bar per job.

    Use as a handler (``bus.on(view, name="console")``) together with the
    :class:`JobBoard` it reads; call :meth:`stop` before printing the summary.
    """

    def __init__(self, board: JobBoard, console: Console | None = None, *, items: bool = False) -> None:
        self.board = board
        self.console = console or Console(stderr=False)
        self.items = items
        self._bars: dict[tuple[str, str], TaskID] = {}
        self._progress: Progress | None = None
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[state]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()

    def __call__(self, event: ev.Event) -> None:
        self.board(event)
        line = describe(event, items=self.items)
        if line is not None:
            # What providers write (reasons, messages, job ids) is printed as it is: "[/x]" in an error
            # message made rich raise MarkupError (the line was lost), "[bold]" was taken as a style;
            # an ESC in it reached the terminal (colours, cursor moves), a newline faked a line.
            job = f" {_short(event.job_id):<14}" if event.job_id else ""
            text = escape(ev.printable(f"{event.provider:<10}{job} {line}"))
            self.console.print(f"[dim]{event.at:%H:%M:%S}[/] {text}", highlight=False)
        if self._progress is not None and event.job_id:
            self._update_bar(event)

    def _update_bar(self, event: ev.Event) -> None:
        assert self._progress is not None
        row = self.board.rows.get((event.provider, event.job_id))
        if row is None:
            return
        key = (row.provider, row.job_id)
        task = self._bars.get(key)
        if task is None:
            task = self._bars[key] = self._progress.add_task(
                escape(ev.printable(f"{row.provider:<10} {_short(row.job_id)}")), total=row.total, state=row.state
            )
        self._progress.update(task, completed=row.progress, total=row.total, state=row.state)

    def stop(self) -> None:
        """Stop the live display (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def summary_table(board: JobBoard, title: str = "Jobs") -> Table:
    """A rich table with one row per job: state, items, outcomes and duration."""
    table = Table(title=title)
    # The job ids whole (a Mautic uuid is 36 characters): they are what `eventbus jobs --job ID` takes. A narrow
    # terminal folds one over two lines rather than cutting it; the reason column gives up its room first.
    table.add_column("provider", justify="left")
    table.add_column("job", justify="left", no_wrap=True, overflow="fold")
    for column, justify in (
        ("state", "left"),
        ("total", "right"),
        ("ok", "right"),
        ("failed", "right"),
        ("created", "right"),
        ("updated", "right"),
        ("seconds", "right"),
        ("reason", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in board.rows.values():
        style = _STATE_STYLE.get(row.state, "")
        table.add_row(
            Text(row.provider),
            Text(ev.printable(row.job_id)),
            Text(row.state, style=style),
            "" if row.total is None else str(row.total),
            str(row.succeeded),
            str(row.failed),
            str(row.created),
            str(row.updated),
            "" if row.seconds is None else f"{row.seconds:.1f}",
            Text(ev.printable(row.reason)),  # the provider's words: never read as markup, no terminal escapes
        )
    return table


def provider_table(board: JobBoard, title: str = "By provider") -> Table:
    """One row per provider: jobs, how many completed, contacts reported, succeeded, failed, refused before sending."""
    table = Table(title=title)
    for column in ("provider", "jobs", "completed", "contacts", "ok", "failed", "refused"):
        table.add_column(column, justify="left" if column == "provider" else "right")
    for provider, rows in board.by_provider().items():
        jobs = [r for r in rows if r.state != "invalid"]
        refused = sum(r.failed for r in rows if r.state == "invalid")
        done = sum(r.state == "completed" for r in jobs)
        ok = sum(r.succeeded for r in jobs)
        failed = sum(r.failed for r in jobs)
        style = "green" if done == len(jobs) else "yellow"
        table.add_row(
            Text(provider),
            str(len(jobs)),
            Text(str(done), style=style),
            str(ok + failed),
            str(ok),
            str(failed),
            str(refused),
        )
    return table
