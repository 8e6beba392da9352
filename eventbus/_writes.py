"""The queue between a persistent bus's publishers and its writer task, and the ledger of what failed (internal).

:class:`WriteQueue`: publishers queue events (each numbered as queued) and
wait for theirs to be written; the writer takes them in batches, in order,
and says what it wrote. :class:`Failures`: which numbers a failed batch held.

A journaled :class:`~eventbus.bus.Bus` and :class:`~eventbus.backends.redis.RedisBus`
number what they queue (1, 2, ...: ``bus.published`` after each) and write it
in batches; a batch that fails is recorded here as a range of numbers. A
publisher asks about one number (its own event), or about every number after
the count it read before publishing (``bus.flush(after=...)``: a webhook
receiver's events, however the writer batched them with other requests').
Bounded: the oldest ranges are forgotten, and a question about numbers some
forgotten range may have held is answered "failed" (never a false "written").
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any

import anyio

__all__ = ["Failures", "WriteQueue"]


class Failures:
    """The failed batches, as ``(first, last, why)`` ranges of publish numbers, newest last."""

    __slots__ = ("_forgotten", "_ranges")

    def __init__(self, keep: int = 64) -> None:
        self._ranges: deque[tuple[int, int, str]] = deque(maxlen=keep)
        self._forgotten = 0  # the highest number of a range no longer kept

    def add(self, first: int, last: int, why: str) -> None:
        if len(self._ranges) == self._ranges.maxlen:
            self._forgotten = max(self._forgotten, self._ranges[0][1])
        self._ranges.append((first, last, why))

    def of(self, number: int) -> str | None:
        """Why event ``number`` was not written, or None if it was."""
        for first, last, why in self._ranges:
            if first <= number <= last:
                return why
        if number <= self._forgotten:  # it may have been in a range no longer kept: never a false "written"
            return "failures that old are no longer kept; treat it as not written"
        return None

    def between(self, after: int, upto: int) -> tuple[int, str] | None:
        """How many of the events ``after + 1 .. upto`` were not written, and why (the latest reason); or None."""
        if after < self._forgotten:
            return upto - after, "failures that old are no longer kept; treat them as not written"
        count, reason = 0, ""
        for first, last, why in self._ranges:
            low, high = max(first, after + 1), min(last, upto)
            if low <= high:
                count += high - low + 1
                reason = why
        return (count, reason) if count else None


class WriteQueue:
    """Events published to a persistent bus (a journaled :class:`~eventbus.bus.Bus`, a ``RedisBus``) and its writer.

    Publishers: :meth:`full`, :meth:`put` (the event's number), :meth:`wait_room`,
    :meth:`wait_written`, :meth:`unwritten`. The writer: :meth:`batch`,
    :meth:`wrote`, :meth:`wait_work`, :meth:`ended`. A batch stays in
    ``pending`` until the writer says it is written (or failed): a bus torn
    down meanwhile still finds it there.
    """

    __slots__ = ("_progress", "_room", "_work", "failures", "gone", "limit", "pending", "queued", "written")

    def __init__(self, limit: int) -> None:
        self.pending: deque[Any] = deque()
        self.limit = limit  # events queued at most
        self.queued = self.written = 0  # events queued and written (or failed) so far
        self.failures = Failures()
        self.gone = False  # the writer has ended
        self._work: anyio.Event | None = None  # set to wake the writer
        self._room: anyio.Event | None = None  # set when the writer took events from a full queue
        self._progress: anyio.Event | None = None  # set when a batch was written (or failed)

    # --- publishers ------------------------------------------------------------

    def full(self) -> bool:
        return len(self.pending) >= self.limit

    def put(self, event: Any) -> int:
        """Queue ``event`` for the writer; its number (``queued`` after it)."""
        self.pending.append(event)
        self.queued += 1
        self.wake()
        return self.queued

    async def wait_room(self) -> None:
        """Wait once for the writer to take events (or to end): check :meth:`full` again after."""
        waiter = self._room
        if waiter is None:
            waiter = self._room = anyio.Event()
        await waiter.wait()

    async def wait_progress(self) -> None:
        """Wait once for the writer to write (or fail) a batch, or to have nothing left, or to end."""
        waiter = self._progress
        if waiter is None:
            waiter = self._progress = anyio.Event()
        await waiter.wait()

    async def wait_written(self, number: int) -> None:
        """Wait until the events up to ``number`` are written (or failed), or the writer has ended."""
        while self.written < number and not self.gone:
            await self.wait_progress()

    def unwritten(self, number: int, after: int | None = None) -> tuple[int, str] | None:
        """How many were not written, and why: event ``number`` alone, or (``after``) every one after the
        ``after``-th up to ``number``; None if they were written."""
        if after is None:
            why = self.failures.of(number)
            return None if why is None else (1, why)
        return self.failures.between(after, number)

    # --- the writer ------------------------------------------------------------

    def wake(self) -> None:
        """Wake the writer (there is work, or the bus is closing)."""
        if self._work is not None:
            self._work.set()
            self._work = None

    async def wait_work(self) -> None:
        """The writer, its queue empty: say so to whoever waits for progress, then wait to be woken."""
        self.signal_progress()
        waiter = self._work = anyio.Event()
        await waiter.wait()

    def batch(self, size: int) -> list[Any]:
        """The next ``size`` events at most, left queued until :meth:`wrote`."""
        return list(islice(self.pending, size))

    def wrote(self, count: int, why: str | None = None) -> None:
        """The first ``count`` queued events were written, or (``why``) were not; publishers waiting go on."""
        if why is not None:
            self.failures.add(self.written + 1, self.written + count, why)
        for _ in range(count):
            self.pending.popleft()
        self.written += count
        if self._room is not None:
            self._room.set()
            self._room = None
        self.signal_progress()

    def signal_progress(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    def ended(self) -> None:
        """The writer has ended (closed, cancelled or failed): nobody waits for it any more."""
        self.gone = True
        if self._room is not None:
            self._room.set()
        self.signal_progress()
