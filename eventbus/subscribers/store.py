"""The state of every job and every contact in SQLite, kept by a subscriber and queryable.

::

    async with Bus() as bus, Store("jobs.db").attach(bus) as store:
        ...                                              # publish; the store follows
        await store.flush()                              # everything handled so far is committed
        await store.jobs(provider="pronto", state="failed")   # [JobRecord, ...]
        await store.items("pronto", "enr_1", status="failed") # [ItemRecord, ...]

One row per job (or per chunk that never became one: refused, out of quota,
rows that failed validation), with the same states and counts as
:class:`eventbus.subscribers.board.JobBoard`, and one row per contact.

The handler does no SQLite work: it appends the event to a bounded buffer
(waiting only when it is full) and a writer commits what was buffered in
batches from a worker thread. Queries read a second connection, also from a
worker thread. The file is SQLite in WAL mode with ``synchronous=NORMAL``, as
the journal's (:mod:`eventbus.journal`): other processes read it while it is
written (``eventbus jobs FILE``).

Idempotent on event id, and on order: every event's effect is a *join*
that applying again cannot change (a maximum, a minimum, the earliest of
several by ``(at, id)``, an insert keyed by the contact). So a duplicate, a
redelivery after a restart, or the events of a job in another order give the
same rows; no table of applied event ids is needed.

* A contact is keyed by ``(provider, job_id, key)``: reported twice (by two
  sources, under two ids) it is stored and counted once; if the reports
  differ, the earliest by ``(at, id)`` is kept. A job's counts are counted
  from its contacts as they are stored, so they cannot double.
* ``done`` is the highest progress reported; it never goes down.
* The terminal state is set once: of several terminal events (the tracker
  sends one), the earliest by ``(at, id)`` wins, whatever the order they came in.
* Open states are derived, not overwritten: ``stuck`` when the last
  ``JobStuck`` is later than the last progress or contact, else ``running``
  once anything was processed, else ``accepted``, else ``submitted``.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.abc
import msgspec

from eventbus import events as ev
from eventbus._checks import COUNT, SECONDS, check_numbers
from eventbus._logging import get_logger
from eventbus._sqlite import check_layout, meta_or_create, open_pair, write_transaction
from eventbus.exceptions import ConfigError, StoreError
from eventbus.subscribers.board import TERMINAL_STATES

__all__ = [
    "ItemRecord",
    "JobRecord",
    "ProviderCounts",
    "Store",
    "StoreError",
    "StoreStats",
    "file_kind",
    "item_record",
]

_log = get_logger("eventbus.store")

LAYOUT = 1  # the layout this code writes; a store with a higher number is refused, not misread
_BATCH = 1000  # events committed per transaction

_CREATE = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS jobs ("
    " provider TEXT NOT NULL, job_id TEXT NOT NULL, chunk TEXT NOT NULL, state TEXT NOT NULL,"
    " total INTEGER, done INTEGER NOT NULL, succeeded INTEGER NOT NULL, failed INTEGER NOT NULL,"
    " created INTEGER NOT NULL, updated INTEGER NOT NULL, reason TEXT NOT NULL,"
    " started INTEGER, ended INTEGER,"  # microseconds since the epoch, UTC
    " merge BLOB NOT NULL,"  # what later events are merged with (_Job), as JSON
    " PRIMARY KEY (provider, job_id))",
    "CREATE INDEX IF NOT EXISTS jobs_by_chunk ON jobs (provider, chunk) WHERE chunk != ''",
    "CREATE TABLE IF NOT EXISTS items ("
    " provider TEXT NOT NULL, job_id TEXT NOT NULL, key TEXT NOT NULL, status TEXT NOT NULL,"
    " outcome TEXT NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL, data BLOB NOT NULL,"
    " at INTEGER NOT NULL, event_id TEXT NOT NULL,"
    " PRIMARY KEY (provider, job_id, key))",
    # Contacts in their natural order: "2" before "10" (keys are mostly positions in the input).
    "CREATE INDEX IF NOT EXISTS items_in_order ON items (provider, job_id, length(key), key)",
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_INVALID_REASON = "failed validation, not sent"  # as JobBoard says it


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // _US  # exact, unlike a float timestamp


def _datetime(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + us * _US


class JobRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One job (or one chunk that never became a job) as the store holds it; states as JobBoard's."""

    provider: str
    job_id: str
    state: str
    total: int | None
    done: int  # the best known count of processed contacts (JobRow.progress)
    succeeded: int
    failed: int
    created: int
    updated: int
    reason: str
    started: datetime | None
    ended: datetime | None
    chunk: str = ""  # the chunk reference it was submitted as ("<batch_id>#<index>"), when known

    @property
    def finished(self) -> bool:
        """True once the job reached a terminal state."""
        return self.state in TERMINAL_STATES

    @property
    def seconds(self) -> float | None:
        """Wall time from its first event to its end, once finished."""
        if self.started is None or self.ended is None:
            return None
        return (self.ended - self.started).total_seconds()


class ItemRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One contact of a job: ``outcome`` and ``data`` if it succeeded, else ``code``, ``message``, ``data``."""

    provider: str
    job_id: str
    key: str
    status: Literal["succeeded", "failed"]
    outcome: str
    code: str
    message: str
    data: dict[str, Any]
    at: datetime
    event_id: str


def _reported(event: ev.ItemSucceeded | ev.ItemFailed) -> tuple[Literal["succeeded", "failed"], str, str, str, Any]:
    """A contact's report as an item holds it: (status, outcome, code, message, data)."""
    if isinstance(event, ev.ItemSucceeded):
        return "succeeded", event.outcome, "", "", event.data
    return "failed", "", event.code, event.message, event.details


def item_record(event: ev.ItemSucceeded | ev.ItemFailed) -> ItemRecord:
    """The :class:`ItemRecord` the store holds for ``event`` (what ``eventbus jobs --items`` shows of a journal)."""
    status, outcome, code, message, data = _reported(event)
    return ItemRecord(
        provider=event.provider,
        job_id=event.job_id,
        key=event.key,
        status=status,
        outcome=outcome,
        code=code,
        message=message,
        data=data,
        at=event.at,
        event_id=event.id,
    )


class ProviderCounts(msgspec.Struct, frozen=True, kw_only=True):
    """One provider's jobs by state and its contacts, summed over its jobs."""

    provider: str
    jobs: int
    states: dict[str, int]
    succeeded: int
    failed: int
    created: int
    updated: int


class StoreStats(msgspec.Struct, frozen=True):
    """The writer's counters: events taken, committed, lost in a failed batch, and buffered now."""

    received: int
    committed: int
    failed: int
    pending: int


class _Job(msgspec.Struct, kw_only=True):
    """What is merged into a job's row; every field is a join (max, min, earliest), so re-applying is a no-op."""

    chunk: str = ""
    accepted: bool = False
    started: int | None = None  # min at
    progress: int = 0  # max JobProgress.done
    total_completed: int | None = None
    total_progress: int | None = None  # max
    total_accepted: int | None = None  # max
    total_chunk: int | None = None  # max
    counted: list[int] = msgspec.field(default_factory=lambda: [0, 0, 0, 0])  # succeeded, failed, created, updated
    reported: list[int] | None = None  # the winning JobCompleted's succeeded, failed, created, updated
    active_at: int | None = None  # max at of a progress or a contact
    stuck_at: int | None = None  # max at of JobStuck
    invalid_at: int | None = None  # max at of a contact that failed validation (job_id "<batch>#-1")
    terminal: tuple[int, str, str, str] | None = None  # (at, event id, state, reason), the earliest wins

    def row(self) -> tuple[Any, ...]:
        """The public columns: state, total, done, succeeded, failed, created, updated, reason, ended."""
        if self.terminal is not None:
            state, reason, ended = self.terminal[2], self.terminal[3], self.terminal[0]
        elif self.invalid_at is not None:
            state, reason, ended = "invalid", _INVALID_REASON, self.invalid_at
        else:
            reason, ended = "", None
            if self.stuck_at is not None and (self.active_at is None or self.stuck_at >= self.active_at):
                state = "stuck"
            elif self.active_at is not None:
                state = "running"
            else:
                state = "accepted" if self.accepted else "submitted"
        succeeded, failed, created, updated = self.counted
        if self.reported is not None:
            r_succeeded, r_failed, r_created, r_updated = self.reported
            if r_succeeded or r_failed:  # the provider's totals win where it gives them (as JobBoard)
                succeeded, failed = r_succeeded, r_failed
            created, updated = r_created or created, r_updated or updated
        total = next(
            (
                t
                for t in (self.total_completed, self.total_progress, self.total_accepted, self.total_chunk)
                if t is not None
            ),
            None,
        )
        done = max(self.progress, succeeded + failed)
        return state, total, done, succeeded, failed, created, updated, reason, ended


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


