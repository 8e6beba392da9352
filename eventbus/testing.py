"""Helpers for testing code that publishes or consumes events (public API).

    async with Bus() as bus, capture(bus, types={JobCompleted}) as events:
        await code_under_test(bus)
        await bus.drain()
    assert [e.job_id for e in events] == ["j1"]

:func:`make_event` builds an event with the common fields filled in, so a test
states only what it is about.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from itertools import count
from typing import Any, TypeVar

from eventbus import events as ev
from eventbus.bus import Bus

__all__ = ["capture", "make_event"]

E = TypeVar("E", bound=ev.Event)
_ids = count(1)


def make_event(cls: type[E], **fields: Any) -> E:
    """An event of ``cls`` with defaults for the common fields (override any of them).

    Defaults: a fresh ``id``, ``provider="test"``, ``job_id="job-1"``,
    ``source="submit"``; class-specific required fields must be given.
    """
    defaults: dict[str, Any] = {"id": f"test-{next(_ids)}", "provider": "test", "job_id": "job-1", "source": "submit"}
    return cls(**{**defaults, **fields})


@asynccontextmanager
async def capture(
    bus: Bus,
    *,
    types: Iterable[type[ev.Event] | str] | None = None,
    providers: Iterable[str] | str | None = None,
    jobs: Iterable[str] | str | None = None,
    where: Callable[[ev.Event], bool] | None = None,
    name: str | None = None,
) -> AsyncIterator[list[ev.Event]]:
    """Collect the events published on ``bus`` while the block runs, in delivery order.

    The list fills as the bus delivers; call ``await bus.drain()`` before
    asserting on it. The capture never drops: it has an unbounded-enough
    buffer and applies back-pressure like any ``block`` subscriber.
    """
    events: list[ev.Event] = []
    handle = bus.on(
        events.append,
        name=name or f"capture-{next(_ids)}",
        types=types,
        providers=providers,
        jobs=jobs,
        where=where,
        buffer=65_536,
    )
    try:
        yield events
    finally:
        handle.close()
