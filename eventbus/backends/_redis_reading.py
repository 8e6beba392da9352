"""A RedisBus's stream read as a log, with no consumer group: :meth:`RedisBus.read`, ``start_of_last``, ``groups``.

What the journal's :meth:`~eventbus.journal.Journal.read` is to a journal
file: pages of entries after a position (here an entry id), filtered on this
side (the ``t`` field spares decoding what a type filter refuses), entries
that cannot be decoded counted and named, never raised. Nothing is
acknowledged and no group is created: reading changes nothing in Redis.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import msgspec
from redis.exceptions import RedisError, ResponseError

from eventbus import events as ev
from eventbus.exceptions import ConfigError, TransportError
from eventbus.subscribers.log import redact

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["GroupInfo", "StreamEntry", "StreamPage", "StreamReader", "entry_key", "id_key"]

_T = TypeVar("_T")
_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_MAX = 2**64 - 1  # each half of an entry id is an unsigned 64-bit number
_SCAN = 1000  # entries per XREVRANGE when looking for the last n


class StreamEntry(msgspec.Struct, frozen=True):
    """One event of the stream and its entry id (``"1700000000000-0"``)."""

    id: str
    event: ev.AnyEvent


@dataclass(frozen=True)
class StreamPage:
    """What :meth:`RedisBus.read` found after an entry id.

    ``upto`` is the id the read covered (continue with
    ``read(after=page.upto)``): past the last entry when entries the filters
    refused came after it. ``skipped`` lists the entries that could not be
    decoded (``(id, why)``: another program wrote to the stream, or a newer
    eventbus with event types this one does not know); they stay in the stream.
    """

    entries: list[StreamEntry]
    upto: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    more: bool = False  # the read stopped at its limit: entries may follow ``upto`` already


@dataclass(frozen=True)
class GroupInfo:
    """One consumer group of the stream (a RedisBus subscriber's name), as ``XINFO GROUPS`` reports it."""

    name: str
    last_delivered: str  # the id of the last entry handed to one of its consumers
    pending: int  # entries delivered and not yet acknowledged
    lag: int | None  # entries not yet delivered (None: the server cannot tell, or is older than Redis 7)
    consumers: int


def id_key(entry_id: bytes | str) -> tuple[int, int]:
    """A stream entry id (``"1700000000000-3"``) as a pair that compares in stream order."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def entry_key(text: object) -> tuple[int, int] | None:
    """``text``'s :func:`id_key` if it is an entry id (``"1700000000000-0"``, or ``"0"``), else None."""
    match = _ID.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    key = int(match[1]), int(match[2] or 0)
    return key if max(key) <= _MAX else None


def _decoded(
    entry_id: str,
    fields: dict[bytes, bytes],
    tags: frozenset[str] | None,
    providers: frozenset[str] | None,
    jobs: frozenset[str] | None,
) -> StreamEntry | str | None:
    """The entry, if the filters admit it; None if they refuse it; a sentence saying why if it cannot be decoded."""
    tag = fields.get(b"t")
    if tags is not None and tag is not None and tag.decode(errors="replace") not in tags:
        return None
    data = fields.get(b"e")
    if data is None:
        names = ", ".join(sorted(name.decode(errors="replace") for name in fields))
        return f"entry {entry_id} cannot be decoded: it has no 'e' field (its fields: {names})"
    try:
        event = ev.decode(data)
    except msgspec.MsgspecError as exc:
        return f"entry {entry_id} cannot be decoded: {exc}; excerpt: {ev.excerpt(data)}"
    if tags is not None and ev.tag_of(type(event)) not in tags:
        return None
    if (providers is not None and event.provider not in providers) or (jobs is not None and event.job_id not in jobs):
        return None
    return StreamEntry(entry_id, event)


class StreamReader:
    """The reading side of one RedisBus's stream (internal: RedisBus's ``read``, ``start_of_last``, ``groups``)."""

    def __init__(self, client: aioredis.Redis, stream: str, url: str, timeout: float) -> None:
        self._client = client
        self.stream = stream
        self.url = url  # redacted
        self.timeout = timeout

    async def read(
        self,
        after: str,
        limit: int,
        tags: frozenset[str] | None,
        providers: frozenset[str] | None,
        jobs: frozenset[str] | None,
    ) -> StreamPage:
        if entry_key(after) == (_MAX, _MAX):  # nothing can follow it (and XRANGE refuses to start past it)
            return StreamPage([], after)
        start = "-" if entry_key(after) == (0, 0) else f"({after}"
        rows = await self._command(self._client.xrange, self.stream, start, "+", count=limit)
        entries: list[StreamEntry] = []
        skipped: list[tuple[str, str]] = []
        for raw_id, fields in rows:
            entry_id = raw_id.decode()
            found = _decoded(entry_id, fields or {}, tags, providers, jobs)
            if isinstance(found, StreamEntry):
                entries.append(found)
            elif found is not None:
                skipped.append((entry_id, found))
        upto = rows[-1][0].decode() if rows else after
        return StreamPage(entries, upto, skipped, more=len(rows) == limit)

    async def start_of_last(
        self,
        n: int,
        tags: frozenset[str] | None,
        providers: frozenset[str] | None,
        jobs: frozenset[str] | None,
    ) -> str:
        if n == 0:
            return await self.last_id()
        counted = 0
        end = "+"
        while True:
            rows = await self._command(self._client.xrevrange, self.stream, end, "-", count=_SCAN)
            for raw_id, fields in rows:
                if counted == n:
                    return raw_id.decode()  # the entry just before the n-th last match: read after it
                if self._counts(raw_id, fields or {}, tags, providers, jobs):
                    counted += 1
            if len(rows) < _SCAN:
                return "0"  # the oldest entry is among them (or fewer than n match): from the start
            end = f"({rows[-1][0].decode()}"

    @staticmethod
    def _counts(
        raw_id: bytes,
        fields: dict[bytes, bytes],
        tags: frozenset[str] | None,
        providers: frozenset[str] | None,
        jobs: frozenset[str] | None,
    ) -> bool:
        """Whether :meth:`read` would return the entry, or name it as undecodable (the last n count both)."""
        if providers is None and jobs is None:
            tag = fields.get(b"t")
            if tags is None:
                return True
            if tag is not None:  # decided by its tag, as read() decides, with no decoding
                return tag.decode(errors="replace") in tags
        return _decoded(raw_id.decode(), fields, tags, providers, jobs) is not None

    async def last_id(self) -> str:
        """The id of the last entry ever added to the stream (also when trimmed or deleted); "0" if none was."""
        try:
            info = await self._command(self._client.xinfo_stream, self.stream)
        except _NoSuchKey:
            return "0"
        last = info["last-generated-id"]
        last = last.decode() if isinstance(last, bytes) else str(last)
        return "0" if id_key(last) == (0, 0) else last

    async def groups(self) -> list[GroupInfo]:
        try:
            rows = await self._command(self._client.xinfo_groups, self.stream)
        except _NoSuchKey:
            return []
        groups = [
            GroupInfo(
                name=_text(row["name"]),
                last_delivered=_text(row["last-delivered-id"]),
                pending=int(row["pending"]),
                lag=None if row.get("lag") is None else int(row["lag"]),
                consumers=int(row["consumers"]),
            )
            for row in rows
        ]
        return sorted(groups, key=lambda g: g.name)

    async def _command(self, call: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any) -> _T:
        """``await call(*args, **kwargs)`` within ``timeout``; Redis's errors as ours, with no password in them."""
        try:
            with anyio.fail_after(self.timeout):
                return await call(*args, **kwargs)
        except ResponseError as exc:
            if str(exc).startswith("no such key"):
                raise _NoSuchKey from None
            if str(exc).startswith("WRONGTYPE"):
                raise ConfigError(
                    f"the key {self.stream!r} at {self.url} is not a stream; give the stream a RedisBus writes"
                ) from None
            raise TransportError(
                f"could not read the stream {self.stream!r} at {self.url}: {redact(str(exc))}"
            ) from None
        except (RedisError, OSError, TimeoutError) as exc:
            raise TransportError(
                f"could not read the stream {self.stream!r} at {self.url}: {redact(str(exc)) or type(exc).__name__}"
            ) from None


class _NoSuchKey(Exception):
    """XINFO on a stream that does not exist (yet)."""


def _text(value: bytes | str | int) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
