"""The webhook receiver: an ASGI app that turns provider callbacks into events on the bus.

``POST /hooks/{provider}`` runs, in this order, and answers the first failure::

    405  method is not POST                       (Allow: POST)
    404  no parser registered for {provider}
    415  Content-Type is not application/json (or +json)
    413  body larger than max_body                (checked on Content-Length, then while streaming)
    400  Content-Length invalid, or the client disconnected mid-body
    401  signature missing, malformed, stale or wrong (only when a secret is set)
    400  webhook-id longer than 256 characters (ids are remembered for dedupe)
    200  duplicate (same webhook-id, or the same body when there is no id): nothing published
    400  the provider's parser refused the body (invalid JSON, wrong shape, ...)
    503  the bus refused or timed out, or what it writes to (its journal, Redis) could
         not take the events: the sender should retry; nothing is marked as seen
    200  the events were handed to the bus (on a bus.persistent bus: and written)

Every refusal also publishes an :class:`~eventbus.events.InvalidSignal` (a
reason a person can act on, the status, a bounded excerpt of the body; never
a header, so never the secret or the signature). A malformed request never
causes a 500: only a parser that raises something other than ``ValueError``,
``LookupError``, ``TypeError`` or ``RecursionError`` (JSON nested too deeply,
answered 400 too) does: that is a bug, not bad input, and the 500 makes the
sender retry once the bug is fixed.

**Bridging event loops.** uvicorn serves on asyncio, possibly in a background
thread (:class:`adapters.serving.ServedApp`), while the bus may live on trio in
the main thread. The receiver captures the event-loop token of the loop it is
built in (the bus's loop). A request served in another thread hands its events
to that loop with ``anyio.from_thread.run`` from a worker thread and answers
only after the bus accepted them, so back-pressure and failures reach the
sender. Built outside any event loop, it assumes the bus lives in the loop
that serves it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from adapters import signing
from adapters.providers.base import declares_more_than
from eventbus import events as ev
from eventbus._checks import COUNT, NOT_NEGATIVE, SECONDS, check_numbers
from eventbus._logging import get_logger
from eventbus.exceptions import ConfigError
from eventbus.tracker import Publisher  # what the receiver hands events to (re-exported)

__all__ = ["DEFAULT_MAX_BODY", "Parser", "Publisher", "WebhookReceiver"]

DEFAULT_MAX_BODY: Final = 1 << 20  # 1 MiB: far above any provider's single callback
DEFAULT_DEDUPE_SIZE: Final = 100_000
_NAME_LIMIT: Final = 64
_ID_LIMIT: Final = 256  # webhook-id characters; Standard Webhooks ids are ~30 (msg_ + a ULID)

Parser = Callable[[bytes, Mapping[str, str]], Sequence[ev.Event]]
"""A provider's sans-I/O webhook parser: body and headers in, events out; ``ValueError`` on unusable input."""

_log = get_logger("adapters.webhooks")
_json = msgspec.json.Encoder()


