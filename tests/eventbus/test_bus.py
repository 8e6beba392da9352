"""The bus: delivery, filters, overflow policies, failures, order, drain and close.

Tests taking ``make_bus`` are the API both buses promise: they run on ``Bus``
and on ``RedisBus`` (asyncio only, a stream of its own; see conftest.py). The
others stay on ``Bus``: overflow policies and the back-pressure of a full
buffer (a RedisBus subscriber is a lossless consumer group that reads only as
fast as it handles), what is exact at once only because ``publish_nowait``
fills the buffers before it returns (a RedisBus buffers what its reader
fetched, later), and what is Bus's alone (its journal argument).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st

from eventbus import events as ev
from eventbus.bus import Bus, Overflow
from eventbus.exceptions import BufferOverflow, BusClosed, ConfigError, SubscriptionClosed
from tests.eventbus.conftest import MakeBus

pytestmark = pytest.mark.anyio


def progress(i: int, job: str = "j1", provider: str = "pronto") -> ev.JobProgress:
    return ev.JobProgress(id=f"{job}-{i}", provider=provider, job_id=job, source="poll", done=i)


def completed(job: str = "j1", provider: str = "pronto") -> ev.JobCompleted:
    return ev.JobCompleted(id=f"{job}-done", provider=provider, job_id=job, source="poll")


async def handled(sub: Any) -> None:
    """Tell the bus a subscription handled what it received: RedisBus waits for ack() (drain, close); on Bus it is a
    no-op, there so that the same code runs on both."""
    await sub.ack()


class Stuck:
    """A handler that never returns: ``started`` once it has an event, ``cancelled`` once it was cancelled."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.cancelled = anyio.Event()

    async def __call__(self, event: ev.Event) -> None:
        self.started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise


@asynccontextmanager
async def blocked_publish(bus: Bus, event: ev.Event) -> AsyncIterator[None]:
    """Publish ``event`` in a task; enter once it waits for room, leave once it went through (5 s at most)."""
    published = anyio.Event()

    async def publisher() -> None:
        await bus.publish(event)
        published.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(publisher)
        await wait_all_tasks_blocked()
        assert not published.is_set()
        yield
        with anyio.fail_after(5):
            await published.wait()


async def test_handler_receives_every_event_in_order(make_bus: MakeBus) -> None:
    """A sync handler sees every published event, in publish order."""
    seen: list[int] = []
    async with make_bus() as bus:
        bus.on(lambda e: seen.append(e.done), name="h")
        for i in range(100):
            await bus.publish(progress(i))
        await bus.drain()
    assert seen == list(range(100))


async def test_async_handler_is_awaited(make_bus: MakeBus) -> None:
    """An async handler is awaited for each event before the next one."""
    seen: list[int] = []

    async def handler(event: ev.JobProgress) -> None:
        await checkpoint()
        seen.append(event.done)

    async with make_bus() as bus:
        bus.on(handler, name="h")
        for i in range(10):
            await bus.publish(progress(i))
        await bus.drain()
    assert seen == list(range(10))


async def test_subscription_iterates_events(make_bus: MakeBus) -> None:
    """An async-iterator subscription yields published events and ends when it is closed."""
    got: list[int] = []
    async with make_bus() as bus:
        async with bus.subscribe("it") as sub:

            async def consume() -> None:
                async for event in sub:
                    got.append(event.done)
                    await handled(sub)

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                for i in range(5):
                    await bus.publish(progress(i))
                await bus.drain()
                sub.close()
    assert got == [0, 1, 2, 3, 4]


async def test_type_filter_by_class_and_tag(make_bus: MakeBus) -> None:
    """types= admits only the named classes or tags."""
    by_class: list[type] = []
    by_tag: list[type] = []
    async with make_bus() as bus:
        bus.on(lambda e: by_class.append(type(e)), name="c", types={ev.JobCompleted})
        bus.on(lambda e: by_tag.append(type(e)), name="t", types=["job_progress"])
        await bus.publish(progress(1))
        await bus.publish(completed())
        await bus.drain()
    assert by_class == [ev.JobCompleted]
    assert by_tag == [ev.JobProgress]


async def test_type_filter_accepts_one_class_or_one_tag(make_bus: MakeBus) -> None:
    """types= may be a single class or a single tag instead of a collection."""
    by_class: list[str] = []
    by_tag: list[str] = []
    async with make_bus() as bus:
        bus.on(lambda e: by_class.append(e.id), name="c", types=ev.JobCompleted)
        bus.on(lambda e: by_tag.append(e.id), name="t", types="job_progress")
        await bus.publish(progress(1))
        await bus.publish(completed())
        await bus.drain()
    assert (by_class, by_tag) == (["j1-done"], ["j1-1"])