_TERMINAL: dict[type, str] = {
    ev.JobCompleted: "completed",
    ev.JobFailed: "failed",
    ev.JobCancelled: "cancelled",
    ev.JobExpired: "expired",
    ev.SubmitRejected: "rejected",
    ev.QuotaExhausted: "rejected",
}
_JOB_EVENTS = (
    ev.BatchSubmitted,
    ev.JobAccepted,
    ev.JobProgress,
    ev.ItemSucceeded,
    ev.ItemFailed,
    ev.JobStuck,
    *_TERMINAL,
)  # the others (Throttled, SourceState, InvalidSignal) make no row, as on the board
_job_decode = msgspec.json.Decoder(_Job).decode
_encode = msgspec.json.Encoder().encode
_data_decode = msgspec.json.Decoder(dict[str, Any]).decode


class _Batch:
    """Applies events to the file within one transaction (runs in the writer's worker thread)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.jobs: dict[tuple[str, str], _Job] = {}
        self.gone: set[tuple[str, str]] = set()

    def job(self, provider: str, job_id: str) -> _Job:
        key = (provider, job_id)
        job = self.jobs.get(key)
        if job is None:
            row = None
            if key not in self.gone:
                row = self.conn.execute(
                    "SELECT merge FROM jobs WHERE provider = ? AND job_id = ?", (provider, job_id)
                ).fetchone()
            job = self.jobs[key] = _Job() if row is None else _job_decode(row[0])
            self.gone.discard(key)
        return job

    def accepted_as(self, provider: str, chunk: str) -> str | None:
        """The job id a chunk became, if its JobAccepted was applied."""
        for (p, job_id), job in self.jobs.items():
            if p == provider and job.chunk == chunk:
                return job_id
        row = self.conn.execute(
            "SELECT job_id FROM jobs WHERE provider = ? AND chunk = ?", (provider, chunk)
        ).fetchone()
        return None if row is None else row[0]

    def apply(self, event: ev.Event) -> None:
        if not isinstance(event, _JOB_EVENTS) or not event.job_id:
            return
        at = _micros(event.at)
        job_id = event.job_id
        if isinstance(event, ev.BatchSubmitted) and ev.is_chunk_ref(job_id):
            job_id = self.accepted_as(event.provider, job_id) or job_id  # came after its JobAccepted: join them
        job = self.job(event.provider, job_id)
        job.started = _min(job.started, at)
        match event:
            case ev.ItemSucceeded() | ev.ItemFailed():
                self.item(job, event, at)
                job.active_at = _max(job.active_at, at)
                if isinstance(event, ev.ItemFailed) and event.job_id.endswith("#-1"):
                    job.invalid_at = _max(job.invalid_at, at)
            case ev.JobProgress():
                job.progress = max(job.progress, event.done)
                job.total_progress = _max(job.total_progress, event.total)
                job.active_at = _max(job.active_at, at)
            case ev.BatchSubmitted():
                job.total_chunk = _max(job.total_chunk, event.size)
            case ev.JobAccepted():
                job.accepted = True
                job.total_accepted = _max(job.total_accepted, event.total)
                if event.batch_id:
                    job.chunk = ev.chunk_ref(event.batch_id, event.chunk_index)
                    self.join_chunk(event.provider, job)
            case ev.JobStuck():
                job.stuck_at = _max(job.stuck_at, at)
            case _:
                self.terminal(job, event, at)

    def join_chunk(self, provider: str, job: _Job) -> None:
        """The chunk's own row (its BatchSubmitted) becomes part of the job's, as on the board."""
        pending = self.jobs.pop((provider, job.chunk), None)
        if pending is None:
            row = self.conn.execute(
                "SELECT merge FROM jobs WHERE provider = ? AND job_id = ?", (provider, job.chunk)
            ).fetchone()
            pending = None if row is None else _job_decode(row[0])
        if pending is None:
            return
        self.gone.add((provider, job.chunk))
        job.started = _min(job.started, pending.started)
        job.total_chunk = _max(job.total_chunk, pending.total_chunk)

    @staticmethod
    def terminal(job: _Job, event: ev.Event, at: int) -> None:
        candidate = (at, event.id)
        if job.terminal is not None and job.terminal[:2] <= candidate:
            return
        match event:
            case ev.SubmitRejected():
                reason = event.reason
            case ev.QuotaExhausted():
                reason = f"{event.reason} ({event.status})"
            case ev.JobFailed() | ev.JobCancelled() | ev.JobExpired():
                reason = event.reason
            case _:
                reason = ""
        job.terminal = (at, event.id, _TERMINAL[type(event)], reason)
        if isinstance(event, ev.JobCompleted):
            job.reported = [event.succeeded, event.failed, event.created, event.updated]
            job.total_completed = event.total
        else:
            job.reported = None
            job.total_completed = None

    def item(self, job: _Job, event: ev.ItemSucceeded | ev.ItemFailed, at: int) -> None:
        key = (event.provider, event.job_id, event.key)
        old = self.conn.execute(
            "SELECT status, outcome, at, event_id FROM items WHERE provider = ? AND job_id = ? AND key = ?", key
        ).fetchone()
        if old is not None and (old[2], old[3]) <= (at, event.id):
            return  # this contact is known from an earlier (or the same) report
        status, outcome, code, message, data = _reported(event)
        new = (status, outcome, code, message, _encode(data))
        self.conn.execute(
            "INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*key, *new, at, event.id)
        )
        if old is not None:
            _count(job.counted, old[0], old[1], -1)
        _count(job.counted, new[0], new[1], +1)

    def save(self) -> None:
        for provider, job_id in self.gone:
            self.conn.execute("DELETE FROM jobs WHERE provider = ? AND job_id = ?", (provider, job_id))
        rows = []
        for (provider, job_id), job in self.jobs.items():
            state, total, done, succeeded, failed, created, updated, reason, ended = job.row()
            counts = (done, succeeded, failed, created, updated)
            rows.append((provider, job_id, job.chunk, state, total, *counts, reason, job.started, ended, _encode(job)))
        self.conn.executemany("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _count(counted: list[int], status: str, outcome: str, step: int) -> None:
    counted[0 if status == "succeeded" else 1] += step
    if outcome == "created":
        counted[2] += step
    elif outcome == "updated":
        counted[3] += step


def _names(what: str, values: Iterable[str] | str | None) -> list[str] | None:
    if values is None:
        return None
    out = sorted({values} if isinstance(values, str) else set(values))
    if not out or not all(isinstance(v, str) for v in out):
        raise ConfigError(f"{what} must be a string or strings, not {values!r}")
    return out


_JOB_COLUMNS = (
    "provider, job_id, state, total, done, succeeded, failed, created, updated, reason, started, ended, chunk"
)


def _job_record(row: tuple[Any, ...]) -> JobRecord:
    p, j, state, total, done, succeeded, failed, created, updated, reason, started, ended, chunk = row
    return JobRecord(
        provider=p,
        job_id=j,
        state=state,
        total=total,
        done=done,
        succeeded=succeeded,
        failed=failed,
        created=created,
        updated=updated,
        reason=reason,
        started=_datetime(started),
        ended=_datetime(ended),
        chunk=chunk,
    )


def file_kind(path: str | os.PathLike[str]) -> Literal["store", "journal"] | None:
    """What an existing SQLite file is, from its meta table: a store, a journal, or neither (None). Only reads."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        keys = {row[0] for row in conn.execute("SELECT key FROM meta")}
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if "store_layout" in keys:
        return "store"
    return "journal" if "schema" in keys and "events" in tables else None


