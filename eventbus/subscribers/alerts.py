"""Alerts: rules that watch the event stream and fire hooks once per condition, not once per event.

    alerts = Alerts(
        rules=[FailedJob(), FailureRate(threshold=0.2, min_items=50), OutOfQuota(), ThrottledTooLong(seconds=120)],
        hooks=[post_to("https://hooks.example.com/alerts", secret=secret), log_to(), page_someone],
    )
    async with Bus() as bus, alerts.attach(bus):   # or: async with alerts: bus.on(alerts, types=alerts.types)
        ...

:class:`Alerts` is a subscriber: called with each event, it updates a small
state per job and per provider (:meth:`Alerts.evaluate`, pure, no I/O) and
hands every :class:`Alert` that fires to its hooks. The rules (at most one of
each kind):

* :class:`FailedJob` -- a job ended failed (and, by default, expired; cancelled
  only with ``cancelled=True``): once per job.
* :class:`FailureRate` -- more than ``threshold`` of a job's contacts failed,
  once ``min_items`` are known: once per job, never re-armed.
* :class:`OutOfQuota` -- the account ran out: once per provider, re-armed
  when the provider accepts a chunk submitted after the alert.
* :class:`ThrottledTooLong` -- a job (or a chunk not yet accepted) waited
  ``seconds`` on 429s in a row, without a sign of progress between: once per job.
* :class:`StuckJob` -- the tracker reported a job silent: once per silence,
  re-armed when the job moves again.

Hooks: :func:`post_to` (a signed JSON POST, from its own sender task, bounded
queue and retries), :func:`log_to` (a log line), or any callable (a plain
function is called in the handler; an ``async def`` gets a queue and a task,
see :func:`call`). A hook that raises or fails is logged (logger
``eventbus.alerts``, without secrets) and counted in :meth:`Alerts.stats`; the
bus and the other hooks go on. Queued hooks run while the :class:`Alerts` is
entered (``async with alerts`` or :meth:`Alerts.attach`).

Events are deduplicated by ``id`` over the last ``dedupe_window`` ids; a
job's state is freed when it ends, at most ``max_jobs`` jobs are held (the
least recently active is forgotten first), and as many ended jobs are
remembered so that stragglers and second terminal events fire nothing.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, TypeAlias

import anyio
import anyio.abc
import httpx
import msgspec

from eventbus import events as ev
from eventbus._checks import COUNT, NOT_NEGATIVE, SECONDS, check_numbers
from eventbus._checks import Rule as _NumberRule
from eventbus._logging import get_logger
from eventbus.bus import Bus
from eventbus.exceptions import ConfigError, SubscriptionClosed
from eventbus.subscribers.log import EventLogger, redact, redact_userinfo

__all__ = [
    "DEFAULT_RULES",
    "Alert",
    "AlertRule",
    "AlertStats",
    "Alerts",
    "CallHook",
    "FailedJob",
    "FailureRate",
    "Hook",
    "HookStats",
    "LogHook",
    "OutOfQuota",
    "PostHook",
    "StuckJob",
    "ThrottledTooLong",
    "call",
    "log_to",
    "post_to",
]

_log = get_logger("eventbus.alerts")

_RETRY_AFTER_CAP: Final = 30.0  # seconds: the longest wait a receiver's Retry-After (or our backoff) gets
_CHUNKS_WATCHED: Final = 4096  # chunks submitted after a quota alert, per provider, that can re-arm it
_USER_AGENT: Final = "eventbus-alerts"
_LEVELS: Final = ("debug", "info", "warning", "error", "critical")


# --- the payload -----------------------------------------------------------------


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One alert: what every hook receives (:func:`post_to` sends it as JSON).

    ``id`` is derived from the rule, the job and the triggering event, so the
    same condition met by the same event (a replay after a restart, a retried
    POST) always carries the same id: receivers deduplicate on it (it is the
    ``webhook-id`` header). ``at`` is the triggering event's time.
    """

    id: str
    rule: str  # "job_failed", "failure_rate", "quota_exhausted", "throttled_too_long" or "job_stuck"
    provider: str
    job_id: str  # the job, or the chunk reference (batch#index) of a chunk the provider has not accepted
    message: str  # for a person: what happened and what to do about it
    event_ids: tuple[str, ...]  # the event(s) that met the condition
    at: datetime
    details: dict[str, Any] = {}  # the rule's figures: counts, rate, seconds, HTTP status, the provider's reason


# --- the rules ----------------------------------------------------------------------


class _Fraction(_NumberRule):
    """A number from 0 up to, not including, 1 (a rate a failure rate can be above)."""

    def accepts(self, value: Any) -> bool:
        return super().accepts(value) and value < 1


_BELOW_ONE = _Fraction("a fraction from 0 up to, not including, 1", 0, above=False)


def _check_flags(where: str, **flags: Any) -> None:
    wrong = [f"{name} must be True or False, not {value!r}" for name, value in flags.items() if type(value) is not bool]
    if wrong:
        raise ConfigError(f"{where}: {'; '.join(wrong)}")


@dataclass(frozen=True)
class FailedJob:
    """A job ended badly: ``JobFailed`` always, ``JobExpired`` when ``expired``, ``JobCancelled`` when ``cancelled``.

    Expired is on by default (the provider forgot the job: its unread results
    are lost); cancelled is off (a cancellation is usually someone's intent).
    Fires once per job: the first terminal event decides, later ones are ignored.
    """

    expired: bool = True
    cancelled: bool = False
    rule: ClassVar[str] = "job_failed"

    def __post_init__(self) -> None:
        _check_flags("FailedJob", expired=self.expired, cancelled=self.cancelled)


