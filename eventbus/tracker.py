"""Merge redundant signals about the same jobs into one clean stream.

One job can be reported by several sources at once — a WebSocket *and* a
poll, webhooks retried, a poll racing a webhook. :class:`JobTracker` keeps one
small state per job and guarantees, whatever the duplicates or the order:

* exactly one ``JobAccepted`` per job, before any other event of that job (if
  the first signal is something else, one is synthesized from it);
* ``JobProgress.done`` never decreases (stale progress is dropped; ``done`` is
  clamped to a known ``total``), and a ``total`` once known is kept;
* each item ``key`` reported once (the first report wins);
* exactly one terminal event (``JobCompleted``, ``JobFailed``,
  ``JobCancelled``, ``JobExpired``) and nothing for the job after it;
* a job silent for longer than ``stuck_after`` gets one ``JobStuck`` per silence.

The core (:meth:`JobTracker.feed`, :meth:`JobTracker.check_stuck`) does no I/O
and never awaits; :meth:`JobTracker.attach` is the thin async shell that feeds
it and publishes its output to a bus.

Events not about a provider job pass through untouched: those with
``job_id == ""``, and everything keyed by a chunk reference (the submitter's
``BatchSubmitted``, ``SubmitRejected``, ``Throttled``, ``QuotaExhausted``, the
``ItemFailed`` of rows that failed validation, and the complete answers of
synchronous endpoints) — one submitter, no redundancy to merge.

Memory is bounded: a job's item keys are freed when it ends, and the ids of
finished jobs are remembered in an LRU of ``max_finished`` entries so late
arrivals are dropped. A late signal for a job evicted from that LRU would
start it afresh; size the LRU above the number of jobs whose stragglers you
expect at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import anyio
import msgspec

from eventbus import events as ev

__all__ = ["JobTracker", "JobView", "Publisher", "TrackedPublisher", "TrackerStats"]

_PASSTHROUGH = (ev.BatchSubmitted, ev.SubmitRejected, ev.Throttled, ev.QuotaExhausted, ev.SourceState, ev.InvalidSignal)


class Publisher(Protocol):
    """What the tracker publishes to: an :class:`eventbus.Bus` or anything alike."""

    async def publish(self, event: ev.Event) -> None: ...

    def publish_nowait(self, event: ev.Event) -> None: ...


@dataclass(frozen=True)
class JobView:
    """A read-only snapshot of one job's merged state."""

    provider: str
    job_id: str
    done: int
    total: int | None
    items: int
    succeeded: int
    failed: int
    sources: frozenset[str]
    last_signal: float
    terminal: str | None = None


@dataclass
class TrackerStats:
    """Counters of what the tracker let through and what it dropped, and why."""

    passed: int = 0
    synthesized: int = 0
    dropped_duplicate: int = 0
    dropped_stale_progress: int = 0
    dropped_late: int = 0
    stuck: int = 0


class _Job:
    __slots__ = (
        "created",
        "done",
        "failed",
        "keys",
        "last_signal",
        "last_source",
        "last_type",
        "sources",
        "stuck_reported",
        "succeeded",
        "total",
        "updated",
    )

    def __init__(self, now: float) -> None:
        self.done = 0
        self.total: int | None = None
        self.keys: set[str] = set()
        self.succeeded = self.failed = self.created = self.updated = 0
        self.last_signal = now
        self.last_source = "submit"
        self.last_type = ""
        self.stuck_reported = False
        self.sources: set[str] = set()


