"""Submit contacts to a provider in allowed chunks, publishing every step as typed events.

:func:`submit` validates each contact (a bad row becomes an ``ItemFailed``,
or a :class:`ContactError` up front with ``strict=True``; the good rows still
go), splits the rest into the endpoint's chunk sizes, sends the chunks with
bounded concurrency and publishes ``BatchSubmitted``, ``JobAccepted``,
``SubmitRejected``, ``Throttled`` and ``QuotaExhausted``. No chunk is sent
twice: retries happen inside :class:`~adapters.http.ProviderClient` only when
the provider certainly did not take it. When a refusal applies to the whole
account (quota, credits, consent, credentials), chunks not yet sent are not
sent, and each is reported as ``SubmitRejected`` so nothing goes missing.

Synchronous endpoints (InsideView's Bulk Contact Fetch, Mautic's batch) answer
per contact at once: their chunk becomes a job keyed by its chunk reference,
with one item event per contact and a ``JobCompleted``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count as count_from
from typing import Any

import anyio
import httpx

from adapters.http import ProviderClient, Settings
from adapters.providers import PROVIDERS
from adapters.providers.base import NOT_FOUND, Accepted, Chunk, Items, Problem, Provider, Refused
from eventbus import events as ev
from eventbus._checks import COUNT, check_numbers
from eventbus.exceptions import (
    AmbiguousSubmit,
    AuthError,
    CertificateError,
    ConfigError,
    ContactError,
    ProviderError,
    TransportError,
)
from eventbus.tracker import Publisher

__all__ = [
    "AcceptedJob",
    "Plan",
    "PlannedChunk",
    "RejectedChunk",
    "SubmitReport",
    "Tapped",
    "plan",
    "prepare",
    "submit",
]


@dataclass(frozen=True)
class AcceptedJob:
    """A chunk the provider took: its job id and the input rows it carries."""

    provider: str
    job_id: str
    batch_id: str
    chunk_index: int
    rows: tuple[int, ...]
    total: int | None


@dataclass(frozen=True)
class RejectedChunk:
    """A chunk that was not taken: why (``status`` is the HTTP status, if any), and whether it was sent at all."""

    chunk_index: int
    rows: tuple[int, ...]
    status: int | None
    reason: str
    retriable: bool
    sent: bool  # False: not sent because the run stopped (see SubmitReport.stopped)
    # Refused for a reason of the whole account (quota, credits, consent, credentials, certificate, no such
    # endpoint): nothing of it was taken and the chunk itself may be fine; such a refusal stops the run.
    account: bool = False


@dataclass
class SubmitReport:
    """What became of one call to :func:`submit`."""

    provider: str
    batch_id: str
    contacts: int = 0
    invalid: list[Problem] = field(default_factory=list)
    chunks: int = 0
    accepted: list[AcceptedJob] = field(default_factory=list)
    rejected: list[RejectedChunk] = field(default_factory=list)  # each chunk not taken, in the order it was settled
    stopped: str = ""  # why the remaining chunks were not sent, if they were not
    repeated: int = 0  # valid contacts sent once with an earlier one (InsideView ids given twice), not on their own

    @property
    def invalid_rows(self) -> int:
        """How many contacts were found invalid (``invalid`` may hold more than one problem per contact)."""
        return _rows_of(self.invalid)

    @property
    def rejected_chunks(self) -> int:
        """How many chunks were not taken (refused, or not sent once the run stopped)."""
        return len(self.rejected)

    @property
    def rejected_rows(self) -> int:
        """How many valid contacts those chunks carried."""
        return sum(len(r.rows) for r in self.rejected)

    @property
    def ok(self) -> bool:
        """True when every valid contact was accepted."""
        return not self.rejected

    @property
    def rows_to_send_later(self) -> list[int]:
        """The rows of the chunks not taken that may be sent again as they are: those not sent, those refused for
        a reason of the whole account (quota, credentials, ...), and those refused for a passing one (throttled or
        failing past the retry budget, too many jobs queued). Nothing of them was taken. Sorted."""
        return sorted(row for r in self.rejected if not r.sent or r.account or r.retriable for row in r.rows)


@dataclass(frozen=True)
class PlannedChunk:
    """One request a submit would send: where to, the input rows it carries, and its body's size in bytes."""

    chunk_index: int
    method: str
    path: str
    rows: tuple[int, ...]
    body_bytes: int