@dataclass(frozen=True)
class FailureRate:
    """More than ``threshold`` of a job's contacts failed (``ItemFailed`` against ``ItemSucceeded``).

    Judged after each item once at least ``min_items`` are known, and at the
    job's end on the provider's totals when they cover more items. Exactly at
    the threshold does not fire. Once per job, never re-armed: a rate that
    dips below and climbs again fires nothing more. Rows refused before
    sending (chunk ``#-1``) are not counted.
    """

    threshold: float = 0.2
    min_items: int = 50
    rule: ClassVar[str] = "failure_rate"

    def __post_init__(self) -> None:
        check_numbers("FailureRate", threshold=(self.threshold, _BELOW_ONE), min_items=(self.min_items, COUNT))


@dataclass(frozen=True)
class OutOfQuota:
    """The account is out of quota, credits or consent (``QuotaExhausted``): once per provider.

    Re-armed when the provider accepts a chunk that was submitted after the
    alert (the account has quota again); a chunk already in flight when it
    fired, accepted afterwards, does not re-arm it.
    """

    rule: ClassVar[str] = "quota_exhausted"


@dataclass(frozen=True)
class ThrottledTooLong:
    """A job, or a chunk not yet accepted, waited ``seconds`` in all on 429s in a row (``Throttled.retry_after``).

    Any sign of progress of that job (accepted, progress, an item, its end)
    starts the count again from 0. Once per job (or chunk).
    """

    seconds: float = 120.0
    rule: ClassVar[str] = "throttled_too_long"

    def __post_init__(self) -> None:
        check_numbers("ThrottledTooLong", seconds=(self.seconds, SECONDS))


@dataclass(frozen=True)
class StuckJob:
    """The tracker reported a job silent (``JobStuck``, from ``JobTracker(stuck_after=...)``): once per silence.

    Re-armed when the job moves again (accepted, progress, an item).
    """

    rule: ClassVar[str] = "job_stuck"


AlertRule: TypeAlias = FailedJob | FailureRate | OutOfQuota | ThrottledTooLong | StuckJob
"""Any of the rule types."""

_RULE_TYPES: Final = (FailedJob, FailureRate, OutOfQuota, ThrottledTooLong, StuckJob)

DEFAULT_RULES: Final[tuple[AlertRule, ...]] = (
    FailedJob(),
    FailureRate(),
    OutOfQuota(),
    ThrottledTooLong(),
    StuckJob(),
)
"""Every rule, with its defaults: what ``Alerts(hooks=...)`` watches."""


# --- hooks --------------------------------------------------------------------------


class HookStats(msgspec.Struct, frozen=True):
    """A snapshot of one hook's counters. Every alert handed to a hook ends in exactly one of
    ``delivered``, ``failed`` or ``dropped``, or is still ``queued``."""

    name: str
    kind: str  # "post", "log" or "call"
    delivered: int
    failed: int  # raised, refused, or retries spent
    dropped: int  # the queue was full, the hook was not running, or it was stopped with the alert undelivered
    retried: int  # attempts made again (post_to)
    queued: int  # waiting now (a queued hook's alert being sent included)


class _Hook:
    """What every hook has: a name for logs and the counters of :class:`HookStats`."""

    kind: ClassVar[str] = ""
    queued = False  # delivered from its own task (else called in the handler)

    def __init__(self, name: str) -> None:
        self.name = name
        self.delivered = self.failed = self.dropped = self.retried = 0
        self._owner: object | None = None

    def _waiting(self) -> int:
        return 0

    def stats(self) -> HookStats:
        return HookStats(self.name, self.kind, self.delivered, self.failed, self.dropped, self.retried, self._waiting())


class _QueuedHook(_Hook):
    """A hook with a bounded queue and its own task: firing never waits for it."""

    queued = True

    def __init__(self, name: str, queue: int) -> None:
        super().__init__(name)
        self.size = queue
        self._queue: deque[Alert] = deque()
        self._running = False
        self._sending = False
        self._wakeup: anyio.Event | None = None
        self._idle: anyio.Event | None = None

    def _waiting(self) -> int:
        return len(self._queue) + self._sending

    def offer(self, alert: Alert) -> None:
        """Queue ``alert`` without waiting; dropped (counted and logged) if the queue is full or nothing runs it."""
        if not self._running:
            self._drop(alert, "the hook is not running: enter the Alerts (async with alerts, or alerts.attach(bus))")
        elif len(self._queue) >= self.size:
            self._drop(alert, f"its queue is full ({self.size} alerts)")
        else:
            self._queue.append(alert)
            if self._wakeup is not None:
                self._wakeup.set()
                self._wakeup = None

    def _drop(self, alert: Alert, why: str) -> None:
        self.dropped += 1
        _log.warning("alert_dropped", hook=self.name, rule=alert.rule, alert_id=alert.id, reason=why)

    async def _deliver(self, alert: Alert) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        """Deliver queued alerts one at a time, in order, until cancelled; what is left then is dropped."""
        self._running = True
        try:
            while True:
                if not self._queue:
                    self._went_idle()
                    waiter = self._wakeup = anyio.Event()
                    await waiter.wait()
                    continue
                alert = self._queue.popleft()
                self._sending = True
                try:
                    await self._deliver(alert)
                except Exception as exc:
                    self.failed += 1
                    self._failed(alert, exc)
                else:
                    self.delivered += 1
                self._sending = False
        finally:
            self._running = False
            left = len(self._queue) + self._sending
            self._queue.clear()
            self._sending = False
            if left:
                self.dropped += left
                _log.warning("alerts_not_delivered", hook=self.name, alerts=left, reason="the alerts were stopped")
            self._went_idle()

    def _failed(self, alert: Alert, exc: Exception) -> None:
        # The fields ride on the log record as they are: only its message is redacted on the way out.
        _log.error("alert_hook_failed", hook=self.name, rule=alert.rule, alert_id=alert.id, error=redact(str(exc)))

    def _went_idle(self) -> None:
        if self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait_idle(self) -> None:
        """Return once the queue is empty and nothing is being delivered."""
        while self._queue or self._sending:
            waiter = self._idle
            if waiter is None:
                waiter = self._idle = anyio.Event()
            await waiter.wait()