class _Refused(Exception):
    """A request the receiver answers with a 4xx (internal control flow)."""

    def __init__(self, status: int, reason: str, raw: bytes | str = b"", headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.raw = raw
        self.headers = headers


def _answer(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(_json.encode(payload), status_code=status, media_type="application/json", headers=headers)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class _Endpoint:
    """The hook route as a raw ASGI app (Starlette routes every method to a non-function endpoint)."""

    __slots__ = ("receiver",)

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.receiver._endpoint(Request(scope, receive))
        await response(scope, receive, send)


class WebhookReceiver:
    """An ASGI app receiving provider callbacks at ``/hooks/{provider}`` and publishing their events.

    Mount it in your own ASGI server (it is an ASGI callable; :attr:`app` is the
    Starlette app) or serve it alone (``eventbus serve``). Build it inside the
    event loop where ``bus`` lives.
    """

    def __init__(
        self,
        bus: Publisher,
        parsers: Mapping[str, Parser] | None = None,
        *,
        secret: str | bytes | None = None,
        tolerance: float = signing.DEFAULT_TOLERANCE,
        max_body: int = DEFAULT_MAX_BODY,
        dedupe_size: int = DEFAULT_DEDUPE_SIZE,
        publish_timeout: float = 30.0,
        path: str = "/hooks/{provider}",
    ) -> None:
        # An infinite tolerance would silently turn off the replay check.
        check_numbers(
            "WebhookReceiver",
            max_body=(max_body, COUNT),
            dedupe_size=(dedupe_size, COUNT),
            publish_timeout=(publish_timeout, SECONDS),
            tolerance=(tolerance, NOT_NEGATIVE),
        )
        if "{provider}" not in path:
            raise ConfigError("path must contain '{provider}'")
        key: bytes | None = None
        if secret is not None:
            try:
                key = signing.secret_key(secret)  # decoded once; a malformed whsec_ secret fails here, not per request
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        self._bus = bus
        # A bus that writes what is published (a journal, Redis): answer 2xx only once this request's events are in it.
        self._flush = getattr(bus, "flush", None) if getattr(bus, "persistent", False) else None
        self._parsers: dict[str, Parser] = dict(parsers or {})
        self._key = key
        self._tolerance = tolerance
        self._max_body = max_body
        self._dedupe_size = dedupe_size
        self._publish_timeout = publish_timeout
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._inflight: dict[str, anyio.Event | None] = {}
        self._counts = {"accepted": 0, "duplicates": 0, "refused": 0, "published": 0, "unavailable": 0}
        try:
            self._token: anyio.lowlevel.EventLoopToken | None = anyio.lowlevel.current_token()
            self._bus_thread: int | None = threading.get_ident()
        except RuntimeError:  # built outside an event loop: adopt the serving loop on first use
            self._token = None
            self._bus_thread = None
        self.path = path
        # An ASGI endpoint (not a function) so that every method reaches it and a
        # wrong one is answered and signalled here, not by Starlette's default 405.
        self._route = Route(path, _Endpoint(self))
        self.app = Starlette(routes=[self._route])

    # -- configuration ---------------------------------------------------

    def register(self, provider: str, parse: Parser) -> None:
        """Route ``/hooks/{provider}`` to ``parse`` (replacing any earlier parser)."""
        self._parsers[provider] = parse

    @property
    def providers(self) -> list[str]:
        """The providers with a registered parser."""
        return sorted(self._parsers)

    def stats(self) -> dict[str, int]:
        """Counters: accepted requests, duplicates, refusals, events published, 503s."""
        return dict(self._counts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Served alone (no root_path), a hook request goes to its route at once: Starlette's
        # router and middleware layers cost about 10 us a request, a third of the receiver's
        # own work. Anything else (other paths, lifespan, a mounted receiver) goes through
        # :attr:`app`, which answers exactly as the route would.
        if scope["type"] == "http" and not scope.get("root_path"):
            match, child = self._route.matches(scope)
            if match is Match.FULL:
                scope.update(child)  # path_params, as Starlette's router sets them
                await self._route.handle(scope, receive, send)
                return
        await self.app(scope, receive, send)

    # -- the request ------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        provider = request.path_params.get("provider", "")
        body = b""
        try:
            parse = self._check_envelope(request, provider)
            body = await self._read_body(request)
            headers = request.headers
            key = self._dedupe_key(provider, headers, body)
            return await self._deliver(provider, key, parse, body, headers)
        except _Refused as refusal:
            self._counts["refused"] += 1
            known = provider if provider in self._parsers else ""
            signal = ev.InvalidSignal(
                id=ev.new_id(),
                provider=known,
                job_id="",
                source="webhook",
                reason=refusal.reason,
                excerpt=ev.excerpt(refusal.raw or body),
                status=refusal.status,
            )
            try:
                await self._publish([signal])
            except Exception as exc:  # the answer to the sender does not depend on it
                _log.warning("webhook refusal not published", reason=refusal.reason, error=repr(exc))
            return _answer(refusal.status, {"error": refusal.reason}, refusal.headers)

    def _check_envelope(self, request: Request, provider: str) -> Parser:
        if request.method != "POST":
            raise _Refused(405, f"method {request.method} not allowed: send POST", headers={"Allow": "POST"})
        parse = self._parsers.get(provider)
        if parse is None:
            known = ", ".join(self.providers) or "none"
            name = ev.excerpt(provider, _NAME_LIMIT)
            raise _Refused(404, f"unknown provider {name!r} in the webhook URL (known: {known})")
        content_type = request.headers.get("content-type", "")
        if not _is_json(content_type):
            shown = ev.excerpt(content_type, _NAME_LIMIT) or "none"
            raise _Refused(415, f"Content-Type must be application/json, got {shown}")
        length = request.headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                raise _Refused(400, "Content-Length is not a non-negative integer")
            if declares_more_than(length, self._max_body):
                shown = length if len(length) <= 20 else f"{length[:20]}... ({len(length)} digits)"
                raise _Refused(413, f"body of {shown} bytes exceeds the {self._max_body}-byte limit")
        return parse

    async def _read_body(self, request: Request) -> bytes:
        # Read message by message so that a chunked (length-less) body is cut
        # off at the limit instead of being buffered whole.
        chunks: list[bytes] = []
        size = 0
        receive = request.receive
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect
                raise _Refused(400, "client disconnected before sending the whole body", b"".join(chunks))
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise _Refused(413, f"body exceeds the {self._max_body}-byte limit (stopped reading)", b"".join(chunks))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _dedupe_key(self, provider: str, headers: Mapping[str, str], body: bytes) -> str:
        if self._key is not None:
            try:
                msg_id = signing.verify(self._key, headers, body, tolerance=self._tolerance)
            except signing.SignatureError as exc:
                raise _Refused(401, f"signature check failed: {exc}") from None
        else:
            msg_id = headers.get(signing.HEADER_ID)
            if not msg_id:
                return f"{provider}\0sha256\0{hashlib.sha256(body).hexdigest()}"
        # The id is remembered (dedupe_size of them): a bound keeps that memory small,
        # where 16 KB ids would make 100,000 of them 1.6 GB.
        if len(msg_id) > _ID_LIMIT:
            raise _Refused(400, f"{signing.HEADER_ID} is longer than {_ID_LIMIT} characters")
        return f"{provider}\0id\0{msg_id}"

    async def _deliver(
        self, provider: str, key: str, parse: Parser, body: bytes, headers: Mapping[str, str]
    ) -> Response:
        # A concurrent copy of the same webhook waits for the first one's outcome
        # instead of publishing twice.
        while key in self._inflight:
            pending = self._inflight[key]
            if pending is None:  # the first waiter creates the event; the common case never needs one
                pending = self._inflight[key] = anyio.Event()
            with anyio.move_on_after(self._publish_timeout + 1) as waited:
                await pending.wait()
            if waited.cancelled_caught:
                return _answer(503, {"error": "an identical webhook is still being handled; retry later"})
        if key in self._seen:
            self._seen.move_to_end(key)
            self._counts["duplicates"] += 1
            return _answer(200, {"ok": True, "duplicate": True})
        try:
            events = parse(body, headers)
        except (ValueError, LookupError, TypeError) as exc:
            raise _Refused(400, f"{provider} webhook body not usable: {exc}") from None
        except RecursionError:  # valid JSON nested past the interpreter's limit (a 2 KB body suffices)
            raise _Refused(400, f"{provider} webhook body not usable: JSON nested too deeply to decode") from None
        self._inflight[key] = None
        try:
            try:
                await self._publish(events)
            except Exception as exc:
                self._counts["unavailable"] += 1
                _log.warning("webhook events not published; answering 503", provider=provider, error=repr(exc))
                return _answer(503, {"error": "the event bus is unavailable; retry later"}, {"Retry-After": "1"})
            self._seen[key] = None
            if len(self._seen) > self._dedupe_size:
                self._seen.popitem(last=False)
        finally:
            done = self._inflight.pop(key)
            if done is not None:
                done.set()
        self._counts["accepted"] += 1
        self._counts["published"] += len(events)
        return _answer(200, {"ok": True, "events": len(events)})

    # -- handing events to the bus ---------------------------------------

    async def _publish(self, events: Sequence[ev.Event]) -> None:
        """Hand ``events`` to the bus, in its own loop; return once it accepted all of them."""
        if not events:
            return
        if self._bus_thread is None:
            self._bus_thread = threading.get_ident()
        if threading.get_ident() == self._bus_thread:
            await self._publish_here(events)
        else:
            await anyio.to_thread.run_sync(self._publish_from_thread, events)

    def _publish_from_thread(self, events: Sequence[ev.Event]) -> None:
        anyio.from_thread.run(self._publish_here, events, token=self._token)

    async def _publish_here(self, events: Sequence[ev.Event]) -> None:
        bus = self._bus
        before = bus.published if self._flush is not None else 0  # what others published before this request
        for i, event in enumerate(events):
            try:
                bus.publish_nowait(event)  # the hot path: no timer, no await
            except anyio.WouldBlock:
                # Back-pressure: wait for room, bounded, then carry on from here.
                with anyio.fail_after(self._publish_timeout):
                    for rest in events[i:]:
                        await bus.publish(rest)
                break
        if self._flush is not None:
            with anyio.fail_after(self._publish_timeout):
                await self._flush(after=before)  # raises if any of them (or of others' since) was not written
