"""The in-process bus: delivery, filters, overflow policies, failures, order, drain and close."""

from __future__ import annotations

import anyio
import pytest
import structlog
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st

from eventbus import events as ev
from eventbus.bus import Bus, Overflow
from eventbus.exceptions import BufferOverflow, BusClosed, ConfigError, SubscriptionClosed

pytestmark = pytest.mark.anyio


def progress(i: int, job: str = "j1", provider: str = "pronto") -> ev.JobProgress:
    return ev.JobProgress(id=f"{job}-{i}", provider=provider, job_id=job, source="poll", done=i)


def completed(job: str = "j1", provider: str = "pronto") -> ev.JobCompleted:
    return ev.JobCompleted(id=f"{job}-done", provider=provider, job_id=job, source="poll")


async def test_handler_receives_every_event_in_order() -> None:
    """A sync handler sees every published event, in publish order."""
    seen: list[int] = []
    async with Bus() as bus:
        bus.on(lambda e: seen.append(e.done), name="h")
        for i in range(100):
            await bus.publish(progress(i))
        await bus.drain()
    assert seen == list(range(100))


async def test_async_handler_is_awaited() -> None:
    """An async handler is awaited for each event before the next one."""
    seen: list[int] = []

    async def handler(event: ev.JobProgress) -> None:
        await checkpoint()
        seen.append(event.done)

    async with Bus() as bus:
        bus.on(handler, name="h")
        for i in range(10):
            await bus.publish(progress(i))
        await bus.drain()
    assert seen == list(range(10))


async def test_subscription_iterates_events() -> None:
    """An async-iterator subscription yields published events and ends when the bus closes."""
    got: list[int] = []
    async with Bus() as bus:
        async with bus.subscribe("it") as sub:

            async def consume() -> None:
                async for event in sub:
                    got.append(event.done)

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                for i in range(5):
                    await bus.publish(progress(i))
                await bus.drain()
                sub.close()
    assert got == [0, 1, 2, 3, 4]


async def test_type_filter_by_class_and_tag() -> None:
    """types= admits only the named classes or tags."""
    by_class: list[type] = []
    by_tag: list[type] = []
    async with Bus() as bus:
        bus.on(lambda e: by_class.append(type(e)), name="c", types={ev.JobCompleted})
        bus.on(lambda e: by_tag.append(type(e)), name="t", types=["job_progress"])
        await bus.publish(progress(1))
        await bus.publish(completed())
        await bus.drain()
    assert by_class == [ev.JobCompleted]
    assert by_tag == [ev.JobProgress]


async def test_provider_job_and_predicate_filters() -> None:
    """providers=, jobs= and where= combine with AND."""
    seen: list[str] = []
    async with Bus() as bus:
        bus.on(
            lambda e: seen.append(e.id),
            name="f",
            providers={"pronto"},
            jobs="j1",
            where=lambda e: isinstance(e, ev.JobProgress) and e.done % 2 == 0,
        )
        for event in (progress(2), progress(3), progress(4, job="j2"), progress(6, provider="mautic"), completed()):
            await bus.publish(event)
        await bus.drain()
    assert seen == ["j1-2"]


async def test_failing_handler_is_logged_counted_and_keeps_receiving() -> None:
    """A handler that raises is logged and counted; it and its peers get later events."""
    ok: list[int] = []
    flaky_seen: list[int] = []

    def flaky(event: ev.JobProgress) -> None:
        flaky_seen.append(event.done)
        if event.done == 1:
            raise RuntimeError("boom")

    with structlog.testing.capture_logs() as logs:
        async with Bus() as bus:
            bus.on(flaky, name="flaky")
            bus.on(lambda e: ok.append(e.done), name="ok")
            for i in range(3):
                await bus.publish(progress(i))
            await bus.drain()
            stats = bus.stats()
    assert flaky_seen == [0, 1, 2] and ok == [0, 1, 2]
    assert stats["flaky"].failed == 1 and stats["ok"].failed == 0
    failures = [entry for entry in logs if entry["event"] == "subscriber_failed"]
    assert len(failures) == 1 and failures[0]["subscriber"] == "flaky"
    assert failures[0]["event_id"] == "j1-1" and failures[0]["log_level"] == "error"


async def test_drop_oldest_keeps_newest_and_counts_exactly() -> None:
    """drop_oldest on a stalled subscriber keeps the last `buffer` events and counts the rest."""
    async with Bus() as bus:
        async with bus.subscribe("slow", buffer=10, overflow="drop_oldest") as sub:
            for i in range(100):
                bus.publish_nowait(progress(i))
            stats = sub.stats()
            assert (stats.dropped, stats.lag, stats.received) == (90, 10, 100)
            got = [sub.receive_nowait().done for _ in range(10)]
    assert got == list(range(90, 100))