class _Refused(Exception):
    """A POST that failed for good (message: why, for the log)."""


class PostHook(_QueuedHook):
    """POSTs each alert as JSON, signed the Standard Webhooks way when given a secret. Made by :func:`post_to`."""

    kind: ClassVar[str] = "post"

    def __init__(
        self,
        url: str,
        *,
        secret: str | bytes | None,
        timeout: float,
        attempts: int,
        backoff: float,
        queue: int,
        headers: Mapping[str, str] | None,
        client: httpx.AsyncClient | None,
        name: str | None,
    ) -> None:
        check_numbers(
            "post_to",
            timeout=(timeout, SECONDS),
            attempts=(attempts, COUNT),
            backoff=(backoff, NOT_NEGATIVE),
            queue=(queue, COUNT),
        )
        shown = _shown_url(url)
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ConfigError(f"post_to: not a URL: {shown!r} ({redact(str(exc))})") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"post_to: the URL must be http:// or https:// with a host, not {shown!r}")
        if secret is not None:
            from adapters.signing import secret_key  # (importing adapters costs ~0.4 s: only when signing)

            try:
                self._key: bytes | None = secret_key(secret)
            except ValueError as exc:
                raise ConfigError(f"post_to: secret: {exc}") from None
        else:
            self._key = None
        super().__init__(name or shown, queue)
        self.url = url
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.headers = dict(headers or {})
        self._client = client
        self._shown = shown
        self._active: httpx.AsyncClient | None = None

    async def run(self) -> None:
        if self._client is not None:
            self._active = self._client
            await super().run()
            return
        # No proxy is bypassed: an alert to an internet URL goes where the environment says.
        client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        self._active = client
        try:
            await super().run()
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def _deliver(self, alert: Alert) -> None:
        from adapters.backoff import Backoff

        body = msgspec.json.encode(alert)
        backoff = Backoff(base=self.backoff, cap=max(self.backoff, _RETRY_AFTER_CAP), max_attempts=self.attempts - 1)
        attempt = 0
        while True:
            attempt += 1
            retry, why, asked = await self._attempt(alert.id, body)
            if not retry:
                if why is None:
                    return
                raise _Refused(why)
            if backoff.exhausted:
                raise _Refused(f"{why} (attempt {attempt} of {self.attempts}; giving up)")
            delay = backoff.next_delay(min(asked or 0.0, _RETRY_AFTER_CAP))
            self.retried += 1
            _log.info(
                "alert_hook_retrying",
                hook=self.name,
                alert_id=alert.id,
                attempt=attempt,
                reason=why,
                delay=round(delay, 3),
            )
            await anyio.sleep(delay)

    async def _attempt(self, msg_id: str, body: bytes) -> tuple[bool, str | None, float | None]:
        """One POST: (retry?, why it failed or None, the receiver's Retry-After)."""
        from adapters.backoff import certificate_refusal, retry_after_of
        from adapters.signing import HEADER_ID, HEADER_TIMESTAMP, signature_headers

        client = self._active
        assert client is not None
        headers = {**self.headers, "content-type": "application/json", "user-agent": _USER_AGENT}
        if self._key is not None:
            headers.update(signature_headers(self._key, msg_id, body))  # signed at each attempt: a fresh timestamp
        else:
            headers.update({HEADER_ID: msg_id, HEADER_TIMESTAMP: str(int(time.time()))})
        try:
            with anyio.fail_after(self.timeout):
                # Streamed and closed unread: a receiver's answer body is not ours to hold.
                async with client.stream("POST", self.url, content=body, headers=headers) as response:
                    status = response.status_code
                    asked = retry_after_of(response.headers, cap=_RETRY_AFTER_CAP)  # (names case-insensitive)
        except (TimeoutError, httpx.TimeoutException):
            return True, f"no answer within {self.timeout:g}s", None
        except httpx.HTTPError as exc:
            refused = certificate_refusal(exc)
            if refused is not None:  # the same certificate comes back on every attempt
                return False, f"TLS: {refused}", None
            return True, f"could not reach it: {self._scrub(exc)}", None
        if 200 <= status < 300:
            return False, None, None
        if status == 429 or status >= 500:
            return True, f"HTTP {status}", asked
        return False, f"HTTP {status} (not retried: resending the same alert would be refused again)", None

    def _failed(self, alert: Alert, exc: Exception) -> None:
        _log.error("alert_hook_failed", hook=self.name, rule=alert.rule, alert_id=alert.id, error=self._scrub(exc))

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return redact(text.replace(self.url, self._shown))


