"""The WebSocket source: frames in, typed events out, with a reconnect policy that cannot hot-loop.

:class:`WebSocketSource` keeps one ``websockets`` client connection open,
hands every text or binary message, as bytes, to the provider's sans-I/O
parser (``parse(frame) -> list[Event]``) and publishes what comes back. Text
frames are not decoded first: the parser validates UTF-8 (msgspec does), so
a text frame that is not UTF-8 is one bad frame, not a dropped connection.
Around that:

* **Reconnect** with capped, jittered exponential backoff
  (:class:`adapters.backoff.Backoff`). The backoff is reset only when a
  connection stayed up for ``healthy_after`` seconds, so a server that accepts
  and closes at once sees the delays grow and costs a bounded number of
  attempts per minute; after ``max_attempts`` failures in a row the source
  publishes ``SourceState(state="gave_up")`` and stops. A TLS certificate
  that fails verification gives up at once: the same certificate would come
  back on every attempt (trust a private CA with ``ssl_context``, or
  ``SSL_CERT_FILE``). So does a handshake answered 401 or 403 (the credential
  was refused), or 404 before any connection succeeded (a wrong URL).
* **Keepalive**: a ping every ``ping_interval``; no pong within
  ``ping_timeout`` closes the connection (then the reconnect policy applies).
* **Frame size limit** ``max_size``: a larger message closes the connection
  with 1009 (the protocol cannot skip a frame it refuses to buffer) and
  publishes an ``InvalidSignal``; the source reconnects.
* **Bad frames** (the parser raises ``ValueError``, ``LookupError`` or
  ``TypeError``, or ``RecursionError`` for JSON nested too deeply) become
  ``InvalidSignal`` events with a bounded excerpt; the connection stays up.
* ``SourceState`` events: ``connected``, ``disconnected``, ``reconnecting``,
  ``gave_up``, ``stopped``. ``on_reconnect`` (sync or async) runs after every
  successful *re*connection so the provider wiring can recover what was
  missed while disconnected (e.g. trigger a status poll).

**Why no thread, and no ``websockets.asyncio`` connection.** The source
drives ``websockets``' sans-I/O client protocol over an anyio byte stream
(:class:`adapters.wsconn.WsConnection`): it runs natively under asyncio and
trio alike, and one network read hands over every message it completed, so
the per-message cost is the protocol's frame parser, the provider's parser
and the bus (see ``docs/benchmarks.md``). No background thread, no
cross-loop hop per frame.

:class:`Correlator` buffers events that arrive before the caller knows which
job they belong to (Datananas sends progress for a ``uuid`` before the HTTP
response names it) and releases them, rewritten, on :meth:`Correlator.bind`.
"""

from __future__ import annotations

import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from inspect import isawaitable
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import anyio.abc
import msgspec
import websockets.exceptions
import websockets.uri

from adapters.backoff import Backoff, certificate_refusal
from adapters.wsconn import WsConnection, checked_proxy
from eventbus import events as ev
from eventbus._checks import COUNT, NOT_NEGATIVE, SECONDS, SECONDS_OR_NONE, check_numbers
from eventbus._logging import get_logger
from eventbus.exceptions import BusClosed, ConfigError
from eventbus.subscribers.log import redact_userinfo
from eventbus.tracker import Publisher

__all__ = ["Correlator", "FrameParser", "WebSocketSource"]

FrameParser = Callable[[str | bytes], Sequence[ev.Event]]
"""A provider's sans-I/O frame parser (given each message's bytes); raises ``ValueError`` on an unusable frame."""

DEFAULT_MAX_SIZE: Final = 1 << 20
_BAD_INPUT = (ValueError, LookupError, TypeError)
_log = get_logger("adapters.websocket")