async def test_provider_filter(make_bus: MakeBus) -> None:
    """providers= admits only events of the named providers (a single string is one provider)."""
    seen: list[str] = []
    async with make_bus() as bus:
        bus.on(lambda e: seen.append(e.provider), name="f", providers="mautic")
        for provider in ("pronto", "mautic", "datananas", "mautic"):
            await bus.publish(progress(1, provider=provider))
        await bus.drain()
    assert seen == ["mautic", "mautic"]


async def test_job_filter(make_bus: MakeBus) -> None:
    """jobs= admits only events of the named jobs."""
    seen: list[str] = []
    async with make_bus() as bus:
        bus.on(lambda e: seen.append(e.id), name="f", jobs={"a", "c"})
        for i, job in enumerate("abcab"):
            await bus.publish(progress(i, job=job))
        await bus.drain()
    assert [i.split("-")[0] for i in seen] == ["a", "c", "a"]


async def test_predicate_filter(make_bus: MakeBus) -> None:
    """where= admits only the events for which the predicate is true."""
    seen: list[int] = []
    async with make_bus() as bus:
        bus.on(lambda e: seen.append(e.done), name="f", where=lambda e: e.done % 3 == 0)
        for i in range(10):
            await bus.publish(progress(i))
        await bus.drain()
    assert seen == [0, 3, 6, 9]


async def test_filters_combine_with_and(make_bus: MakeBus) -> None:
    """types=, providers=, jobs= and where= together admit only events passing all of them."""
    seen: list[str] = []
    async with make_bus() as bus:
        bus.on(
            lambda e: seen.append(e.id),
            name="f",
            types={"job_progress"},
            providers={"pronto"},
            jobs="j1",
            where=lambda e: e.done % 2 == 0,
        )
        for event in (progress(2), progress(3), progress(4, job="j2"), progress(6, provider="mautic"), completed()):
            await bus.publish(event)
        await bus.drain()
    assert seen == ["j1-2"]