def _shown_url(url: Any) -> str:
    """``url`` as logs show it: no ``user:password@``, every query value replaced (a token often rides there)."""
    if not isinstance(url, str):
        return repr(url)
    base, sep, query = redact_userinfo(url).partition("?")
    if not sep:
        return base
    fragment = ""
    if "#" in query:
        query, fragment = query.split("#", 1)
        fragment = "#" + fragment
    pairs = [p.partition("=") for p in query.split("&")]
    return base + "?" + "&".join(f"{k}={'[redacted]' if s else ''}" if s else k for k, s, _ in pairs) + fragment


class LogHook(_Hook):
    """Writes each alert as one log entry, in the bus's handler (quick: no network). Made by :func:`log_to`."""

    kind: ClassVar[str] = "log"

    def __init__(self, target: Any, level: str, name: str | None) -> None:
        if level not in _LEVELS:
            raise ConfigError(f"log_to: level must be one of {', '.join(_LEVELS)}, not {level!r}")
        if target is None:
            target = logging.getLogger("eventbus.alerts")
        if isinstance(target, EventLogger):
            # Its own pipeline (renderer, redaction), with the "level" field its event lines carry.
            self._write = self._to_structlog(target._log, level, {"level": level})
        elif isinstance(target, logging.Logger):
            self._write = self._to_logging(target, level)
        elif callable(getattr(target, "write", None)):
            self._write = self._to_stream(target, level)
        elif callable(getattr(target, level, None)):
            self._write = self._to_structlog(target, level, {})
        else:
            raise ConfigError(
                f"log_to: give a logging.Logger, an EventLogger, a structlog logger or a text stream, not {target!r}"
            )
        super().__init__(name or f"log:{getattr(target, 'name', type(target).__name__)}")

    @staticmethod
    def _to_structlog(logger: Any, level: str, extra: dict[str, str]) -> Callable[[Alert], None]:
        method = getattr(logger, level)
        return lambda alert: method("alert", **extra, **_fields(alert))

    @staticmethod
    def _to_logging(logger: logging.Logger, level: str) -> Callable[[Alert], None]:
        number = logging.getLevelNamesMapping()[level.upper()]

        def write(alert: Alert) -> None:
            fields = redact(_fields(alert))
            logger.log(number, "alert %s: %s", alert.rule, fields["message"], extra={"alert": fields})

        return write

    @staticmethod
    def _to_stream(stream: Any, level: str) -> Callable[[Alert], None]:
        def write(alert: Alert) -> None:
            line = msgspec.json.encode({"event": "alert", "level": level, **redact(_fields(alert))})
            stream.write(line.decode() + "\n")
            flush = getattr(stream, "flush", None)
            if flush is not None:
                flush()

        return write

    def __call__(self, alert: Alert) -> None:
        self._write(alert)


def _fields(alert: Alert) -> dict[str, Any]:
    fields = msgspec.to_builtins(alert)
    fields["alert_id"] = fields.pop("id")
    return fields


class CallHook(_QueuedHook):
    """Calls a function with each alert: a plain one in the handler, an ``async def`` from its own task.

    Made by :func:`call`, or from any callable given as a hook.
    """

    kind: ClassVar[str] = "call"

    def __init__(self, fn: Callable[[Alert], Any], *, timeout: float | None, queue: int | None, name: str | None):
        if not callable(fn):
            raise ConfigError(f"a hook must be callable, or made by post_to()/log_to(), not {fn!r}")
        self.fn = fn
        self.is_async = _is_async(fn)
        if not self.is_async and (timeout is not None or queue is not None):
            raise ConfigError(
                f"call: timeout= and queue= are for async hooks; {_name_of(fn)} is called in the handler, at once"
            )
        timeout = 30.0 if timeout is None else timeout
        queue = 100 if queue is None else queue
        check_numbers("call", timeout=(timeout, SECONDS), queue=(queue, COUNT))
        super().__init__(name or _name_of(fn), queue)
        self.timeout = timeout
        self.queued = self.is_async

    def __call__(self, alert: Alert) -> None:
        result = self.fn(alert)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited: no "coroutine was never awaited" warning either
            raise TypeError(f"{self.name} returned an awaitable: make it an async def so it is awaited")

    async def _deliver(self, alert: Alert) -> None:
        with anyio.fail_after(self.timeout):
            await self.fn(alert)

    def _failed(self, alert: Alert, exc: Exception) -> None:
        fields = {"hook": self.name, "rule": alert.rule, "alert_id": alert.id}
        if isinstance(exc, TimeoutError):
            _log.error("alert_hook_failed", **fields, error=f"did not finish within {self.timeout:g}s")
        else:
            _log.error("alert_hook_failed", **fields, error=redact(str(exc)), exc_info=exc)


