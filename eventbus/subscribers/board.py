"""A live summary of every job, built from the merged event stream.

:class:`JobBoard` is a subscriber (a plain callable taking one event) that
keeps one :class:`JobRow` per job: its provider, state, progress and item
counts. It does no I/O; the console view and the command line read it.
Chunks that never became a job (rejected, quota) appear under their chunk
reference, so nothing submitted is missing from the board.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from eventbus import events as ev

__all__ = ["JobBoard", "JobRow"]

TERMINAL_STATES = frozenset({"completed", "failed", "cancelled", "expired", "rejected", "invalid"})
_ENDED_STATES: dict[type, str] = {ev.JobFailed: "failed", ev.JobCancelled: "cancelled", ev.JobExpired: "expired"}


@dataclass
class JobRow:
    """What is known of one job (or of one chunk that never became a job)."""

    provider: str
    job_id: str
    state: str = "submitted"
    total: int | None = None
    done: int = 0
    succeeded: int = 0
    failed: int = 0
    created: int = 0
    updated: int = 0
    reason: str = ""
    started: datetime | None = None
    ended: datetime | None = None
    sources: set[str] = field(default_factory=set)

    @property
    def finished(self) -> bool:
        """True once the job reached a terminal state."""
        return self.state in TERMINAL_STATES

    @property
    def seen(self) -> int:
        """Items reported one by one so far."""
        return self.succeeded + self.failed

    @property
    def progress(self) -> int:
        """The best known count of processed items."""
        return max(self.done, self.seen)

    @property
    def seconds(self) -> float | None:
        """Wall time from first to last event, once finished."""
        if self.started is None or self.ended is None:
            return None
        return (self.ended - self.started).total_seconds()


class JobBoard:
    """Aggregates events into one row per job; call it with each event."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], JobRow] = {}
        self._chunk_to_job: dict[tuple[str, str], str] = {}
        self.throttled = 0
        self.invalid = 0
        # The last source states (a poll or a submit retried says one each time: bounded), and the time of
        # every WebSocket drop, which decides whether a job's end may have been missed (websocket_drops).
        self.source_states: deque[ev.SourceState] = deque(maxlen=1024)
        self._websocket_drops: list[datetime] = []

    def _row(self, event: ev.Event) -> JobRow:
        key = (event.provider, event.job_id)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = JobRow(event.provider, event.job_id, started=event.at)
        row.sources.add(event.source)
        return row

    def __call__(self, event: ev.Event) -> None:
        match event:
            # The events of every contact first: a class pattern that misses costs about 0.2 us.
            case ev.ItemSucceeded():
                row = self._row(event)
                row.succeeded += 1
                if event.outcome == "created":
                    row.created += 1
                elif event.outcome == "updated":
                    row.updated += 1
                if not row.finished:
                    row.state = "running"
            case ev.JobProgress():
                row = self._row(event)
                row.done = max(row.done, event.done)
                if event.total is not None:
                    row.total = event.total
                if not row.finished:
                    row.state = "running"
            case ev.ItemFailed():
                row = self._row(event)
                row.failed += 1
                if event.job_id.endswith("#-1"):  # rows refused by validation, never sent
                    row.state, row.reason, row.ended = "invalid", "failed validation, not sent", event.at
                elif not row.finished:
                    row.state = "running"
            case ev.SourceState():
                self.source_states.append(event)
                if event.state == "disconnected" and event.source == "websocket":
                    self._websocket_drops.append(event.at)
            case ev.InvalidSignal():
                self.invalid += 1
            case ev.Throttled():
                self.throttled += 1
            case ev.BatchSubmitted():
                self._row(event).total = event.size
            case ev.JobAccepted():
                chunk = ev.chunk_ref(event.batch_id, event.chunk_index) if event.batch_id else ""
                pending = self.rows.pop((event.provider, chunk), None) if chunk else None
                row = self._row(event)
                if pending is not None:
                    row.started = pending.started or row.started
                    row.total = row.total or pending.total
                if event.total is not None:
                    row.total = event.total
                if row.state == "submitted":
                    row.state = "accepted"
            case ev.SubmitRejected():
                row = self._row(event)
                row.state, row.reason, row.ended = "rejected", event.reason, event.at
            case ev.QuotaExhausted():
                row = self._row(event)
                row.state, row.reason, row.ended = "rejected", f"{event.reason} ({event.status})", event.at
            case ev.JobCompleted():
                row = self._row(event)
                row.state, row.ended = "completed", event.at
                # The provider's totals win where it gives them; else keep what we counted.
                if event.succeeded or event.failed:
                    row.succeeded, row.failed = event.succeeded, event.failed
                row.created = event.created or row.created
                row.updated = event.updated or row.updated
                if event.total is not None:
                    row.total = event.total
                row.done = max(row.done, row.seen)
            case ev.JobFailed() | ev.JobCancelled() | ev.JobExpired():
                row = self._row(event)
                row.state = _ENDED_STATES[type(event)]
                row.reason, row.ended = event.reason, event.at
            case ev.JobStuck():
                row = self._row(event)
                if not row.finished:
                    row.state = "stuck"

    def websocket_drops(self, since: datetime | None = None) -> int:
        """How many times a WebSocket source was disconnected (at or after ``since``, when given)."""
        return sum(since is None or at >= since for at in self._websocket_drops)

    def all_finished(self) -> bool:
        """True when every job and chunk on the board reached a terminal state."""
        return all(row.finished for row in self.rows.values())

    def all_completed(self) -> bool:
        """True when there is at least one row and every row completed."""
        return bool(self.rows) and all(row.state == "completed" for row in self.rows.values())

    def by_provider(self) -> dict[str, list[JobRow]]:
        """Rows grouped by provider, in first-seen order."""
        out: dict[str, list[JobRow]] = {}
        for row in self.rows.values():
            out.setdefault(row.provider, []).append(row)
        return out
