"""Polling shells: job-status polls with an adaptive interval, blind pagination, streamed CSV rows.

:class:`Poller` calls a caller-supplied ``fetch()`` (the HTTP request) and the
provider's sans-I/O ``interpret(response) -> (events, changed, terminal)``,
publishes the events, and sleeps: ``initial`` seconds after a change, then
``factor`` times longer after each poll that changed nothing, up to ``cap``.
Signals, raised by ``fetch`` or ``interpret`` (or read off an httpx-like
response's ``status_code`` by the poller itself):

* :class:`PollThrottled` (HTTP 429): wait ``retry_after`` (from ``Retry-After``
  or ``X-RateLimit-Reset`` seconds, see :func:`retry_after_of`), publish a
  ``Throttled`` event, poll again; the interval is not grown.
* :class:`JobGone` (HTTP 404): on a job the poller has seen (or was told is
  ``known``) this publishes ``JobExpired`` and stops — what was reported
  before stays reported; on a job never seen it publishes an
  ``InvalidSignal`` and stops.
* transient failures (5xx, an ``httpx.RequestError``, a ``TransportError`` or
  ``ProviderError`` from :mod:`eventbus.exceptions` such as a ProviderClient's
  retries running out, an unusable body): retried on the growing interval,
  giving up after more than ``max_errors`` in a row once they have also lasted
  ``error_grace`` seconds (0 by default; ``follow()`` gives its polls 120 s, so
  that a provider's short outage does not end the following of a job that
  cannot be picked up again). Each failed poll publishes
  ``SourceState(state="reconnecting")`` (``attempt`` counts them, ``detail``
  says why and when the next poll is), and the first good poll after them
  ``SourceState(state="connected")``, so that an outage is seen while it lasts.
  An ``AuthError`` (refused credentials) or a TLS certificate that fails
  verification (``CertificateError``) gives up at once.

Every run is bounded by ``max_polls`` and ``max_time``; running out publishes
``SourceState(state="gave_up")``. :meth:`Poller.run` returns a
:class:`PollOutcome`.

:func:`follow_pages` walks "blind" pagination (Mautic's ``next-page``) with a
page cap and loop detection; :class:`CsvRows` reads a streamed CSV response
row by row with a bounded line length, reporting malformed rows as
``InvalidSignal`` events.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from types import TracebackType
from typing import Final, Generic, Literal, NamedTuple, TypeVar

import anyio
import httpx

from adapters.backoff import certificate_refusal, retry_after_of
from eventbus import events as ev
from eventbus.exceptions import AuthError, CertificateError, ConfigError, ProviderError, TransportError
from eventbus.tracker import Publisher

__all__ = [
    "CsvRow",
    "CsvRows",
    "Interpretation",
    "JobGone",
    "PageFollower",
    "PaginationError",
    "PollOutcome",
    "PollThrottled",
    "Poller",
    "follow_pages",
    "RETRY_AFTER_CAP",
    "retry_after_of",
]

R = TypeVar("R")
P = TypeVar("P")

Interpretation = tuple[Sequence[ev.Event], bool, bool]
"""What ``interpret`` returns: the events, whether anything changed, whether the job is over."""

RETRY_AFTER_CAP: Final = 3600.0
"""The longest wait a poll honours from a 429's ``Retry-After``/``X-RateLimit-Reset``, in seconds."""


class PollThrottled(Exception):
    """Signal (raise from ``fetch``/``interpret``): the provider said 429; wait ``retry_after`` seconds."""

    def __init__(self, retry_after: float | None = None, message: str = "throttled (429)") -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobGone(Exception):
    """Signal (raise from ``fetch``/``interpret``): the provider answered 404 for the job."""


class PaginationError(ProviderError):
    """Blind pagination went wrong: a ``next-page`` loop, or more pages than the cap allows."""


class PollOutcome(StrEnum):
    """How a :meth:`Poller.run` ended."""

    TERMINAL = "terminal"  # interpret reported a terminal status
    EXPIRED = "expired"  # 404 on a known job: JobExpired was published
    NOT_FOUND = "not_found"  # 404 on a job never seen: InvalidSignal was published
    GAVE_UP = "gave_up"  # max_polls, max_time or max_errors ran out: SourceState gave_up was published


class _Transient(Exception):
    """A poll failed in a way worth retrying (internal)."""