def _is_async(fn: Any) -> bool:
    # An object whose __call__ is an async def counts too (type(fn).__call__: what calling it runs).
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def _name_of(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


Hook: TypeAlias = PostHook | LogHook | CallHook
"""A configured hook; any callable taking an :class:`Alert` is accepted too (see :func:`call`)."""


def post_to(
    url: str,
    secret: str | bytes | None = None,
    *,
    timeout: float = 10.0,
    attempts: int = 4,
    backoff: float = 0.5,
    queue: int = 100,
    headers: Mapping[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
    name: str | None = None,
) -> PostHook:
    """A hook that POSTs each alert to ``url`` as JSON, from its own task.

    With ``secret`` (raw, or ``whsec_<base64>``) each request is signed the
    Standard Webhooks way: ``webhook-id`` (the alert's id, the same on every
    retry), ``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64
    HMAC-SHA256 of "id.timestamp.body">``); without one, only the first two are
    sent. Each attempt is bounded by ``timeout`` seconds; a 5xx, a 429, a
    refused connection or a timeout is tried again, at most ``attempts`` tries
    in all, after a jittered delay starting at ``backoff`` seconds and doubling
    (a receiver's ``Retry-After`` is honoured, up to 30 s). Other answers are
    final: 2xx delivered, anything else failed. At most ``queue`` alerts wait
    to be sent; more are dropped, counted and logged. ``headers`` are added to
    each request; ``client`` is used instead of a client of its own (it is not
    closed). Logs name the hook ``name``, by default the URL without its
    password and query values.
    """
    return PostHook(
        url,
        secret=secret,
        timeout=timeout,
        attempts=attempts,
        backoff=backoff,
        queue=queue,
        headers=headers,
        client=client,
        name=name,
    )


def log_to(target: Any = None, *, level: str = "warning", name: str | None = None) -> LogHook:
    """A hook that logs each alert as one entry, at ``level``.

    ``target``: a :class:`logging.Logger` (default: ``eventbus.alerts``; the
    alert's fields ride on the record as ``record.alert``), an
    :class:`~eventbus.subscribers.log.EventLogger` (an ``"alert"`` entry in the
    same log as the events, rendered and redacted the same way), a structlog
    logger, or a text stream (one JSON line per alert, secrets redacted).
    """
    return LogHook(target, level, name)


def call(
    fn: Callable[[Alert], Any], *, timeout: float | None = None, queue: int | None = None, name: str | None = None
) -> CallHook:
    """A hook calling ``fn(alert)``; what a bare callable given as a hook becomes.

    A plain function is called in the bus's handler as the alert fires (keep
    it quick). An ``async def`` is queued (at most ``queue`` alerts, default
    100; more are dropped and counted) and awaited from its own task, each call
    bounded by ``timeout`` seconds (default 30).
    """
    return CallHook(fn, timeout=timeout, queue=queue, name=name)


# --- the subscriber ---------------------------------------------------------------------


class AlertStats(msgspec.Struct, frozen=True):
    """A snapshot of an :class:`Alerts`' counters."""

    fired: dict[str, int]  # alerts fired, by rule
    duplicates: int  # events ignored because an event with their id was seen before
    jobs: int  # jobs (and chunks) whose state is held now
    evicted: int  # jobs forgotten to stay within max_jobs (their alerts may fire again)
    hooks: list[HookStats]


class _Job:
    """What the rules keep about one job (or chunk) while it runs."""

    __slots__ = (
        "failed",
        "first_throttle",
        "rate_fired",
        "stuck_fired",
        "succeeded",
        "throttled_fired",
        "throttles",
        "waited",
    )

    def __init__(self) -> None:
        self.failed = self.succeeded = self.throttles = 0
        self.waited = 0.0
        self.first_throttle = ""
        self.rate_fired = self.throttled_fired = self.stuck_fired = False

    def moved(self) -> None:
        """The job showed progress: the 429 streak is over, and a later silence is a new one."""
        self.waited, self.throttles, self.first_throttle = 0.0, 0, ""
        self.stuck_fired = False


_Key: TypeAlias = tuple[str, str]
_SLOTS: Final[dict[type, str]] = {
    FailedJob: "_failed",
    FailureRate: "_rate",
    OutOfQuota: "_quota",
    ThrottledTooLong: "_throttle",
    StuckJob: "_stuck",
}


class Alerts:
    """Fires :class:`Alert` s to hooks when its rules' conditions are met, once per condition.

    ``rules`` default to :data:`DEFAULT_RULES` (every rule, at most one of
    each kind); ``hooks`` (at least one) are :func:`post_to`, :func:`log_to`,
    :func:`call` hooks or plain callables, each used by one :class:`Alerts`.
    ``max_jobs`` bounds the jobs whose state is held (and the ended jobs
    remembered); ``dedupe_window`` the event ids remembered to ignore copies;
    ``close_timeout`` how long leaving waits for queued alerts to go out.

    Use :meth:`attach`, or enter it (``async with alerts:``, which runs the
    queued hooks) and subscribe it yourself with ``bus.on(alerts,
    types=alerts.types)``. With only plain-function and log hooks it needs no
    entering: ``bus.on(alerts, name="alerts")`` is enough. Not reusable once exited.
    """

    def __init__(
        self,
        *,
        hooks: Iterable[Hook | Callable[[Alert], Any]] | Hook | Callable[[Alert], Any],
        rules: Iterable[AlertRule] | AlertRule = DEFAULT_RULES,
        max_jobs: int = 10_000,
        dedupe_window: int = 16_384,
        close_timeout: float = 10.0,
    ) -> None:
        check_numbers(
            "Alerts",
            max_jobs=(max_jobs, COUNT),
            dedupe_window=(dedupe_window, COUNT),
            close_timeout=(close_timeout, SECONDS),
        )
        self.max_jobs = max_jobs
        self.dedupe_window = dedupe_window
        self.close_timeout = close_timeout
        self._failed: FailedJob | None = None
        self._rate: FailureRate | None = None
        self._quota: OutOfQuota | None = None
        self._throttle: ThrottledTooLong | None = None
        self._stuck: StuckJob | None = None
        rules = [rules] if isinstance(rules, _RULE_TYPES) else list(rules)
        for rule in rules:
            slot = _SLOTS.get(type(rule))
            if slot is None:
                raise ConfigError(
                    f"Alerts: {rule!r} is not a rule; use FailedJob, FailureRate, OutOfQuota, ThrottledTooLong "
                    "or StuckJob from eventbus.subscribers.alerts"
                )
            if getattr(self, slot) is not None:
                raise ConfigError(
                    f"Alerts: two {type(rule).__name__} rules; give one (for two thresholds, use two Alerts)"
                )
            setattr(self, slot, rule)
        if not rules:
            raise ConfigError("Alerts: rules is empty: nothing would ever fire")
        if isinstance(hooks, _Hook) or callable(hooks):  # one hook given alone
            hooks = [hooks]
        self._hooks: list[_Hook] = [h if isinstance(h, _Hook) else call(h) for h in hooks]
        if not self._hooks:
            raise ConfigError("Alerts: no hooks: alerts would go nowhere; give post_to(), log_to() or a callable")
        for hook in self._hooks:
            if hook._owner is not None:
                raise ConfigError(f"Alerts: hook {hook.name!r} already belongs to another Alerts; make one per Alerts")
        for hook in self._hooks:
            hook._owner = self
        self._steps = self._plan()
        self._jobs: OrderedDict[_Key, _Job] = OrderedDict()
        self._ended: OrderedDict[_Key, None] = OrderedDict()
        self._exhausted: dict[str, set[str]] = {}  # provider -> chunks submitted since its quota alert
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._fired: dict[str, int] = {}
        self._duplicates = self._evicted = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._entered = False

    def _plan(self) -> dict[type, Callable[[Any], list[Alert]]]:
        """The step each event class takes, for the rules given; the others are ignored at the cost of a lookup."""
        steps: dict[type, Callable[[Any], list[Alert]]] = dict.fromkeys(ev.TERMINAL_TYPES, self._on_end)
        moving = self._throttle is not None or self._stuck is not None
        if self._rate is not None or moving:
            steps[ev.ItemSucceeded] = steps[ev.ItemFailed] = self._on_item
        if moving:
            steps[ev.JobProgress] = self._on_progress
        if self._quota is not None or moving:
            steps[ev.JobAccepted] = self._on_accepted
        if self._quota is not None:
            steps[ev.BatchSubmitted] = self._on_submitted
        if self._quota is not None or self._throttle is not None:
            steps[ev.QuotaExhausted] = self._on_quota
        if self._throttle is not None:
            steps[ev.SubmitRejected] = self._on_rejected
            steps[ev.Throttled] = self._on_throttled
        if self._stuck is not None:
            steps[ev.JobStuck] = self._on_stuck
        return steps

    @property
    def types(self) -> frozenset[type[ev.Event]]:
        """The event classes its rules read: the ``types=`` to subscribe it with."""
        return frozenset(self._steps)

    # --- the core: events in, alerts out -------------------------------------------------------

    def __call__(self, event: ev.Event) -> None:
        """Evaluate ``event`` and hand each alert it fires to every hook (the subscriber's entry point)."""
        if type(event) not in self._steps:  # most events, when subscribed without types=: one lookup
            return
        for alert in self.evaluate(event):
            self._fire(alert)

    def evaluate(self, event: ev.Event) -> list[Alert]:
        """The alerts ``event`` fires, updating the rules' state; no hook is called (pure, no I/O)."""
        step = self._steps.get(type(event))
        if step is None:
            return []
        seen = self._seen
        if event.id in seen:
            self._duplicates += 1
            return []
        seen[event.id] = None
        if len(seen) > self.dedupe_window:
            seen.popitem(last=False)
        return step(event)

    def _job(self, key: _Key) -> _Job:
        """The state of a job that is not over, made if needed; the least recently active beyond max_jobs goes."""
        job = self._jobs.get(key)
        if job is not None:
            self._jobs.move_to_end(key)
            return job
        if len(self._jobs) >= self.max_jobs:
            self._jobs.popitem(last=False)
            self._evicted += 1
            if self._evicted == 1:
                _log.warning("alerts_jobs_evicted", max_jobs=self.max_jobs, reason="more jobs at once than max_jobs")
        job = self._jobs[key] = _Job()
        return job

    def _moved(self, key: _Key) -> None:
        job = self._jobs.get(key)
        if job is not None:
            job.moved()
            self._jobs.move_to_end(key)

    def _on_item(self, event: ev.ItemSucceeded | ev.ItemFailed) -> list[Alert]:
        key = (event.provider, event.job_id)
        if key in self._ended:
            return []
        self._moved(key)
        rule = self._rate
        if rule is None or event.job_id.endswith("#-1"):  # rows refused before sending: no job's failure
            return []
        job = self._job(key)
        if job.rate_fired:
            return []
        if type(event) is ev.ItemFailed:
            job.failed += 1
        else:
            job.succeeded += 1
        return self._judge_rate(rule, job, event, job.failed, job.succeeded, "items")

    def _judge_rate(
        self, rule: FailureRate, job: _Job, event: ev.Event, failed: int, succeeded: int, counted: str
    ) -> list[Alert]:
        seen = failed + succeeded
        if seen < rule.min_items or failed / seen <= rule.threshold:  # a division: correctly rounded at the edge
            return []
        job.rate_fired = True
        rate = failed / seen
        return [
            self._alert(
                rule.rule,
                event,
                f"{failed} of {seen} contacts failed in job {event.job_id} at {event.provider} ({rate:.1%}, above "
                f"the {rule.threshold:.1%} limit): look at the item_failed codes and messages before sending more; "
                "the contacts or the field mapping may be wrong",
                {
                    "failed": failed,
                    "succeeded": succeeded,
                    "rate": round(rate, 4),
                    "threshold": rule.threshold,
                    "min_items": rule.min_items,
                    "counted_from": counted,
                },
            )
        ]

    def _on_end(self, event: ev.Event) -> list[Alert]:
        key = (event.provider, event.job_id)
        if key in self._ended:  # the first terminal event decides; a second one, whatever it says, is late
            self._ended.move_to_end(key)
            return []
        self._ended[key] = None
        if len(self._ended) > self.max_jobs:
            self._ended.popitem(last=False)
        job = self._jobs.pop(key, None)
        out: list[Alert] = []
        if type(event) is ev.JobCompleted:
            rule = self._rate
            if rule is not None and not (job is not None and job.rate_fired) and not event.job_id.endswith("#-1"):
                counted = (job.failed + job.succeeded) if job is not None else 0
                if event.failed + event.succeeded > counted:  # the provider's totals know more than its items told
                    out = self._judge_rate(rule, _Job(), event, event.failed, event.succeeded, "job_completed")
            return out
        failed = self._failed
        if failed is None:
            return out
        reason = getattr(event, "reason", "")
        job_at, said = f"job {event.job_id} at {event.provider}", f": {reason.rstrip('.')}" if reason else ""
        if type(event) is ev.JobFailed:
            state = "failed"
            message = (
                f"{job_at} failed{said}. The contacts it did not process must be sent again (check the job at "
                f"{event.provider} first)"
            )
        elif type(event) is ev.JobExpired and failed.expired:
            state = "expired"
            message = (
                f"{job_at} expired{said}. {event.provider} no longer knows it: results not read yet are lost; send "
                "its contacts again"
            )
        elif type(event) is ev.JobCancelled and failed.cancelled:
            state = "cancelled"
            message = (
                f"{job_at} was cancelled{said}. The contacts it did not process were not processed; send them again "
                "if the cancellation was not intended"
            )
        else:
            return out
        return [self._alert(failed.rule, event, message, {"state": state, "reason": reason})]

    def _on_progress(self, event: ev.JobProgress) -> list[Alert]:
        self._moved((event.provider, event.job_id))
        return []

    def _on_accepted(self, event: ev.JobAccepted) -> list[Alert]:
        if event.batch_id:
            chunk = ev.chunk_ref(event.batch_id, event.chunk_index)
            if chunk != event.job_id:
                self._jobs.pop((event.provider, chunk), None)  # the chunk is a job now: its 429 streak is over
            sent_since = self._exhausted.get(event.provider)
            if sent_since is not None and chunk in sent_since:
                del self._exhausted[event.provider]  # work sent after the alert was taken: there is quota again
        self._moved((event.provider, event.job_id))
        return []

    def _on_submitted(self, event: ev.BatchSubmitted) -> list[Alert]:
        sent_since = self._exhausted.get(event.provider)
        if sent_since is not None and len(sent_since) < _CHUNKS_WATCHED:
            sent_since.add(event.job_id)
        return []

    def _on_rejected(self, event: ev.SubmitRejected) -> list[Alert]:
        self._jobs.pop((event.provider, event.job_id), None)  # the chunk's request is over
        return []

    def _on_quota(self, event: ev.QuotaExhausted) -> list[Alert]:
        self._jobs.pop((event.provider, event.job_id), None)  # the chunk's request is over
        rule = self._quota
        if rule is None or event.provider in self._exhausted:
            return []
        if len(self._exhausted) >= self.max_jobs:
            del self._exhausted[next(iter(self._exhausted))]
        self._exhausted[event.provider] = set()
        said = f" — {event.message}" if event.message else ""
        message = (
            f"out of quota (HTTP {event.status}): {event.reason}{said}. {event.provider} refuses every chunk until "
            "the account has quota, credits or consent again; chunks refused meanwhile must be sent again then"
        )
        details = {"status": event.status, "reason": event.reason, "provider_message": event.message}
        return [self._alert(rule.rule, event, message, details)]

    def _on_throttled(self, event: ev.Throttled) -> list[Alert]:
        rule = self._throttle
        key = (event.provider, event.job_id)
        if rule is None or key in self._ended:
            return []
        job = self._job(key)
        wait = event.retry_after
        if job.throttled_fired or not (isinstance(wait, int | float) and math.isfinite(wait) and wait > 0):
            return []
        job.waited += wait
        job.throttles += 1
        job.first_throttle = job.first_throttle or event.id
        if job.waited < rule.seconds:
            return []
        job.throttled_fired = True
        what = "chunk" if ev.is_chunk_ref(event.job_id) else "job"
        message = (
            f"{what} {event.job_id} at {event.provider} has waited {job.waited:.0f}s on rate limits "
            f"({job.throttles} throttled answers in a row), more than {rule.seconds:g}s: lower the concurrency or "
            f"the client rate limit, or ask {event.provider} for a higher limit"
        )
        details = {"waited": round(job.waited, 3), "throttles": job.throttles, "seconds": rule.seconds}
        ids = (job.first_throttle, event.id) if job.first_throttle != event.id else (event.id,)
        return [self._alert(rule.rule, event, message, details, ids)]

    def _on_stuck(self, event: ev.JobStuck) -> list[Alert]:
        rule = self._stuck
        key = (event.provider, event.job_id)
        if rule is None or key in self._ended:
            return []
        job = self._job(key)
        if job.stuck_fired:
            return []
        job.stuck_fired = True
        message = (
            f"job {event.job_id} at {event.provider} has said nothing for {event.silent_for:.0f}s (last: "
            f"{event.last_type or 'nothing'}): check its status at {event.provider}, and that what watches it "
            "(webhooks, the WebSocket or polls) still receives"
        )
        return [self._alert(rule.rule, event, message, {"silent_for": event.silent_for, "last_type": event.last_type})]

    def _alert(
        self,
        rule: str,
        event: ev.Event,
        message: str,
        details: dict[str, Any],
        event_ids: tuple[str, ...] | None = None,
    ) -> Alert:
        digest = hashlib.blake2b(
            "\x00".join((rule, event.provider, event.job_id, event.id)).encode(), digest_size=16
        ).hexdigest()
        return Alert(
            id=f"alert_{digest}",
            rule=rule,
            provider=event.provider,
            job_id=event.job_id,
            message=message,
            event_ids=event_ids or (event.id,),
            at=event.at,
            details=details,
        )

    # --- the shell: alerts out to hooks ---------------------------------------------------------

    def _fire(self, alert: Alert) -> None:
        self._fired[alert.rule] = self._fired.get(alert.rule, 0) + 1
        _log.info("alert_fired", rule=alert.rule, provider=alert.provider, job_id=alert.job_id, alert_id=alert.id)
        for hook in self._hooks:
            if hook.queued:
                hook.offer(alert)  # type: ignore[attr-defined]
                continue
            try:
                hook(alert)  # type: ignore[operator]
            except Exception as exc:
                hook.failed += 1
                _log.exception(
                    "alert_hook_failed", hook=hook.name, rule=alert.rule, alert_id=alert.id, error=redact(str(exc))
                )
            else:
                hook.delivered += 1

    async def __aenter__(self) -> Alerts:
        if self._entered:
            raise SubscriptionClosed("an Alerts can be entered once; build a new one")
        self._entered = True
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for hook in self._queued():
            hook._running = True  # alerts fired before its task starts are queued, not dropped
            self._tg.start_soon(hook.run, name=f"eventbus alerts hook {hook.name}")
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._tg is not None
        try:
            if exc_info[0] is None:
                with anyio.move_on_after(self.close_timeout) as waited:
                    await self.drain()
                if waited.cancelled_caught:
                    left = sum(hook._waiting() for hook in self._queued())
                    _log.warning("alerts_close_timeout", timeout=self.close_timeout, undelivered=left)
        finally:
            self._tg.cancel_scope.cancel()  # the hooks' tasks count what is left as dropped
            # The block's own error is not handed to the task group, which would wrap it in an ExceptionGroup:
            # the hooks' tasks raise nothing of their own, so it comes out as itself.
            await self._tg.__aexit__(None, None, None)

    def _queued(self) -> list[_QueuedHook]:
        return [hook for hook in self._hooks if hook.queued]  # type: ignore[misc]

    @asynccontextmanager
    async def attach(self, bus: Bus, *, name: str = "alerts", buffer: int = 1024) -> AsyncIterator[Alerts]:
        """Enter, and subscribe to ``bus`` as ``name`` for :attr:`types`, for the duration of the block.

        On leaving, the events already buffered are still evaluated and the
        alerts queued are sent, within ``close_timeout`` each; leaving on an
        error stops at once (the undelivered alerts are counted as dropped).
        """
        async with self, bus.on(self, name=name, types=self.types, buffer=buffer).attached(self.close_timeout):
            yield self

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every queued hook has delivered (or given up on) every alert fired so far.

        ``TimeoutError`` after ``timeout`` seconds. To wait for the events
        still on the bus too: ``await bus.drain()`` first.
        """
        with anyio.fail_after(math.inf if timeout is None else timeout):
            while True:  # until all are idle at once
                busy = next((hook for hook in self._queued() if hook._waiting()), None)
                if busy is None:
                    return
                await busy.wait_idle()

    def stats(self) -> AlertStats:
        """The counters: alerts fired by rule, duplicates ignored, jobs held and evicted, and each hook's."""
        return AlertStats(
            fired=dict(self._fired),
            duplicates=self._duplicates,
            jobs=len(self._jobs),
            evicted=self._evicted,
            hooks=[hook.stats() for hook in self._hooks],
        )

    def __repr__(self) -> str:
        rules = [rule for rule in (self._failed, self._rate, self._quota, self._throttle, self._stuck) if rule]
        return f"<Alerts rules={[r.rule for r in rules]} hooks={[h.name for h in self._hooks]}>"