async def test_drop_newest_keeps_oldest_and_counts_exactly() -> None:
    """drop_newest keeps the first `buffer` events and counts the refused ones."""
    async with Bus() as bus:
        async with bus.subscribe("slow", buffer=10, overflow=Overflow.DROP_NEWEST) as sub:
            for i in range(25):
                bus.publish_nowait(progress(i))
            assert sub.stats().dropped == 15
            got = [sub.receive_nowait().done for _ in range(10)]
    assert got == list(range(10))


async def test_error_policy_raises_and_delivers_to_nobody() -> None:
    """overflow=error raises BufferOverflow and no subscriber receives that event."""
    async with Bus() as bus:
        async with bus.subscribe("strict", buffer=2, overflow="error") as strict, bus.subscribe("other") as other:
            bus.publish_nowait(progress(0))
            bus.publish_nowait(progress(1))
            with pytest.raises(BufferOverflow, match="'strict' has a full buffer"):
                await bus.publish(progress(2))
            assert other.stats().received == 2 and strict.stats().received == 2


async def test_block_policy_applies_back_pressure() -> None:
    """A full block subscriber makes publish wait until the consumer takes an event."""
    async with Bus() as bus:
        async with bus.subscribe("b", buffer=2) as sub:
            bus.publish_nowait(progress(0))
            bus.publish_nowait(progress(1))
            with pytest.raises(anyio.WouldBlock):
                bus.publish_nowait(progress(2))
            published = anyio.Event()

            async def publisher() -> None:
                await bus.publish(progress(2))
                published.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(publisher)
                await wait_all_tasks_blocked()
                assert not published.is_set()
                assert sub.receive_nowait().done == 0
                with anyio.fail_after(5):
                    await published.wait()
            assert [sub.receive_nowait().done for _ in range(2)] == [1, 2]
            assert sub.stats().dropped == 0


async def test_publish_nowait_is_atomic_when_one_blocks() -> None:
    """When one block subscriber is full, publish_nowait delivers to no one."""
    async with Bus() as bus:
        async with bus.subscribe("full", buffer=1) as full, bus.subscribe("roomy", buffer=100) as roomy:
            bus.publish_nowait(progress(0))
            with pytest.raises(anyio.WouldBlock):
                bus.publish_nowait(progress(1))
            assert roomy.stats().received == 1 and full.stats().received == 1
            assert bus.published == 1


async def test_per_job_order_with_interleaved_jobs() -> None:
    """Each subscriber sees every job's events in publish order, across many interleaved jobs."""
    seen: dict[str, list[int]] = {}
    async with Bus() as bus:
        bus.on(lambda e: seen.setdefault(e.job_id, []).append(e.done), name="h", buffer=7)
        for i in range(50):
            for job in ("a", "b", "c"):
                await bus.publish(progress(i, job=job))
        await bus.drain()
    assert seen == {job: list(range(50)) for job in "abc"}


async def test_stats_report_lag_and_delivery() -> None:
    """stats() reports received, delivered and lag per subscriber."""
    async with Bus() as bus:
        async with bus.subscribe("s", buffer=50) as sub:
            for i in range(5):
                bus.publish_nowait(progress(i))
            sub.receive_nowait()
            stats = bus.stats()["s"]
            assert (stats.received, stats.delivered, stats.lag, stats.kind) == (5, 1, 4, "subscription")


async def test_drain_waits_for_slow_handler() -> None:
    """drain returns only after the handler finished the last event."""
    release = anyio.Event()
    finished: list[int] = []

    async def slow(event: ev.JobProgress) -> None:
        await release.wait()
        finished.append(event.done)

    async with Bus() as bus:
        bus.on(slow, name="slow")
        await bus.publish(progress(1))
        drained = anyio.Event()

        async def drainer() -> None:
            await bus.drain()
            drained.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(drainer)
            await wait_all_tasks_blocked()
            assert not drained.is_set()
            release.set()
    assert finished == [1]


async def test_drain_timeout_raises() -> None:
    """drain(timeout) raises TimeoutError when a subscriber does not catch up."""
    async with Bus(close_timeout=0.01) as bus:
        async with bus.subscribe("never-read") as _sub:
            bus.publish_nowait(progress(1))
            with pytest.raises(TimeoutError):
                await bus.drain(timeout=0.01)


async def test_close_cancels_stuck_handler_after_timeout() -> None:
    """Closing waits close_timeout for a stuck handler, then cancels it."""
    started = anyio.Event()
    cancelled = anyio.Event()

    async def stuck(event: ev.Event) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    with anyio.fail_after(5):
        async with Bus(close_timeout=0.05) as bus:
            bus.on(stuck, name="stuck")
            await bus.publish(progress(1))
            await started.wait()
    assert cancelled.is_set()


