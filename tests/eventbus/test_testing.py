"""eventbus.testing: capture and make_event."""

from __future__ import annotations

import pytest

from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.testing import capture, make_event

pytestmark = pytest.mark.anyio


def test_make_event_fills_common_fields() -> None:
    """make_event fills id, provider, job_id and source, and overrides win."""
    a = make_event(ev.JobProgress, done=3)
    b = make_event(ev.JobProgress, done=4, provider="pronto")
    assert a.provider == "test" and a.job_id == "job-1" and a.done == 3
    assert b.provider == "pronto" and a.id != b.id


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