class Store:
    """Every job and contact in an SQLite file; ``async with Store(path) as store``, a subscriber of a bus.

    Subscribe it with :meth:`attach` (or ``bus.on(store, name="store")``
    inside ``async with store``). ``buffer`` bounds the events taken but not
    yet committed: the handler waits for room beyond it. ``readonly=True``
    opens an existing store for queries only (a missing file is then an
    error). ``timeout`` is how long a commit waits for another process
    holding the file's write lock before failing with :class:`StoreError`;
    ``close_timeout`` bounds how long leaving the block commits what is
    buffered.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        timeout: float = 10.0,
        buffer: int = 10_000,
        close_timeout: float = 10.0,
    ) -> None:
        check_numbers(
            "Store", timeout=(timeout, SECONDS), buffer=(buffer, COUNT), close_timeout=(close_timeout, SECONDS)
        )
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise ConfigError(f"Store needs a file path, not {path!r}")
        self.path = Path(path)
        self.readonly = readonly
        self.timeout = timeout
        self.buffer = buffer
        self.close_timeout = close_timeout
        self._where = f"store {str(self.path)!r}"
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_lock = anyio.Lock()
        self._tg: anyio.abc.TaskGroup | None = None
        self._entered = False
        self._closing = False
        self._pending: deque[ev.Event] = deque()
        self._received = self._handled = self._committed = self._failed = 0
        self._errors: list[StoreError] = []  # failed batches since the last flush()
        self._work: anyio.Event | None = None  # set to wake the writer
        self._room: anyio.Event | None = None  # set when the writer took events from a full buffer
        self._progress: anyio.Event | None = None  # set when a batch was committed (or failed)

    # --- lifecycle ----------------------------------------------------------

    async def __aenter__(self) -> Store:
        if self._entered:
            raise ConfigError("a Store can be entered once; create a new Store")
        self._entered = True
        self._reader, self._writer = await anyio.to_thread.run_sync(self._connect)
        if not self.readonly:
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            self._tg.start_soon(self._write_loop, name=f"eventbus store writer {self.path}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self._tg is not None:
                self._closing = True
                self._wake()
                # Commit what was taken, also when leaving on an error or a cancellation.
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.close_timeout) as waited:
                    await self._wait_handled(self._received)
                if waited.cancelled_caught:
                    _log.error("store_events_not_committed", store=str(self.path), events=len(self._pending))
                self._tg.cancel_scope.cancel()
                await self._tg.__aexit__(None, None, None)
                self._tg = None
        finally:
            reader, writer, self._reader, self._writer = self._reader, self._writer, None, None
            async with self._read_lock:
                for conn in (reader, writer):
                    if conn is not None:
                        with anyio.CancelScope(shield=True):
                            await anyio.to_thread.run_sync(conn.close)

    def _connect(self) -> tuple[sqlite3.Connection, sqlite3.Connection | None]:
        return open_pair(
            self.path,
            readonly=self.readonly,
            timeout=self.timeout,
            where=self._where,
            missing="give the path of a store (Store(path))",
            check=self._check_layout,
            error=StoreError,
        )

    def _check_layout(self, conn: sqlite3.Connection, *, create: bool) -> None:
        where = self._where
        found = meta_or_create(
            conn,
            create=create,
            where=where,
            kind="store",
            writer="store",
            statements=_CREATE,
            key="store_layout",
            layout=LAYOUT,
        )
        if found is None:
            return
        meta, tables = found
        if "store_layout" not in meta:
            if "schema" in meta and "events" in tables:
                raise ConfigError(f"{where} is a journal; read it with eventbus tail/jobs")
            raise ConfigError(f"{where} is an SQLite file but not an eventbus store (tables: {sorted(tables)})")
        check_layout(where, meta["store_layout"], LAYOUT)

    def _conn(self, which: str) -> sqlite3.Connection:
        conn = self._reader if which == "reader" else self._writer
        if conn is None:
            if self.readonly and self._reader is not None:
                raise StoreError(f"{self._where} was opened read-only; it takes no events")
            raise StoreError(f"{self._where} is not open; use 'async with Store(path)'")
        return conn

    # --- the subscriber -----------------------------------------------------

    @asynccontextmanager
    async def attach(
        self,
        bus: Any,
        *,
        name: str = "store",
        durable: bool = False,
        types: Any = None,
        providers: Iterable[str] | str | None = None,
        buffer: int = 1024,
    ) -> AsyncIterator[Store]:
        """Enter the store and subscribe it to ``bus`` as ``name`` for the duration of the block.

        ``durable=True`` (a bus with a journal) subscribes it durably: after
        a restart it is given again what it had not acknowledged. It
        acknowledges an event only once the store has committed it, so
        nothing acknowledged is missing from the file; what comes twice
        changes nothing (idempotent on event id). Leaving the block commits
        what was handled.
        """
        async with self:
            self._conn("writer")
            if not durable:
                async with bus.on(self, name=name, types=types, providers=providers, buffer=buffer).attached(
                    self.close_timeout
                ):
                    yield self
                await self.flush()
                return
            async with bus.subscribe(name, durable=True, types=types, providers=providers, buffer=buffer) as sub:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pump, sub, name=f"eventbus store feed {name}")
                    try:
                        yield self
                    finally:
                        sub.close()  # the pump commits and acknowledges what it took, then ends

    async def _pump(self, sub: Any) -> None:
        """Take a durable subscription's events, and acknowledge them once committed."""
        acking = True
        async for event in sub:
            put = self(event)
            if put is not None:
                await put
            while True:  # what is buffered already, without waiting
                try:
                    event = sub.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
                put = self(event)
                if put is not None:
                    await put
            try:
                await self.flush()
            except StoreError as exc:
                # Not acknowledged from here on: the next run is given all of it again (harmless: idempotent).
                _log.error("store_stopped_acknowledging", store=str(self.path), subscriber=sub.name, error=str(exc))
                acking = False
            if acking:
                await sub.ack()

    def __call__(self, event: ev.Event) -> Any:
        """Take ``event`` for the writer; returns an awaitable only when the buffer is full (await it)."""
        if self._tg is None:
            raise StoreError(f"{self._where} is not open for writing; use 'async with Store(path)'")
        if len(self._pending) < self.buffer:
            self._pending.append(event)
            self._received += 1
            self._wake()
            return None
        return self._put(event)

    async def _put(self, event: ev.Event) -> None:
        while len(self._pending) >= self.buffer:
            room = self._room = self._room or anyio.Event()
            await room.wait()
        self._pending.append(event)
        self._received += 1
        self._wake()

    def _wake(self) -> None:
        if self._work is not None:
            self._work.set()
            self._work = None

    async def _write_loop(self) -> None:
        conn = self._conn("writer")
        while True:
            if not self._pending:
                if self._closing:
                    return
                work = self._work = anyio.Event()
                await work.wait()
                continue
            batch = [self._pending.popleft() for _ in range(min(len(self._pending), _BATCH))]
            if self._room is not None:
                self._room.set()
                self._room = None
            try:
                with anyio.CancelScope(shield=True):  # the batch is committed or not, never half
                    await anyio.to_thread.run_sync(self._commit, conn, batch)
                self._committed += len(batch)
            except StoreError as exc:
                self._failed += len(batch)
                self._errors.append(exc)
                _log.error("store_batch_failed", store=str(self.path), events=len(batch), error=str(exc))
            self._handled += len(batch)
            if self._progress is not None:
                self._progress.set()
                self._progress = None

    def _commit(self, conn: sqlite3.Connection, events: Sequence[ev.Event]) -> None:
        with write_transaction(conn, StoreError, f"{self._where}: {len(events)} events not committed"):
            batch = _Batch(conn)
            for event in events:
                batch.apply(event)
            batch.save()

    async def _wait_handled(self, target: int) -> None:
        while self._handled < target and self._tg is not None:
            progress = self._progress = self._progress or anyio.Event()
            await progress.wait()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every event taken so far is committed.

        Raises :class:`StoreError` if a batch failed since the last flush
        (its events are not in the file); ``TimeoutError`` after ``timeout`` seconds.
        """
        self._conn("writer")
        with anyio.fail_after(math.inf if timeout is None else timeout):
            await self._wait_handled(self._received)
        if self._errors:
            errors, self._errors = self._errors, []
            raise StoreError(f"{len(errors)} batches failed; the first: {errors[0]}")

    async def apply(self, events: Iterable[ev.Event]) -> None:
        """Take ``events`` and wait until they are committed (for code that is not a bus subscriber)."""
        for event in events:
            put = self(event)
            if put is not None:
                await put
        await self.flush()

    def stats(self) -> StoreStats:
        return StoreStats(self._received, self._committed, self._failed, len(self._pending))

    # --- queries ------------------------------------------------------------

    async def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        conn = self._conn("reader")

        def run() -> list[tuple[Any, ...]]:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self._where} cannot be read: {exc}") from exc

        async with self._read_lock:
            return await anyio.to_thread.run_sync(run)

    async def jobs(
        self, provider: Iterable[str] | str | None = None, state: Iterable[str] | str | None = None
    ) -> list[JobRecord]:
        """Every job (and chunk that never became one), in the order they started; filters combine with AND."""
        clauses, params = [], []
        for column, values in (("provider", _names("provider", provider)), ("state", _names("state", state))):
            if values is not None:
                clauses.append(f" AND {column} IN ({', '.join('?' * len(values))})")
                params += values
        rows = await self._query(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE 1 = 1{''.join(clauses)} ORDER BY started, provider, job_id",
            params,
        )
        return [_job_record(row) for row in rows]

    async def job(self, provider: str, job_id: str) -> JobRecord | None:
        """One job, or None if the store has nothing of it."""
        rows = await self._query(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE provider = ? AND job_id = ?", (provider, job_id)
        )
        return _job_record(rows[0]) if rows else None

    async def items(
        self,
        provider: str,
        job_id: str,
        *,
        status: Literal["succeeded", "failed"] | None = None,
        limit: int = 1000,
        after_key: str | None = None,
    ) -> list[ItemRecord]:
        """Up to ``limit`` contacts of a job in key order ("2" before "10"); go on with ``after_key=`` the last key."""
        check_numbers("Store.items", limit=(limit, COUNT))
        if status not in (None, "succeeded", "failed"):
            raise ConfigError(f"status must be 'succeeded', 'failed' or None, not {status!r}")
        sql = (
            "SELECT provider, job_id, key, status, outcome, code, message, data, at, event_id FROM items"
            " WHERE provider = ? AND job_id = ?"
        )
        params: list[Any] = [provider, job_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        if after_key is not None:
            sql += " AND (length(key), key) > (?, ?)"
            params += [len(after_key), after_key]
        sql += " ORDER BY length(key), key LIMIT ?"
        params.append(limit)
        return [
            ItemRecord(
                provider=p,
                job_id=j,
                key=k,
                status=s,
                outcome=o,
                code=c,
                message=m,
                data=_data_decode(d),
                at=_EPOCH + at * _US,
                event_id=i,
            )
            for p, j, k, s, o, c, m, d, at, i in await self._query(sql, params)
        ]

    async def counts(self) -> dict[str, ProviderCounts]:
        """Per provider: its jobs by state, and its contacts summed over its jobs."""
        rows = await self._query(
            "SELECT provider, state, COUNT(*), SUM(succeeded), SUM(failed), SUM(created), SUM(updated)"
            " FROM jobs GROUP BY provider, state ORDER BY provider, state",
            (),
        )
        out: dict[str, ProviderCounts] = {}
        for provider, state, jobs, succeeded, failed, created, updated in rows:
            seen = out.get(provider) or ProviderCounts(
                provider=provider, jobs=0, states={}, succeeded=0, failed=0, created=0, updated=0
            )
            out[provider] = msgspec.structs.replace(
                seen,
                jobs=seen.jobs + jobs,
                states={**seen.states, state: jobs},
                succeeded=seen.succeeded + succeeded,
                failed=seen.failed + failed,
                created=seen.created + created,
                updated=seen.updated + updated,
            )
        return out

    def __repr__(self) -> str:
        state = "open" if self._reader is not None else "closed"
        return f"<Store {str(self.path)!r} {state}{' read-only' if self.readonly else ''}>"
