"""The bus across processes and machines, on one Redis stream: :class:`RedisBus`.

::

    async with RedisBus("redis://127.0.0.1:6379/0", stream="eventbus") as bus:
        bus.on(handler, name="store", types={JobCompleted})    # a consumer group named "store"
        async with bus.subscribe("exporter") as sub:
            async for event in sub:
                await export(event)
                await sub.ack()                                 # XACK everything received so far
        await bus.publish(event)                                # returns once Redis has it (XADD)
        bus.publish_nowait(event)                               # queued for the writer (anyio.WouldBlock when full)
        await bus.drain()                                       # every local subscriber's group acked it all
        bus.stats()                                             # per subscriber: delivered, failed, lag, ...
        page = await bus.read(after="0")                        # the stream as a log: no group, nothing acked
        await bus.groups()                                      # each group's last delivered id, pending, lag

Every event is one entry ``{"e": encode(event), "t": type tag}`` of the
stream (``XADD MAXLEN ~ maxlen``). Every subscriber name is a consumer group:
subscribers of different names each get every event (fan-out); subscribers
of the same name in several processes share the entries (competing
consumers), each entry going to one of them. A subscriber reads with
``XREADGROUP``, filters on this side (the ``t`` field spares decoding what its
type filter refuses), hands events over in stream order and ``XACK``\\s an
entry once its handler returned (or raised: logged, counted, not retried), or
when a subscription calls :meth:`RedisSubscription.ack`. Delivery is at least
once: an entry read but never acknowledged (its process died) stays pending,
and after ``claim_idle`` seconds another consumer of the group takes it over
with ``XAUTOCLAIM``; ``event.id`` tells copies apart.

redis-py's asyncio client runs on asyncio only, so a RedisBus does too:
entering one under trio is a :class:`~eventbus.exceptions.ConfigError`.
Guarantees and limits are in ``docs/redis.md``.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from inspect import isawaitable
from typing import Any

import anyio
import anyio.abc
import msgspec
import sniffio

from eventbus import events as ev
from eventbus._checks import COUNT, SECONDS, WHOLE, Rule, check_numbers
from eventbus._logging import get_logger
from eventbus._writes import WriteQueue
from eventbus.backends import REDIS_SCHEMES
from eventbus.bus import (
    Handler,
    HandlerHandle,  # close() and aclose(timeout) are the same on both buses
    SubscriberStats,
    Types,
    _View,  # name, closed and stats(): what both kinds of subscriber show
    filters_admit,
)
from eventbus.exceptions import BusClosed, ConfigError, SubscriptionClosed, TransportError
from eventbus.journal import _names, type_tags  # (_names: the journal's filter checks, with its messages)
from eventbus.subscribers.log import redact, redact_userinfo

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import RedisError, ResponseError
except ImportError as exc:  # pragma: no cover - the "redis" extra is not installed
    raise ImportError("eventbus.backends.redis needs redis-py: pip install 'eventbus[redis]'") from exc

from eventbus.backends._redis_reading import GroupInfo, StreamEntry, StreamPage, StreamReader, entry_key, id_key

__all__ = ["GroupInfo", "RedisBus", "RedisHandlerHandle", "RedisSubscription", "StreamEntry", "StreamPage"]

_log = get_logger("eventbus.redis")

_ENTRY_ID = re.compile(r"^(\$|0|\d+(-\d+)?)$")
_MAXLEN = Rule("a whole number, 1 or more, or None (no trimming)", 1, above=False, whole=True, none=True)

# Entries XACKed per command, and subscription entries received but not acknowledged that a subscriber
# holds at most (reading pauses beyond it: memory here and the pending list in Redis stay bounded).
_ACK_CHUNK = 1000
_MAX_UNACKED = 100_000
# Handlers: events handled in a row before their entries are acknowledged and the loop yields.
_HANDLE_BATCH = 256
# A reader that lost Redis retries after this, doubling up to the cap.
_BACKOFF_MIN, _BACKOFF_MAX = 0.05, 5.0
# XAUTOCLAIM rounds per claim pass (each up to one batch): a huge backlog of dead entries is taken in steps.
_CLAIM_ROUNDS = 10
# drain() looks at the groups again after this when no local acknowledgement woke it (other processes ack too).
_DRAIN_POLL = 0.05


def _no_stream(exc: BaseException) -> bool:
    """An XGROUP refused because the stream does not exist (yet)."""
    return "requires the key to exist" in str(exc)


def _consumer_name() -> str:
    """This bus's consumer name in every group: unique per process (and per bus within it)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _check_start(name: str, start: str | int | None) -> str | None:
    if start is None:
        return None
    if start == 0 and not isinstance(start, bool):
        return "0"
    if isinstance(start, str) and _ENTRY_ID.match(start):
        return start
    raise ConfigError(
        f"subscriber {name!r}: start must be '$' (new events only), '0' (the whole stream) "
        f"or an entry id such as '1700000000000-0', not {start!r}"
    )