async def test_closed_bus_refuses_publish_and_subscribe() -> None:
    """After close, publish and subscribe raise BusClosed, and the bus cannot be re-entered."""
    bus = Bus()
    async with bus:
        pass
    assert bus.closed
    with pytest.raises(BusClosed):
        bus.publish_nowait(progress(1))
    with pytest.raises(BusClosed):
        await bus.publish(progress(1))
    with pytest.raises(BusClosed):
        bus.on(print, name="late")
    with pytest.raises(BusClosed):
        async with bus:
            pass


async def test_exited_subscription_refuses_iteration() -> None:
    """Iterating a subscription after its block exited raises SubscriptionClosed."""
    async with Bus() as bus:
        async with bus.subscribe("s") as sub:
            pass
        with pytest.raises(SubscriptionClosed):
            await sub.receive()
        bus.publish_nowait(progress(1))  # no longer routed to it
        assert "s" not in bus.stats()


async def test_closing_bus_ends_subscription_iteration() -> None:
    """A consumer iterating a subscription stops when the bus closes."""
    ended = anyio.Event()
    with anyio.fail_after(5):
        async with Bus() as bus, bus.subscribe("s") as sub, anyio.create_task_group() as tg:

            async def consume() -> None:
                async for _ in sub:
                    pass
                ended.set()

            tg.start_soon(consume)
            await bus.publish(progress(1))
            await bus.aclose()
    assert ended.is_set()


async def test_handler_handle_close_stops_delivery() -> None:
    """Closing a handler's handle removes it; later events are not delivered to it."""
    seen: list[int] = []
    async with Bus() as bus:
        handle = bus.on(lambda e: seen.append(e.done), name="h")
        await bus.publish(progress(1))
        await bus.drain()
        handle.close()
        await bus.publish(progress(2))
        await bus.drain()
    assert seen == [1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"overflow": "spill"}, "unknown overflow policy 'spill'"),
        ({"buffer": 0}, "buffer must be a positive integer"),
        ({"types": ["job_progres"]}, "unknown event type 'job_progres'"),
        ({"types": [int]}, "types must hold event classes"),
        ({"types": []}, "types is empty"),
        ({"where": 3}, "where must be a callable"),
    ],
)
async def test_invalid_arguments_raise_config_error(kwargs: dict, message: str) -> None:
    """Bad subscriber settings raise ConfigError naming the problem."""
    async with Bus() as bus:
        with pytest.raises(ConfigError, match=message):
            bus.on(print, name="x", **kwargs)


async def test_duplicate_subscriber_name_is_refused() -> None:
    """Two subscribers cannot share a name (stats are keyed by it)."""
    async with Bus() as bus:
        bus.on(print, name="x")
        with pytest.raises(ConfigError, match="already exists"):
            async with bus.subscribe("x"):
                pass


def test_journal_is_not_silently_ignored() -> None:
    """Asking for a journal before it exists is an error, not a silent in-memory bus."""
    with pytest.raises(ConfigError, match="journal"):
        Bus(journal="events.sqlite")  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(
    jobs=st.lists(st.sampled_from("abcd"), min_size=1, max_size=200),
    size=st.integers(min_value=1, max_value=20),
    overflow=st.sampled_from(["drop_oldest", "drop_newest"]),
)
def test_counts_always_add_up(jobs: list[str], size: int, overflow: str) -> None:
    """For any publish sequence: received + dropped-newest == published, and per-job order holds."""

    async def scenario() -> None:
        async with Bus() as bus, bus.subscribe("s", buffer=size, overflow=overflow) as sub:
            for i, job in enumerate(jobs):
                bus.publish_nowait(progress(i, job=job))
            stats = sub.stats()
            got = [sub.receive_nowait() for _ in range(stats.lag)]
            assert stats.lag == min(size, len(jobs))
            assert stats.dropped == len(jobs) - stats.lag
            for job in set(jobs):
                dones = [e.done for e in got if e.job_id == job]
                assert dones == sorted(dones)

    anyio.run(scenario)


async def test_refusal_rolls_back_across_mixed_policies() -> None:
    """A full block subscriber refuses the event for everyone: no append, no eviction, no drop counted."""
    async with Bus() as bus:
        async with (
            bus.subscribe("lossy", buffer=1, overflow="drop_oldest") as lossy,
            bus.subscribe("roomy", buffer=100) as roomy,
            bus.subscribe("strict", buffer=100, overflow="error") as strict,
            bus.subscribe("full", buffer=1) as full,
        ):
            bus.publish_nowait(progress(0))
            with pytest.raises(anyio.WouldBlock):
                bus.publish_nowait(progress(1))
            for sub in (lossy, roomy, strict, full):
                stats = sub.stats()
                assert (stats.received, stats.dropped, stats.lag) == (1, 0, 1), sub.name
            assert lossy.receive_nowait().done == 0