@dataclass(frozen=True)
class Plan:
    """What :func:`submit` would send, found without sending anything (:func:`plan`)."""

    provider: str
    contacts: int
    invalid: list[Problem]
    repeated: int  # valid contacts that would go once with an earlier one (InsideView ids given twice)
    chunks: list[PlannedChunk]
    # Where each input field goes: (name, path in the contact sent or None when not sent, custom field);
    # see Provider.field_targets. In the order the names first appear.
    fields: list[tuple[str, str | None, bool]] = field(default_factory=list)

    @property
    def invalid_rows(self) -> int:
        """How many contacts were found invalid (``invalid`` may hold more than one problem per contact)."""
        return _rows_of(self.invalid)

    @property
    def valid(self) -> int:
        """How many contacts the chunks carry."""
        return sum(len(c.rows) for c in self.chunks)

    @property
    def body_bytes(self) -> int:
        """The request bodies' size in all."""
        return sum(c.body_bytes for c in self.chunks)


class Tapped:
    """Publishes through to ``target``, handing each event to ``tap`` first.

    The tap is called at once, never after waiting for room in a buffer, so
    it has seen every event published up to the moment a run is interrupted
    (Ctrl-C): which chunks were sent, taken, refused. Give it to
    :func:`submit` as its bus.
    """

    __slots__ = ("tap", "target")

    def __init__(self, target: Publisher, tap: Callable[[ev.Event], object]) -> None:
        self.target = target
        self.tap = tap

    async def publish(self, event: ev.Event) -> None:
        self.tap(event)
        await self.target.publish(event)

    def publish_nowait(self, event: ev.Event) -> None:
        self.target.publish_nowait(event)  # first: an event refused (anyio.WouldBlock) is tapped when it goes
        self.tap(event)


def make_provider(provider: str | Provider, **options: Any) -> Provider:
    """A provider object from its name and options (or the object itself)."""
    if isinstance(provider, Provider):
        return provider
    try:
        cls = PROVIDERS[provider]
    except KeyError:
        raise ConfigError(f"unknown provider {provider!r}; choose one of: {', '.join(PROVIDERS)}") from None
    return cls(**options)


def prepare(
    provider: Provider,
    contacts: Iterable[Mapping[str, Any] | str],
    *,
    strict: bool = False,
    rows: Sequence[int] | None = None,
) -> tuple[list[Chunk], list[Problem], int]:
    """Map, validate and chunk contacts (no I/O): (chunks, problems, number of contacts).

    ``rows`` are the contacts' own row numbers, when they are a part of a
    larger input (``eventbus submit --rows``): chunks, problems and the keys
    sent with each contact carry them. By default the rows are 0, 1, 2...

    Contacts that are alike (plain dicts with one set of fields, see
    :meth:`Provider.tabulate`) and that the provider finds valid a whole
    field at a time are prepared in bulk, as tables of columns; all others,
    one contact at a time. Both ways give equal chunks and the same bodies.
    An iterator of contacts is read into a list first when the provider has
    a bulk path.
    """
    if rows is not None:
        contacts = contacts if isinstance(contacts, (list, tuple)) else list(contacts)
        _check_rows(rows, len(contacts))
    if type(provider).valid_in_bulk is not Provider.valid_in_bulk:
        contacts = contacts if isinstance(contacts, (list, tuple)) else list(contacts)
        table = provider.tabulate(contacts)
        if table is not None and provider.valid_in_bulk(table):
            chunks = provider.chunk_table(table)
            if rows is not None:
                for chunk in chunks:
                    chunk.rows = tuple(rows[r] for r in chunk.rows)
            return chunks, [], len(contacts)
    positions = iter(rows) if rows is not None else count_from(0)
    kept: list[int] = []
    valid: list[dict[str, Any]] = []
    problems: list[Problem] = []
    count = 0
    for row, raw in zip(positions, contacts, strict=False):  # positions: endless, or checked to match
        count += 1
        if type(raw) is not dict:  # the common case skips the (slow) ABC checks below
            if isinstance(raw, str):
                raw = {"id": raw}
            elif not isinstance(raw, Mapping):
                problems.append(Problem(row, "", f"a contact must be a mapping of fields, not {type(raw).__name__}"))
                continue
        contact = provider.map_fields(raw)
        found = (provider.may_clash and provider.clashes(row, raw)) or provider.validate(row, contact)
        if found:
            if strict:
                p = found[0]
                raise ContactError(p.row, p.field, p.message)
            problems.extend(found)
            continue
        kept.append(row)
        valid.append(contact)
    return provider.chunk(kept, valid), problems, count


