"""Which published events a bus's writer could not write, by their publish number (internal).

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

__all__ = ["Failures"]


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