def _redact(url: str, token_param: str) -> str:
    """The URL with any credentials in its query or userinfo replaced, for messages."""
    parts = urlsplit(redact_userinfo(url))
    query = urlencode([(k, "***" if k == token_param else v) for k, v in parse_qsl(parts.query, True)], safe="*")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _refused_status(exc: BaseException, *, ever_connected: bool) -> int | None:
    """The status of a handshake answer that retrying cannot change: 401 or 403 (the credential), and 404 (the
    URL) before any connection ever succeeded (later, a 404 may be a server restarting behind its proxy)."""
    if not isinstance(exc, websockets.exceptions.InvalidStatus):
        return None
    status = exc.response.status_code
    return status if status in (401, 403) or (status == 404 and not ever_connected) else None


def _describe_close(exc: websockets.exceptions.ConnectionClosed) -> str:
    if exc.sent is not None and exc.sent.code == 1011 and "ping" in exc.sent.reason:
        return "ping timeout: no pong from the server in time"
    return str(exc)


class WebSocketSource:
    """One provider WebSocket, parsed into events and published, reconnecting within bounds.

    Use as an async context manager (runs in the background until the block
    ends) or ``await source.run()`` (returns after :meth:`stop` or giving up).
    Works under asyncio and trio.
    """

    def __init__(
        self,
        url: str,
        parse: FrameParser,
        bus: Publisher,
        *,
        provider: str,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        token_param: str = "token",
        backoff: Backoff | None = None,
        healthy_after: float = 30.0,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 5.0,
        max_size: int = DEFAULT_MAX_SIZE,
        on_reconnect: Callable[[], Awaitable[object] | object] | None = None,
        correlator: Correlator | None = None,
        ssl_context: ssl.SSLContext | None = None,
        compression: bool = True,
        proxy: str | bool | None = True,
    ) -> None:
        # A ping_interval of 0 or less would ping in a hot loop.
        check_numbers(
            "WebSocketSource",
            healthy_after=(healthy_after, NOT_NEGATIVE),
            open_timeout=(open_timeout, SECONDS),
            close_timeout=(close_timeout, SECONDS),
            max_size=(max_size, COUNT),
            ping_interval=(ping_interval, SECONDS_OR_NONE),
            ping_timeout=(ping_timeout, SECONDS_OR_NONE),
        )
        try:
            websockets.uri.parse_uri(url)
        except websockets.exceptions.InvalidURI as exc:
            raise ConfigError(f"not a WebSocket URL (ws:// or wss://): {_redact(url, token_param)!r}") from exc
        if isinstance(proxy, str) and proxy:
            try:
                checked_proxy(proxy)
            except websockets.exceptions.ProxyError as exc:
                raise ConfigError(str(exc)) from None
        self._url = url
        if token is not None:
            parts = urlsplit(url)
            query = [*parse_qsl(parts.query, True), (token_param, token)]
            self._url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        self._shown_url = _redact(self._url, token_param)
        self._parse = parse
        self._bus = bus
        self.provider = provider
        self._headers = dict(headers or {})
        # A fixed floor (jitter 0.5) keeps attempts per minute bounded even at the cap.
        self.backoff = backoff if backoff is not None else Backoff(base=0.5, cap=30.0, jitter=0.5, max_attempts=20)
        self._healthy_after = healthy_after
        self._connect_options: dict[str, Any] = {
            "open_timeout": open_timeout,
            "close_timeout": close_timeout,
            "max_size": max_size,
            "ssl_context": ssl_context,
            "compression": compression,
            "proxy": proxy,
        }
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._max_size = max_size
        self._close_timeout = close_timeout
        self._on_reconnect = on_reconnect
        self.correlator = correlator
        self._stop: anyio.Event | None = None
        self._stop_requested = False
        self._run_tg: anyio.abc.TaskGroup | None = None
        self._scope: anyio.CancelScope | None = None
        self._ws: WsConnection | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._used = False
        self.state: Literal["idle", "connecting", "connected", "waiting", "gave_up", "stopped"] = "idle"
        self.frames = 0
        self.invalid = 0
        self.connections = 0
        self.last_failure = ""  # why the latest connection ended or could not be made
        self.gave_up_detail = ""  # why the source gave up, once it has (the detail of its gave_up SourceState)
        self._changed: anyio.Event | None = None  # set (and replaced) at each published state change

    # -- lifecycle ---------------------------------------------------------

    @property
    def shown_url(self) -> str:
        """The URL with any token or password in it replaced, for messages."""
        return self._shown_url

    async def __aenter__(self) -> WebSocketSource:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.stop()
        assert self._tg is not None
        return await self._tg.__aexit__(exc_type, exc, tb)

    def stop(self) -> None:
        """Ask the source to close its connection and end ``run`` (idempotent)."""
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        """Connect, read, reconnect until :meth:`stop` or until the backoff gives up."""
        if self._used:
            raise RuntimeError("a WebSocketSource runs once; build a new one")
        self._used = True
        self._stop = anyio.Event()
        if self._stop_requested:
            self._stop.set()
        async with anyio.create_task_group() as tg:
            self._run_tg = tg
            tg.start_soon(self._watch_stop)
            if self.correlator is not None:
                tg.start_soon(self._expire_correlations)
            detail = "stopped by the caller"
            try:
                await self._connect_loop()
            except BusClosed:  # nowhere left to publish: end quietly
                detail = ""
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._close_timeout):
                    if self.state != "gave_up":
                        self.state = "stopped"
                        self._wake()
                        if detail:
                            await self._state("stopped", detail)
                tg.cancel_scope.cancel()

    async def _watch_stop(self) -> None:
        assert self._stop is not None
        await self._stop.wait()
        ws = self._ws
        if ws is not None:  # a clean close handshake, bounded; then cut whatever remains
            await ws.aclose()
        if self._scope is not None:
            self._scope.cancel()

    # -- the connection loop ---------------------------------------------

    async def _connect_loop(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            self.state = "connecting"
            connected_at: float | None = None
            reason = ""
            untrusted: str | None = None
            refused: int | None = None
            with anyio.CancelScope() as self._scope:
                try:
                    ws = await WsConnection.open(self._url, headers=self._headers, **self._connect_options)
                    async with ws:
                        self._ws = ws
                        if self._ping_interval is not None and self._run_tg is not None:
                            self._run_tg.start_soon(ws.keepalive, self._ping_interval, self._ping_timeout)
                        connected_at = anyio.current_time()
                        self.connections += 1
                        self.state = "connected"
                        await self._state("connected", self._shown_url, self.backoff.attempt)
                        if self.connections > 1 and self._on_reconnect is not None and self._run_tg is not None:
                            # In the background: recovering (e.g. a status poll) must not stall the reading.
                            self._run_tg.start_soon(self._call_on_reconnect)
                        reason = await self._read(ws)  # leaving `async with ws` ends its keepalive
                except websockets.exceptions.ConnectionClosed as exc:
                    reason = await self._closed(exc)
                except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                    untrusted = certificate_refusal(exc)
                    refused = _refused_status(exc, ever_connected=self.connections > 0)
                finally:
                    self._ws = None
            if self._stop.is_set():
                return
            if connected_at is not None:
                if anyio.current_time() - connected_at >= self._healthy_after:
                    self.backoff.reset()  # it proved healthy: the next failure starts from the shortest delay
                await self._state("disconnected", reason, self.backoff.attempt)
            self.last_failure = reason or "closed"
            given_up: str | None = None
            if untrusted is not None:  # not retried: the same certificate would come back every time
                given_up = (
                    f"the TLS certificate of {self._shown_url} is not trusted ({untrusted}); behind a proxy or a "
                    "private CA, point SSL_CERT_FILE at its CA bundle (or pass ssl_context=)"
                )
            elif refused is not None:  # not retried: the same answer would come back every time
                why = "no such WebSocket endpoint: check the URL" if refused == 404 else "the credential was refused"
                given_up = f"{self._shown_url} answered the handshake with HTTP {refused}: {why}"
            elif self.backoff.exhausted:
                given_up = f"{self.backoff.attempt} attempts in a row failed; last: {self.last_failure}"
            if given_up is not None:
                self.state, self.gave_up_detail = "gave_up", given_up
                await self._state("gave_up", given_up, self.backoff.attempt)
                return
            delay = self.backoff.next_delay()
            self.state = "waiting"
            await self._state(
                "reconnecting", f"in {delay:.2f}s to {self._shown_url} after: {reason}", self.backoff.attempt
            )
            with anyio.move_on_after(delay):
                await self._stop.wait()

    async def _read(self, ws: WsConnection) -> str:
        parse = self._parse
        bus = self._bus
        publish_nowait = bus.publish_nowait
        correlator = self.correlator
        receive = ws.receive
        # Messages come as bytes, text frames undecoded: the parser (msgspec) validates
        # UTF-8, so a text frame that is not UTF-8 is one InvalidSignal rather than a
        # connection closed with 1007.
        while True:
            try:
                frames = await receive()  # every message one network read completed
            except websockets.exceptions.ConnectionClosedOK as exc:
                return f"closed by the server ({exc})"
            self.frames += len(frames)
            for frame in frames:
                try:
                    events = parse(frame)
                except _BAD_INPUT as exc:
                    await self._invalid(f"{self.provider} frame not usable: {exc}", ev.excerpt(frame))
                    continue
                except RecursionError:  # valid JSON nested past the interpreter's limit: a 2 KB frame suffices
                    await self._invalid(
                        f"{self.provider} frame not usable: JSON nested too deeply to decode", ev.excerpt(frame)
                    )
                    continue
                if correlator is not None:
                    events = [out for event in events for out in correlator.admit(event)]
                for event in events:
                    # The non-blocking publish is the hot path; wait only when a buffer is full.
                    try:
                        publish_nowait(event)
                    except anyio.WouldBlock:
                        await bus.publish(event)

    async def _closed(self, exc: websockets.exceptions.ConnectionClosed) -> str:
        reason = _describe_close(exc)
        if exc.sent is not None and exc.sent.code == 1009:
            await self._invalid(
                f"{self.provider} sent a message larger than max_size={self._max_size} bytes; "
                "the connection was closed (1009) and will be reopened; raise max_size if this is legitimate",
                "",
            )
        return reason

    async def _call_on_reconnect(self) -> None:
        assert self._on_reconnect is not None
        try:
            result = self._on_reconnect()
            if isawaitable(result):
                await result
        except Exception as exc:  # recovery is best effort; the stream must go on
            _log.warning("on_reconnect hook failed", provider=self.provider, error=repr(exc))

    # -- correlation -------------------------------------------------------

    async def bind(self, correlation_id: str, job_id: str) -> int:
        """Tell the correlator which job ``correlation_id`` is and publish the events it held; returns how many."""
        if self.correlator is None:
            raise RuntimeError("this source has no correlator")
        released = self.correlator.bind(correlation_id, job_id)
        for event in released:
            await self._bus.publish(event)
        return len(released)

    async def _expire_correlations(self) -> None:
        assert self.correlator is not None
        tick = max(0.01, min(1.0, self.correlator.max_age / 4))
        while True:
            await anyio.sleep(tick)
            try:
                for signal in self.correlator.expire():
                    await self._bus.publish(signal)
            except BusClosed:
                return  # the connection loop meets the closed bus too and ends the source

    # -- publishing helpers ------------------------------------------------

    async def wait_connected(self) -> bool:
        """Return once the source is connected (True), or has given up or stopped (False). Bound it yourself."""
        while self.state not in ("connected", "gave_up", "stopped"):
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return self.state == "connected"

    def _wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def _state(self, state: str, detail: str, attempt: int = 0) -> None:
        self._wake()
        await self._bus.publish(
            ev.SourceState(
                id=ev.new_id(),
                provider=self.provider,
                job_id="",
                source="websocket",
                state=state,  # type: ignore[arg-type]
                detail=detail,
                attempt=attempt,
            )
        )

    async def _invalid(self, reason: str, raw: str) -> None:
        self.invalid += 1
        await self._bus.publish(
            ev.InvalidSignal(
                id=ev.new_id(), provider=self.provider, job_id="", source="websocket", reason=reason, excerpt=raw
            )
        )


# --- correlation -------------------------------------------------------------------


def _job_id_key(event: ev.Event) -> str | None:
    return event.job_id or None


class Correlator:
    """Holds events keyed by a correlation id until :meth:`bind` says which job they belong to.

    Synchronous and I/O-free: :meth:`admit` returns the events to publish now
    (an event whose id is already bound passes through, rewritten; an unbound
    one is held and nothing is returned). Bounded in events (``max_events``;
    past it the oldest correlation id's events are dropped and reported) and in
    age (``max_age`` seconds; :meth:`expire` reports what waited too long). Both
    reports are ``InvalidSignal`` events unless ``on_timeout`` builds others.
    """

    def __init__(
        self,
        *,
        key: Callable[[ev.Event], str | None] = _job_id_key,
        max_events: int = 10_000,
        max_age: float = 30.0,
        max_bindings: int = 100_000,
        on_timeout: Callable[[str, list[ev.Event], str], list[ev.Event]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (max_events >= 1 and max_age > 0 and max_bindings >= 1):  # NaN fails too
            raise ConfigError("max_events, max_age and max_bindings must be positive")
        self._key = key
        self.max_events = max_events
        self.max_age = max_age
        self._max_bindings = max_bindings
        self._on_timeout = on_timeout or self._uncorrelated
        self._clock = clock
        self._pending: OrderedDict[str, tuple[float, list[ev.Event]]] = OrderedDict()
        self._bindings: OrderedDict[str, str] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        """Events held now."""
        return self._count

    def admit(self, event: ev.Event) -> list[ev.Event]:
        """The events to publish now that ``event`` arrived (possibly none, possibly overflow reports)."""
        cid = self._key(event)
        if cid is None:
            return [event]
        job_id = self._bindings.get(cid)
        if job_id is not None:
            return [event if event.job_id == job_id else msgspec.structs.replace(event, job_id=job_id)]
        entry = self._pending.get(cid)
        if entry is None:
            self._pending[cid] = (self._clock(), [event])
        else:
            entry[1].append(event)
        self._count += 1
        out: list[ev.Event] = []
        while self._count > self.max_events:
            old_cid, (_, held) = self._pending.popitem(last=False)
            self._count -= len(held)
            out += self._on_timeout(old_cid, held, f"the buffer of {self.max_events} uncorrelated events is full")
        return out

    def bind(self, correlation_id: str, job_id: str) -> list[ev.Event]:
        """Record that ``correlation_id`` is ``job_id``; return its held events rewritten, in arrival order."""
        self._bindings[correlation_id] = job_id
        self._bindings.move_to_end(correlation_id)
        if len(self._bindings) > self._max_bindings:
            self._bindings.popitem(last=False)
        entry = self._pending.pop(correlation_id, None)
        if entry is None:
            return []
        held = entry[1]
        self._count -= len(held)
        return [e if e.job_id == job_id else msgspec.structs.replace(e, job_id=job_id) for e in held]

    def expire(self, now: float | None = None) -> list[ev.Event]:
        """Drop and report every correlation id whose first event is older than ``max_age``."""
        current = self._clock() if now is None else now
        out: list[ev.Event] = []
        while self._pending:
            cid, (since, held) = next(iter(self._pending.items()))
            if current - since < self.max_age:
                break
            del self._pending[cid]
            self._count -= len(held)
            out += self._on_timeout(cid, held, f"no submission claimed it within {self.max_age:g}s")
        return out

    @staticmethod
    def _uncorrelated(cid: str, held: list[ev.Event], why: str) -> list[ev.Event]:
        first = held[0]
        tags = sorted({ev.tag_of(type(e)) for e in held})
        return [
            ev.InvalidSignal(
                id=ev.new_id(),
                provider=first.provider,
                job_id="",
                source=first.source,
                reason=f"uncorrelated event(s): {len(held)} event(s) for {cid!r} dropped: {why}",
                excerpt=ev.excerpt(", ".join(tags)),
            )
        ]