def _check_rows(rows: Sequence[int], n: int) -> None:
    """``rows`` must number ``n`` contacts with distinct whole numbers from 0 up (a ConfigError otherwise)."""
    if len(rows) != n:
        raise ConfigError(f"rows gives {len(rows)} row numbers for {n} contacts")
    if not all(type(r) is int and r >= 0 for r in rows) or len(set(rows)) != n:
        raise ConfigError("rows must be distinct whole numbers from 0 up, one per contact")


def invalid_rows(provider: str, batch_id: str, problems: list[Problem]) -> list[ev.ItemFailed]:
    """One ``ItemFailed`` (code ``invalid``) per contact found invalid before sending, in row order.

    A contact with several problems is one event (each item is reported
    once): its message joins them, ``details["field"]`` is the first field
    and ``details["fields"]`` lists them all.
    """
    by_row: dict[int, list[Problem]] = {}
    for problem in problems:
        by_row.setdefault(problem.row, []).append(problem)
    return [
        ev.ItemFailed(
            id=ev.event_id(provider, batch_id, "invalid", row),
            provider=provider,
            job_id=ev.chunk_ref(batch_id, -1),
            source="submit",
            key=str(row),
            code="invalid",
            message="; ".join(map(str, found)),
            details={"field": found[0].field, "fields": [p.field for p in found]},
        )
        for row, found in sorted(by_row.items())
    ]


def _rows_of(problems: list[Problem]) -> int:
    """How many contacts the problems are about."""
    return len({problem.row for problem in problems})


def _repeated(count: int, problems: list[Problem], chunks: list[Chunk]) -> int:
    """Valid contacts in no chunk of their own: sent once with an earlier, equal one."""
    return count - _rows_of(problems) - sum(len(c.rows) for c in chunks)


def plan(
    provider: str | Provider,
    contacts: Iterable[Mapping[str, Any] | str],
    *,
    strict: bool = False,
    rows: Sequence[int] | None = None,
    **options: Any,
) -> Plan:
    """What :func:`submit` would send for these contacts, with nothing sent and no credentials needed.

    The contacts are mapped, validated and chunked as :func:`submit` does, and
    each chunk's request is built (so a missing option such as Pronto's
    ``webhook_url`` is a :class:`ConfigError` here too); ``strict`` raises
    :class:`ContactError` for the first invalid row; ``rows`` as for
    :func:`prepare`. ``eventbus submit --dry-run`` prints it.
    """
    p = make_provider(provider, **options)
    contacts = contacts if isinstance(contacts, Sequence) else list(contacts)
    chunks, problems, count = prepare(p, contacts, strict=strict, rows=rows)
    planned = []
    for chunk in chunks:
        request = p.build_submit(chunk)
        planned.append(PlannedChunk(chunk.index, request.method, request.path, chunk.rows, len(request.content or b"")))
    names = dict.fromkeys(name for c in contacts if isinstance(c, Mapping) for name in c)
    return Plan(p.name, count, problems, _repeated(count, problems, chunks), planned, p.field_targets(names))


