"""Helpers for testing code that publishes or consumes events (public API).

    async with Bus() as bus:
        async with capture(bus, types={JobCompleted}) as events:
            await code_under_test(bus)
        assert [e.job_id for e in events] == ["j1"]   # complete once the block has exited

:class:`EventFactory` and :func:`make_event` build events with the common
fields filled in, so a test states only what it is about::

    make = EventFactory(provider="pronto", job_id="enr_1")
    make(JobProgress, done=3)            # id "pronto:enr_1:1", source "submit", at now
    make(ItemFailed, key="7", code="x", message="no", job_id="enr_2")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from itertools import count
from typing import Any, TypeVar

from eventbus import events as ev
from eventbus.bus import Bus, Types

__all__ = ["EventFactory", "capture", "make_event"]

E = TypeVar("E", bound=ev.Event)

CAPTURE_BUFFER = 65_536
"""The buffer of a :func:`capture` subscriber (``block``: a capture never drops)."""

_captures = count(1)


class EventFactory:
    """Makes events sharing default common fields, each with a fresh, predictable ``id``.

    ``id`` is ``"<provider>:<job_id>:<n>"`` with ``n`` counting from 1 per
    factory, so tests can name the events they expect. Any field, common or
    not, can be overridden per call; the class's own required fields must be
    given.
    """

    def __init__(self, *, provider: str = "test", job_id: str = "job-1", source: ev.Source = "submit") -> None:
        self.provider = provider
        self.job_id = job_id
        self.source = source
        self._n = count(1)

    def __call__(self, cls: type[E], **fields: Any) -> E:
        """An event of ``cls``: the factory's common fields, overridden by ``fields``."""
        provider = fields.pop("provider", self.provider)
        job_id = fields.pop("job_id", self.job_id)
        source = fields.pop("source", self.source)
        event_id = fields.pop("id", None) or f"{provider}:{job_id}:{next(self._n)}"
        return cls(id=event_id, provider=provider, job_id=job_id, source=source, **fields)


_default = EventFactory()


def make_event(cls: type[E], **fields: Any) -> E:
    """An event of ``cls`` with defaults for the common fields (override any of them).

    Defaults: a fresh ``id``, ``provider="test"``, ``job_id="job-1"``,
    ``source="submit"``, ``at`` now; class-specific required fields must be given.
    """
    return _default(cls, **fields)


@asynccontextmanager
async def capture(
    bus: Bus,
    *,
    types: Types | None = None,
    providers: Iterable[str] | str | None = None,
    jobs: Iterable[str] | str | None = None,
    where: Callable[[ev.Event], bool] | None = None,
    name: str | None = None,
    timeout: float = 5.0,
) -> AsyncIterator[list[ev.Event]]:
    """Collect the events published on ``bus`` while the block runs, in delivery order.

    Takes the same filters as :meth:`Bus.on`. The list fills as the bus
    delivers: inside the block, ``await bus.drain()`` before asserting on it;
    on leaving the block, the capture handles everything still buffered
    (waiting at most ``timeout`` seconds), so the list is complete afterwards.
    A capture never drops: it is a ``block`` subscriber with a
    :data:`CAPTURE_BUFFER`-event buffer, so a publisher outrunning it waits.
    """
    events: list[ev.Event] = []
    handle = bus.on(
        events.append,
        name=name or f"capture-{next(_captures)}",
        types=types,
        providers=providers,
        jobs=jobs,
        where=where,
        buffer=CAPTURE_BUFFER,
    )
    try:
        yield events
    finally:
        await handle.aclose(timeout)
