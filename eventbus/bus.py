"""The in-process event bus: publishers push typed events, subscribers consume them.

Each subscriber has its own bounded FIFO buffer and overflow policy, so a slow
subscriber never loses events silently and never slows the others unless it
asked for back-pressure (``overflow="block"``, the default)::

    async with Bus() as bus:
        bus.on(handler, name="printer", types={JobProgress, JobCompleted})
        async with bus.subscribe("store", buffer=10_000) as sub:
            ...                                # async for event in sub
        await bus.publish(event)               # waits only while a "block" buffer is full
        bus.publish_nowait(event)              # raises anyio.WouldBlock instead of waiting
        await bus.drain()                      # every subscriber handled everything published
        bus.stats()                            # per subscriber: delivered, dropped, failed, lag

:meth:`Bus.publish_nowait` is the real publish: it routes the event through a
per-type cache to the subscribers whose filters admit it and appends it to
their buffers without awaiting. It is atomic: if one ``block`` (or ``error``)
subscriber is full, no subscriber receives the event. :meth:`Bus.publish`
waits for room only in that case. Events reach every subscriber in publish
order, so the events of one job keep their order.

Handlers registered with :meth:`Bus.on` run in the bus's own task group, one
task per handler, draining their buffer in a tight loop. A handler that raises
is logged (logger ``eventbus.bus``) and counted; it keeps receiving later
events and the other subscribers are unaffected.

``Bus(journal="events.db")`` writes every event to an SQLite journal
(:mod:`eventbus.journal`) before any subscriber sees it: a writer task
commits what was published in batches, then delivers it in order.
``publish`` then returns once the event is written, and durable subscribers
(``durable=True``) are fed from the journal after their saved cursor, so
they resume across restarts. ``Bus()`` keeps the in-memory paths above,
untouched.

A bus belongs to the event loop that entered it and is not thread-safe; from
another thread, publish with ``anyio.from_thread.run_sync(bus.publish_nowait,
event)``.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from enum import StrEnum
from inspect import isawaitable
from typing import Any, NoReturn

import anyio
import anyio.abc
import msgspec

from eventbus import events as ev
from eventbus._logging import get_logger
from eventbus._writes import WriteQueue
from eventbus.exceptions import BufferOverflow, BusClosed, ConfigError, JournalError, SubscriptionClosed
from eventbus.journal import Journal, type_tags

__all__ = [
    "Bus",
    "DurableSubscription",
    "Handler",
    "HandlerHandle",
    "Overflow",
    "SubscriberStats",
    "Subscription",
    "Types",
]

Handler = Callable[[ev.Event], Awaitable[object] | object]
"""A subscriber callable: takes one event; may be sync or async."""

Types = Iterable[type[ev.Event] | str] | type[ev.Event] | str
"""A type filter: event classes or ``type`` tags (``"job_progress"``), or just one of them."""

_log = get_logger("eventbus.bus")

# Yield to the event loop after this many events handled in a row, so that a
# subscriber with a deep buffer does not starve the publisher or its peers.
_YIELD_EVERY = 256

# With a journal: events published but not yet written (publish waits for room beyond this),
# events written per transaction, and events a durable subscriber reads from the journal at once.
_PENDING_LIMIT = 10_000
_JOURNAL_BATCH = 1000
_FEED_BATCH = 1000
# A durable handler saves its cursor when its buffer runs empty, or after this many events.
_ACK_EVERY = 1000


class Overflow(StrEnum):
    """What a subscriber's full buffer does with the next event."""

    BLOCK = "block"  # the publisher waits for room (back-pressure)
    DROP_OLDEST = "drop_oldest"  # the oldest buffered event is dropped and counted
    DROP_NEWEST = "drop_newest"  # the new event is dropped and counted
    ERROR = "error"  # publish raises BufferOverflow; nobody receives the event


class SubscriberStats(msgspec.Struct, frozen=True):
    """A snapshot of one subscriber's counters.

    Every event published to the subscriber (admitted by its filters) is
    accounted for exactly once: ``delivered + dropped + lag`` is the number
    of events admitted.
    """

    name: str
    kind: str  # "handler" or "subscription"
    overflow: str  # the Overflow policy's value
    buffer: int  # the buffer's size
    received: int  # events accepted into the buffer (drop_newest refusals are not)
    delivered: int  # events handed to the handler or the iterator
    dropped: int  # evicted (drop_oldest), refused (drop_newest), or left unread when closed
    failed: int  # handler calls (or where= predicates) that raised
    lag: int  # events buffered now
    # A durable subscriber's journal positions not read into its buffer yet (0 for the others): how far behind
    # it is in the file. An upper bound: entries its filters will pass over are counted.
    unread: int = 0


def _resolve_types(types: Types | None) -> frozenset[type[ev.Event]] | None:
    """The event classes a type filter names (None: every type), checked as the journal checks them."""
    if types is None:
        return None
    given = [types] if isinstance(types, str | type) else list(types)
    if type_tags(given, empty="the subscriber would never receive anything") is None:
        return None  # ev.Event itself: every type
    return frozenset(t if isinstance(t, type) else ev.EVENT_TYPES[t] for t in given)


def _resolve_overflow(overflow: Overflow | str) -> Overflow:
    try:
        return Overflow(overflow)
    except ValueError:
        raise ConfigError(
            f"unknown overflow policy {overflow!r}; choose one of: {', '.join(o.value for o in Overflow)}"
        ) from None