async def test_failing_handler_is_logged_counted_and_keeps_receiving(
    make_bus: MakeBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that raises is logged and counted; it and its peers get later events."""
    ok: list[int] = []
    flaky_seen: list[int] = []

    def flaky(event: ev.JobProgress) -> None:
        flaky_seen.append(event.done)
        if event.done == 1:
            raise RuntimeError("boom")

    async with make_bus() as bus:
        bus.on(flaky, name="flaky")
        bus.on(lambda e: ok.append(e.done), name="ok")
        for i in range(3):
            await bus.publish(progress(i))
        await bus.drain()
        stats = bus.stats()
    assert flaky_seen == [0, 1, 2] and ok == [0, 1, 2]
    assert stats["flaky"].failed == 1 and stats["ok"].failed == 0
    failures = [r for r in caplog.records if getattr(r, "event", None) == "subscriber_failed"]
    assert len(failures) == 1 and failures[0].subscriber == "flaky" and failures[0].name == make_bus.logger  # type: ignore[attr-defined]
    assert failures[0].event_id == "j1-1" and failures[0].levelname == "ERROR"  # type: ignore[attr-defined]
    assert failures[0].getMessage().startswith("subscriber_failed subscriber='flaky' event_type='job_progress'")


# Bus only: overflow policies (a RedisBus subscriber never drops: its overflow is always block).
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


# Bus only: overflow policies (a RedisBus subscriber never drops: its overflow is always block).
async def test_drop_newest_keeps_oldest_and_counts_exactly() -> None:
    """drop_newest keeps the first `buffer` events and counts the refused ones."""
    async with Bus() as bus:
        async with bus.subscribe("slow", buffer=10, overflow=Overflow.DROP_NEWEST) as sub:
            for i in range(25):
                bus.publish_nowait(progress(i))
            assert sub.stats().dropped == 15
            got = [sub.receive_nowait().done for _ in range(10)]
    assert got == list(range(10))


# Bus only: overflow policies (a RedisBus subscriber never drops: its overflow is always block).
async def test_error_policy_raises_and_delivers_to_nobody() -> None:
    """overflow=error raises BufferOverflow and no subscriber receives that event."""
    async with Bus() as bus:
        async with bus.subscribe("strict", buffer=2, overflow="error") as strict, bus.subscribe("other") as other:
            bus.publish_nowait(progress(0))
            bus.publish_nowait(progress(1))
            with pytest.raises(BufferOverflow, match="'strict' has a full buffer"):
                await bus.publish(progress(2))
            assert other.stats().received == 2 and strict.stats().received == 2


# Bus only: back-pressure of a full buffer (a RedisBus subscriber reads what it has room for; publish never waits).
async def test_block_policy_applies_back_pressure() -> None:
    """A full block subscriber makes publish wait until the consumer takes an event."""
    async with Bus() as bus:
        async with bus.subscribe("b", buffer=2) as sub:
            bus.publish_nowait(progress(0))
            bus.publish_nowait(progress(1))
            with pytest.raises(anyio.WouldBlock):
                bus.publish_nowait(progress(2))
            async with blocked_publish(bus, progress(2)):
                assert sub.receive_nowait().done == 0
            assert [sub.receive_nowait().done for _ in range(2)] == [1, 2]
            assert sub.stats().dropped == 0


# Bus only: back-pressure of a full buffer (a RedisBus subscriber reads what it has room for; publish never waits).
async def test_publish_nowait_is_atomic_when_one_blocks() -> None:
    """When one block subscriber is full, publish_nowait delivers to no one."""
    async with Bus() as bus:
        async with bus.subscribe("full", buffer=1) as full, bus.subscribe("roomy", buffer=100) as roomy:
            bus.publish_nowait(progress(0))
            with pytest.raises(anyio.WouldBlock):
                bus.publish_nowait(progress(1))
            assert roomy.stats().received == 1 and full.stats().received == 1
            assert bus.published == 1


async def test_per_job_order_with_interleaved_jobs(make_bus: MakeBus) -> None:
    """Each subscriber sees every job's events in publish order, across many interleaved jobs."""
    seen: dict[str, list[int]] = {}
    async with make_bus() as bus:
        bus.on(lambda e: seen.setdefault(e.job_id, []).append(e.done), name="h", buffer=7)
        for i in range(50):
            for job in ("a", "b", "c"):
                await bus.publish(progress(i, job=job))
        await bus.drain()
    assert seen == {job: list(range(50)) for job in "abc"}


# Bus only: needs publish_nowait to fill buffers at once; a RedisBus buffers what its reader fetched, later.
async def test_stats_report_lag_and_delivery() -> None:
    """stats() reports received, delivered and lag per subscriber."""
    async with Bus() as bus:
        async with bus.subscribe("s", buffer=50) as sub:
            for i in range(5):
                bus.publish_nowait(progress(i))
            sub.receive_nowait()
            stats = bus.stats()["s"]
            assert (stats.received, stats.delivered, stats.lag, stats.kind) == (5, 1, 4, "subscription")


async def test_stats_count_what_each_subscriber_received_delivered_and_failed(make_bus: MakeBus) -> None:
    """Once all is handled, stats() counts per subscriber the events received, delivered and failed, nothing lagging."""

    def fails_on_2(event: ev.Event) -> None:
        if isinstance(event, ev.JobProgress) and event.done == 2:
            raise RuntimeError("boom")

    async with make_bus() as bus:
        bus.on(fails_on_2, name="h", buffer=7)
        async with bus.subscribe("s", types="job_progress") as sub:
            for i in range(5):
                await bus.publish(progress(i))
            await bus.publish(completed())
            with anyio.fail_after(10):
                got = [(await sub.receive()).done for _ in range(5)]
            await handled(sub)
            s = bus.stats()["s"]
        with anyio.fail_after(10):
            await bus.drain()
        h = bus.stats()["h"]
    assert got == [0, 1, 2, 3, 4]
    assert (h.kind, h.buffer, h.received, h.delivered, h.failed, h.lag) == ("handler", 7, 6, 6, 1, 0)
    assert (s.kind, s.buffer, s.received, s.delivered, s.failed, s.lag) == ("subscription", 1024, 5, 5, 0, 0)


async def test_drain_waits_for_slow_handler(make_bus: MakeBus) -> None:
    """drain returns only after the handler finished the last event."""
    release = anyio.Event()
    finished: list[int] = []

    async def slow(event: ev.JobProgress) -> None:
        await release.wait()
        finished.append(event.done)

    async with make_bus() as bus:
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


async def test_drain_timeout_raises(make_bus: MakeBus) -> None:
    """drain(timeout) raises TimeoutError when a subscriber does not catch up."""
    async with make_bus(close_timeout=0.01) as bus:
        async with bus.subscribe("never-read") as _sub:
            bus.publish_nowait(progress(1))
            with pytest.raises(TimeoutError):
                await bus.drain(timeout=0.01)


async def test_close_cancels_stuck_handler_after_timeout(make_bus: MakeBus) -> None:
    """Closing waits close_timeout for a stuck handler, then cancels it."""
    stuck = Stuck()

    with anyio.fail_after(5):
        async with make_bus(close_timeout=0.05) as bus:
            bus.on(stuck, name="stuck")
            await bus.publish(progress(1))
            await stuck.started.wait()
    assert stuck.cancelled.is_set()


async def test_closed_bus_refuses_publish_and_subscribe(make_bus: MakeBus) -> None:
    """After close, publish and subscribe raise BusClosed, and the bus cannot be re-entered."""
    bus = make_bus()
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


async def test_exited_subscription_refuses_iteration(make_bus: MakeBus) -> None:
    """Iterating a subscription after its block exited raises SubscriptionClosed."""
    async with make_bus() as bus:
        async with bus.subscribe("s") as sub:
            pass
        with pytest.raises(SubscriptionClosed):
            await sub.receive()
        bus.publish_nowait(progress(1))  # no longer routed to it
        assert "s" not in bus.stats()


async def test_closing_bus_ends_subscription_iteration(make_bus: MakeBus) -> None:
    """A consumer iterating a subscription stops when the bus closes."""
    ended = anyio.Event()
    with anyio.fail_after(5):
        async with make_bus() as bus, bus.subscribe("s") as sub, anyio.create_task_group() as tg:

            async def consume() -> None:
                async for _ in sub:
                    await handled(sub)
                ended.set()

            tg.start_soon(consume)
            await bus.publish(progress(1))
            await bus.aclose()
    assert ended.is_set()


async def test_handler_handle_close_stops_delivery(make_bus: MakeBus) -> None:
    """Closing a handler's handle removes it; later events are not delivered to it."""
    seen: list[int] = []
    async with make_bus() as bus:
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
        ({"buffer": 0}, "buffer must be a positive integer"),
        ({"types": ["job_progres"]}, "unknown event type 'job_progres'"),
        ({"types": [int]}, "types must hold event classes"),
        ({"types": int}, "types must hold event classes"),
        ({"types": "job_progres"}, "unknown event type 'job_progres'; known types: batch_submitted"),
        ({"buffer": -5}, "buffer must be a positive integer, not -5"),
        ({"buffer": 2.5}, "buffer must be a positive integer, not 2.5"),
        ({"types": []}, "types is empty"),
        ({"where": 3}, "where must be a callable"),
    ],
)
async def test_invalid_arguments_raise_config_error(make_bus: MakeBus, kwargs: dict, message: str) -> None:
    """Bad subscriber settings raise ConfigError naming the problem."""
    async with make_bus() as bus:
        with pytest.raises(ConfigError, match=message):
            bus.on(print, name="x", **kwargs)
        assert bus.stats() == {}