async def submit(
    provider: str | Provider,
    contacts: Iterable[Mapping[str, Any] | str],
    bus: Publisher,
    *,
    settings: Settings | None = None,
    client: httpx.AsyncClient | None = None,
    concurrency: int = 4,
    strict: bool = False,
    batch_id: str | None = None,
    rows: Sequence[int] | None = None,
    on_accepted: Callable[[AcceptedJob], Awaitable[object]] | None = None,
    before_send: Callable[[], Awaitable[str | None]] | None = None,
    **options: Any,
) -> SubmitReport:
    """Submit ``contacts`` to ``provider``, publishing events on ``bus``; return the report.

    ``settings`` default to :meth:`Settings.from_env`; ``client`` is an
    optional ``httpx.AsyncClient`` to use (for its transport, proxies, TLS).
    ``options`` go to the provider (``enrichment_type``, ``webhook_url``,
    ``list``, ``endpoint``, ...). ``rows`` are the contacts' row numbers in a
    larger input (see :func:`prepare`); events and the report use them.
    ``on_accepted`` is awaited with each job the provider took to work on, as
    soon as its ``JobAccepted`` is published, while the other chunks are
    still being sent: the moment to start following it
    (:func:`adapters.follow.follow` does). A chunk a synchronous endpoint
    answered in full is a finished job already and is not passed.
    ``before_send`` is awaited before each chunk is sent: None lets it go; a
    reason stops the run there (that chunk and the rest are not sent, as after
    an account-wide refusal). ``follow()`` uses it to send no Datananas chunk
    while the WebSocket that reports its progress is down.
    """
    check_numbers("submit", concurrency=(concurrency, COUNT))
    p = make_provider(provider, **options)
    settings = settings or Settings.from_env(p.name)
    batch = batch_id or uuid.uuid4().hex[:12]
    chunks, problems, count = prepare(p, contacts, strict=strict, rows=rows)
    report = SubmitReport(p.name, batch, contacts=count, invalid=problems, chunks=len(chunks))
    report.repeated = _repeated(count, problems, chunks)
    for event in invalid_rows(p.name, batch, problems):
        await bus.publish(event)
    if not chunks:
        return report
    async with ProviderClient(p, settings, client) as http, anyio.create_task_group() as tg:
        limiter = anyio.CapacityLimiter(concurrency)
        run = _Run(p, http, len(chunks), batch, bus, report, anyio.Event(), limiter, on_accepted, before_send)
        for chunk in chunks:
            tg.start_soon(_send_chunk, run, chunk)
    return report


@dataclass
class _Run:
    """What every chunk of one submit shares."""

    p: Provider
    http: ProviderClient
    chunk_count: int
    batch: str
    bus: Publisher
    report: SubmitReport
    stop: anyio.Event
    limiter: anyio.CapacityLimiter
    on_accepted: Callable[[AcceptedJob], Awaitable[object]] | None = None
    before_send: Callable[[], Awaitable[str | None]] | None = None


async def _send_chunk(run: _Run, chunk: Chunk) -> None:
    p, http, batch, bus, report, stop = run.p, run.http, run.batch, run.bus, run.report, run.stop
    ref = ev.chunk_ref(batch, chunk.index)
    common = {"provider": p.name, "job_id": ref, "source": "submit"}
    async with run.limiter:
        if not stop.is_set() and run.before_send is not None and (why := await run.before_send()) is not None:
            _stop(report, stop, why)
        if stop.is_set():
            await _reject(bus, report, chunk, batch, None, f"not sent: {report.stopped}", retriable=True, sent=False)
            return
        await bus.publish(
            ev.BatchSubmitted(
                id=ev.event_id(p.name, ref, "submitted"),
                batch_id=batch,
                chunk_index=chunk.index,
                chunk_count=run.chunk_count,
                size=len(chunk.rows),
                **common,
            )
        )

        async def throttled(delay: float, attempt: int) -> None:
            await bus.publish(ev.Throttled(id=ev.new_id(), retry_after=round(delay, 3), attempt=attempt, **common))

        async def retrying(why: str, delay: float, attempt: int) -> None:
            # A 5xx or a refused connection (the chunk certainly not taken) is sent again: said as it happens,
            # so that a console is not silent through the retries (some 16 s by default for a host that is down).
            await bus.publish(
                ev.SourceState(
                    id=ev.new_id(),
                    provider=p.name,
                    job_id="",
                    source="submit",
                    state="reconnecting",
                    attempt=attempt,
                    detail=f"sending chunk {chunk.index} ({ref}): {why}; trying again in {delay:.1f}s",
                )
            )

        try:
            response = await http.send(p.build_submit(chunk), on_throttle=throttled, on_retry=retrying)
            outcome = p.read_submit(chunk, response)
            if isinstance(outcome, Refused) and outcome.account:
                # Stop the rest before the next chunk can take the limiter (publishing below waits).
                _stop(report, stop, f"{outcome.code or 'account'}: {outcome.reason}")
        except AmbiguousSubmit as exc:
            await _reject(bus, report, chunk, batch, None, f"{exc}; check the provider before resending", False)
            return
        except (ProviderError, TransportError) as exc:
            status = getattr(exc, "status", None)
            # Refused credentials (a token endpoint's 400/401, a 401 after a fresh token), a token endpoint that
            # is not one, and an untrusted certificate would fail every chunk alike: stop the rest.
            settled = isinstance(exc, AuthError | CertificateError)
            await _reject(bus, report, chunk, batch, status, str(exc), retriable=not settled, account=settled)
            if isinstance(exc, AuthError):
                refused = exc.status in (None, 400, 401, 403)  # else a token endpoint that is not one: the URL
                _stop(report, stop, f"{'credentials refused' if refused else 'no token'}: {exc}")
            elif isinstance(exc, CertificateError):
                _stop(report, stop, str(exc))
            return
    match outcome:
        case Accepted():
            job = AcceptedJob(p.name, outcome.job_id, batch, chunk.index, chunk.rows, outcome.total)
            report.accepted.append(job)
            await bus.publish(
                ev.JobAccepted(
                    id=ev.event_id(p.name, outcome.job_id, "accepted"),
                    provider=p.name,
                    job_id=outcome.job_id,
                    source="submit",
                    total=outcome.total,
                    batch_id=batch,
                    chunk_index=chunk.index,
                )
            )
            if run.on_accepted is not None:
                await run.on_accepted(job)
        case Items():
            await _publish_items(p, chunk, batch, outcome, bus, report)
        case Refused():
            if outcome.account and outcome.code not in ("auth", NOT_FOUND):  # a quota, credits, consent
                await bus.publish(
                    ev.QuotaExhausted(
                        id=ev.event_id(p.name, ref, "quota"),
                        status=outcome.status,
                        reason=outcome.code,
                        message=outcome.reason,
                        **common,
                    )
                )
                report.rejected.append(
                    RejectedChunk(
                        chunk.index, chunk.rows, outcome.status, outcome.reason, outcome.retriable, True, account=True
                    )
                )
            else:
                await _reject(
                    bus,
                    report,
                    chunk,
                    batch,
                    outcome.status,
                    outcome.reason,
                    outcome.retriable,
                    account=outcome.account,
                )
        case _:  # Throttle/ServerFailure are retried inside send(); anything else is a bug in a provider module
            await _reject(bus, report, chunk, batch, None, f"unexpected answer: {outcome!r}", retriable=False)