class Poller(Generic[R]):
    """Polls one job until it ends, backing off while nothing changes. Works under asyncio and trio."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[R]],
        interpret: Callable[[R], Interpretation],
        bus: Publisher,
        *,
        provider: str,
        job_id: str,
        known: bool = False,
        initial: float = 0.5,
        factor: float = 1.5,
        cap: float = 30.0,
        max_polls: int = 10_000,
        max_time: float = 24 * 3600.0,
        max_errors: int = 5,
        error_grace: float = 0.0,
    ) -> None:
        if not 0 <= initial <= cap or factor < 1 or max_polls < 1 or max_time <= 0 or max_errors < 0:
            raise ConfigError("Poller needs 0 <= initial <= cap, factor >= 1, max_polls >= 1, max_time > 0")
        if not 0 <= error_grace < float("inf"):
            raise ConfigError(f"Poller's error_grace must be a finite number of seconds >= 0, not {error_grace!r}")
        self._fetch = fetch
        self._interpret = interpret
        self._bus = bus
        self.provider = provider
        self.job_id = job_id
        self.known = known
        self._initial = initial
        self._factor = factor
        self._cap = cap
        self._max_polls = max_polls
        self._max_time = max_time
        self._max_errors = max_errors
        self._error_grace = error_grace  # failed polls give up only once they have lasted this long too
        self.polls = 0
        self.delays: deque[float] = deque(maxlen=256)  # the last waits chosen, for inspection

    async def run(self) -> PollOutcome:
        """Poll until a terminal status, a 404, or a bound runs out; return how it ended."""
        deadline = anyio.current_time() + self._max_time
        interval = self._initial
        errors = 0
        first_error = 0.0
        last_error = ""
        while True:
            if self.polls >= self._max_polls or anyio.current_time() >= deadline:
                why = f"{self.polls} polls" if self.polls >= self._max_polls else f"{self._max_time:g}s"
                return await self._give_up(f"no terminal status after {why}")
            self.polls += 1
            try:
                events, changed, terminal = await self._poll_once()
            except PollThrottled as throttled:
                wait = max(throttled.retry_after if throttled.retry_after is not None else interval, interval)
                await self._bus.publish(
                    ev.Throttled(
                        id=ev.new_id(), provider=self.provider, job_id=self.job_id, source="poll", retry_after=wait
                    )
                )
                await self._sleep(wait, deadline)
                continue
            except JobGone:
                return await self._gone()
            except AuthError as exc:
                return await self._give_up(f"the provider refused our credentials: {exc}")
            except CertificateError as exc:
                return await self._give_up(str(exc))
            except _Transient as exc:
                errors += 1
                last_error = str(exc)
                if errors == 1:
                    first_error = anyio.current_time()
                lasted = anyio.current_time() - first_error
                if errors > self._max_errors and lasted >= self._error_grace:
                    over = f" over {lasted:.1f}s" if self._error_grace else ""
                    return await self._give_up(f"{errors} failed polls in a row{over}; last: {last_error}")
                # Said at each failure, so that a console is not silent through a provider's outage.
                await self._state("reconnecting", f"{last_error}; polling again in {interval:.1f}s", errors)
                await self._sleep(interval, deadline)
                interval = min(self._cap, interval * self._factor)
                continue
            if errors:
                await self._state("connected", f"answered again after {errors} failed poll(s)")
            errors = 0
            self.known = True
            for event in events:
                await self._bus.publish(event)
            if terminal:
                return PollOutcome.TERMINAL
            interval = self._initial if changed else min(self._cap, interval * self._factor)
            await self._sleep(interval, deadline)

    async def _poll_once(self) -> Interpretation:
        try:
            response = await self._fetch()
        except (AuthError, CertificateError):
            raise  # refused credentials or an untrusted certificate do not heal by polling again: run() gives up
        except (httpx.RequestError, TransportError, ProviderError) as exc:
            refusal = certificate_refusal(exc)  # a fetch of one's own, with raw httpx
            if refusal is not None:
                raise CertificateError(f"the provider's TLS certificate is not trusted ({refusal})") from exc
            # Raw httpx errors, and the typed ones of a ProviderClient (a token that cannot be had,
            # retries run out): a failed poll like a 5xx, bounded by max_errors.
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        status = getattr(response, "status_code", None)
        if status == 429:
            raise PollThrottled(retry_after_of(response.headers, cap=RETRY_AFTER_CAP))  # type: ignore[attr-defined]
        if status == 404:
            raise JobGone
        if status is not None and status >= 500:
            raise _Transient(f"HTTP {status} from the provider")
        try:
            return self._interpret(response)
        except (ValueError, LookupError, TypeError) as exc:
            raw = getattr(response, "content", b"")
            await self._bus.publish(self._invalid(f"{self.provider} status response not usable: {exc}", raw, status))
            raise _Transient(f"unusable status response: {exc}") from exc

    async def _sleep(self, seconds: float, deadline: float) -> None:
        seconds = max(0.0, min(seconds, deadline - anyio.current_time()))
        self.delays.append(seconds)
        await anyio.sleep(seconds)

    async def _gone(self) -> PollOutcome:
        if self.known:
            await self._bus.publish(
                ev.JobExpired(
                    id=ev.event_id(self.provider, self.job_id, "expired"),
                    provider=self.provider,
                    job_id=self.job_id,
                    source="poll",
                    reason="the provider answered 404 for a job it had accepted: it expired or was deleted; "
                    "what was reported before is kept",
                )
            )
            return PollOutcome.EXPIRED
        reason = f"{self.provider} does not know job {self.job_id!r} (404 on the first poll): check the job id"
        await self._bus.publish(self._invalid(reason, b"", 404))
        return PollOutcome.NOT_FOUND

    async def _give_up(self, why: str) -> PollOutcome:
        await self._state("gave_up", why)
        return PollOutcome.GAVE_UP

    async def _state(self, state: Literal["connected", "reconnecting", "gave_up"], why: str, attempt: int = 0) -> None:
        detail = f"polling job {self.job_id}: {why}"
        await self._bus.publish(
            ev.SourceState(
                id=ev.new_id(),
                provider=self.provider,
                job_id="",
                source="poll",
                state=state,
                detail=detail,
                attempt=attempt,
            )
        )

    def _invalid(self, reason: str, raw: bytes, status: int | None) -> ev.InvalidSignal:
        return ev.InvalidSignal(
            id=ev.new_id(),
            provider=self.provider,
            job_id=self.job_id,
            source="poll",
            reason=reason,
            excerpt=ev.excerpt(raw),
            status=status,
        )


# --- blind pagination ---------------------------------------------------------------------


class PageFollower(Generic[P]):
    """The pages of a blind-paginated listing, one ``fetch_page`` per step (see :func:`follow_pages`).

    Raises :class:`PaginationError` when a URL comes back a second time (a
    loop) or after ``max_pages`` pages. A class rather than an async generator,
    so that breaking out of the loop leaves nothing to finalize.
    """

    def __init__(
        self,
        fetch_page: Callable[[str], Awaitable[P]],
        first_url: str,
        next_url: Callable[[P], str | None],
        *,
        max_pages: int = 1000,
    ) -> None:
        if max_pages < 1:
            raise ConfigError("max_pages must be at least 1")
        self._fetch_page = fetch_page
        self._next_url = next_url
        self._url: str | None = first_url
        self._max_pages = max_pages
        self._seen: set[str] = set()

    def __aiter__(self) -> PageFollower[P]:
        return self

    async def __anext__(self) -> P:
        url = self._url
        if not url:
            raise StopAsyncIteration
        if url in self._seen:
            raise PaginationError(
                f"pagination loop: next-page {url!r} was already fetched; the provider repeats itself"
            )
        if len(self._seen) >= self._max_pages:
            raise PaginationError(f"more than {self._max_pages} pages: stopped (raise max_pages if this is legitimate)")
        self._seen.add(url)
        page = await self._fetch_page(url)
        self._url = self._next_url(page)
        return page


def follow_pages(
    fetch_page: Callable[[str], Awaitable[P]],
    first_url: str,
    next_url: Callable[[P], str | None],
    *,
    max_pages: int = 1000,
) -> PageFollower[P]:
    """Iterate pages: ``fetch_page(first_url)``, then ``fetch_page(next_url(page))`` until it returns None.

    ``async for page in follow_pages(fetch, url, lambda p: p.next_page): ...``
    """
    return PageFollower(fetch_page, first_url, next_url, max_pages=max_pages)


# --- streamed CSV -------------------------------------------------------------------------


class CsvRow(NamedTuple):
    """One data row: its 1-based line number in the file and its fields by column name."""

    line: int
    fields: dict[str, str]


class CsvRows:
    """Row-by-row reader of a streamed CSV response (header line first), bounded per line.

    ::

        async with client.stream("GET", url) as response, CsvRows(response, bus, ...) as rows:
            async for row in rows:
                ...

    Rows with the wrong number of fields, lines longer than ``max_line`` bytes
    and undecodable bytes are skipped and published as ``InvalidSignal``
    events. Quoted fields may contain commas, quotes and newlines (RFC 4180).
    ``flagged``, shared by the reads of one file (a download started again),
    holds the lines already reported, so that each is reported once.
    """

    def __init__(
        self,
        response: httpx.Response,
        bus: Publisher,
        *,
        provider: str,
        job_id: str,
        max_line: int = 64 * 1024,
        encoding: str = "utf-8-sig",
        flagged: set[int] | None = None,
    ) -> None:
        if max_line < 1:
            raise ConfigError("max_line must be positive")
        self._chunks = response.aiter_bytes()
        self._bus = bus
        self.provider = provider
        self.job_id = job_id
        self._max_line = max_line
        self._encoding = encoding
        self._buffer = bytearray()
        self._eof = False
        self._discarding = False  # inside an overlong line: drop bytes until its newline
        self._line = 0
        self._header: list[str] | None = None
        self.invalid = 0
        self._flagged = flagged  # lines reported invalid before, shared across reads of one file: not again

    async def __aenter__(self) -> CsvRows:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading (the response itself stays the caller's to close)."""
        await self._chunks.aclose()  # type: ignore[attr-defined]

    def __aiter__(self) -> CsvRows:
        return self

    async def __anext__(self) -> CsvRow:
        while True:
            record = await self._next_record()
            if record is None:
                raise StopAsyncIteration
            line, text = record
            try:
                fields = next(csv.reader([text], strict=True))
            except (csv.Error, StopIteration) as exc:
                await self._invalid(line, f"not valid CSV: {exc}", text)
                continue
            if self._header is None:
                self._header = fields
                continue
            if len(fields) != len(self._header):
                await self._invalid(line, f"{len(fields)} fields where the header has {len(self._header)}", text)
                continue
            return CsvRow(line, dict(zip(self._header, fields, strict=True)))

    async def _next_record(self) -> tuple[int, str] | None:
        """The next complete record (one or more physical lines when a quoted field spans them)."""
        parts: list[str] = []
        first_line = self._line + 1
        size = 0
        while True:
            raw = await self._next_line()
            if raw is None:
                if parts:
                    await self._invalid(first_line, "quoted field never closed before the end", "\n".join(parts))
                return None
            self._line += 1
            # The -sig codec drops a byte-order mark, which can only start the first line.
            encoding = self._encoding if self._line == 1 else self._encoding.removesuffix("-sig")
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                await self._invalid(self._line, f"not {encoding} text ({exc.reason})", raw)
                parts = []
                first_line = self._line + 1
                size = 0
                continue
            size += len(raw)
            if size > self._max_line:
                await self._invalid(first_line, f"longer than {self._max_line} bytes", text)
                parts = []
                first_line = self._line + 1
                size = 0
                continue
            parts.append(text)
            record = "\n".join(parts)
            if record.count('"') % 2 == 0:  # quotes balanced: the record is complete
                if not record.strip():
                    parts = []
                    first_line = self._line + 1
                    size = 0
                    continue
                return first_line, record

    async def _next_line(self) -> bytes | None:
        """The next physical line without its line ending, or None at the end; never buffers > max_line."""
        buffer = self._buffer
        while True:
            newline = buffer.find(b"\n")
            if newline >= 0:
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                if self._discarding:
                    self._discarding = False
                    continue
                return line.removesuffix(b"\r")
            if len(buffer) > self._max_line:
                if not self._discarding:
                    self._line += 1
                    await self._invalid(self._line, f"longer than {self._max_line} bytes", bytes(buffer))
                    self._discarding = True
                buffer.clear()
            if self._eof:
                if buffer and not self._discarding:
                    line = bytes(buffer)
                    buffer.clear()
                    return line.removesuffix(b"\r")
                return None
            try:
                buffer += await self._chunks.__anext__()
            except StopAsyncIteration:
                self._eof = True

    async def _invalid(self, line: int, reason: str, raw: bytes | str) -> None:
        self.invalid += 1
        if self._flagged is not None:
            if line in self._flagged:
                return  # reported by an earlier read of the same file
            self._flagged.add(line)
        await self._bus.publish(
            ev.InvalidSignal(
                id=ev.new_id(),
                provider=self.provider,
                job_id=self.job_id,
                source="poll",
                reason=f"{self.provider} CSV results: line {line}: {reason}",
                excerpt=ev.excerpt(raw),
            )
        )
