"""Merge redundant signals about the same jobs into one clean stream.

One job can be reported by several sources at once — a WebSocket *and* a
poll, webhooks retried, a poll racing a webhook. :class:`JobTracker` keeps one
small state per job, keyed by ``(provider, job_id)``, and guarantees, whatever
the duplicates or the order:

* exactly one ``JobAccepted`` per job, before any other event of that job. If
  the first signal is something else (a webhook item racing the submitter's
  answer), one is synthesized from it: id ``event_id(provider, job_id,
  "accepted")``, the signal's provider, job, source and time, and its
  ``total`` when it carries one. The real ``JobAccepted`` that arrives later is
  dropped; a ``total`` it brings that was not known yet is published as a
  ``JobProgress`` (id ``event_id(provider, job_id, "total", total)``) so it is
  not lost, but its ``batch_id``/``chunk_index`` are lost: a subscriber that
  joins jobs to their ``BatchSubmitted`` sees an unlinked job. (Sources that
  can, such as the WebSocket correlator, hold early events until the
  acceptance is known, which avoids this.)
* ``JobProgress.done`` never decreases: progress that does not advance
  ``done`` is dropped — except once, when it brings a ``total`` not known
  before. The first ``total`` is kept (later different totals are ignored and
  replaced by it), and ``done`` is clamped to it, so whenever both are known
  ``done <= total``. A total smaller than the ``done`` already published
  (or negative) cannot be honoured without ``done`` going down, so it is
  ignored.
* each item ``key`` reported once: the first ``ItemSucceeded``/``ItemFailed``
  for a key wins, whatever the source or outcome of the later ones;
* exactly one terminal event (``JobCompleted``, ``JobFailed``,
  ``JobCancelled``, ``JobExpired``) and nothing for the job after it. A
  ``JobCompleted`` with all-zero totals after items were seen is filled with
  the counted items; totals the provider gives win;
* a job silent for ``stuck_after`` seconds gets one ``JobStuck`` per silence
  (any new signal re-arms it; a ``JobStuck`` fed in does not).

Events not about a provider job pass through untouched: those with
``job_id == ""`` (``SourceState``, some ``InvalidSignal``), the submitter's
``BatchSubmitted``, ``SubmitRejected``, ``Throttled``, ``QuotaExhausted``, and
everything else keyed by a chunk reference (the ``ItemFailed`` of rows that
failed validation, the answers of synchronous endpoints) — one submitter, no
redundancy to merge.

Memory is bounded: a job's item keys are freed when it ends, and the ids of
finished jobs are remembered in an LRU of ``max_finished`` entries (a late
arrival refreshes its entry) so that late arrivals are dropped. A late signal
for a job already evicted from that LRU starts it afresh: a second
``JobAccepted`` is synthesized for it and it stays active (and is reported
stuck) until another terminal event or :meth:`JobTracker.forget`. Size the
LRU above the number of finished jobs whose stragglers you expect at once.

The core (:meth:`JobTracker.feed`, :meth:`JobTracker.check_stuck`) does no I/O
and never awaits; :meth:`JobTracker.attach` is the thin async shell that feeds
it from sources and publishes its output to a bus.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import msgspec

from eventbus import events as ev
from eventbus._checks import SECONDS, SECONDS_OR_NONE, check_numbers
from eventbus.exceptions import BusClosed, ConfigError

__all__ = ["JobTracker", "JobView", "Publisher", "TrackedPublisher", "TrackerStats"]

# What the tracker does with each event class (see _classify).
_PASS, _ITEM_OK, _ITEM_FAILED, _PROGRESS, _ACCEPTED, _COMPLETED, _ENDED, _STUCK, _OTHER = range(9)
_BY_BASE: tuple[tuple[type[ev.Event] | tuple[type[ev.Event], ...], int], ...] = (
    ((ev.BatchSubmitted, ev.SubmitRejected, ev.Throttled, ev.QuotaExhausted, ev.SourceState, ev.InvalidSignal), _PASS),
    (ev.ItemSucceeded, _ITEM_OK),
    (ev.ItemFailed, _ITEM_FAILED),
    (ev.JobProgress, _PROGRESS),
    (ev.JobAccepted, _ACCEPTED),
    (ev.JobCompleted, _COMPLETED),
    ((ev.JobFailed, ev.JobCancelled, ev.JobExpired), _ENDED),
    (ev.JobStuck, _STUCK),
)
_KINDS: dict[type, tuple[int, str]] = {}


def _classify(cls: type[ev.Event]) -> tuple[int, str]:
    """The kind and type tag of an event class (subclasses included), computed once per class."""
    kind = next((kind for base, kind in _BY_BASE if issubclass(cls, base)), _OTHER)
    _KINDS[cls] = (kind, ev.tag_of(cls))
    return _KINDS[cls]


class Publisher(Protocol):
    """What the tracker publishes to: an :class:`eventbus.Bus` or anything alike.

    ``publish_nowait`` raises ``anyio.WouldBlock`` when it cannot take the
    event now; ``publish`` waits for room, and publishes nothing if cancelled.
    """

    async def publish(self, event: ev.Event) -> None: ...

    def publish_nowait(self, event: ev.Event) -> None: ...


@dataclass(frozen=True)
class JobView:
    """A read-only snapshot of one job's merged state.

    For a finished job only ``terminal`` is meaningful (its counts were freed).
    """

    provider: str
    job_id: str
    done: int
    total: int | None
    items: int
    succeeded: int
    failed: int
    sources: frozenset[str]
    last_signal: float
    last_type: str = ""
    terminal: str | None = None


@dataclass
class TrackerStats:
    """Counters of what the tracker let through, made up, and dropped, and why.

    Every event fed is counted exactly once in ``passed`` or one of the
    ``dropped_*`` counters; the events published are ``passed + synthesized``
    (plus ``stuck`` from :meth:`JobTracker.check_stuck`).
    """

    passed: int = 0
    synthesized: int = 0
    dropped_duplicate: int = 0
    dropped_stale_progress: int = 0
    dropped_late: int = 0
    stuck: int = 0


class _Job:
    """The merged state of one active job."""

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

    def __init__(self) -> None:
        self.done = 0
        self.total: int | None = None
        self.keys: set[str] = set()
        self.succeeded = self.failed = self.created = self.updated = 0
        self.last_signal = 0.0
        self.last_source: ev.Source = "submit"
        self.last_type = ""
        self.stuck_reported = False
        self.sources: set[str] = set()

    def touch(self, now: float, source: ev.Source, tag: str) -> None:
        """A signal arrived: the job is alive (re-arms the stuck check)."""
        self.last_signal = now
        self.last_source = source
        self.last_type = tag
        self.stuck_reported = False
        self.sources.add(source)

    def learn_total(self, total: int | None) -> bool:
        """Keep ``total`` if none is known yet and it is consistent with ``done``; True if kept."""
        if self.total is None and total is not None and total >= self.done:
            self.total = total
            return True
        return False


class JobTracker:
    """Merges raw events from any number of sources; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        stuck_after: float | None = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_finished: int = 100_000,
    ) -> None:
        """A tracker with no jobs yet; refuses nonsensical settings with :class:`ConfigError`.

        ``stuck_after`` seconds of silence make a job stuck (``None``: never);
        ``clock`` gives monotonic seconds (inject a fake one in tests);
        ``max_finished`` bounds the LRU of finished jobs.
        """
        check_numbers("JobTracker", stuck_after=(stuck_after, SECONDS_OR_NONE))  # None: never report stuck jobs
        if max_finished < 1:
            raise ConfigError(f"max_finished must be at least 1 (finished jobs remembered); got {max_finished!r}")
        self.stuck_after = stuck_after
        self.clock = clock
        self.max_finished = max_finished
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._finished: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._stats = TrackerStats()

    # --- the sans-I/O core ------------------------------------------------------

    def feed(self, event: ev.Event) -> list[ev.Event]:
        """Take one raw event; return the merged events to publish, in order (possibly none)."""
        stats = self._stats
        job_id = event.job_id
        cls = type(event)
        kind, tag = _KINDS.get(cls) or _classify(cls)
        if kind == _PASS or not job_id or "#" in job_id:  # "#": a chunk reference, see ev.is_chunk_ref
            stats.passed += 1
            return [event]
        key = (event.provider, job_id)
        job = self._jobs.get(key)
        if job is None:
            if key in self._finished:
                self._finished.move_to_end(key)  # stragglers keep coming: remember this one longer
                stats.dropped_late += 1
                return []
            return self._start(key, event, kind, tag)
        if kind != _STUCK:  # our own output fed back is no sign of life from the job
            job.touch(self.clock(), event.source, tag)
        merged = self._merge(key, job, event, kind, tag)
        if merged is None:
            return []
        stats.passed += 1
        return [merged]

    def _start(self, key: tuple[str, str], event: ev.Event, kind: int, tag: str) -> list[ev.Event]:
        """The first signal of a job: publish it after a JobAccepted, synthesized if need be."""
        job = self._jobs[key] = _Job()
        job.touch(self.clock(), event.source, tag)
        job.learn_total(getattr(event, "total", None))
        if kind == _ACCEPTED:
            self._stats.passed += 1
            return [event]
        accepted = ev.JobAccepted(
            id=ev.event_id(event.provider, event.job_id, "accepted"),
            provider=event.provider,
            job_id=event.job_id,
            source=event.source,
            at=event.at,
            total=job.total,
        )
        self._stats.synthesized += 1
        merged = self._merge(key, job, event, kind, tag)
        if merged is None:  # e.g. progress at 0: the acceptance says it all
            return [accepted]
        self._stats.passed += 1
        return [accepted, merged]

    def _merge(self, key: tuple[str, str], job: _Job, event: Any, kind: int, tag: str) -> ev.Event | None:
        """The event to publish for ``event`` given the job's state (updated here), or None to drop it."""
        # Dispatch on the cached kind rather than isinstance/match: a failed isinstance
        # on a msgspec Struct class costs several times a dict lookup, on every event.
        if kind == _ITEM_OK or kind == _ITEM_FAILED:
            keys = job.keys
            if event.key in keys:
                self._stats.dropped_duplicate += 1
                return None
            keys.add(event.key)
            if kind == _ITEM_FAILED:
                job.failed += 1
            else:
                job.succeeded += 1
                if event.outcome == "created":
                    job.created += 1
                elif event.outcome == "updated":
                    job.updated += 1
            return event
        if kind == _PROGRESS:
            learned = job.learn_total(event.total)
            total = job.total
            done = event.done if total is None or event.done <= total else total
            if done <= job.done and not learned:
                self._stats.dropped_stale_progress += 1
                return None
            if done > job.done:
                job.done = done
            if job.done == event.done and total == event.total:
                return event
            return msgspec.structs.replace(event, done=job.done, total=total)
        if kind == _ACCEPTED:
            # A second acceptance (e.g. the submitter's, after a synthesized one) is dropped;
            # a total it brings is kept, as progress, so that it is not lost.
            if job.learn_total(event.total):
                return ev.JobProgress(
                    id=ev.event_id(event.provider, event.job_id, "total", job.total),
                    provider=event.provider,
                    job_id=event.job_id,
                    source=event.source,
                    at=event.at,
                    done=job.done,
                    total=job.total,
                )
            self._stats.dropped_duplicate += 1
            return None
        if kind == _COMPLETED:
            self._finish(key, "job_completed")
            if not (event.succeeded or event.failed) and job.keys:
                # The provider gave no totals; report what we counted.
                return msgspec.structs.replace(
                    event,
                    succeeded=job.succeeded,
                    failed=job.failed,
                    created=event.created or job.created,
                    updated=event.updated or job.updated,
                    total=event.total if event.total is not None else job.total,
                )
            if event.total is None and job.total is not None:
                return msgspec.structs.replace(event, total=job.total)
            return event
        if kind == _ENDED:
            self._finish(key, tag)
        return event  # a terminal event, a JobStuck fed back, or a future event type: keep it

    def _finish(self, key: tuple[str, str], terminal: str) -> None:
        del self._jobs[key]  # frees the item keys
        finished = self._finished
        finished[key] = terminal
        if len(finished) > self.max_finished:
            finished.popitem(last=False)

    def check_stuck(self, now: float | None = None) -> list[ev.JobStuck]:
        """One ``JobStuck`` for each active job silent for ``stuck_after`` seconds, once per silence."""
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
                        source=job.last_source,
                        silent_for=round(silent, 3),
                        last_type=job.last_type,
                    )
                )
        self._stats.stuck += len(out)
        return out

    def forget(self, provider: str, job_id: str, *, reason: str = "forgotten") -> bool:
        """Stop tracking an active job that will never end (e.g. given up after ``JobStuck``).

        It is remembered as finished (``terminal == reason``), so later signals
        for it are dropped as late. Returns False if the job was not active.
        """
        key = (provider, job_id)
        if key not in self._jobs:
            return False
        self._finish(key, reason)
        return True

    # --- introspection ------------------------------------------------------------

    def job(self, provider: str, job_id: str) -> JobView | None:
        """A snapshot of an active job, of a remembered finished one (``terminal`` set), or None."""
        job = self._jobs.get((provider, job_id))
        if job is None:
            terminal = self._finished.get((provider, job_id))
            if terminal is None:
                return None
            return JobView(provider, job_id, 0, None, 0, 0, 0, frozenset(), 0.0, "", terminal)
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
            job.last_type,
        )

    def active_jobs(self) -> list[tuple[str, str]]:
        """``(provider, job_id)`` of every job started and not yet ended, oldest first."""
        return list(self._jobs)

    def stats(self) -> TrackerStats:
        """A copy of the counters."""
        return TrackerStats(**vars(self._stats))

    # --- the async shell ----------------------------------------------------------

    @asynccontextmanager
    async def attach(
        self, bus: Publisher, *, check_every: float = 1.0, flush_timeout: float = 30.0
    ) -> AsyncIterator[TrackedPublisher]:
        """Feed this tracker from the yielded publisher and publish its output to ``bus``.

        Sources publish to the yielded object exactly as they would to the bus.
        While the block runs, a task checks for stuck jobs every ``check_every``
        seconds and another sends merged events that had to wait for room. On
        leaving, everything pending is published (``TimeoutError`` if that takes
        longer than ``flush_timeout`` seconds) and the publisher is closed.
        """
        check_numbers("JobTracker.attach", check_every=(check_every, SECONDS), flush_timeout=(flush_timeout, SECONDS))
        publisher = TrackedPublisher(self, bus)
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(publisher._run_flusher)
            if self.stuck_after is not None:
                tg.start_soon(publisher._watch_stuck, check_every)
            # Errors are re-raised below the task group, so that they come out as
            # themselves rather than wrapped in an ExceptionGroup.
            try:
                yield publisher
                with anyio.move_on_after(flush_timeout):
                    await publisher.flush()
                if publisher.pending:
                    error = TimeoutError(
                        f"{publisher.pending} merged events could not be published within flush_timeout="
                        f"{flush_timeout}s: a subscriber with overflow='block' is not consuming"
                    )
            except Exception as exc:
                error = exc
            finally:
                publisher._closed = True
                tg.cancel_scope.cancel()
        if error is not None:
            raise error