def _stop(report: SubmitReport, stop: anyio.Event, why: str) -> None:
    if not stop.is_set():
        report.stopped = why
        stop.set()


async def _reject(
    bus: Publisher,
    report: SubmitReport,
    chunk: Chunk,
    batch: str,
    status: int | None,
    reason: str,
    retriable: bool,
    *,
    sent: bool = True,
    account: bool = False,
) -> None:
    report.rejected.append(RejectedChunk(chunk.index, chunk.rows, status, reason, retriable, sent, account))
    ref = ev.chunk_ref(batch, chunk.index)
    await bus.publish(
        ev.SubmitRejected(
            id=ev.event_id(report.provider, ref, "rejected"),
            provider=report.provider,
            job_id=ref,
            source="submit",
            status=status,
            reason=reason,
            retriable=retriable,
            batch_id=batch,
            chunk_index=chunk.index,
        )
    )


async def _publish_items(
    p: Provider, chunk: Chunk, batch: str, items: Items, bus: Publisher, report: SubmitReport
) -> None:
    """A synchronous endpoint's answer: the chunk is a job that is already complete."""
    ref = ev.chunk_ref(batch, chunk.index)
    common = {"provider": p.name, "job_id": ref, "source": "submit"}
    report.accepted.append(AcceptedJob(p.name, ref, batch, chunk.index, chunk.rows, len(items.results)))
    await bus.publish(
        ev.JobAccepted(
            id=ev.event_id(p.name, ref, "accepted"),
            total=len(items.results),
            batch_id=batch,
            chunk_index=chunk.index,
            **common,
        )
    )
    for i, note in enumerate(items.notes):
        await bus.publish(ev.InvalidSignal(id=ev.event_id(p.name, ref, "note", str(i)), reason=note, **common))
    succeeded = failed = created = updated = 0
    for _row, key, ok, what, message, data in items.results:
        if ok:
            succeeded += 1
            created += what == "created"
            updated += what == "updated"
            await bus.publish(
                ev.ItemSucceeded(id=ev.event_id(p.name, ref, "item", key), key=key, outcome=what, data=data, **common)
            )
        else:
            failed += 1
            await bus.publish(
                ev.ItemFailed(
                    id=ev.event_id(p.name, ref, "item", key),
                    key=key,
                    code=what,
                    message=message,
                    details=data,
                    **common,
                )
            )
    await bus.publish(
        ev.JobCompleted(
            id=ev.event_id(p.name, ref, "completed"),
            succeeded=succeeded,
            failed=failed,
            created=created,
            updated=updated,
            total=len(items.results),
            **common,
        )
    )
