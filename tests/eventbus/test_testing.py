"""eventbus.testing: capture, EventFactory and make_event."""

from __future__ import annotations

import pytest

from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.testing import EventFactory, capture, make_event

pytestmark = pytest.mark.anyio


def test_make_event_fills_common_fields() -> None:
    """make_event fills id, provider, job_id and source, and overrides win."""
    a = make_event(ev.JobProgress, done=3)
    b = make_event(ev.JobProgress, done=4, provider="pronto")
    assert (a.provider, a.job_id, a.source, a.done) == ("test", "job-1", "submit", 3)
    assert b.provider == "pronto" and a.id != b.id


def test_make_event_requires_the_class_fields() -> None:
    """make_event does not invent class-specific fields: a missing one is a TypeError naming it."""
    with pytest.raises(TypeError, match="reason"):
        make_event(ev.JobFailed)


def test_event_factory_numbers_ids_per_factory() -> None:
    """An EventFactory gives predictable ids '<provider>:<job>:<n>' and its own defaults."""
    make = EventFactory(provider="pronto", job_id="enr_1", source="webhook")
    first = make(ev.JobProgress, done=1)
    second = make(ev.ItemFailed, key="7", code="not_found", message="no match", job_id="enr_2")
    named = make(ev.JobCompleted, id="fixed")
    assert (first.id, first.source, first.provider) == ("pronto:enr_1:1", "webhook", "pronto")
    assert (second.id, second.job_id) == ("pronto:enr_2:2", "enr_2")
    assert named.id == "fixed"


async def test_capture_collects_filtered_events_in_order() -> None:
    """capture collects what the bus delivers while the block runs, filtered."""
    async with Bus() as bus:
        async with capture(bus, types={ev.JobCompleted}) as done, capture(bus) as everything:
            await bus.publish(make_event(ev.JobProgress, done=1))
            await bus.publish(make_event(ev.JobCompleted, job_id="j9"))
            await bus.drain()
        await bus.publish(make_event(ev.JobProgress, done=2))
        await bus.drain()
    assert [e.job_id for e in done] == ["j9"]
    assert [type(e) for e in everything] == [ev.JobProgress, ev.JobCompleted]


async def test_capture_is_complete_after_the_block() -> None:
    """Leaving the capture block hands it everything already published, without a drain."""
    async with Bus() as bus:
        async with capture(bus, jobs="a") as events:
            for i in range(1000):
                bus.publish_nowait(make_event(ev.JobProgress, job_id="a" if i % 2 else "b", done=i))
        assert [e.done for e in events] == list(range(1, 1000, 2))
        assert bus.stats() == {}