class TrackedPublisher:
    """Publishes through a :class:`JobTracker` to a bus, with the bus's publish interface.

    Made by :meth:`JobTracker.attach`. Merged events reach the bus in the order
    the tracker produced them. ``publish_nowait`` either takes the event (feeds
    it; merged events that do not fit on the bus now are sent in order by a
    background task) or raises ``anyio.WouldBlock`` having changed nothing,
    so the caller can ``await publish(event)`` instead. Nothing waits unbounded:
    at most the output of one feed per publishing task is held here.

    Errors of the bus other than ``WouldBlock`` (``BufferOverflow`` from an
    ``overflow="error"`` subscriber, ``BusClosed``) propagate to the caller;
    the merged events of that feed are then not published, and since the
    tracker has already counted them, publishing the raw event again will not
    bring them back.
    """

    def __init__(self, tracker: JobTracker, bus: Publisher) -> None:
        self.tracker = tracker
        self._bus = bus
        self._pending: deque[ev.Event] = deque()
        # Only the holder sends from _pending, so concurrent publishers never send
        # an event twice or out of order; anyio locks are fair (FIFO).
        self._lock = anyio.Lock()
        self._wakeup: anyio.Event | None = None
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosed("this tracked publisher is closed (its attach() block ended); attach the tracker again")

    def _send(self, events: Sequence[ev.Event]) -> bool:
        """Publish ``events`` now, after anything pending; True if nothing is left pending."""
        pending = self._pending
        if pending:
            pending.extend(events)
            return False
        publish_nowait = self._bus.publish_nowait
        for i, event in enumerate(events):
            try:
                publish_nowait(event)
            except anyio.WouldBlock:
                pending.extend(events[i:])
                return False
        return True

    def publish_nowait(self, event: ev.Event) -> None:
        """Feed ``event`` and publish the merged events; ``anyio.WouldBlock`` (nothing fed) if behind."""
        if self._pending:
            self._check_open()
            raise anyio.WouldBlock
        if self._closed:
            self._check_open()
        out = self.tracker.feed(event)
        if not out:
            return
        if len(out) == 1:  # the common case, without _send's loop
            try:
                self._bus.publish_nowait(out[0])
                return
            except anyio.WouldBlock:
                self._pending.append(out[0])
        elif self._send(out):
            return
        if self._wakeup is not None:
            self._wakeup.set()

    async def publish(self, event: ev.Event) -> None:
        """Feed ``event`` and publish the merged events, waiting for room on the bus if needed."""
        self._check_open()
        if not self._send(self.tracker.feed(event)):
            await self.flush()

    async def flush(self, after: int | None = None) -> None:
        """Wait until every merged event taken so far has been published, in order.

        On a bus that writes what is published (:attr:`persistent`: a journal,
        Redis), also until they are written (the bus's ``flush(after)``: with
        ``after`` read from :attr:`published` before publishing, it raises if
        any event the bus got since was not written).
        """
        await self._send_pending()
        if self.persistent:
            await self._bus.flush(after)  # type: ignore[attr-defined]

    @property
    def journal(self) -> Any:
        """The journal of the bus published to (None: an in-memory bus, or not a Bus)."""
        return getattr(self._bus, "journal", None)

    @property
    def persistent(self) -> bool:
        """Whether the bus published to writes what it is given (a Bus with a journal, a RedisBus)."""
        return bool(getattr(self._bus, "persistent", False))

    @property
    def published(self) -> int:
        """The bus's count of events published (what ``flush(after=...)`` takes)."""
        return int(getattr(self._bus, "published", 0))

    async def _send_pending(self) -> None:
        async with self._lock:
            pending = self._pending
            try:
                while pending:
                    await self._bus.publish(pending[0])  # cancelled: not published, stays first
                    pending.popleft()
            finally:
                if pending and self._wakeup is not None:
                    self._wakeup.set()  # interrupted: the background sender takes over

    @property
    def pending(self) -> int:
        """Merged events taken but still waiting for room on the bus."""
        return len(self._pending)

    async def _run_flusher(self) -> None:
        while True:
            if self._pending:
                await self._send_pending()
            else:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()

    async def _watch_stuck(self, every: float) -> None:
        while True:
            await anyio.sleep(every)
            stuck = self.tracker.check_stuck()
            if stuck and not self._send(stuck):
                await self.flush()