def filters_admit(sub: Any, event: ev.Event) -> bool:
    """Whether ``event`` passes ``sub``'s ``providers``, ``jobs`` and ``where`` filters (type filters are routed).

    ``sub`` has those three attributes, a ``name`` and a ``failed`` counter: a
    bus's subscriber, or a RedisBus's. A ``where`` that raises counts as a
    failure of that subscriber, logged, and refuses the event.
    """
    if sub.providers is not None and event.provider not in sub.providers:
        return False
    if sub.jobs is not None and event.job_id not in sub.jobs:
        return False
    if sub.where is None:
        return True
    try:
        return bool(sub.where(event))
    except Exception:
        # The predicate's bug is this subscriber's failure, never the publisher's.
        sub.failed += 1
        _log.exception(
            "subscriber_filter_failed", subscriber=sub.name, event_type=ev.tag_of(type(event)), event_id=event.id
        )
        return False


class _Subscriber:
    """One subscriber's buffer, filters and counters (internal)."""

    __slots__ = (
        "active",
        "buffer",
        "closed",
        "done",
        "dropped",
        "evicted",
        "failed",
        "feed",
        "filtered",
        "idle",
        "jobs",
        "kind",
        "name",
        "overflow",
        "providers",
        "received",
        "scope",
        "size",
        "space",
        "strict",
        "types",
        "wakeup",
        "where",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        size: int,
        overflow: Overflow,
        types: frozenset[type[ev.Event]] | None,
        providers: frozenset[str] | None,
        jobs: frozenset[str] | None,
        where: Callable[[ev.Event], bool] | None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.size = size
        self.overflow = overflow
        self.types = types
        self.providers = providers
        self.jobs = jobs
        self.where = where
        # Precomputed so the publish hot path tests one attribute, not three.
        self.filtered = providers is not None or jobs is not None or where is not None
        self.strict = overflow is Overflow.BLOCK or overflow is Overflow.ERROR
        self.buffer: deque[ev.Event] = deque()
        self.received = self.evicted = self.dropped = self.failed = 0
        self.closed = False
        self.active = False  # an event was taken and is being handled
        self.wakeup: anyio.Event | None = None  # set by a publisher when the consumer waits
        self.space: anyio.Event | None = None  # set by the consumer when a blocked publisher waits
        self.idle: anyio.Event | None = None  # set by the consumer when drain() waits
        self.scope: anyio.CancelScope | None = None  # a handler's own task, cancellable alone
        self.done: anyio.Event | None = None  # set when a handler's task has ended
        self.feed: _Feed | None = None  # a durable subscriber's place in the journal

    admits = filters_admit  # (a method: no extra call on the publish path)

    @property
    def delivered(self) -> int:
        """Events handed to the consumer: everything received that is neither buffered nor evicted."""
        return self.received - self.evicted - len(self.buffer)

    def took(self) -> None:
        """Wake a publisher waiting for room, now that the consumer took events."""
        if self.space is not None:
            self.space.set()
            self.space = None

    def discard(self) -> None:
        """Drop everything still buffered (the consumer is gone), counting it exactly."""
        left = len(self.buffer)
        self.buffer.clear()
        if self.feed is not None:
            self.feed.seqs.clear()  # still in the journal: they come again to the next subscriber of this name
        self.dropped += left
        self.evicted += left

    def went_idle(self) -> None:
        self.active = False
        if self.idle is not None:
            self.idle.set()
            self.idle = None

    @property
    def busy(self) -> bool:
        return bool(self.buffer) or self.active or (self.feed is not None and self.feed.behind and not self.closed)

    def stats(self) -> SubscriberStats:
        return SubscriberStats(
            name=self.name,
            kind=self.kind,
            overflow=self.overflow.value,
            buffer=self.size,
            received=self.received,
            delivered=self.delivered,
            dropped=self.dropped,
            failed=self.failed,
            lag=len(self.buffer),
            unread=0 if self.feed is None else max(0, self.feed.journal.last_seq - max(self.feed.position, 0)),
        )


class _Feed:
    """Where a durable subscriber stands in the journal (internal)."""

    __slots__ = ("acked", "journal", "position", "seqs", "since_ack", "start")

    def __init__(self, journal: Journal, start: int | None) -> None:
        self.journal = journal
        self.start = start  # None: from the saved cursor
        self.position = -1  # read up to here; -1 until the cursor is known
        self.acked = 0  # the cursor as last saved (or read)
        self.seqs: deque[int] = deque()  # the position of each buffered event, in step with the buffer
        self.since_ack = 0  # events handled since the cursor was saved (handlers)

    @property
    def behind(self) -> bool:
        """Entries this process committed have not all been read into the buffer yet."""
        return self.position < self.journal.last_seq or self.position < 0


class _View:
    """What a subscription and a handler handle both show of their subscriber."""

    def __init__(self, sub: _Subscriber, bus: Bus) -> None:
        self._sub = sub
        self._bus = bus

    @property
    def name(self) -> str:
        return self._sub.name

    @property
    def closed(self) -> bool:
        """True once closed (by ``close()``, leaving a ``subscribe()`` block, or the bus closing)."""
        return self._sub.closed

    def stats(self) -> SubscriberStats:
        """This subscriber's counters."""
        return self._sub.stats()


class Subscription(_View):
    """An async iterator over the events admitted to one subscriber.

    Obtained from :meth:`Bus.subscribe`; meant for one consuming task.
    ``async for`` ends once the subscription or the bus is closed and the
    buffer is empty. A subscription is not reusable: iterating it again after
    that end, or after its ``async with`` block exited, raises
    :class:`SubscriptionClosed`.
    """

    def __init__(self, sub: _Subscriber, bus: Bus) -> None:
        super().__init__(sub, bus)
        self._exited = False  # the subscribe() block was left
        self._ended = False  # end of stream was reported once
        self._streak = 0

    def __aiter__(self) -> Subscription:
        if self._exited or self._ended:
            raise SubscriptionClosed(f"subscription {self._sub.name!r} is closed; subscribe again")
        return self

    async def ack(self) -> None:
        """Nothing to do: an in-memory subscription's event is handled once it is received.

        Here so that code which acknowledges (as a durable subscription on a
        journaled bus and every RedisBus subscription need) runs unchanged on
        any bus.
        """

    def receive_nowait(self) -> ev.Event:
        """The next buffered event.

        Raises ``anyio.WouldBlock`` if none is buffered, ``anyio.EndOfStream``
        when closed and empty, :class:`SubscriptionClosed` after the block exited.
        """
        if self._exited:
            raise SubscriptionClosed(f"subscription {self._sub.name!r} is closed; subscribe again")
        sub = self._sub
        if sub.buffer:
            event = sub.buffer.popleft()
            sub.active = True
            sub.took()
            return event
        sub.went_idle()
        if sub.closed:
            self._ended = True
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def receive(self) -> ev.Event:
        """Wait for the next event; raises ``anyio.EndOfStream`` once closed and empty."""
        self._streak += 1
        if self._streak >= _YIELD_EVERY:
            # Yield before taking, never after: a cancellation here loses no event.
            self._streak = 0
            await anyio.lowlevel.checkpoint()
        while True:
            try:
                return self.receive_nowait()
            except anyio.WouldBlock:
                self._streak = 0
                waiter = self._sub.wakeup
                if waiter is None:
                    waiter = self._sub.wakeup = anyio.Event()
                await waiter.wait()

    async def __anext__(self) -> ev.Event:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Stop receiving: no new events are routed here; ``async for`` ends once the buffer is empty."""
        self._bus._detach(self._sub)

    async def aclose(self) -> None:
        """Same as :meth:`close` (for symmetry with other resources)."""
        self.close()
        await anyio.lowlevel.checkpoint()


class DurableSubscription(Subscription):
    """A subscription fed from the bus's journal, from its saved cursor; :meth:`ack` saves it.

    Obtained from ``bus.subscribe(name, durable=True)``. It receives every
    event journaled after the cursor saved under ``name`` (by an earlier run
    too), then new ones as they are published. Call :meth:`ack` once what was
    received is safely handled: a later subscriber of the same name starts
    after it. Events received but not acknowledged come again (at least once;
    ``event.id`` tells copies apart).
    """

    def __init__(self, sub: _Subscriber, bus: Bus) -> None:
        super().__init__(sub, bus)
        assert sub.feed is not None
        self._feed = sub.feed
        self._taken: int | None = None

    def receive_nowait(self) -> ev.Event:
        event = super().receive_nowait()
        self._taken = self._feed.seqs.popleft()
        return event

    @property
    def position(self) -> int | None:
        """The journal position of the last event received (None before the first)."""
        return self._taken

    async def ack(self) -> None:
        """Save the cursor: everything received so far is handled (:class:`JournalError` if it cannot be saved)."""
        feed = self._feed
        target = self._taken
        if target is not None and not self._sub.buffer and feed.position > target:
            target = feed.position  # nothing buffered: the entries between were filtered out; skip them next time
        if target is not None and target > feed.acked:
            await feed.journal.ack(self._sub.name, target)
            feed.acked = target


class HandlerHandle(_View):
    """What :meth:`Bus.on` returns: the handler's stats and a way to remove it."""

    def close(self) -> None:
        """Remove the handler: no new events reach it; it still handles what is already buffered."""
        self._bus._detach(self._sub)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Remove the handler and wait until it has handled its buffer; cancel it after ``timeout`` seconds.

        Events still buffered when it is cancelled are counted as dropped.
        """
        self.close()
        done, scope = self._sub.done, self._sub.scope
        if done is None or scope is None:  # pragma: no cover - set by Bus.on (RedisBus.on) before it returns
            return
        with anyio.move_on_after(timeout):
            await done.wait()
        if not done.is_set():
            _log.warning("handler_close_timeout", subscriber=self._sub.name, timeout=timeout, lag=len(self._sub.buffer))
            scope.cancel()
            with anyio.CancelScope(shield=True), anyio.move_on_after(timeout):
                await done.wait()

    @asynccontextmanager
    async def attached(self, timeout: float = 5.0) -> AsyncIterator[None]:
        """The handler for the length of an ``async with`` block.

        Leaving the block removes it with :meth:`aclose` (it handles what it
        has buffered, cancelled after ``timeout`` seconds); leaving on an
        error removes it at once (:meth:`close`).
        """
        try:
            yield
        except BaseException:
            self.close()
            raise
        await self.aclose(timeout)


class Bus:
    """An in-process event bus; use as ``async with Bus() as bus``.

    ``journal`` (a :class:`~eventbus.journal.Journal` or a file path) makes
    it durable: every event is written to the journal before any subscriber
    sees it, and durable subscribers (``durable=True``) resume from their
    saved cursor. :meth:`publish` then returns once the event is in the
    journal; :meth:`publish_nowait` queues it for the journal's writer (at
    most 10,000 queued, then ``anyio.WouldBlock``). ``close_timeout`` bounds
    how long closing waits for subscribers to finish what is buffered before
    cancelling them.
    """

    def __init__(self, journal: Journal | str | os.PathLike[str] | None = None, *, close_timeout: float = 5.0) -> None:
        self._journal: Journal | None = None
        if journal is not None:
            self._journal = journal if isinstance(journal, Journal) else Journal(journal)
            if self._journal.readonly:
                raise ConfigError(f"{self._journal!r} is read-only; a bus writes to its journal")
            self._writes = WriteQueue(_PENDING_LIMIT)  # what publishers hand the journal's writer
            self._writing = False  # the writer holds a batch not yet delivered
            # The journaled paths replace the in-memory ones for this bus only; Bus() stays as fast as before.
            self.publish = self._publish_journaled  # type: ignore[method-assign]
            self.publish_nowait = self._publish_nowait_journaled  # type: ignore[method-assign]
        self.close_timeout = close_timeout
        self._subs: dict[str, _Subscriber] = {}
        self._retiring: set[_Subscriber] = set()  # closed handlers still handling their buffer
        # Per event class: the subscribers whose type filter admits it, and whether any filters further.
        self._routes: dict[type, tuple[tuple[_Subscriber, ...], bool]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._closed = False
        self._entered = False
        self._published = 0

    # --- lifecycle ----------------------------------------------------------

    async def __aenter__(self) -> Bus:
        if self._entered:
            raise BusClosed("a Bus can be entered only once; create a new Bus")
        self._entered = True
        if self._journal is not None:
            await self._journal.open()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        if self._journal is not None:
            self._tg.start_soon(self._write_journal, name="eventbus journal writer")
        return self

    async def __aexit__(self, *exc_info: object) -> bool | None:
        try:
            if exc_info[0] is None:
                await self._shutdown(self.close_timeout)
            else:
                self._close_all()
                assert self._tg is not None
                self._tg.cancel_scope.cancel()
        finally:
            assert self._tg is not None
            try:
                result = await self._tg.__aexit__(*exc_info)  # type: ignore[arg-type]
            finally:
                if self._journal is not None:
                    with anyio.CancelScope(shield=True):
                        await self._save_pending()
                        await self._journal.close()
        return result

    async def _save_pending(self) -> None:
        """Torn down (an error, Ctrl-C, a close timeout) with events queued: journal them, without delivering."""
        assert self._journal is not None
        left = list(self._writes.pending)
        if not left:
            return
        self._writes.pending.clear()
        with anyio.move_on_after(self.close_timeout) as waited:
            try:
                await self._journal.append(left)
                _log.warning("journal_events_written_undelivered", events=len(left), reason="the bus was torn down")
                return
            except JournalError as exc:
                _log.error("journal_events_not_written", events=len(left), error=str(exc))
                return
        if waited.cancelled_caught:  # pragma: no cover - the file stayed locked past close_timeout
            _log.error("journal_events_not_written", events=len(left), reason="close_timeout")

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop accepting events, let subscribers drain for ``timeout`` seconds, then cancel them.

        Safe to call more than once; ``async with`` calls it on exit.
        """
        await self._shutdown(self.close_timeout if timeout is None else timeout)

    async def _shutdown(self, timeout: float) -> None:
        self._closed = True
        with anyio.move_on_after(timeout) as scope:
            await self.drain()
        busy = [s.name for s in (*self._subs.values(), *self._retiring) if s.busy]
        self._close_all()
        if scope.cancelled_caught and self._tg is not None:
            _log.warning("bus_close_timeout", timeout=timeout, busy=busy)
            self._tg.cancel_scope.cancel()

    def _close_all(self) -> None:
        self._closed = True
        for sub in list(self._subs.values()):
            self._detach(sub)
        if self._journal is not None:
            self._writes.wake()  # the writer ends once its queue is empty

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def journal(self) -> Journal | None:
        """The journal events are written to, or None for an in-memory bus."""
        return self._journal

    # --- subscribing ----------------------------------------------------------

    def _add(
        self,
        name: str,
        kind: str,
        buffer: int,
        overflow: Overflow | str,
        types: Types | None,
        providers: Iterable[str] | None,
        jobs: Iterable[str] | None,
        where: Callable[[ev.Event], bool] | None,
        durable: bool = False,
        start: int | None = None,
    ) -> _Subscriber:
        if self._closed:
            raise BusClosed("the bus is closed; it accepts no new subscribers")
        if self._tg is None:
            raise BusClosed("the bus is not running; use 'async with Bus() as bus'")
        if not isinstance(name, str) or not name:
            raise ConfigError("a subscriber needs a non-empty name")
        if name in self._subs:
            raise ConfigError(f"a subscriber named {name!r} already exists; give each subscriber a unique name=")
        if not isinstance(buffer, int) or isinstance(buffer, bool) or buffer < 1:
            raise ConfigError(f"buffer must be a positive integer, not {buffer!r}")
        if where is not None and not callable(where):
            raise ConfigError("where must be a callable taking an event and returning a bool")
        policy = _resolve_overflow(overflow)
        if durable:
            if self._journal is None:
                raise ConfigError(
                    f"subscriber {name!r}: durable=True needs a bus with a journal, e.g. Bus(journal='events.db')"
                )
            if policy is not Overflow.BLOCK:
                raise ConfigError(
                    f"subscriber {name!r}: a durable subscriber loses nothing, "
                    f"so its overflow is 'block', not {policy.value!r}"
                )
            if start is not None and (isinstance(start, bool) or not isinstance(start, int) or start < 0):
                raise ConfigError(f"subscriber {name!r}: start must be a journal position (0 or more), not {start!r}")
        elif start is not None:
            raise ConfigError(f"subscriber {name!r}: start= is for durable subscribers (durable=True)")
        elif policy is Overflow.ERROR and self._journal is not None:
            raise ConfigError(
                f"subscriber {name!r}: overflow='error' cannot be told to the publisher on a bus with a journal "
                "(publish returns once the event is journaled); choose 'block', 'drop_oldest' or 'drop_newest'"
            )
        sub = _Subscriber(
            name,
            kind,
            buffer,
            policy,
            _resolve_types(types),
            None if providers is None else frozenset([providers] if isinstance(providers, str) else providers),
            None if jobs is None else frozenset([jobs] if isinstance(jobs, str) else jobs),
            where,
        )
        if durable:
            assert self._journal is not None
            sub.feed = _Feed(self._journal, start)
            self._journal._starting.add(sub.feed)  # no retention until its cursor is saved (in _feed)
            assert self._tg is not None
            self._tg.start_soon(self._feed, sub, name=f"eventbus journal feed {name}")
        self._subs[name] = sub
        self._routes.clear()
        return sub

    def _detach(self, sub: _Subscriber) -> None:
        if self._subs.get(sub.name) is sub:
            del self._subs[sub.name]
            self._routes.clear()
            if sub.kind == "handler" and not (sub.done is not None and sub.done.is_set()):
                self._retiring.add(sub)
        sub.closed = True
        if sub.feed is not None:
            sub.feed.journal._starting.discard(sub.feed)
        for waiter in (sub.wakeup, sub.space):
            if waiter is not None:
                waiter.set()
        sub.wakeup = sub.space = None
        if not sub.busy:
            sub.went_idle()

    def on(
        self,
        handler: Handler,
        *,
        name: str | None = None,
        types: Types | None = None,
        providers: Iterable[str] | str | None = None,
        jobs: Iterable[str] | str | None = None,
        where: Callable[[ev.Event], bool] | None = None,
        buffer: int = 1024,
        overflow: Overflow | str = Overflow.BLOCK,
        durable: bool = False,
        start: int | None = None,
    ) -> HandlerHandle:
        """Run ``handler(event)`` (sync or async) in the bus for every admitted event.

        ``name`` (unique on the bus; defaults to the handler's qualified name)
        keys :meth:`stats`. Filters combine with AND: ``types`` (classes or
        tags), ``providers``, ``jobs`` and ``where`` (a predicate). ``buffer``
        and ``overflow`` set the subscriber's bounded buffer and what happens
        when it is full. The handler runs in its own task: events one at a
        time, in order, an async handler awaited before the next event.
        Returns a :class:`HandlerHandle` to read its stats or remove it.

        ``durable=True`` (a bus with a journal; ``name`` required) feeds the
        handler from the journal, after the cursor saved under ``name``
        (``start`` overrides it: 0 replays everything), and saves the cursor
        as events are handled (when its buffer runs empty, and every 1,000
        events): after a crash or a restart it gets again at most what it had
        not yet saved. Its filters apply to what it reads.

        A handler must not wait for the bus itself (``await bus.drain()``,
        or ``await bus.publish()`` reaching its own full ``block`` buffer):
        it would wait for itself. Use ``publish_nowait`` from handlers.
        """
        if not callable(handler):
            raise ConfigError(f"handler must be callable, not {handler!r}")
        if durable and not name:
            raise ConfigError("a durable handler needs name=: its cursor is saved under that name")
        label = name or getattr(handler, "__qualname__", None) or type(handler).__qualname__
        sub = self._add(label, "handler", buffer, overflow, types, providers, jobs, where, durable, start)
        sub.scope = anyio.CancelScope()
        sub.done = anyio.Event()
        assert self._tg is not None
        self._tg.start_soon(self._run_handler, sub, handler, name=f"eventbus handler {label}")
        return HandlerHandle(sub, self)

    async def _run_handler(self, sub: _Subscriber, handler: Handler) -> None:
        assert sub.scope is not None and sub.done is not None
        try:
            with sub.scope:
                await self._handle(sub, handler)
        finally:
            # Finished, cancelled (close timeout) or killed by a BaseException: either
            # way it takes nothing more, and whatever is left will never be handled.
            sub.done.set()
            self._detach(sub)
            sub.discard()
            sub.went_idle()
            self._retiring.discard(sub)

    async def _handle(self, sub: _Subscriber, handler: Handler) -> None:
        buffer = sub.buffer
        popleft = buffer.popleft
        feed = sub.feed
        while True:
            if buffer:
                sub.active = True
                batch = min(len(buffer), _YIELD_EVERY)
                # A bounded batch without awaiting per event, then a checkpoint:
                # cheap per event, and a deep buffer cannot starve the loop.
                try:
                    for _ in range(batch):
                        event = popleft()  # IndexError: drop_oldest evicted during an await below
                        try:
                            result = handler(event)
                            if result is not None and isawaitable(result):
                                sub.took()  # room was made: let a blocked publisher go while we wait
                                await result
                        except Exception:
                            sub.failed += 1
                            _log.exception(
                                "subscriber_failed",
                                subscriber=sub.name,
                                event_type=ev.tag_of(type(event)),
                                event_id=event.id,
                            )
                except IndexError:
                    pass
                sub.took()
                if feed is not None:
                    await self._handled(sub, feed, batch)
                if buffer:
                    await anyio.lowlevel.checkpoint()
                    continue
            sub.went_idle()
            if sub.closed:
                return
            waiter = sub.wakeup = anyio.Event()
            await waiter.wait()

    @asynccontextmanager
    async def subscribe(
        self,
        name: str,
        *,
        types: Types | None = None,
        providers: Iterable[str] | str | None = None,
        jobs: Iterable[str] | str | None = None,
        where: Callable[[ev.Event], bool] | None = None,
        buffer: int = 1024,
        overflow: Overflow | str = Overflow.BLOCK,
        durable: bool = False,
        start: int | None = None,
    ) -> AsyncIterator[Subscription]:
        """An async-iterator subscription for the duration of the ``async with`` block.

        Same filters and buffer settings as :meth:`on`. Leaving the block
        unsubscribes; events still buffered then are discarded (and counted
        as dropped). The subscription cannot be used after the block.

        ``durable=True`` (a bus with a journal) yields a
        :class:`DurableSubscription`: fed from the journal after the cursor
        saved under ``name`` (``start`` overrides it), it saves that cursor
        when told to (``await sub.ack()``); what was not acknowledged comes
        again to the next subscriber of that name.
        """
        sub = self._add(name, "subscription", buffer, overflow, types, providers, jobs, where, durable, start)
        subscription = DurableSubscription(sub, self) if durable else Subscription(sub, self)
        try:
            yield subscription
        finally:
            subscription._exited = True
            sub.discard()
            self._detach(sub)
            sub.went_idle()

    # --- publishing -------------------------------------------------------------

    def _targets(self, cls: type) -> tuple[tuple[_Subscriber, ...], bool]:
        """The subscribers whose type filter admits ``cls`` (strict ones first), and whether any filters more."""
        route = self._routes.get(cls)
        if route is None:
            subs = [s for s in self._subs.values() if s.feed is None and (s.types is None or cls in s.types)]
            subs.sort(key=lambda s: not s.strict)  # stable: strict subscribers first, see publish_nowait
            route = self._routes[cls] = (tuple(subs), any(s.filtered for s in subs))
        return route

    def publish_nowait(self, event: ev.Event) -> None:
        """Deliver ``event`` to every admitting subscriber's buffer, without waiting.

        Raises ``anyio.WouldBlock`` when a ``block`` subscriber's buffer is
        full and :class:`BufferOverflow` when an ``error`` one is; in both
        cases no subscriber receives the event.
        """
        if self._closed:
            raise BusClosed("the bus is closed; it accepts no more events")
        subs, filtered = self._routes.get(type(event)) or self._targets(type(event))
        self._deliver(event, self._admitting(event, subs) if filtered else subs)

    @staticmethod
    def _admitting(event: ev.Event, route: tuple[_Subscriber, ...]) -> tuple[_Subscriber, ...]:
        """The subscribers of ``route`` that take ``event``, in route order; each ``where=`` is asked once here."""
        return tuple(s for s in route if not s.filtered or s.admits(event))

    def _deliver(self, event: ev.Event, subs: tuple[_Subscriber, ...]) -> None:
        """Append ``event`` to the buffers of ``subs`` (strict ones first), all or none when a strict one is full."""
        # One pass. Strict subscribers (block/error) come first in every route, so
        # when one of them is full, everything delivered so far went to strict
        # subscribers by a plain append, which _refuse undoes exactly.
        for s in subs:
            buffer = s.buffer
            if len(buffer) >= s.size:
                if s.strict:
                    self._refuse(subs, s)
                s.dropped += 1
                if s.overflow is Overflow.DROP_NEWEST:
                    continue
                buffer.popleft()
                s.evicted += 1
            buffer.append(event)
            s.received += 1
            if s.wakeup is not None:
                s.wakeup.set()
                s.wakeup = None
        self._published += 1

    @staticmethod
    def _refuse(subs: tuple[_Subscriber, ...], full: _Subscriber) -> NoReturn:
        """Undo the appends made before ``full`` was found full, then raise."""
        for s in subs:
            if s is full:
                break
            s.buffer.pop()
            s.received -= 1
        if full.overflow is Overflow.BLOCK:
            raise anyio.WouldBlock
        raise BufferOverflow(full.name, full.size)

    async def publish(self, event: ev.Event) -> None:
        """Deliver ``event``, waiting while a ``block`` subscriber's buffer is full.

        Does not yield to the event loop when every buffer has room (the fast
        path, as cheap as :meth:`publish_nowait`); waiting for room is a
        cancellation point, and cancellation there means the event was not
        published. A loop that only publishes, to subscribers that never
        push back (``drop_*`` policies), should yield now and then itself
        (``await anyio.lowlevel.checkpoint()``) so that they get to run.
        """
        # publish_nowait's lines, not a call to it: the admitted subscribers are kept for a retry,
        # and the fast path stays one call deep (an extra call costs ~5% of the bus's throughput).
        if self._closed:
            raise BusClosed("the bus is closed; it accepts no more events")
        subs, filtered = self._routes.get(type(event)) or self._targets(type(event))
        if filtered:
            subs = self._admitting(event, subs)
        if len(subs) == 1:  # one taker with room, the most common case: _deliver's lines without its call
            s = subs[0]
            buffer = s.buffer
            if len(buffer) < s.size:
                buffer.append(event)
                s.received += 1
                if s.wakeup is not None:
                    s.wakeup.set()
                    s.wakeup = None
                self._published += 1
                return
        try:
            self._deliver(event, subs)
        except anyio.WouldBlock:
            await self._publish_when_room(event, subs)

    async def _publish_when_room(
        self, event: ev.Event, admitted: tuple[_Subscriber, ...], *, journaled: bool = False
    ) -> None:
        """Wait for room in the full ``block`` subscriber, then deliver; again while another one is full.

        The subscribers' verdicts on ``event`` stay those of the first attempt
        (a ``where=`` predicate is not asked twice, so one that raises counts
        one failure); a subscriber that joined meanwhile is asked on the retry,
        one that left is skipped.
        """
        judged = set(self._targets(type(event))[0])
        taking = set(admitted)
        while True:
            await self._wait_for_room(admitted)
            if self._closed and not journaled:  # a journaled event is delivered even while the bus closes
                raise BusClosed("the bus is closed; it accepts no more events")
            route, _ = self._targets(type(event))
            for s in route:
                if s not in judged:
                    judged.add(s)
                    if not s.filtered or s.admits(event):
                        taking.add(s)
            admitted = tuple(s for s in route if s in taking)  # route order: strict subscribers first
            try:
                self._deliver(event, admitted)
                return
            except anyio.WouldBlock:
                continue

    @staticmethod
    async def _wait_for_room(admitted: tuple[_Subscriber, ...]) -> None:
        for s in admitted:
            if s.overflow is Overflow.BLOCK and len(s.buffer) >= s.size and not s.closed:
                waiter = s.space
                if waiter is None:
                    waiter = s.space = anyio.Event()
                await waiter.wait()
                return
        await anyio.lowlevel.checkpoint()

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every subscriber has handled every event published so far.

        For a subscription "handled" means the iterator asked for the next
        event. Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        with anyio.fail_after(math.inf if timeout is None else timeout):
            while True:
                queue = self._writes if self._journal is not None else None
                if queue is not None and (queue.pending or self._writing) and not queue.gone:
                    await queue.wait_progress()
                    continue
                # Open subscribers, and removed handlers still working through their buffer.
                candidates = [*self._subs.values(), *self._retiring]
                busy = next((s for s in candidates if s.busy and (not s.closed or s.kind == "handler")), None)
                if busy is None:
                    return
                waiter = busy.idle
                if waiter is None:
                    waiter = busy.idle = anyio.Event()
                await waiter.wait()

    # --- the journal ------------------------------------------------------------

    def _publish_nowait_journaled(self, event: ev.Event) -> None:
        """publish_nowait of a bus with a journal: queue ``event`` for the writer; ``anyio.WouldBlock`` when full."""
        if self._closed:
            raise BusClosed("the bus is closed; it accepts no more events")
        if self._writes.full():
            raise anyio.WouldBlock
        self._writes.put(event)

    async def _publish_journaled(self, event: ev.Event) -> None:
        """publish of a bus with a journal: return once ``event`` is in the journal.

        Waiting for room in the writer's queue is a cancellation point
        (cancelled there, nothing is published); once queued, the event is
        journaled and delivered whatever happens to the caller, which waits
        for the write unless the bus is torn down. Raises :class:`JournalError`
        if the write failed: then no subscriber sees the event.
        """
        queue = self._writes
        while True:
            if self._closed or queue.gone:
                raise BusClosed("the bus is closed; it accepts no more events")
            if not queue.full():
                break
            await queue.wait_room()
        ticket = queue.put(event)
        with anyio.CancelScope(shield=True):
            await queue.wait_written(ticket)
        self._check_written(ticket)

    def _check_written(self, ticket: int, after: int | None = None) -> None:
        if self._writes.written < ticket:
            raise BusClosed("the bus was torn down before the event was written to its journal")
        failed = self._writes.unwritten(ticket, after)
        if failed is None:
            return
        count, why = failed
        if after is None:
            raise JournalError(why)
        raise JournalError(f"{count} of the {ticket - after} events published since were not written: {why}")

    async def flush(self, after: int | None = None) -> None:
        """Wait until every event published so far is in the journal (at once without a journal).

        For whoever must not acknowledge something before it is durable, such
        as a webhook receiver before its 2xx, after ``publish_nowait``. Raises
        :class:`JournalError` if any event published after the ``after``-th
        could not be written: read ``n = bus.published`` before publishing
        yours, then ``await bus.flush(after=n)`` (other tasks' events published
        meanwhile count too: never a false "written"). Without ``after``, only
        the last event published is checked.
        """
        if self._journal is None:
            await anyio.lowlevel.checkpoint()
            return
        ticket = self._writes.queued
        await self._writes.wait_written(ticket)  # cancelled: only the waiting stops; the events are written anyway
        if ticket and (after is None or ticket > after):
            self._check_written(ticket, after)

    @property
    def persistent(self) -> bool:
        """True when a published event is written somewhere that outlives the process (here: a journal)."""
        return self._journal is not None

    async def _write_journal(self) -> None:
        """The writer: journal what was published, in batches, then deliver it to the subscribers in order."""
        journal, queue = self._journal, self._writes
        assert journal is not None
        try:
            while True:
                if not queue.pending:
                    self._writing = False
                    if self._closed:
                        return
                    await queue.wait_work()
                    continue
                self._writing = True
                # Taken off the queue only once written: torn down meanwhile, __aexit__ still finds them.
                batch = queue.batch(_JOURNAL_BATCH)
                try:
                    await journal.append(batch)
                except JournalError as exc:
                    _log.error("journal_write_failed", events=len(batch), error=str(exc))
                    queue.wrote(len(batch), str(exc))
                    continue
                queue.wrote(len(batch))  # publishers go on; delivery follows, in publish order
                for event in batch:
                    await self._deliver_journaled(event)
                for sub in self._subs.values():
                    if sub.feed is not None:
                        sub.took()  # wakes its feed: there is more to read
        finally:
            self._writing = False  # what is still queued is journaled by __aexit__
            queue.ended()

    async def _deliver_journaled(self, event: ev.Event) -> None:
        subs, filtered = self._routes.get(type(event)) or self._targets(type(event))
        if filtered:
            subs = self._admitting(event, subs)
        try:
            self._deliver(event, subs)
        except anyio.WouldBlock:
            await self._publish_when_room(event, subs, journaled=True)

    async def _feed(self, sub: _Subscriber, poll: float = 0.5) -> None:
        """Fill a durable subscriber's buffer from the journal, from its cursor on, as room allows.

        Woken when this bus commits more and when the consumer makes room;
        every ``poll`` seconds it also looks for entries other processes wrote.
        """
        feed = sub.feed
        assert feed is not None
        journal = feed.journal
        tags = None if sub.types is None else type_tags(sub.types)
        try:
            feed.acked = await journal.cursor(sub.name)
            feed.position = feed.acked if feed.start is None else feed.start
            # Saved at once (a new name at 0): from now on the journal's retention keeps what it has not acknowledged.
            await journal.ack(sub.name, feed.acked)
        except JournalError as exc:
            sub.failed += 1
            _log.error("journal_cursor_unreadable", subscriber=sub.name, error=str(exc))
            self._detach(sub)
            return
        finally:
            journal._starting.discard(feed)
        read = True
        while not sub.closed:
            signal = sub.space
            if signal is None:
                signal = sub.space = anyio.Event()
            room = sub.size - len(sub.buffer)
            if room > 0 and (read or feed.behind):
                try:
                    page = await journal.read(
                        feed.position,
                        limit=min(room, _FEED_BATCH),
                        types=tags,
                        providers=sub.providers,
                        jobs=sub.jobs,
                    )
                except JournalError as exc:
                    sub.failed += 1
                    _log.error("journal_read_failed", subscriber=sub.name, error=str(exc))
                    read = False
                    with anyio.move_on_after(poll):
                        await signal.wait()
                    continue
                for seq, why in page.skipped:
                    sub.failed += 1
                    _log.warning("journal_row_skipped", subscriber=sub.name, seq=seq, reason=why)
                added = False
                for entry in page.entries:
                    if sub.where is None or sub.admits(entry.event):
                        sub.buffer.append(entry.event)
                        feed.seqs.append(entry.seq)
                        sub.received += 1
                        added = True
                feed.position = page.upto
                read = page.more
                if added and sub.wakeup is not None:
                    sub.wakeup.set()
                    sub.wakeup = None
                if not sub.busy:
                    sub.went_idle()  # caught up with nothing to hand over: drain() may end
                continue
            with anyio.move_on_after(poll) as waited:
                await signal.wait()
            read = read or waited.cancelled_caught  # other processes' commits are not signalled: look again

    async def _handled(self, sub: _Subscriber, feed: _Feed, count: int) -> None:
        """A durable handler handled ``count`` more events: save its cursor when idle, or every so often."""
        last = feed.acked
        for _ in range(min(count, len(feed.seqs))):
            last = feed.seqs.popleft()
        feed.since_ack += count
        if sub.buffer and feed.since_ack < _ACK_EVERY:
            return
        target = last if sub.buffer else max(last, feed.position)  # empty: skip the rows its filters passed over
        if target > feed.acked:
            try:
                await feed.journal.ack(sub.name, target)
            except JournalError as exc:
                sub.failed += 1
                _log.error("journal_cursor_not_saved", subscriber=sub.name, error=str(exc))
                return
            feed.acked = target
            feed.since_ack = 0

    # --- introspection ------------------------------------------------------------

    def stats(self) -> dict[str, SubscriberStats]:
        """Counters of every current subscriber, by name."""
        return {name: sub.stats() for name, sub in self._subs.items()}

    @property
    def published(self) -> int:
        """How many events were published (accepted by :meth:`publish_nowait` or :meth:`publish`).

        On a journaled bus, counted as they are queued for the journal (the
        count :meth:`flush` takes as ``after``), not again when delivered.
        """
        return self._published if self._journal is None else self._writes.queued

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Bus {state} subscribers={len(self._subs)} published={self.published}>"