# Bus only: RedisBus has no overflow policies (its subscribers block); it refuses any other (test_redis_bus.py).
@pytest.mark.parametrize(
    "overflow, message",
    [
        ("spill", "unknown overflow policy 'spill'"),
        ("DROP_OLDEST", "choose one of: block, drop_oldest, drop_newest, error"),
    ],
)
async def test_unknown_overflow_policy_raises_config_error(overflow: str, message: str) -> None:
    """An overflow policy that does not exist raises ConfigError naming the ones that do."""
    async with Bus() as bus:
        with pytest.raises(ConfigError, match=message):
            bus.on(print, name="x", overflow=overflow)


async def test_duplicate_subscriber_name_is_refused(make_bus: MakeBus) -> None:
    """Two subscribers cannot share a name (stats are keyed by it)."""
    async with make_bus() as bus:
        bus.on(print, name="x")
        with pytest.raises(ConfigError, match="already exists"):
            async with bus.subscribe("x"):
                pass


# Bus only: its journal argument.
def test_a_bad_journal_argument_is_refused_not_ignored() -> None:
    """Something that is not a path or a Journal is an error, not a silent in-memory bus."""
    with pytest.raises(ConfigError, match="Journal needs a file path, not 3"):
        Bus(journal=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Journal needs a file path"):
        Bus(journal="")


# Bus only: overflow policies (a RedisBus subscriber never drops: its overflow is always block).
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


# Bus only: back-pressure of a full buffer (a RedisBus subscriber reads what it has room for; publish never waits).
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


async def test_failing_predicate_counts_as_that_subscribers_failure(
    make_bus: MakeBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A where= predicate that raises skips the event for that subscriber only, logged and counted."""
    ok: list[int] = []
    async with make_bus() as bus:
        handle = bus.on(print, name="picky", where=lambda e: 1 / 0)
        bus.on(lambda e: ok.append(e.done), name="ok")
        await bus.publish(progress(1))
        await bus.drain()
        assert handle.stats().failed == 1 and handle.stats().received == 0
    assert ok == [1]
    filtered = [r for r in caplog.records if getattr(r, "event", None) == "subscriber_filter_failed"]
    assert [r.subscriber for r in filtered] == ["picky"]  # type: ignore[attr-defined]


async def test_handler_failure_log_carries_the_exception(make_bus: MakeBus, caplog: pytest.LogCaptureFixture) -> None:
    """The failure log record names the event type and carries the exception for the traceback."""
    async with make_bus() as bus:
        bus.on(lambda e: {}["missing"], name="broken")
        await bus.publish(completed())
        await bus.drain()
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "subscriber_failed"]
    assert record.event_type == "job_completed"  # type: ignore[attr-defined]
    assert record.exc_info is not None and record.exc_info[0] is KeyError


# Bus only: the library's logging defaults in a script, whatever the bus.
def test_library_diagnostics_never_go_to_stdout_nor_show_locals(tmp_path: Path) -> None:
    """Nothing configured: a failing subscriber is reported on stderr, stdout stays the program's, no locals or
    secrets shown."""
    script = tmp_path / "fails.py"
    script.write_text(
        "import anyio\n"
        "from eventbus import Bus, JobProgress\n"
        "async def main():\n"
        "    async with Bus() as bus:\n"
        "        def broken(event):\n"
        "            token = 'tok-s3cret'\n"
        "            raise RuntimeError('boom calling https://u:pw-s3cret@h/?api_key=key-s3cret')\n"
        "        bus.on(broken, name='broken')\n"
        "        await bus.publish(JobProgress(id='x', provider='p', job_id='j', source='poll', done=1))\n"
        "        await bus.drain()\n"
        "    print('program output')\n"
        "anyio.run(main)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "program output\n"
    assert "subscriber_failed subscriber='broken'" in proc.stderr and "RuntimeError: boom calling" in proc.stderr
    assert "tok-s3cret" not in proc.stderr
    # a secret in the exception's own text is redacted in the traceback printed (it was printed as it was)
    assert "https://***@h/?api_key=[redacted]" in proc.stderr
    assert "pw-s3cret" not in proc.stderr and "key-s3cret" not in proc.stderr


# Bus only: overflow policies (a RedisBus subscriber never drops: its overflow is always block).
async def test_drop_oldest_counts_evictions_while_async_handler_waits() -> None:
    """A drop_oldest handler busy awaiting loses the oldest waiting events, counted exactly."""
    gate = anyio.Event()
    seen: list[int] = []

    async def slow(event: ev.JobProgress) -> None:
        if event.done == 0:
            await gate.wait()
        seen.append(event.done)

    async with Bus() as bus:
        handle = bus.on(slow, name="slow", buffer=4, overflow="drop_oldest")
        bus.publish_nowait(progress(0))
        await wait_all_tasks_blocked()  # the handler holds event 0 and waits on the gate
        for i in range(1, 14):
            bus.publish_nowait(progress(i))
        gate.set()
        await bus.drain()
        stats = handle.stats()
    assert seen == [0, 10, 11, 12, 13]
    assert (stats.received, stats.delivered, stats.dropped, stats.lag) == (14, 5, 9, 0)


# Bus only: overflow policies (a RedisBus subscriber never drops: its overflow is always block).
async def test_drop_newest_handler_counts_refusals() -> None:
    """A drop_newest handler that is behind keeps what it had and counts each refused event."""
    async with Bus() as bus:
        seen: list[int] = []
        handle = bus.on(lambda e: seen.append(e.done), name="h", buffer=3, overflow="drop_newest")
        for i in range(10):
            bus.publish_nowait(progress(i))  # no await: the handler cannot run in between
        await bus.drain()
        stats = handle.stats()
    assert seen == [0, 1, 2]
    assert (stats.received, stats.delivered, stats.dropped) == (3, 3, 7)


# Bus only: back-pressure of a full buffer (a RedisBus subscriber reads what it has room for; publish never waits).
async def test_blocked_publish_ignores_full_subscribers_that_would_not_take_the_event() -> None:
    """publish waits only for the full subscriber its event is for, not another full one."""
    async with Bus() as bus:
        async with (
            bus.subscribe("for-x", providers="x", buffer=1) as for_x,
            bus.subscribe("for-y", providers="y", buffer=1) as for_y,
        ):
            bus.publish_nowait(progress(0, provider="x"))
            bus.publish_nowait(progress(0, provider="y"))
            async with blocked_publish(bus, progress(1, provider="y")):
                for_y.receive_nowait()  # room for "y"; "x" stays full
            assert (for_x.stats().lag, for_y.stats().lag) == (1, 1)


# Bus only: back-pressure of a full buffer (a RedisBus subscriber reads what it has room for; publish never waits).
async def test_blocked_publish_asks_each_predicate_once_per_event() -> None:
    """While publish waits for room, no where= predicate is asked again: one call, one failure per event."""
    asked: list[int] = []

    def counted(e: ev.Event) -> bool:
        asked.append(e.done)  # type: ignore[attr-defined]
        return True

    async with Bus() as bus:
        broken = bus.on(print, name="broken", where=lambda e: 1 / 0, overflow="drop_newest")
        async with bus.subscribe("full", buffer=1, where=counted) as full:
            bus.publish_nowait(progress(0))
            async with blocked_publish(bus, progress(1)):
                late: list[int] = []
                bus.on(lambda e: late.append(e.done), name="late")  # joins while the publish waits
                assert full.receive_nowait().done == 0
            assert full.receive_nowait().done == 1
        with anyio.fail_after(5):
            await bus.drain()
        assert asked == [0, 1]
        assert broken.stats().failed == 2 and broken.stats().received == 0
        assert late == [1]  # a subscriber added while the publish waited is offered the event too


# Bus only: overflow policies (a RedisBus subscriber never drops: its overflow is always block).
async def test_stats_report_buffer_and_policy() -> None:
    """stats() names each subscriber's kind, buffer size and overflow policy."""
    async with Bus() as bus:
        bus.on(print, name="h", buffer=7, overflow="drop_newest")
        async with bus.subscribe("s", overflow="error") as _sub:
            stats = bus.stats()
    assert (stats["h"].kind, stats["h"].buffer, stats["h"].overflow) == ("handler", 7, "drop_newest")
    assert (stats["s"].kind, stats["s"].buffer, stats["s"].overflow) == ("subscription", 1024, "error")


# Bus only: needs publish_nowait to fill buffers at once; a RedisBus buffers what its reader fetched, later.
async def test_leaving_subscribe_counts_unread_events_as_dropped() -> None:
    """Events still buffered when the subscribe block exits are counted as dropped, not delivered."""
    async with Bus() as bus:
        async with bus.subscribe("s") as sub:
            for i in range(5):
                bus.publish_nowait(progress(i))
            sub.receive_nowait()
        stats = sub.stats()
    assert (stats.received, stats.delivered, stats.dropped, stats.lag) == (5, 1, 4, 0)


# Bus only: needs publish_nowait to fill buffers at once; a RedisBus buffers what its reader fetched, later.
async def test_closing_subscription_ends_iteration_after_buffer() -> None:
    """close() ends a running async for once the events already buffered are consumed."""
    got: list[int] = []
    async with Bus() as bus, bus.subscribe("s") as sub:
        for i in range(3):
            bus.publish_nowait(progress(i))
        sub.close()
        bus.publish_nowait(progress(3))  # no longer routed to the closed subscription
        with anyio.fail_after(5):
            async for event in sub:
                got.append(event.done)
    assert got == [0, 1, 2]


async def test_closing_subscription_wakes_a_waiting_consumer(make_bus: MakeBus) -> None:
    """A consumer waiting in async for on an empty subscription ends when it is closed."""
    ended = anyio.Event()
    async with make_bus() as bus, bus.subscribe("s") as sub, anyio.create_task_group() as tg:

        async def consume() -> None:
            async for _ in sub:
                pass
            ended.set()

        tg.start_soon(consume)
        await wait_all_tasks_blocked()
        await sub.aclose()
        with anyio.fail_after(5):
            await ended.wait()


async def test_closed_subscription_cannot_be_iterated_again(make_bus: MakeBus) -> None:
    """Once iteration of a closed subscription has ended, a new async for raises SubscriptionClosed."""
    async with make_bus() as bus, bus.subscribe("s") as sub:
        sub.close()
        async for _ in sub:  # pragma: no cover - nothing buffered
            pass
        with pytest.raises(anyio.EndOfStream):
            await sub.receive()
        with pytest.raises(SubscriptionClosed):
            async for _ in sub:  # pragma: no cover - refused
                pass


async def test_closed_bus_refuses_subscribe(make_bus: MakeBus) -> None:
    """subscribe on a closed bus raises BusClosed."""
    bus = make_bus()
    async with bus:
        pass
    with pytest.raises(BusClosed, match="closed"):
        async with bus.subscribe("late"):
            pass  # pragma: no cover


async def test_bus_not_entered_refuses_subscribers(make_bus: MakeBus) -> None:
    """A bus used before 'async with' says how to start it."""
    with pytest.raises(BusClosed, match=rf"not running; use 'async with {make_bus.cls.__name__}\("):
        make_bus().on(print, name="early")


# Bus only: needs publish_nowait to fill buffers at once; a RedisBus buffers what its reader fetched, later.
async def test_handle_aclose_waits_for_buffered_events() -> None:
    """HandlerHandle.aclose returns after the handler handled what was already buffered."""
    seen: list[int] = []

    async def handler(event: ev.JobProgress) -> None:
        await checkpoint()
        seen.append(event.done)

    async with Bus() as bus:
        handle = bus.on(handler, name="h")
        for i in range(20):
            bus.publish_nowait(progress(i))
        with anyio.fail_after(5):
            await handle.aclose()
        assert seen == list(range(20)) and handle.closed
        bus.publish_nowait(progress(20))
        assert "h" not in bus.stats()


# Bus only: needs publish_nowait to fill buffers at once; a RedisBus buffers what its reader fetched, later.
async def test_handle_aclose_cancels_stuck_handler_after_timeout() -> None:
    """HandlerHandle.aclose cancels a stuck handler after its timeout and counts the unhandled events as dropped."""
    stuck = Stuck()

    async with Bus() as bus:
        other: list[int] = []
        bus.on(lambda e: other.append(e.done), name="other")
        handle = bus.on(stuck, name="stuck")
        for i in range(3):
            bus.publish_nowait(progress(i))
        with anyio.fail_after(5):
            await handle.aclose(timeout=0.01)
        stats = handle.stats()
        await bus.drain()
    assert stuck.cancelled.is_set()
    assert (stats.delivered, stats.dropped, stats.lag) == (1, 2, 0)
    assert other == [0, 1, 2]


async def test_handle_aclose_cancels_a_stuck_handler_and_the_others_go_on(make_bus: MakeBus) -> None:
    """HandlerHandle.aclose(timeout) cancels a handler stuck on an event; it is removed, its peers keep receiving."""
    stuck = Stuck()

    other: list[int] = []
    async with make_bus() as bus:
        bus.on(lambda e: other.append(e.done), name="other")
        handle = bus.on(stuck, name="stuck")
        await bus.publish(progress(0))
        with anyio.fail_after(5):
            await stuck.started.wait()
            await handle.aclose(timeout=0.01)
        assert stuck.cancelled.is_set() and handle.closed and "stuck" not in bus.stats()
        assert handle.stats().delivered == 1
        await bus.publish(progress(1))
        with anyio.fail_after(10):
            await bus.drain()
    assert other == [0, 1]


# Bus only: needs publish_nowait to fill buffers at once; a RedisBus buffers what its reader fetched, later.
async def test_drain_waits_for_a_removed_handler_to_finish_its_buffer() -> None:
    """After handle.close(), drain still waits for the events the handler had already accepted."""
    seen: list[int] = []

    async def handler(event: ev.JobProgress) -> None:
        await checkpoint()
        seen.append(event.done)

    async with Bus() as bus:
        handle = bus.on(handler, name="h")
        for i in range(50):
            bus.publish_nowait(progress(i))
        handle.close()
        with anyio.fail_after(5):
            await bus.drain()
        assert seen == list(range(50))


async def test_drain_waits_for_a_removed_handler_to_finish_the_event_it_holds(make_bus: MakeBus) -> None:
    """After handle.close(), drain waits until the handler has finished the event it was handling."""
    holding = anyio.Event()
    release = anyio.Event()
    finished: list[int] = []

    async def slow(event: ev.JobProgress) -> None:
        holding.set()
        await release.wait()
        finished.append(event.done)

    async with make_bus() as bus:
        handle = bus.on(slow, name="slow")
        await bus.publish(progress(0))
        with anyio.fail_after(5):
            await holding.wait()
        handle.close()
        drained = anyio.Event()

        async def drainer() -> None:
            await bus.drain()
            drained.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(drainer)
            await wait_all_tasks_blocked()
            assert not drained.is_set() and finished == []
            release.set()
            with anyio.fail_after(5):
                await drained.wait()
        assert finished == [0]


async def test_aclose_drains_before_closing(make_bus: MakeBus) -> None:
    """bus.aclose lets handlers finish what was published, then refuses new events."""
    seen: list[int] = []
    async with make_bus() as bus:
        bus.on(lambda e: seen.append(e.done), name="h")
        for i in range(100):
            bus.publish_nowait(progress(i))
        await bus.aclose(timeout=5)
        assert seen == list(range(100))
        with pytest.raises(BusClosed):
            bus.publish_nowait(progress(100))


# Bus only: back-pressure of a full buffer (a RedisBus subscriber reads what it has room for; publish never waits).
async def test_publisher_blocked_when_bus_closes_gets_bus_closed() -> None:
    """A publish waiting for room raises BusClosed when the bus closes meanwhile."""
    async with Bus(close_timeout=0.01) as bus, bus.subscribe("full", buffer=1), anyio.create_task_group() as tg:
        bus.publish_nowait(progress(0))
        outcome: list[BaseException] = []

        async def publisher() -> None:
            try:
                await bus.publish(progress(1))
            except BusClosed as exc:
                outcome.append(exc)

        tg.start_soon(publisher)
        await wait_all_tasks_blocked()
        await bus.aclose(timeout=0.01)
        await wait_all_tasks_blocked()
        assert len(outcome) == 1


async def test_many_concurrent_consumers_on_one_subscription_all_wake(make_bus: MakeBus) -> None:
    """Two tasks waiting on one subscription both end when it closes (no lost wakeup)."""
    ended: list[str] = []
    async with make_bus() as bus, bus.subscribe("s") as sub, anyio.create_task_group() as tg:

        async def consume(label: str) -> None:
            async for _ in sub:
                pass
            ended.append(label)

        tg.start_soon(consume, "a")
        tg.start_soon(consume, "b")
        await wait_all_tasks_blocked()
        bus.publish_nowait(progress(0))
        await wait_all_tasks_blocked()
        sub.close()
        with anyio.fail_after(5):
            while len(ended) < 2:
                await wait_all_tasks_blocked()
    assert sorted(ended) == ["a", "b"]


# Bus only: its journal argument.
def test_journal_none_is_accepted() -> None:
    """Bus(journal=None) is the in-memory bus (the journal is for a later release)."""
    assert not Bus(journal=None).closed


# Bus only: overflow policies (a RedisBus subscriber never drops: its overflow is always block).
@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.one_of(st.sampled_from("abcd"), st.integers(min_value=1, max_value=5)), max_size=150),
    size=st.integers(min_value=1, max_value=8),
    overflow=st.sampled_from(["block", "drop_oldest", "drop_newest", "error"]),
)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_interleaved_publish_and_consume_accounts_for_every_event(
    backend: str, steps: list[str | int], size: int, overflow: str
) -> None:
    """Any interleaving of publishes and reads: delivered + dropped + lag == admitted; per-job order kept."""

    async def scenario() -> None:
        admitted = 0
        got: list[ev.JobProgress] = []
        async with Bus() as bus, bus.subscribe("s", buffer=size, overflow=overflow) as sub:
            for i, step in enumerate(steps):
                if isinstance(step, str):
                    try:
                        bus.publish_nowait(progress(i, job=step))
                    except (anyio.WouldBlock, BufferOverflow):
                        continue  # refused: not admitted, not counted
                    admitted += 1
                else:
                    for _ in range(min(step, sub.stats().lag)):
                        got.append(sub.receive_nowait())
            stats = sub.stats()
            assert stats.delivered == len(got)
            assert stats.delivered + stats.dropped + stats.lag == admitted
            assert stats.lag <= size
            if overflow in ("block", "error"):
                assert stats.dropped == 0
            for job in "abcd":
                dones = [e.done for e in got if e.job_id == job]
                assert dones == sorted(dones)

    anyio.run(scenario, backend=backend)