class _Subscriber:
    """One subscriber's group, buffer, filters and counters (internal)."""

    __slots__ = (
        "active",
        "buffer",
        "closed",
        "delivered",
        "done",
        "dropped",
        "failed",
        "idle",
        "inflight",
        "jobs",
        "kind",
        "name",
        "providers",
        "ready",
        "received",
        "scope",
        "size",
        "space",
        "start",
        "tags",
        "taken",
        "wakeup",
        "where",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        size: int,
        tags: frozenset[str] | None,
        providers: frozenset[str] | None,
        jobs: frozenset[str] | None,
        where: Callable[[ev.Event], bool] | None,
        start: str | None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.size = size
        self.tags = tags
        self.providers = providers
        self.jobs = jobs
        self.where = where
        self.start = start
        self.buffer: deque[tuple[bytes, ev.Event]] = deque()
        self.inflight: set[bytes] = set()  # entry ids read and not yet acknowledged
        self.taken: list[bytes] = []  # a subscription's entries handed over and not yet acknowledged
        self.received = self.delivered = self.dropped = self.failed = 0
        self.closed = False
        self.active = False  # a handler is working on a batch
        self.ready = anyio.Event()  # the consumer group exists
        self.done: anyio.Event | None = None  # a handler's task has ended
        self.scope: anyio.CancelScope | None = None  # a handler's, cancelled by RedisHandlerHandle.aclose
        self.wakeup: anyio.Event | None = None  # set by the reader when the consumer waits for events
        self.space: anyio.Event | None = None  # set by the consumer when the reader waits for room
        self.idle: anyio.Event | None = None  # set on acknowledgements, for drain()

    def admits(self, event: ev.Event) -> bool:
        if self.tags is not None and ev.tag_of(type(event)) not in self.tags:
            return False
        return filters_admit(self, event)

    def room(self) -> int:
        return max(0, min(self.size - len(self.buffer), _MAX_UNACKED - len(self.inflight)))

    def woke(self) -> None:
        if self.wakeup is not None:
            self.wakeup.set()
            self.wakeup = None

    def took(self) -> None:
        if self.space is not None:
            self.space.set()
            self.space = None

    def progressed(self) -> None:
        if self.idle is not None:
            self.idle.set()
            self.idle = None

    @property
    def busy(self) -> bool:
        return bool(self.buffer) or self.active or bool(self.taken)

    def stats(self) -> SubscriberStats:
        return SubscriberStats(
            name=self.name,
            kind=self.kind,
            overflow="block",
            buffer=self.size,
            received=self.received,
            delivered=self.delivered,
            dropped=self.dropped,
            failed=self.failed,
            lag=len(self.buffer),
        )


class RedisSubscription(_View):
    """An async iterator over the events of one consumer group; :meth:`ack` acknowledges what it received.

    Obtained from :meth:`RedisBus.subscribe`, for one consuming task. What
    was received and not acknowledged when the block is left stays pending in
    Redis and comes again (to another consumer of the name, after
    ``claim_idle``): at least once.
    """

    def __init__(self, sub: _Subscriber, bus: RedisBus) -> None:
        super().__init__(sub, bus)
        self._exited = False  # the subscribe() block was left
        self._ended = False  # end of stream was reported once
        self._position: str | None = None

    def __aiter__(self) -> RedisSubscription:
        if self._exited or self._ended:
            raise SubscriptionClosed(f"subscription {self._sub.name!r} is closed; subscribe again")
        return self

    @property
    def position(self) -> str | None:
        """The stream entry id of the last event received (None before the first)."""
        return self._position

    def receive_nowait(self) -> ev.Event:
        """The next buffered event; ``anyio.WouldBlock`` if none, ``anyio.EndOfStream`` once closed and empty."""
        if self._exited:
            raise SubscriptionClosed(f"subscription {self._sub.name!r} is closed; subscribe again")
        sub = self._sub
        if sub.buffer:
            entry_id, event = sub.buffer.popleft()
            sub.taken.append(entry_id)
            sub.delivered += 1
            sub.took()
            self._position = entry_id.decode()
            return event
        if sub.closed:
            self._ended = True
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def receive(self) -> ev.Event:
        """Wait for the next event; ``anyio.EndOfStream`` once closed and empty."""
        while True:
            try:
                return self.receive_nowait()
            except anyio.WouldBlock:
                waiter = self._sub.wakeup
                if waiter is None:
                    waiter = self._sub.wakeup = anyio.Event()
                await waiter.wait()

    async def __anext__(self) -> ev.Event:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def ack(self) -> None:
        """Acknowledge (XACK) every event received so far; :class:`TransportError` if Redis cannot be reached."""
        sub = self._sub
        ids, sub.taken = sub.taken, []
        try:
            await self._bus._ack(sub, ids)
        except BaseException:
            sub.taken[:0] = ids  # not acknowledged: a later ack() tries again
            raise

    def close(self) -> None:
        """Stop reading: ``async for`` ends once the buffer is empty."""
        self._bus._detach(self._sub)

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()


class RedisHandlerHandle(HandlerHandle):
    """What :meth:`RedisBus.on` returns: the handler's stats and a way to remove it.

    ``close()``: the handler reads nothing more and handles (and acknowledges)
    what is buffered. ``aclose(timeout)`` then waits for that, and cancels it
    after ``timeout`` seconds: what was still buffered is counted as dropped,
    and its entries, with the one it was handling, stay pending in Redis and
    come again (claimed by a consumer of the name after ``claim_idle``).
    """


class RedisBus:
    """The bus on a Redis stream, shared by every process that names it; ``async with RedisBus(url) as bus``.

    Asyncio only (redis-py has no trio support). ``url`` is ``redis://``,
    ``rediss://`` (TLS) or ``unix://``; its password never appears in
    messages or logs. ``stream`` is the stream's key, trimmed to about
    ``maxlen`` entries at each XADD (``MAXLEN ~``; None: never trimmed).
    ``timeout`` bounds connecting, each command and how long :meth:`publish`
    waits for Redis. ``claim_idle``: entries pending that long with another
    consumer (it died) are claimed and delivered here. ``block``: how long
    one XREADGROUP waits for entries. ``batch``: entries per XREADGROUP,
    XAUTOCLAIM and XADD pipeline. ``queue``: events :meth:`publish_nowait`
    holds for the writer before ``anyio.WouldBlock``. ``close_timeout``
    bounds closing.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        stream: str = "eventbus",
        maxlen: int | None = 1_000_000,
        timeout: float = 5.0,
        claim_idle: float = 30.0,
        block: float = 1.0,
        batch: int = 500,
        queue: int = 10_000,
        close_timeout: float = 5.0,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(REDIS_SCHEMES):
            shown = redact_userinfo(url) if isinstance(url, str) else url
            raise ConfigError(f"RedisBus needs a redis://, rediss:// or unix:// URL, not {shown!r}")
        if not isinstance(stream, str) or not stream:
            raise ConfigError(f"RedisBus needs a non-empty stream name, not {stream!r}")
        check_numbers(
            "RedisBus",
            maxlen=(maxlen, _MAXLEN),
            timeout=(timeout, SECONDS),
            claim_idle=(claim_idle, SECONDS),
            block=(block, SECONDS),
            batch=(batch, COUNT),
            queue=(queue, COUNT),
            close_timeout=(close_timeout, SECONDS),
        )
        self.url = redact_userinfo(url)  # what messages and logs show
        self._url = url
        self.stream = stream
        self.maxlen = maxlen
        self.timeout = timeout
        self.claim_idle = claim_idle
        self.block = block
        self.batch = batch
        self.queue = queue
        self.close_timeout = close_timeout
        self.consumer = _consumer_name()
        self._client: aioredis.Redis | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._subs: dict[str, _Subscriber] = {}
        self._retiring: set[_Subscriber] = set()  # handlers removed while still handling their buffer
        self._groups: set[str] = set()  # every group this bus has read from, for the consumer's clean-up
        self._writes = WriteQueue(queue)  # what publishers hand the writer
        self._last_id: bytes | None = None  # the last entry this bus XADDed
        self._entered = self._closed = False

    # --- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> RedisBus:
        if self._entered:
            raise BusClosed("a RedisBus can be entered only once; create a new RedisBus")
        self._entered = True
        backend = sniffio.current_async_library()
        if backend != "asyncio":
            raise ConfigError(
                f"RedisBus runs on asyncio only: redis-py's asyncio client has no {backend} support; "
                "run it with anyio.run(main, backend='asyncio') or asyncio.run(main())"
            )
        try:
            client = aioredis.Redis.from_url(
                self._url,
                socket_timeout=self.timeout + self.block,  # a blocking XREADGROUP waits up to `block` for an answer
                socket_connect_timeout=self.timeout,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),  # once: a connection the server dropped
                decode_responses=False,
            )
        except ValueError as exc:
            raise ConfigError(f"RedisBus: bad URL {self.url!r}: {redact(str(exc))}") from None
        try:
            with anyio.fail_after(self.timeout):
                await client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            await client.aclose()
            raise TransportError(
                f"cannot reach Redis at {self.url}: {redact(str(exc)) or type(exc).__name__}; "
                "is redis-server running there and the URL right?"
            ) from None
        self._client = client
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._write, name="eventbus redis writer")
        return self

    async def __aexit__(self, *exc_info: object) -> bool | None:
        assert self._tg is not None and self._client is not None
        try:
            if exc_info[0] is None:
                await self._shutdown(self.close_timeout)
            else:
                self._close_all()
            self._tg.cancel_scope.cancel()
        finally:
            try:
                result = await self._tg.__aexit__(*exc_info)  # type: ignore[arg-type]
            finally:
                with anyio.CancelScope(shield=True):
                    await self._forget_consumer()
                    await self._client.aclose()
        if self._writes.pending:
            _log.warning("redis_events_not_written", events=len(self._writes.pending), url=self.url, reason="closed")
        return result

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop accepting events, write what is queued, let local subscribers catch up for ``timeout`` seconds."""
        await self._shutdown(self.close_timeout if timeout is None else timeout)

    async def _shutdown(self, timeout: float) -> None:
        self._closed = True
        self._writes.wake()
        with anyio.move_on_after(timeout):
            await self._writes.wait_written(self._writes.queued)
            await self._settle(local=True)
            self._close_all()
            for sub in list(self._retiring):
                if sub.done is not None:
                    await sub.done.wait()
        self._close_all()

    def _close_all(self) -> None:
        self._closed = True
        for sub in list(self._subs.values()):
            self._detach(sub)
        self._writes.wake()

    async def _forget_consumer(self) -> None:
        """Delete this bus's consumer from the groups it read, where it holds nothing pending (else it must stay)."""
        client = self._client
        assert client is not None
        with anyio.move_on_after(self.timeout):
            for group in self._groups:
                try:
                    if not await client.xpending_range(self.stream, group, "-", "+", 1, consumername=self.consumer):
                        await client.xgroup_delconsumer(self.stream, group, self.consumer)
                except (RedisError, OSError):
                    continue  # Redis is gone (or the group is): the consumer stays, harmless

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def published(self) -> int:
        """How many events were published (accepted by :meth:`publish_nowait` or :meth:`publish`)."""
        return self._writes.queued

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RedisBus {state} {self.url} stream={self.stream!r} subscribers={len(self._subs)}>"

    # --- publishing -----------------------------------------------------------------

    def publish_nowait(self, event: ev.Event) -> None:
        """Queue ``event`` for the writer, which XADDs in pipelined batches; ``anyio.WouldBlock`` when full."""
        if self._closed:
            raise BusClosed("the bus is closed; it accepts no more events")
        if self._tg is None:
            raise BusClosed("the bus is not running; use 'async with RedisBus(url) as bus'")
        if self._writes.full():
            raise anyio.WouldBlock
        self._writes.put(event)

    async def publish(self, event: ev.Event) -> None:
        """Publish ``event`` and return once Redis has it (XADD).

        Raises :class:`TransportError` when Redis did not confirm it within
        ``timeout`` seconds (it is then not written, or written late: at most
        once more than you were told), :class:`BusClosed` on a closed bus.
        """
        queue = self._writes
        with anyio.move_on_after(self.timeout) as waited:
            while True:
                if self._closed or queue.gone or self._tg is None:
                    raise BusClosed("the bus is closed; it accepts no more events")
                if not queue.full():
                    break
                await queue.wait_room()
            ticket = queue.put(event)
            await queue.wait_written(ticket)
        if waited.cancelled_caught:
            raise TransportError(
                f"Redis at {self.url} did not confirm the event within {self.timeout} s; "
                "it may still be written if the connection comes back"
            )
        self._check_written(ticket)

    async def flush(self, after: int | None = None) -> None:
        """Wait until every event published so far was sent to Redis.

        Raises :class:`TransportError` if any event published after the
        ``after``-th was not written (``n = bus.published`` before publishing
        yours, then ``await bus.flush(after=n)``); without ``after``, if the
        last one was not.
        """
        ticket = self._writes.queued
        await self._writes.wait_written(ticket)
        if ticket and (after is None or ticket > after):
            self._check_written(ticket, after)

    @property
    def persistent(self) -> bool:
        """True: a published event is in Redis once written (a webhook receiver answers 2xx only then)."""
        return True

    def _check_written(self, ticket: int, after: int | None = None) -> None:
        if self._writes.written < ticket:
            raise BusClosed("the bus was closed before the event was written to Redis")
        failed = self._writes.unwritten(ticket, after)
        if failed is None:
            return
        count, why = failed
        if after is None:
            raise TransportError(f"the event was not written to Redis at {self.url}: {why}")
        raise TransportError(
            f"{count} of the {ticket - after} events published since were not written to Redis at {self.url}: {why}"
        )

    async def _write(self) -> None:
        """The writer: XADD what was published, in pipelined batches, in publish order."""
        queue, client = self._writes, self._client
        assert client is not None
        tags: dict[type, bytes] = {}
        try:
            while True:
                if not queue.pending:
                    if self._closed:
                        return
                    await queue.wait_work()
                    continue
                # A subscriber added with on() must have its group before what follows is written (start "$").
                for sub in list(self._subs.values()):
                    if not sub.ready.is_set():
                        with anyio.move_on_after(self.timeout):
                            await sub.ready.wait()
                batch = queue.batch(self.batch)
                try:
                    with anyio.fail_after(self.timeout):
                        async with client.pipeline(transaction=False) as pipe:
                            for event in batch:
                                tag = tags.get(type(event))
                                if tag is None:
                                    tag = tags[type(event)] = ev.tag_of(type(event)).encode()
                                pipe.xadd(self.stream, {"e": ev.encode(event), "t": tag}, maxlen=self.maxlen)
                            ids = await pipe.execute()
                except (RedisError, OSError, TimeoutError) as exc:
                    why = redact(str(exc)) or type(exc).__name__
                    _log.error("redis_write_failed", events=len(batch), url=self.url, error=why)
                    queue.wrote(len(batch), why)
                else:
                    self._last_id = ids[-1]
                    queue.wrote(len(batch))
        finally:
            queue.ended()

    # --- subscribing ----------------------------------------------------------------

    def _add(
        self,
        name: str,
        kind: str,
        buffer: int,
        overflow: str,
        types: Types | None,
        providers: Iterable[str] | str | None,
        jobs: Iterable[str] | str | None,
        where: Callable[[ev.Event], bool] | None,
        durable: bool,
        start: str | int | None,
    ) -> _Subscriber:
        if self._closed:
            raise BusClosed("the bus is closed; it accepts no new subscribers")
        if self._tg is None:
            raise BusClosed("the bus is not running; use 'async with RedisBus(url) as bus'")
        if not isinstance(name, str) or not name:
            raise ConfigError("a subscriber needs a non-empty name: it names its consumer group")
        if name in self._subs:
            raise ConfigError(f"a subscriber named {name!r} already exists on this bus; give each a unique name=")
        if not isinstance(buffer, int) or isinstance(buffer, bool) or buffer < 1:
            raise ConfigError(f"buffer must be a positive integer, not {buffer!r}")
        if where is not None and not callable(where):
            raise ConfigError("where must be a callable taking an event and returning a bool")
        if overflow != "block":
            raise ConfigError(
                f"subscriber {name!r}: a RedisBus subscriber reads from the stream only as fast as it handles, "
                f"so nothing is dropped: its overflow is 'block', not {overflow!r}"
            )
        if durable is not True:
            raise ConfigError(f"subscriber {name!r}: every RedisBus subscriber is a durable consumer group")
        sub = _Subscriber(
            name,
            kind,
            buffer,
            type_tags(types),
            None if providers is None else frozenset([providers] if isinstance(providers, str) else providers),
            None if jobs is None else frozenset([jobs] if isinstance(jobs, str) else jobs),
            where,
            _check_start(name, start),
        )
        self._subs[name] = sub
        self._groups.add(name)
        self._tg.start_soon(self._read, sub, name=f"eventbus redis reader {name}")
        return sub

    def _detach(self, sub: _Subscriber) -> None:
        if self._subs.get(sub.name) is sub:
            del self._subs[sub.name]
            if sub.kind == "handler" and sub.done is not None and not sub.done.is_set():
                self._retiring.add(sub)
        sub.closed = True
        sub.woke()
        sub.took()
        sub.progressed()

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
        overflow: str = "block",
        durable: bool = True,
        start: str | int | None = None,
    ) -> RedisHandlerHandle:
        """Run ``handler(event)`` (sync or async) for every admitted event of the consumer group ``name``.

        ``name`` defaults to the handler's qualified name: give one that
        stays the same across runs and processes. Filters as on
        :meth:`eventbus.Bus.on`; what they refuse is acknowledged unseen. Each
        entry is acknowledged once the handler returned or raised (a raise is
        logged and counted, not retried). ``start`` applies when the group is
        created: ``"$"`` (the default: events published from now on), ``"0"``
        (everything the stream holds) or an entry id; an existing group
        resumes where it is.
        """
        if not callable(handler):
            raise ConfigError(f"handler must be callable, not {handler!r}")
        label = name or getattr(handler, "__qualname__", None) or type(handler).__qualname__
        sub = self._add(label, "handler", buffer, overflow, types, providers, jobs, where, durable, start)
        sub.scope = anyio.CancelScope()
        sub.done = anyio.Event()
        assert self._tg is not None
        self._tg.start_soon(self._run_handler, sub, handler, name=f"eventbus redis handler {label}")
        return RedisHandlerHandle(sub, self)

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
        overflow: str = "block",
        durable: bool = True,
        start: str | int | None = None,
    ) -> AsyncIterator[RedisSubscription]:
        """An async iterator over the consumer group ``name`` for the ``async with`` block.

        Entered once the group exists (:class:`TransportError` if Redis cannot
        be reached within ``timeout``). ``await sub.ack()`` acknowledges what
        was received; the rest comes again (at least once). Filters and
        ``start`` as in :meth:`on`.
        """
        sub = self._add(name, "subscription", buffer, overflow, types, providers, jobs, where, durable, start)
        subscription = RedisSubscription(sub, self)
        try:
            with anyio.move_on_after(self.timeout):
                await sub.ready.wait()
            if not sub.ready.is_set():
                raise TransportError(f"could not create the consumer group {name!r} at {self.url} in {self.timeout} s")
            yield subscription
        finally:
            subscription._exited = True
            sub.dropped += len(sub.buffer)  # still pending in Redis: they come again
            sub.buffer.clear()
            self._detach(sub)

    async def _run_handler(self, sub: _Subscriber, handler: Handler) -> None:
        assert sub.done is not None and sub.scope is not None
        try:
            with sub.scope:
                await self._handle(sub, handler)
        finally:
            sub.done.set()
            sub.dropped += len(sub.buffer)
            sub.buffer.clear()
            sub.active = False
            self._detach(sub)
            self._retiring.discard(sub)

    async def _handle(self, sub: _Subscriber, handler: Handler) -> None:
        buffer = sub.buffer
        while True:
            if buffer:
                sub.active = True
                ids = []
                for _ in range(min(len(buffer), _HANDLE_BATCH)):
                    if not buffer:
                        break
                    entry_id, event = buffer.popleft()
                    ids.append(entry_id)
                    sub.delivered += 1
                    try:
                        result = handler(event)
                        if result is not None and isawaitable(result):
                            sub.took()
                            await result
                    except Exception:
                        sub.failed += 1
                        _log.exception(
                            "subscriber_failed",
                            subscriber=sub.name,
                            event_type=ev.tag_of(type(event)),
                            event_id=event.id,
                        )
                sub.took()
                try:
                    await self._ack(sub, ids)
                except TransportError as exc:
                    _log.warning("redis_ack_failed", subscriber=sub.name, entries=len(ids), error=str(exc))
                sub.active = False
                sub.progressed()
                continue
            if sub.closed:
                return
            waiter = sub.wakeup = anyio.Event()
            await waiter.wait()

    async def _ack(self, sub: _Subscriber, ids: list[bytes]) -> None:
        """XACK ``ids`` in the group ``sub.name``; TransportError if Redis cannot be reached (they stay pending)."""
        client = self._client
        assert client is not None
        try:
            for start in range(0, len(ids), _ACK_CHUNK):
                chunk = ids[start : start + _ACK_CHUNK]
                with anyio.fail_after(self.timeout):
                    await client.xack(self.stream, sub.name, *chunk)
                sub.inflight.difference_update(chunk)
        except (RedisError, OSError, TimeoutError) as exc:
            raise TransportError(
                f"could not acknowledge {len(ids)} entries at {self.url}: {redact(str(exc)) or type(exc).__name__}; "
                "they stay pending and come again"
            ) from None
        finally:
            sub.progressed()

    # --- reading ----------------------------------------------------------------------

    async def _create_group(self, sub: _Subscriber, start: str) -> None:
        assert self._client is not None
        try:
            await self._client.xgroup_create(self.stream, sub.name, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, sub: _Subscriber) -> None:
        """Fill ``sub``'s buffer from its group: claim what dead consumers left, then XREADGROUP, as room allows."""
        client = self._client
        assert client is not None
        claim_every = self.claim_idle / 2
        poll = min(self.block, claim_every)
        next_claim = 0.0  # at once: entries a dead consumer left come first
        backoff = _BACKOFF_MIN
        start = sub.start or "$"
        while not sub.closed:
            try:
                if not sub.ready.is_set():
                    await self._create_group(sub, start)
                    sub.ready.set()
                room = sub.room()
                if room == 0:
                    waiter = sub.space = anyio.Event()
                    with anyio.move_on_after(poll):
                        await waiter.wait()
                    continue
                if anyio.current_time() >= next_claim:
                    await self._claim(sub, room)
                    next_claim = anyio.current_time() + claim_every
                    continue
                reply = await client.xreadgroup(
                    sub.name, self.consumer, {self.stream: ">"}, count=min(room, self.batch), block=int(poll * 1000)
                )
                backoff = _BACKOFF_MIN
                for _key, entries in reply or ():
                    await self._take(sub, entries)
            except ResponseError as exc:
                if str(exc).startswith("NOGROUP"):
                    # The stream or the group vanished (a server restarted without persistence, a DEL):
                    # made again from the start of what the stream holds now, so nothing written since is missed.
                    _log.warning("redis_group_recreated", subscriber=sub.name, stream=self.stream, url=self.url)
                    sub.ready = anyio.Event() if sub.ready.is_set() else sub.ready
                    start = "0"
                    continue
                backoff = await self._lost(sub, exc, backoff)
            except (RedisError, OSError, TimeoutError) as exc:
                backoff = await self._lost(sub, exc, backoff)

    async def _lost(self, sub: _Subscriber, exc: BaseException, backoff: float) -> float:
        _log.warning(
            "redis_read_failed",
            subscriber=sub.name,
            url=self.url,
            error=redact(str(exc)) or type(exc).__name__,
            retry_in=round(backoff, 3),
        )
        waiter = sub.space = anyio.Event()  # closing the subscriber ends the wait
        with anyio.move_on_after(backoff):
            await waiter.wait()
        return min(backoff * 2, _BACKOFF_MAX)

    async def _claim(self, sub: _Subscriber, room: int) -> None:
        """XAUTOCLAIM entries pending longer than ``claim_idle`` (their consumer died) and take them."""
        client = self._client
        assert client is not None
        cursor: bytes | str = "0-0"
        claimed = 0
        for _ in range(_CLAIM_ROUNDS):
            reply = await client.xautoclaim(
                self.stream,
                sub.name,
                self.consumer,
                min_idle_time=int(self.claim_idle * 1000),
                start_id=cursor,
                count=min(room, self.batch),
            )
            cursor, entries = reply[0], reply[1]
            # Our own entries still buffered come back too (their idle time is reset: a heartbeat); skipped.
            fresh = [(i, f) for i, f in entries if i not in sub.inflight]
            claimed += len(fresh)
            room -= await self._take(sub, fresh)
            if cursor in (b"0-0", "0-0") or room <= 0:
                break
        if claimed:
            _log.info("redis_entries_claimed", subscriber=sub.name, entries=claimed, consumer=self.consumer)

    async def _take(self, sub: _Subscriber, entries: list[tuple[bytes, dict[bytes, bytes] | None]]) -> int:
        """Decode and filter entries into ``sub``'s buffer; acknowledge at once what it refuses or cannot decode."""
        refused: list[bytes] = []
        added = 0
        tags = sub.tags
        for entry_id, fields in entries:
            if sub.closed:
                break  # left pending: claimed by the next consumer of the name
            tag = fields.get(b"t") if fields else None
            if tags is not None and tag is not None and tag.decode(errors="replace") not in tags:
                refused.append(entry_id)
                continue
            data = fields.get(b"e") if fields else None
            try:
                if data is None:
                    raise msgspec.DecodeError("no 'e' field")
                event = ev.decode(data)
            except msgspec.MsgspecError as exc:
                sub.failed += 1
                _log.warning(
                    "redis_entry_skipped",
                    subscriber=sub.name,
                    stream=self.stream,
                    entry_id=entry_id.decode(),
                    reason=str(exc),
                    excerpt=ev.excerpt(data or b""),
                )
                refused.append(entry_id)
                continue
            if not sub.admits(event):
                refused.append(entry_id)
                continue
            sub.buffer.append((entry_id, event))
            sub.inflight.add(entry_id)
            sub.received += 1
            added += 1
        if added:
            sub.woke()
        if refused:
            sub.inflight.update(refused)
            try:
                await self._ack(sub, refused)
            except TransportError as exc:
                _log.warning("redis_ack_failed", subscriber=sub.name, entries=len(refused), error=str(exc))
        return added

    # --- drain and introspection ----------------------------------------------------------

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every local subscriber's group has acknowledged every event this bus published so far.

        "Acknowledged" counts whoever did it: this process, another consumer
        of the same name (competing consumers), or the filters (what they
        refuse is acknowledged unseen). A subscription must :meth:`ack
        <RedisSubscription.ack>`. A handler removed with ``handle.close()``
        counts until it has handled what it had read. Raises ``TimeoutError``
        after ``timeout`` seconds. Events whose write failed are not waited for.
        """
        with anyio.fail_after(math.inf if timeout is None else timeout):
            await self._writes.wait_written(self._writes.queued)
            await self._settle(local=False)

    async def _settle(self, *, local: bool) -> None:
        """Wait until each open subscriber's group read past this bus's last entry and holds none up to it pending.

        Handlers removed with ``handle.close()`` count until they have handled what they had read.

        ``local``: only this bus's own consumer's pending entries count (closing does not wait for other processes).
        """
        client = self._client
        assert client is not None
        while True:
            target = self._last_id
            subs = [s for s in self._subs.values() if not s.closed or s.kind == "handler"]
            if target is None or not (subs or self._retiring):
                return
            # Removed handlers still working through what they had read count too (their group is not looked at).
            waiting = next((s for s in subs if s.busy or not s.ready.is_set()), None) or next(
                (s for s in self._retiring if s.busy), None
            )
            if waiting is None:
                if not subs:
                    return
                try:
                    waiting = await self._unsettled(subs, target, local)
                except (RedisError, OSError) as exc:
                    _log.warning("redis_drain_check_failed", url=self.url, error=redact(str(exc)))
                    waiting = subs[0]
                if waiting is None:
                    return
            waiter = waiting.idle
            if waiter is None:
                waiter = waiting.idle = anyio.Event()
            with anyio.move_on_after(_DRAIN_POLL):
                await waiter.wait()

    async def _unsettled(self, subs: list[_Subscriber], target: bytes, local: bool) -> _Subscriber | None:
        client = self._client
        assert client is not None
        key = id_key(target)
        groups = {
            (g["name"].decode() if isinstance(g["name"], bytes) else g["name"]): g
            for g in await client.xinfo_groups(self.stream)
        }
        for sub in subs:
            group = groups.get(sub.name)
            if group is None or id_key(group["last-delivered-id"]) < key:
                return sub
            consumer = self.consumer if local else None
            if await client.xpending_range(self.stream, sub.name, "-", target, 1, consumername=consumer):
                return sub
        return None

    def stats(self) -> dict[str, SubscriberStats]:
        """Counters of every current subscriber in this process, by name."""
        return {name: sub.stats() for name, sub in self._subs.items()}

    # --- the stream as a log: no group, nothing acknowledged ---------------------------------

    async def read(
        self,
        after: str = "0",
        *,
        limit: int = 1000,
        types: Types | None = None,
        providers: Iterable[str] | str | None = None,
        jobs: Iterable[str] | str | None = None,
    ) -> StreamPage:
        """The entries after entry id ``after`` (``"0"``: from the start), in stream order, matching every filter.

        As :meth:`eventbus.journal.Journal.read` does for a journal, with entry
        ids (``"1700000000000-0"``) for positions: continue with
        ``read(after=page.upto)``. At most ``limit`` entries of the stream are
        read at once, the filters applying after (``page.more``: it stopped
        there). Entries that cannot be decoded are listed in ``page.skipped``
        with their id, never raised. No consumer group is created or moved.
        :class:`TransportError` if Redis cannot be reached.
        """
        check_numbers("RedisBus.read", limit=(limit, COUNT))
        if entry_key(after) is None:
            raise ConfigError(
                f"after must be a stream entry id such as '1700000000000-0' ('0': the start), not {after!r}"
            )
        filters = type_tags(types), _names("providers", providers), _names("jobs", jobs)
        return await self._reader().read(after, limit, *filters)

    async def start_of_last(
        self,
        n: int,
        *,
        types: Types | None = None,
        providers: Iterable[str] | str | None = None,
        jobs: Iterable[str] | str | None = None,
    ) -> str:
        """The entry id to :meth:`read` after for the last ``n`` entries matching the filters (``"0"``: all there are).

        ``n=0`` gives the id of the last entry ever added to the stream: read
        after it for only what is added from now on. Undecodable entries that
        the filters cannot refuse count, as :meth:`read` names them.
        """
        check_numbers("RedisBus.start_of_last", n=(n, WHOLE))
        filters = type_tags(types), _names("providers", providers), _names("jobs", jobs)
        return await self._reader().start_of_last(n, *filters)

    async def groups(self) -> list[GroupInfo]:
        """Every consumer group of the stream (a subscriber name, in any process), by name: ``XINFO GROUPS``."""
        return await self._reader().groups()

    # --- managing subscribers' groups ---------------------------------------------------

    async def reset(self, name: str, to: str | int = "$") -> None:
        """Move subscriber ``name``'s group: it reads next after ``to`` (``XGROUP SETID``).

        ``to``: ``"$"`` (only what is published from now on), ``"0"`` (the
        whole stream again) or an entry id (what follows it; ``read`` and
        ``eventbus tail`` show them). A group that does not exist yet is
        created there, so a subscriber of that name starts from ``to``.
        Entries its consumers hold pending stay pending (claimed as usual).
        Refused while a subscriber of that name runs on this bus: close it
        first (other processes' consumers of the name just read on from the
        new position).
        """
        start = self._group_call_checks(name, "reset", to)
        assert start is not None
        client = self._client
        assert client is not None
        try:
            await self._group_command(name, client.xgroup_setid, self.stream, name, id=start)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc) and not _no_stream(exc):
                raise self._group_error(name, exc) from None
            try:
                await self._group_command(name, client.xgroup_create, self.stream, name, id=start, mkstream=True)
            except ResponseError as exc:
                raise self._group_error(name, exc) from None

    async def forget(self, name: str) -> bool:
        """Delete subscriber ``name``'s group (a subscriber gone for good); True if there was one.

        What its consumers held pending is forgotten with it; a subscriber of
        that name subscribing again starts as a new one (``start``). Refused
        while a subscriber of that name runs on this bus.
        """
        self._group_call_checks(name, "forget", None)
        assert self._client is not None
        try:
            return bool(await self._group_command(name, self._client.xgroup_destroy, self.stream, name))
        except ResponseError as exc:
            if _no_stream(exc):
                return False
            raise self._group_error(name, exc) from None

    def _group_call_checks(self, name: str, what: str, to: str | int | None) -> str | None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{what}: a subscriber's name is a non-empty string, not {name!r}")
        start = None if to is None else _check_start(name, to)
        if self._client is None or self._closed:
            raise BusClosed(f"the bus is {'closed' if self._closed else 'not running'}; {what} inside 'async with'")
        if name in self._subs:
            raise ConfigError(f"subscriber {name!r} is running on this bus; close it before you {what} its group")
        return start

    async def _group_command(self, name: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        """``await call(...)`` within ``timeout``; a ResponseError is raised as it is, the rest as TransportError."""
        try:
            with anyio.fail_after(self.timeout):
                return await call(*args, **kwargs)
        except ResponseError:
            raise
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._group_error(name, exc) from None

    def _group_error(self, name: str, exc: BaseException) -> TransportError:
        why = redact(str(exc)) or type(exc).__name__
        return TransportError(f"could not change the group {name!r} of the stream {self.stream!r} at {self.url}: {why}")

    def _reader(self) -> StreamReader:
        if self._client is None or self._closed:
            state = "closed" if self._closed else "not running"
            raise BusClosed(f"the bus is {state}; read the stream inside 'async with RedisBus(url) as bus'")
        return StreamReader(self._client, self.stream, self.url, self.timeout)