class JobTracker:
    """Merges raw events from any number of sources; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        stuck_after: float | None = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_finished: int = 100_000,
    ) -> None:
        if stuck_after is not None and stuck_after <= 0:
            raise ValueError("stuck_after must be positive seconds, or None to never report stuck jobs")
        if max_finished < 1:
            raise ValueError("max_finished must be at least 1")
        self.stuck_after = stuck_after
        self.clock = clock
        self.max_finished = max_finished
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._finished: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._stats = TrackerStats()

    # --- the sans-I/O core ------------------------------------------------------

    def feed(self, event: ev.Event) -> list[ev.Event]:
        """Take one raw event; return the merged events to publish (possibly none)."""
        stats = self._stats
        if not event.job_id or isinstance(event, _PASSTHROUGH) or ev.is_chunk_ref(event.job_id):
            stats.passed += 1
            return [event]
        key = (event.provider, event.job_id)
        if key in self._finished:
            self._finished.move_to_end(key)
            stats.dropped_late += 1
            return []
        now = self.clock()
        job = self._jobs.get(key)
        out: list[ev.Event] = []
        if job is None:
            job = self._jobs[key] = _Job(now)
            if not isinstance(event, ev.JobAccepted):
                total = getattr(event, "total", None)
                out.append(
                    ev.JobAccepted(
                        id=ev.event_id(event.provider, event.job_id, "accepted"),
                        provider=event.provider,
                        job_id=event.job_id,
                        source=event.source,
                        at=event.at,
                        total=total,
                    )
                )
                job.total = total
                stats.synthesized += 1
            else:
                job.total = event.total
                out.append(event)
                self._touch(job, event, now)
                stats.passed += 1
                return out
        self._touch(job, event, now)
        merged = self._merge(key, job, event)
        if merged is not None:
            out.append(merged)
            stats.passed += 1
        return out

    @staticmethod
    def _touch(job: _Job, event: ev.Event, now: float) -> None:
        job.last_signal = now
        job.last_source = event.source
        job.last_type = ev.tag_of(type(event))
        job.stuck_reported = False
        job.sources.add(event.source)

    def _merge(self, key: tuple[str, str], job: _Job, event: ev.Event) -> ev.Event | None:
        stats = self._stats
        match event:
            case ev.ItemSucceeded() | ev.ItemFailed():
                if event.key in job.keys:
                    stats.dropped_duplicate += 1
                    return None
                job.keys.add(event.key)
                if isinstance(event, ev.ItemSucceeded):
                    job.succeeded += 1
                    if event.outcome == "created":
                        job.created += 1
                    elif event.outcome == "updated":
                        job.updated += 1
                else:
                    job.failed += 1
                return event
            case ev.JobProgress():
                learned_total = job.total is None and event.total is not None
                if learned_total:
                    job.total = event.total
                done = event.done if job.total is None else min(event.done, job.total)
                if done <= job.done and not learned_total:
                    stats.dropped_stale_progress += 1
                    return None
                job.done = max(job.done, done)
                if done == event.done and event.total == job.total:
                    return event
                return msgspec.structs.replace(event, done=job.done, total=job.total)
            case ev.JobAccepted():
                # A second acceptance (e.g. the submitter's, after a synthesized one)
                # is dropped; a total it brings is kept, as progress, so it is not lost.
                if job.total is None and event.total is not None:
                    job.total = event.total
                    return ev.JobProgress(
                        id=ev.event_id(event.provider, event.job_id, "total", event.total),
                        provider=event.provider,
                        job_id=event.job_id,
                        source=event.source,
                        at=event.at,
                        done=job.done,
                        total=event.total,
                    )
                stats.dropped_duplicate += 1
                return None
            case ev.JobCompleted() | ev.JobFailed() | ev.JobCancelled() | ev.JobExpired():
                self._finish(key, type(event))
                if isinstance(event, ev.JobCompleted) and not (event.succeeded or event.failed) and job.keys:
                    # The provider gave no totals; report what we counted.
                    return msgspec.structs.replace(
                        event,
                        succeeded=job.succeeded,
                        failed=job.failed,
                        created=event.created or job.created,
                        updated=event.updated or job.updated,
                        total=event.total if event.total is not None else job.total,
                    )
                return event
        return event  # JobStuck fed from elsewhere, or a future event type: keep it

    def _finish(self, key: tuple[str, str], terminal: type[ev.Event]) -> None:
        del self._jobs[key]
        self._finished[key] = ev.tag_of(terminal)
        if len(self._finished) > self.max_finished:
            self._finished.popitem(last=False)

    def check_stuck(self, now: float | None = None) -> list[ev.JobStuck]:
        """One ``JobStuck`` for each active job silent for ``stuck_after`` seconds since its last signal."""
        if self.stuck_after is None:
            return []
        current = self.clock() if now is None else now
        out: list[ev.JobStuck] = []
        for (provider, job_id), job in self._jobs.items():
            silent = current - job.last_signal
            if not job.stuck_reported and silent >= self.stuck_after:
                job.stuck_reported = True
                out.append(
                    ev.JobStuck(
                        id=ev.event_id(provider, job_id, "stuck", f"{job.last_signal:.3f}"),
                        provider=provider,
                        job_id=job_id,
                        source=job.last_source,  # type: ignore[arg-type]
                        silent_for=round(silent, 3),
                        last_type=job.last_type,
                    )
                )
        self._stats.stuck += len(out)
        return out

    # --- introspection ------------------------------------------------------------

    def job(self, provider: str, job_id: str) -> JobView | None:
        """A snapshot of an active job, or of a finished one (terminal set, counts zero), or None."""
        job = self._jobs.get((provider, job_id))
        if job is None:
            terminal = self._finished.get((provider, job_id))
            if terminal is None:
                return None
            return JobView(provider, job_id, 0, None, 0, 0, 0, frozenset(), 0.0, terminal)
        return JobView(
            provider,
            job_id,
            job.done,
            job.total,
            len(job.keys),
            job.succeeded,
            job.failed,
            frozenset(job.sources),
            job.last_signal,
        )

    def active_jobs(self) -> list[tuple[str, str]]:
        """(provider, job_id) of every job accepted and not yet ended."""
        return list(self._jobs)

    def stats(self) -> TrackerStats:
        """A copy of the counters."""
        return TrackerStats(**vars(self._stats))

    # --- the async shell ----------------------------------------------------------

    @asynccontextmanager
    async def attach(self, bus: Publisher, *, check_every: float = 1.0) -> AsyncIterator[TrackedPublisher]:
        """Feed this tracker from the yielded publisher and publish its output to ``bus``.

        While the block runs, a background task checks for stuck jobs every
        ``check_every`` seconds. Sources publish to the yielded object exactly
        as they would to the bus.
        """
        publisher = TrackedPublisher(self, bus)
        async with anyio.create_task_group() as tg:
            if self.stuck_after is not None:
                tg.start_soon(self._watch_stuck, publisher, check_every)
            try:
                yield publisher
                await publisher.flush()
            finally:
                tg.cancel_scope.cancel()

    async def _watch_stuck(self, publisher: TrackedPublisher, every: float) -> None:
        while True:
            await anyio.sleep(every)
            for event in self.check_stuck():
                await publisher._bus.publish(event)


class TrackedPublisher:
    """Publishes through a :class:`JobTracker` to a bus; has the bus's publish interface.

    ``publish_nowait`` never loses a merged event: when the bus is full it
    keeps the rest in order and a later ``publish``/``flush`` sends them.
    """

    def __init__(self, tracker: JobTracker, bus: Publisher) -> None:
        self.tracker = tracker
        self._bus = bus
        self._pending: deque[ev.Event] = deque()

    async def publish(self, event: ev.Event) -> None:
        """Feed ``event`` to the tracker and publish what comes out, waiting for room if needed."""
        self._pending.extend(self.tracker.feed(event))
        await self.flush()

    def publish_nowait(self, event: ev.Event) -> None:
        """Feed ``event`` and publish what fits now; the rest waits in order for the next publish/flush."""
        self._pending.extend(self.tracker.feed(event))
        pending = self._pending
        try:
            while pending:
                self._bus.publish_nowait(pending[0])
                pending.popleft()
        except anyio.WouldBlock:
            pass

    async def flush(self) -> None:
        """Publish everything still pending, in order."""
        pending = self._pending
        while pending:
            await self._bus.publish(pending[0])
            pending.popleft()

    @property
    def pending(self) -> int:
        """Merged events waiting for room on the bus."""
        return len(self._pending)
