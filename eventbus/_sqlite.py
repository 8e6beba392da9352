"""Opening the SQLite files of the journal and the store: the same pragmas, checks and clean-up for both.

Each file gets a writer connection (none when read-only) and a reader
connection. Transactions are begun and ended by their owners, explicitly
(``isolation_level=None``); calls come from anyio's worker threads, one at a
time under their owner's locks (``check_same_thread=False``). The file is
WAL with ``synchronous=NORMAL``: readers never wait for the writer, and a
commit survives the process dying (not the machine losing power before
SQLite's next checkpoint).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from eventbus.exceptions import ConfigError, EventBusError

__all__ = ["check_layout", "connect", "meta_or_create", "open_pair", "write_transaction"]

Check = Callable[..., None]
"""``check(conn, create=bool)``: refuse (ConfigError) a file that is not of the owner's kind; create it if asked."""


@contextmanager
def write_transaction(conn: sqlite3.Connection, error: type[EventBusError], failed: str) -> Iterator[None]:
    """The block as one write transaction (``BEGIN IMMEDIATE``): committed, or rolled back on any exception.

    An SQLite error (the file locked past the timeout, the disk full) is
    raised as ``error(f"{failed}: {why}")``.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise error(f"{failed}: {exc}") from exc


def connect(target: str, timeout: float, *, uri: bool = False) -> sqlite3.Connection:
    """One connection as the journal and the store use them (see the module's docstring)."""
    return sqlite3.connect(target, timeout=timeout, isolation_level=None, check_same_thread=False, uri=uri)


def open_pair(
    path: Path,
    *,
    readonly: bool,
    timeout: float,
    where: str,
    missing: str,
    check: Check,
    error: type[EventBusError],
) -> tuple[sqlite3.Connection, sqlite3.Connection | None]:
    """``(reader, writer)`` on ``path``, each checked by ``check``; the writer None when ``readonly``.

    A read-only open never creates the file: a missing one is ``ConfigError(f"{where} does not exist; {missing}")``.
    SQLite's own refusals ("file is not a database") become ``error``; whatever fails, no connection is left open.
    """
    if readonly and not path.exists():
        raise ConfigError(f"{where} does not exist; {missing}")
    if path.is_dir():
        raise ConfigError(f"{where} is a directory; give a file path")
    writer = reader = None
    try:
        if not readonly:
            writer = connect(path.as_posix(), timeout)
            writer.execute("PRAGMA journal_mode=WAL")
            writer.execute("PRAGMA synchronous=NORMAL")
            check(writer, create=True)
        if readonly:
            reader = connect(f"{path.absolute().as_uri()}?mode=ro", timeout, uri=True)
        else:
            reader = connect(path.as_posix(), timeout)
        check(reader, create=False)
    except BaseException as exc:
        for conn in (reader, writer):
            if conn is not None:
                conn.close()
        if isinstance(exc, sqlite3.DatabaseError):
            raise error(f"{where} cannot be opened: {exc}") from exc
        raise
    return reader, writer


def meta_or_create(
    conn: sqlite3.Connection,
    *,
    create: bool,
    where: str,
    kind: str,
    writer: str,
    statements: tuple[str, ...],
    key: str,
    layout: int,
) -> tuple[dict[str, str], set[str]] | None:
    """The file's ``meta`` table and table names; or None once an empty file was made one of ``kind`` (``create``).

    An empty file opened to read, or a file with tables of someone else's, is a ConfigError naming them.
    """
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" in tables:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall()), tables
    if not tables and not create:
        raise ConfigError(f"{where} is empty: no {writer} has written to it")
    if tables - {"sqlite_sequence"} or not create:
        raise ConfigError(f"{where} is an SQLite file but not an eventbus {kind} (tables: {sorted(tables)})")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, str(layout)))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return None


def check_layout(where: str, found: str | None, layout: int) -> None:
    """A ConfigError unless the file's layout number ``found`` is the one this version reads."""
    if found != str(layout):
        newer = found is not None and found.isdigit() and int(found) > layout
        raise ConfigError(
            f"{where} has layout {found!r}; this version reads layout {str(layout)!r}"
            + (" (a newer eventbus wrote it: upgrade to read it)" if newer else " (damaged or not eventbus's)")
        )
