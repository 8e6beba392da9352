"""What the four simulated providers share: state, auth tokens, throttling, faults, body parsing."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import msgspec
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from adapters.providers.base import declares_more_than
from adapters.simulator.config import Clock, SimulatorConfig

__all__ = [
    "BodyError",
    "SimState",
    "bearer_token",
    "error_response",
    "is_http_url",
    "json_response",
    "media_type",
    "read_json",
    "stable_fraction",
    "too_many_requests",
]

_log = logging.getLogger("adapters.simulator")


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None, background: BackgroundTask | None = None
) -> Response:
    """A JSON response encoded with msgspec."""
    return Response(
        msgspec.json.encode(data),
        status_code=status,
        headers=headers,
        media_type="application/json",
        background=background,
    )


def error_response(error: str, status: int = 400, **extra: Any) -> Response:
    """``{"error": error, **extra}`` with ``status``: how the simulated Datananas and Pronto refuse."""
    return json_response({"error": error, **extra}, status)


def too_many_requests(reset: float) -> Response:
    """429 ``{"error": "too many requests"}`` with ``Retry-After`` in whole seconds, at least 1 (Datananas, Pronto)."""
    return json_response({"error": "too many requests"}, 429, headers={"Retry-After": str(max(1, round(reset)))})


def bearer_token(request: Request) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive); "" without one."""
    header = request.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else ""


def media_type(request: Request) -> str:
    """The request's Content-Type without its parameters (``; charset=...``); "" without one."""
    return request.headers.get("content-type", "").split(";")[0].strip()


class BodyError(Exception):
    """A request body the provider would refuse; carries the response to send."""

    def __init__(self, response: Response) -> None:
        self.response = response


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes while reading (413)."""
    declared = request.headers.get("content-length")
    if declares_more_than(declared, limit):
        raise BodyError(json_response({"error": "request body too large"}, 413))
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyError(json_response({"error": "request body too large"}, 413))
            chunks.append(chunk)
    except ClientDisconnect:  # the client gave up (e.g. its timeout) before the body was read: nothing to do
        raise BodyError(json_response({"error": "client disconnected before sending the body"}, 400)) from None
    return b"".join(chunks)


async def read_json(request: Request, limit: int, error: Callable[[str], Response]) -> Any:
    """Decode a JSON body or raise BodyError with the provider's own 400 shape."""
    body = await read_body(request, limit)
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise BodyError(error(f"malformed JSON body: {exc}")) from None
    except RecursionError:
        raise BodyError(error("malformed JSON body: nested too deeply")) from None


def is_http_url(url: object) -> bool:
    """True for an absolute ``http(s)://host[:port]/...`` URL in printable ASCII (what a webhook may target)."""
    if not isinstance(url, str) or not url.isascii() or not url.isprintable() or " " in url or len(url) > 2048:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def stable_fraction(*parts: object, seed: int = 0) -> float:
    """A deterministic number in [0, 1) from ``parts`` and the seed (the outcome rules use it)."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class _Token:
    provider: str
    expires_at: float


@dataclass
class SimState:
    """The simulator's mutable state, shared by the provider routes; introspectable by tests."""

    config: SimulatorConfig
    clock: Clock
    tokens: dict[str, _Token] = field(default_factory=dict)
    windows: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # -> (window index, used)
    rolling: dict[tuple[str, str], deque[float]] = field(default_factory=dict)  # -> accepted request times
    api_requests: int = 0
    burst_left: int = 0
    requests_by_path: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # provider -> job id -> job
    task_group: anyio.abc.TaskGroup | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    background_errors: list[str] = field(default_factory=list)  # crashes of background work: always a bug

    # --- tokens -------------------------------------------------------------

    def issue_token(self, provider: str) -> tuple[str, float]:
        token = secrets.token_urlsafe(24)
        expires_at = self.clock.now() + self.config.token_ttl
        self.tokens[token] = _Token(provider, expires_at)
        return token, expires_at

    def token_valid(self, provider: str, token: str | None) -> bool:
        if not token:
            return False
        entry = self.tokens.get(token)
        return entry is not None and entry.provider == provider and entry.expires_at > self.clock.now()

    # --- throttling ------------------------------------------------------------

    def throttle(self, provider: str, key: str, *, rolling: bool = False) -> tuple[bool, int, int, float]:
        """Count one request; return (allowed, limit, remaining, seconds until a request is allowed again).

        Fixed windows (``rolling=False``) start every ``window`` seconds of the
        clock; a rolling window (InsideView) counts the requests accepted in
        the last ``window`` seconds. Only the current window is kept per key.
        """
        rule = self.config.throttle.get(provider)
        if rule is None:
            return True, 0, 0, 0.0
        now = self.clock.now()
        if rolling:
            log = self.rolling.setdefault((provider, key), deque())
            while log and log[0] <= now - rule.window:
                log.popleft()
            if len(log) < rule.limit:
                log.append(now)
                return True, rule.limit, rule.limit - len(log), 0.0
            return False, rule.limit, 0, log[0] + rule.window - now
        window_index = int(now // rule.window)
        slot = (provider, key)
        index, used = self.windows.get(slot, (window_index, 0))
        used = used + 1 if index == window_index else 1
        self.windows[slot] = (window_index, used)
        reset = (window_index + 1) * rule.window - now
        return used <= rule.limit, rule.limit, max(rule.limit - used, 0), reset

    # --- faults -----------------------------------------------------------------

    def next_request_fails(self) -> bool:
        """Count an API request; True when the 5xx-burst fault says this one gets a 503."""
        faults = self.config.faults
        self.api_requests += 1
        if self.burst_left > 0:
            self.burst_left -= 1
            return True
        if faults.error_every and self.api_requests % faults.error_every == 0:
            self.burst_left = max(faults.error_burst - 1, 0)
            return True
        return False

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a background job in the simulator's task group; a job that crashes is recorded, not fatal."""
        assert self.task_group is not None, "the simulator app is not running (lifespan not started)"
        self.task_group.start_soon(self._guarded, fn, *args)

    async def _guarded(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        # One broken job must not cancel the task group that runs every other job and the webhook workers.
        try:
            await fn(*args)
        except Exception as exc:
            self.record_error(f"{getattr(fn, '__qualname__', fn)}: {exc!r}")

    def record_error(self, message: str) -> None:
        """Note a simulator bug seen in the background (tests assert there are none)."""
        if len(self.background_errors) < 100:
            self.background_errors.append(message)
        _log.error("simulator background error: %s", message)

    def count_path(self, key: str) -> None:
        self.requests_by_path[key] = self.requests_by_path.get(key, 0) + 1


async def pace(
    state: SimState, total: int, step: Callable[[int, int], None], stopped: Callable[[], bool] | None = None
) -> bool:
    """Advance a job's items at the configured speed, calling ``step(start, end)`` per tick.

    ``stopped`` is asked before each step (after that tick's wait); once it says
    True, no further step runs and the answer is False. True: every item was stepped.
    """
    config = state.config
    per_tick = max(1, round(config.tick / config.item_time)) if config.item_time > 0 else total or 1
    start = 0
    while start < total:
        await anyio.sleep(config.tick if config.item_time > 0 else 0)
        if stopped is not None and stopped():
            return False
        end = min(total, start + per_tick)
        step(start, end)
        start = end
    return True
