"""An append-only journal of events in SQLite: what was published survives the process.

::

    async with Journal("events.db") as journal:            # created if missing
        last = await journal.append([event, ...])          # one transaction; the last seq
        page = await journal.read(after=0, types={"job_completed"})
        async for entry in journal.replay(after=await journal.cursor("store")):
            ...                                            # entry.seq, entry.event
            await journal.ack("store", entry.seq)

Give one to the bus, ``Bus(journal="events.db")``, and every event is written
to it before any subscriber sees it; durable subscribers
(``bus.subscribe(name, durable=True)``, ``bus.on(handler, durable=True)``)
start after their last acknowledged position and get everything after it,
also across restarts (at least once: an event handled but not yet
acknowledged comes again; ``event.id`` lets them dedupe). ``eventbus tail``
reads it from another process while it is written.

The file is SQLite in WAL mode (readers never wait for the writer; other
processes can read it live) with ``synchronous=NORMAL``: a commit survives
the process crashing or being killed, not the machine losing power in the
last moments before a checkpoint. Writes come in batches (one transaction per
batch: the bus sends what was published meanwhile as one batch). Every SQLite
call runs in a worker thread, so the event loop never waits on the disk.

Each row keeps the event's ``seq`` (1, 2, ... in commit order, never reused,
also after :meth:`Journal.prune`), ``type``, ``provider``, ``job_id``, ``at``
and the event's JSON (:func:`eventbus.events.encode`). Named cursors
(:meth:`Journal.ack`) live in the same file.

Retention: ``Journal(path, max_entries=..., max_age=...)`` keeps the file
bounded. As it appends (every 1,000 events or 10 seconds), when it closes and
on :meth:`Journal.retain`, it deletes the oldest entries beyond either limit
*that every durable subscriber has acknowledged*: an entry a named cursor has
not passed is kept, whatever its age (nothing is lost to a subscriber that is
only down for a while), and a warning names the cursor holding it back
(:meth:`Journal.forget` removes the cursor of a subscriber that is gone).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec

from eventbus import events as ev
from eventbus._checks import COUNT, COUNT_OR_NONE, SECONDS, SECONDS_OR_NONE, WHOLE, check_numbers
from eventbus._logging import get_logger
from eventbus._sqlite import check_layout, meta_or_create, open_pair, write_transaction
from eventbus.exceptions import ConfigError, JournalError

__all__ = ["Entry", "Journal", "Page", "Replay", "Retained", "type_tags"]

_log = get_logger("eventbus.journal")

SCHEMA = 1  # the layout this code writes; a file with a higher number is refused, not misread

_CREATE = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"  # AUTOINCREMENT: never reused, even once pruned to empty
    " id TEXT NOT NULL, type TEXT NOT NULL, provider TEXT NOT NULL, job_id TEXT NOT NULL,"
    " at REAL NOT NULL, body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, updated REAL NOT NULL)",
)
_INSERT = "INSERT INTO events (id, type, provider, job_id, at, body) VALUES (?, ?, ?, ?, ?, ?)"
_RETAIN_EVERY = 1000  # with limits set, appending applies them after this many events...
_RETAIN_SECONDS = 10.0  # ...or this long after the last time, whichever comes first


@dataclass(frozen=True)
class Retained:
    """What one pass of :meth:`Journal.retain` did."""

    deleted: int  # entries deleted
    first: int  # the position of the oldest entry kept (0: none left)
    held_by: dict[str, int]  # cursors that kept entries the limits would have deleted: name -> position


def type_tags(
    types: Iterable[type[ev.Event] | str] | type[ev.Event] | str | None, *, empty: str = "nothing would ever match"
) -> frozenset[str] | None:
    """The ``type`` tags of event classes or tags (None: every type); an unknown one is a ConfigError.

    ``empty`` says what an empty collection would mean, in the ConfigError it is.
    """
    if types is None:
        return None
    if isinstance(types, str | type):
        types = [types]
    tags: set[str] = set()
    for t in types:
        if isinstance(t, str):
            if t not in ev.EVENT_TYPES:
                raise ConfigError(f"unknown event type {t!r}; known types: {', '.join(sorted(ev.EVENT_TYPES))}")
            tags.add(t)
        elif isinstance(t, type) and issubclass(t, ev.Event):
            if t is ev.Event:
                return None
            tags.add(ev.tag_of(t))
        else:
            raise ConfigError(f"types must hold event classes or type tags, not {t!r}")
    if not tags:
        raise ConfigError(f"types is empty: {empty}")
    return frozenset(tags)


def _names(what: str, values: Iterable[str] | str | None) -> frozenset[str] | None:
    if values is None:
        return None
    out = frozenset([values] if isinstance(values, str) else values)
    if not all(isinstance(v, str) for v in out):
        raise ConfigError(f"{what} must be strings, not {sorted(map(repr, out))}")
    if not out:
        raise ConfigError(f"{what} is empty: nothing would ever match")
    return out


class Entry(msgspec.Struct, frozen=True):
    """One journaled event and its position."""

    seq: int
    event: ev.AnyEvent


@dataclass(frozen=True)
class Page:
    """What :meth:`Journal.read` found after a position.

    ``upto`` is the position the read covered (continue with
    ``read(after=page.upto)``): past the last entry when rows that did not
    match the filters came after it. ``skipped`` lists the rows that could
    not be decoded (``(seq, why)``; a file written by a newer version with
    event types this one does not know, or damaged by hand); they stay in the
    file.
    """

    entries: list[Entry]
    upto: int
    skipped: list[tuple[int, str]] = field(default_factory=list)
    more: bool = False  # the read stopped at its limit: entries may follow ``upto`` already


class Journal:
    """An append-only SQLite journal of events; use as ``async with Journal(path) as journal``.

    ``readonly=True`` opens an existing journal without ever writing to it
    (``eventbus tail``); a missing file is then an error instead of being
    created. ``timeout`` is how long a write waits for another process
    holding the file's write lock before failing with :class:`JournalError`.
    ``max_entries`` and ``max_age`` (seconds, by the events' ``at``) bound
    the file: see :meth:`retain`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        timeout: float = 10.0,
        max_entries: int | None = None,
        max_age: float | None = None,
    ) -> None:
        check_numbers(
            "Journal",
            timeout=(timeout, SECONDS),
            max_entries=(max_entries, COUNT_OR_NONE),
            max_age=(max_age, SECONDS_OR_NONE),
        )
        if readonly and (max_entries is not None or max_age is not None):
            raise ConfigError("Journal: a read-only journal deletes nothing; max_entries and max_age need a writer")
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise ConfigError(f"Journal needs a file path, not {path!r}")
        self.path = Path(path)
        self.readonly = readonly
        self.timeout = timeout
        self.max_entries = max_entries
        self.max_age = max_age
        self._retained_at = (0, 0.0)  # (last_seq, monotonic time) when the limits were last applied
        self._held: dict[str, int] = {}  # cursors already warned about, at the position they held
        # Durable subscribers of this process whose cursor is not saved yet: retention waits for them.
        self._starting: set[object] = set()
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._write_lock = anyio.Lock()
        self._read_lock = anyio.Lock()
        self._last = 0
        self._committed = anyio.Event()  # set (and replaced) after each commit by this process
        self._opened = 0  # nested opens (a Bus and its owner may both enter it)

    # --- lifecycle ----------------------------------------------------------

    async def __aenter__(self) -> Journal:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open (and, unless read-only, create) the file; each ``open`` needs its ``close``."""
        if self._opened == 0:
            self._reader, self._writer, self._last = await anyio.to_thread.run_sync(self._connect)
        self._opened += 1

    async def close(self) -> None:
        if self._opened == 0:
            return
        self._opened -= 1
        if self._opened:
            return
        if self._writer is not None and (self.max_entries is not None or self.max_age is not None):
            try:  # a last pass: a short run leaves the file within its limits too
                with anyio.CancelScope(shield=True):
                    await self.retain()
            except JournalError as exc:
                _log.error("journal_retention_failed", journal=str(self.path), error=str(exc))
        reader, writer, self._reader, self._writer = self._reader, self._writer, None, None
        async with self._write_lock, self._read_lock:
            for conn in (reader, writer):
                if conn is not None:
                    await anyio.to_thread.run_sync(conn.close)

    @property
    def is_open(self) -> bool:
        return self._opened > 0

    def _connect(self) -> tuple[sqlite3.Connection, sqlite3.Connection | None, int]:
        where = f"journal {str(self.path)!r}"
        reader, writer = open_pair(
            self.path,
            readonly=self.readonly,
            timeout=self.timeout,
            where=where,
            missing="give the path of a journal a bus wrote (Bus(journal=...) or --journal)",
            check=self._check_schema,
            error=JournalError,
        )
        try:
            return reader, writer, self._top(reader)
        except sqlite3.Error as exc:
            for conn in (reader, writer):
                if conn is not None:
                    conn.close()
            raise JournalError(f"{where} cannot be opened: {exc}") from exc

    @staticmethod
    def _top(conn: sqlite3.Connection) -> int:
        """The last position ever given (also when every row was pruned since)."""
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return 0 if row is None else row[0]

    def _check_schema(self, conn: sqlite3.Connection, *, create: bool) -> None:
        where = f"journal {str(self.path)!r}"
        found = meta_or_create(
            conn,
            create=create,
            where=where,
            kind="journal",
            writer="bus",
            statements=_CREATE,
            key="schema",
            layout=SCHEMA,
        )
        if found is None:
            return
        meta, _ = found
        if "store_layout" in meta:
            raise ConfigError(
                f"{where} is an eventbus store, not a journal: read it with eventbus jobs, "
                "or from Python with eventbus.subscribers.store.Store"
            )
        check_layout(where, meta.get("schema"), SCHEMA)

    def _conn(self, which: str) -> sqlite3.Connection:
        conn = self._writer if which == "writer" else self._reader
        if conn is None:
            if which == "writer" and self.readonly and self._opened:
                raise JournalError(f"journal {str(self.path)!r} was opened read-only; it cannot be written")
            raise JournalError(f"journal {str(self.path)!r} is not open; use 'async with Journal(path)'")
        return conn

    # --- writing ------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The highest position committed by this process, or seen by its last read (0: empty)."""
        return self._last

    async def append(self, events: Sequence[ev.Event]) -> int:
        """Write ``events`` in one transaction, in order; return the position of the last one.

        All or nothing: on failure (disk full, the file locked by another
        process past ``timeout``) nothing is written and :class:`JournalError`
        says why. Not cancellable once started: the rows are either written
        or not, never half.
        """
        conn = self._conn("writer")
        if not events:
            return self._last
        rows = [(e.id, ev.tag_of(type(e)), e.provider, e.job_id, e.at.timestamp(), ev.encode(e)) for e in events]
        async with self._write_lock:
            with anyio.CancelScope(shield=True):
                last = await anyio.to_thread.run_sync(self._insert, conn, rows)
        self._last = max(self._last, last)
        committed, self._committed = self._committed, anyio.Event()
        committed.set()
        if self._retain_due():
            try:
                await self.retain()
            except JournalError as exc:  # the events are written; deleting old ones is tried again later
                _log.error("journal_retention_failed", journal=str(self.path), error=str(exc))
        return last

    def _retain_due(self) -> bool:
        if (self.max_entries is None and self.max_age is None) or self._starting:
            return False
        seq, when = self._retained_at
        return self._last - seq >= _RETAIN_EVERY or time.monotonic() - when >= _RETAIN_SECONDS

    def _insert(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
        with write_transaction(conn, JournalError, f"journal {str(self.path)!r}: {len(rows)} events not written"):
            conn.executemany(_INSERT, rows)
            return conn.execute("SELECT last_insert_rowid()").fetchone()[0]

    # --- reading ------------------------------------------------------------

    async def read(
        self,
        after: int = 0,
        *,
        limit: int = 1000,
        types: Iterable[type[ev.Event] | str] | type[ev.Event] | str | None = None,
        providers: Iterable[str] | str | None = None,
        jobs: Iterable[str] | str | None = None,
    ) -> Page:
        """Up to ``limit`` entries after position ``after``, in order, matching every filter given."""
        check_numbers("Journal.read", limit=(limit, COUNT))
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ConfigError(f"after must be a position, a whole number 0 or more, not {after!r}")
        where, params = self._where(type_tags(types), _names("providers", providers), _names("jobs", jobs))
        conn = self._conn("reader")
        async with self._read_lock:
            page = await anyio.to_thread.run_sync(self._select, conn, after, limit, where, params)
        self._last = max(self._last, page.upto)
        return page

    async def start_of_last(
        self,
        n: int,
        *,
        types: Iterable[type[ev.Event] | str] | type[ev.Event] | str | None = None,
        providers: Iterable[str] | str | None = None,
        jobs: Iterable[str] | str | None = None,
    ) -> int:
        """The position to read after for the last ``n`` entries matching the filters (0: all there are).

        ``n=0`` gives the journal's last position now: read after it for only
        what is written from now on (``eventbus tail -f --last 0``).
        """
        check_numbers("Journal.start_of_last", n=(n, WHOLE))
        where, params = self._where(type_tags(types), _names("providers", providers), _names("jobs", jobs))
        conn = self._conn("reader")
        query = f"SELECT seq FROM events WHERE 1 = 1{where} ORDER BY seq DESC LIMIT 1 OFFSET ?"

        def find() -> int:
            try:
                if n == 0:
                    return self._top(conn)
                row = conn.execute(query, (*params, n - 1)).fetchone()
            except sqlite3.Error as exc:
                raise JournalError(f"journal {str(self.path)!r} cannot be read: {exc}") from exc
            return 0 if row is None else row[0] - 1

        async with self._read_lock:
            return await anyio.to_thread.run_sync(find)

    @staticmethod
    def _where(
        tags: frozenset[str] | None, providers: frozenset[str] | None, jobs: frozenset[str] | None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (("type", tags), ("provider", providers), ("job_id", jobs)):
            if values is not None:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params += sorted(values)
        return "".join(f" AND {c}" for c in clauses), params

    def _select(self, conn: sqlite3.Connection, after: int, limit: int, where: str, params: list[Any]) -> Page:
        try:
            conn.execute("BEGIN")  # one snapshot for both statements
            try:
                top = self._top(conn)
                rows = conn.execute(
                    f"SELECT seq, body FROM events WHERE seq > ? AND seq <= ?{where} ORDER BY seq LIMIT ?",
                    (after, top, *params, limit),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise JournalError(f"journal {str(self.path)!r} cannot be read: {exc}") from exc
        entries: list[Entry] = []
        skipped: list[tuple[int, str]] = []
        for seq, body in rows:
            try:
                entries.append(Entry(seq, ev.decode(body)))
            except msgspec.MsgspecError as exc:
                skipped.append((seq, f"row {seq} cannot be decoded: {exc}; excerpt: {ev.excerpt(body)}"))
        more = len(rows) == limit
        upto = rows[-1][0] if more else max(top, after)
        return Page(entries, upto, skipped, more)

    def replay(
        self,
        after: int = 0,
        *,
        types: Iterable[type[ev.Event] | str] | type[ev.Event] | str | None = None,
        providers: Iterable[str] | str | None = None,
        jobs: Iterable[str] | str | None = None,
        follow: bool = False,
        poll: float = 0.25,
        batch: int = 1000,
    ) -> Replay:
        """``async for entry in journal.replay(...)``: every entry after ``after`` matching the filters.

        With ``follow``, then new ones as they come: entries committed by this
        process are seen at once, those of other processes within ``poll``
        seconds. Rows that cannot be decoded are logged
        (``journal_row_skipped``, with their position) and passed over.
        Leaving the loop early needs no clean-up.
        """
        check_numbers("Journal.replay", poll=(poll, SECONDS), batch=(batch, COUNT))
        filters = {"types": type_tags(types), "providers": _names("providers", providers), "jobs": _names("jobs", jobs)}
        return Replay(self, after, filters, follow, poll, batch)

    # --- cursors --------------------------------------------------------------

    async def cursor(self, name: str) -> int:
        """The position durable subscriber ``name`` acknowledged last (0: never)."""
        _check_name(name)
        conn = self._conn("reader")
        async with self._read_lock:
            row = await anyio.to_thread.run_sync(self._fetch_cursor, conn, name)
        return row

    def _fetch_cursor(self, conn: sqlite3.Connection, name: str) -> int:
        try:
            row = conn.execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        except sqlite3.Error as exc:
            raise JournalError(f"journal {str(self.path)!r}: cursor {name!r} cannot be read: {exc}") from exc
        return 0 if row is None else row[0]

    async def cursors(self) -> dict[str, int]:
        """Every named cursor and its position."""
        conn = self._conn("reader")
        async with self._read_lock:
            rows = await anyio.to_thread.run_sync(lambda: conn.execute("SELECT name, seq FROM cursors").fetchall())
        return dict(sorted(rows))

    async def ack(self, name: str, seq: int) -> None:
        """Record that ``name`` has handled everything up to position ``seq``; a cursor never moves back."""
        _check_name(name)
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ConfigError(f"seq must be a position, a whole number 0 or more, not {seq!r}")
        conn = self._conn("writer")
        async with self._write_lock:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._store_cursor, conn, name, seq)

    def _store_cursor(self, conn: sqlite3.Connection, name: str, seq: int) -> None:
        try:
            conn.execute(
                "INSERT INTO cursors VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
                " SET seq = MAX(seq, excluded.seq), updated = excluded.updated",
                (name, seq, time.time()),
            )
        except sqlite3.Error as exc:
            raise JournalError(f"journal {str(self.path)!r}: cursor {name!r} not saved: {exc}") from exc

    # --- housekeeping ---------------------------------------------------------

    async def prune(self, before: int) -> int:
        """Delete the entries at positions below ``before``; return how many. Positions are never reused.

        Unlike the limits (``max_entries``, ``max_age``, :meth:`retain`), this
        deletes what is below ``before`` whatever the cursors: give a position
        every durable subscriber has acknowledged
        (``min((await journal.cursors()).values())``) to lose nothing.
        """
        if isinstance(before, bool) or not isinstance(before, int) or before < 0:
            raise ConfigError(f"before must be a position, a whole number 0 or more, not {before!r}")
        conn = self._conn("writer")
        async with self._write_lock:
            with anyio.CancelScope(shield=True):
                return await anyio.to_thread.run_sync(self._delete, conn, before)

    def _delete(self, conn: sqlite3.Connection, before: int) -> int:
        try:
            return conn.execute("DELETE FROM events WHERE seq < ?", (before,)).rowcount
        except sqlite3.Error as exc:
            raise JournalError(f"journal {str(self.path)!r}: entries not pruned: {exc}") from exc

    async def retain(self) -> Retained:
        """Delete the oldest entries beyond ``max_entries`` or older than ``max_age``, if acknowledged by all.

        The cut is the later of the two limits' (the last ``max_entries``
        positions are kept; an entry whose event's ``at`` is older than
        ``max_age`` seconds goes), moved back to just after the lowest named
        cursor (:meth:`cursors`; a durable subscriber's is saved from the
        moment it first subscribes): what a durable subscriber has not
        acknowledged stays. A cursor that starts holding entries back is
        logged once (``journal_retention_held``, a warning) and again, as
        ``journal_retention_released``, once it no longer does. Runs by itself as events
        are appended; call it to apply the limits now.
        """
        conn = self._conn("writer")
        async with self._write_lock:
            with anyio.CancelScope(shield=True):
                done = await anyio.to_thread.run_sync(self._apply_limits, conn, bool(self._starting))
        self._retained_at = (self._last, time.monotonic())
        for name, seq in done.held_by.items():
            if name not in self._held:  # once while it holds entries back, not at every pass
                _log.warning(
                    "journal_retention_held",
                    journal=str(self.path),
                    cursor=name,
                    position=seq,
                    hint="entries it has not acknowledged are kept; Journal.forget(name) if it is no longer used",
                )
        for name in self._held.keys() - done.held_by.keys():
            _log.info("journal_retention_released", journal=str(self.path), cursor=name)
        self._held = dict(done.held_by)
        return done

    def _apply_limits(self, conn: sqlite3.Connection, waiting: bool) -> Retained:
        # One transaction: no cursor is saved between reading the cursors and deleting.
        with write_transaction(conn, JournalError, f"journal {str(self.path)!r}: old entries not deleted"):
            return self._cut(conn, waiting)

    def _cut(self, conn: sqlite3.Connection, waiting: bool) -> Retained:
        top = self._top(conn)
        cut = 0  # delete the positions below this (none while a subscriber of this process has no cursor yet)
        if self.max_entries is not None:
            cut = top - self.max_entries + 1
        if self.max_age is not None:
            row = conn.execute(  # from the oldest entry up: a walk over the rows to delete, then one more
                "SELECT seq FROM events WHERE at >= ? ORDER BY seq LIMIT 1", (time.time() - self.max_age,)
            ).fetchone()
            cut = max(cut, top + 1 if row is None else row[0])
        held_by: dict[str, int] = {}
        if waiting:
            cut = 0
        if cut > 0:
            cursors = conn.execute("SELECT name, seq FROM cursors WHERE seq < ?", (cut - 1,)).fetchall()
            held_by = dict(sorted(cursors))
            if held_by:
                cut = min(held_by.values()) + 1
        deleted = conn.execute("DELETE FROM events WHERE seq < ?", (cut,)).rowcount if cut > 1 else 0
        row = conn.execute("SELECT MIN(seq) FROM events").fetchone()
        return Retained(deleted=deleted, first=row[0] or 0, held_by=held_by)

    async def forget(self, name: str) -> bool:
        """Delete the cursor of durable subscriber ``name`` (gone for good); True if there was one.

        It no longer holds entries back from retention; a subscriber of that
        name subscribing again starts from the beginning of what is left.
        """
        _check_name(name)
        conn = self._conn("writer")
        async with self._write_lock:
            with anyio.CancelScope(shield=True):
                count = await anyio.to_thread.run_sync(
                    lambda: conn.execute("DELETE FROM cursors WHERE name = ?", (name,)).rowcount
                )
        self._held.pop(name, None)
        return count > 0

    def __repr__(self) -> str:
        state = "open" if self._opened else "closed"
        return f"<Journal {str(self.path)!r} {state}{' read-only' if self.readonly else ''} last_seq={self._last}>"


class Replay:
    """The async iterator :meth:`Journal.replay` returns (an object, not a generator: nothing to close)."""

    def __init__(
        self, journal: Journal, after: int, filters: dict[str, Any], follow: bool, poll: float, batch: int
    ) -> None:
        self._journal = journal
        self.position = after  # read up to here
        self._filters = filters
        self._follow = follow
        self._poll = poll
        self._batch = batch
        self._ready: deque[Entry] = deque()
        self.skipped = 0  # rows passed over: they could not be decoded

    def __aiter__(self) -> Replay:
        return self

    async def __anext__(self) -> Entry:
        journal = self._journal
        while not self._ready:
            signal = journal._committed  # taken before the read: a commit during it is not missed
            page = await journal.read(self.position, limit=self._batch, **self._filters)
            for seq, why in page.skipped:
                _log.warning("journal_row_skipped", journal=str(journal.path), seq=seq, reason=why)
            self.skipped += len(page.skipped)
            self._ready.extend(page.entries)
            self.position = page.upto
            if self._ready or page.more:
                continue
            if not self._follow:
                raise StopAsyncIteration
            with anyio.move_on_after(self._poll):
                await signal.wait()
        return self._ready.popleft()


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a cursor needs a non-empty name, not {name!r}")