async def test_a_handler_attached_for_a_block_finishes_its_buffer_or_stops_at_once_on_an_error() -> None:
    """handle.attached(timeout): leaving the block normally waits until the handler has handled what it buffered;
    leaving on an error removes it at once (no new events, no wait: had it waited, aclose would have cancelled it
    after the timeout and events 10-12 would be lost), and it still handles what it had once it can."""
    seen: list[int] = []
    gate = anyio.Event()

    async def slow(event: ev.JobProgress) -> None:
        await gate.wait()
        seen.append(event.done)

    async with Bus() as bus:
        handle = bus.on(slow, name="slow")
        async with handle.attached(timeout=5):
            for i in range(3):
                bus.publish_nowait(progress(i))
            gate.set()
        assert seen == [0, 1, 2] and handle.closed
        gate = anyio.Event()
        failing = bus.on(slow, name="failing")
        with pytest.raises(RuntimeError, match="boom"):
            async with failing.attached(timeout=5):
                for i in range(3):
                    bus.publish_nowait(progress(10 + i))
                await wait_all_tasks_blocked()  # the handler holds event 10, waiting on the gate
                raise RuntimeError("boom")
        assert failing.closed and "failing" not in bus.stats()
        gate.set()
        await bus.drain()
    assert seen == [0, 1, 2, 10, 11, 12]  # close() lets it finish what it had: no new events, nothing cut
