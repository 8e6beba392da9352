"""A bus with a journal: written before delivered, durable subscribers resume from their cursor, failures told."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.webhooks import WebhookReceiver
from eventbus import events as ev
from eventbus.bus import Bus, DurableSubscription
from eventbus.exceptions import BusClosed, ConfigError, JournalError
from eventbus.journal import Journal
from eventbus.testing import capture

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}


def progress(i: int, job: str = "j1", provider: str = "pronto") -> ev.JobProgress:
    return ev.JobProgress(id=f"{provider}:{job}:{i}", provider=provider, job_id=job, source="poll", done=i)


def journaled_ids(path: Path) -> list[str]:
    """The event ids in the journal file, read by a connection of its own (as another process would)."""
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT id FROM events ORDER BY seq")]
    finally:
        conn.close()


async def test_every_event_is_in_the_journal_before_any_subscriber_sees_it(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    missing: list[str] = []
    seen: list[str] = []

    def check(event: ev.Event) -> None:
        seen.append(event.id)
        if event.id not in journaled_ids(path):
            missing.append(event.id)

    async with Bus(journal=path) as bus:
        bus.on(check, name="check")
        for i in range(20):
            await bus.publish(progress(i))
        for i in range(20, 40):
            bus.publish_nowait(progress(i))
        await bus.drain()
    assert seen == [f"pronto:j1:{i}" for i in range(40)]
    assert missing == []


async def test_publish_returns_once_the_event_is_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with Bus(journal=path) as bus:
        await bus.publish(progress(1))
        assert journaled_ids(path) == ["pronto:j1:1"]
        bus.publish_nowait(progress(2))
        await bus.flush()  # publish_nowait queues; flush waits for the write
        assert journaled_ids(path) == ["pronto:j1:1", "pronto:j1:2"]


async def test_concurrent_publishers_deliver_in_journal_order(tmp_path: Path) -> None:
    """Whatever the interleaving, every subscriber sees the events in the order of their positions."""
    path = tmp_path / "events.db"
    async with Bus(journal=path) as bus, capture(bus) as live:

        async def publisher(job: str) -> None:
            for i in range(50):
                await bus.publish(progress(i, job))

        async with anyio.create_task_group() as tg:
            for job in ("a", "b", "c"):
                tg.start_soon(publisher, job)
        await bus.drain()
    assert [e.id for e in live] == journaled_ids(path)
    for job in ("a", "b", "c"):
        assert [e.done for e in live if e.job_id == job] == list(range(50))  # type: ignore[attr-defined]


async def test_publish_nowait_refuses_past_the_writers_queue_and_loses_nothing(tmp_path: Path) -> None:
    """10,000 queued without yielding: the next one is WouldBlock, and the 10,000 all land."""
    path = tmp_path / "events.db"
    async with Bus(journal=path) as bus, capture(bus) as live:
        for i in range(10_000):
            bus.publish_nowait(progress(i))
        with pytest.raises(anyio.WouldBlock):
            bus.publish_nowait(progress(10_000))
        await bus.publish(progress(10_000))  # waits for room instead
        await bus.drain()
    assert len(live) == 10_001
    assert len(journaled_ids(path)) == 10_001


async def test_flush_after_a_count_reports_every_failed_write_since_not_only_the_last(tmp_path: Path) -> None:
    """A webhook receiver reads bus.published, publishes its events, then flush(after=that): a batch of them that
    failed is reported even when a later batch (another request's) was written. flush() alone checks only the last
    event, and answered "written" for a request whose events were lost."""
    path = tmp_path / "events.db"
    async with Bus(journal=Journal(path, timeout=0.2)) as bus:
        await bus.publish(progress(0))
        before = bus.published
        assert before == 1  # counted once (it was counted again when delivered, which threw the count off)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock: this batch fails
        try:
            bus.publish_nowait(progress(1))
            with pytest.raises(JournalError, match="database is locked"):
                await bus.flush()
        finally:
            other.execute("ROLLBACK")
            other.close()
        bus.publish_nowait(progress(2))  # written
        await bus.flush()  # the last one was written
        with pytest.raises(JournalError, match=r"1 of the 2 events published since were not written: .*locked"):
            await bus.flush(after=before)
        await bus.flush(after=before + 1)  # only event 2: written
        await bus.flush(after=bus.published)  # nothing published since: nothing to report
    assert journaled_ids(path) == ["pronto:j1:0", "pronto:j1:2"]


async def test_a_failed_write_is_raised_to_the_publisher_and_no_subscriber_sees_the_event(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with Bus(journal=Journal(path, timeout=0.2)) as bus, capture(bus) as live:
        await bus.publish(progress(1))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(JournalError, match="1 events not written: database is locked"):
                await bus.publish(progress(2))
        finally:
            other.execute("ROLLBACK")
            other.close()
        await bus.publish(progress(3))  # the bus carries on once the file can be written
        await bus.drain()
    assert [e.id for e in live] == ["pronto:j1:1", "pronto:j1:3"]
    assert journaled_ids(path) == ["pronto:j1:1", "pronto:j1:3"]


async def test_durable_handler_gets_the_history_then_resumes_after_its_cursor(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with Bus(journal=path) as bus:
        for i in range(3):
            await bus.publish(progress(i))
        first: list[int] = []
        bus.on(lambda e: first.append(e.done), name="store", durable=True)  # type: ignore[attr-defined]
        await bus.drain()
        await bus.publish(progress(3))
        await bus.drain()
    assert first == [0, 1, 2, 3]
    async with Bus(journal=path) as bus:
        await bus.publish(progress(4))
        second: list[int] = []
        bus.on(lambda e: second.append(e.done), name="store", durable=True)  # type: ignore[attr-defined]
        await bus.drain()
        again: list[int] = []
        bus.on(lambda e: again.append(e.done), name="replayer", durable=True, start=2)  # type: ignore[attr-defined]
        await bus.drain()
    assert second == [4]  # only what came after its saved cursor
    assert again == [2, 3, 4]  # start= overrides the cursor: everything after position 2
    async with Journal(path, readonly=True) as journal:
        assert await journal.cursors() == {"replayer": 5, "store": 5}


async def test_durable_filters_apply_and_the_cursor_passes_over_what_they_skip(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with Bus(journal=path) as bus:
        for i in range(6):
            await bus.publish(progress(i, job="a" if i % 2 else "b"))
        await bus.publish(ev.JobCompleted(id="done", provider="mautic", job_id="a", source="poll"))
        got: list[str] = []
        bus.on(
            lambda e: got.append(e.id),
            name="a-progress",
            durable=True,
            types="job_progress",
            jobs="a",
            where=lambda e: e.done > 1,  # type: ignore[attr-defined]
        )
        await bus.drain()
    assert got == ["pronto:a:3", "pronto:a:5"]
    async with Journal(path, readonly=True) as journal:
        assert await journal.cursor("a-progress") == 7  # the rows after the last match were read too


async def test_durable_subscription_redelivers_what_was_not_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with Bus(journal=path) as bus:
        for i in range(5):
            await bus.publish(progress(i))
        async with bus.subscribe("worker", durable=True) as sub:
            assert isinstance(sub, DurableSubscription)
            assert sub.position is None
            got = [(await sub.receive()).done for _ in range(3)]  # type: ignore[attr-defined]
            await sub.ack()
            assert sub.position == 3
            await sub.receive()  # the 4th, received but never acknowledged (a crash, say)
    assert got == [0, 1, 2]
    async with Bus(journal=path) as bus:
        async with bus.subscribe("worker", durable=True) as sub:
            with anyio.fail_after(5):
                rest = [(await sub.receive()).done for _ in range(2)]  # type: ignore[attr-defined]
    assert rest == [3, 4]  # at least once: the unacknowledged one comes again


async def test_durable_subscription_follows_live_events_after_the_history(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with Bus(journal=path) as bus:
        await bus.publish(progress(0))
        async with bus.subscribe("live", durable=True, buffer=2) as sub:
            got: list[int] = []

            async def consume() -> None:
                async for event in sub:
                    got.append(event.done)  # type: ignore[attr-defined]
                    if len(got) == 6:
                        await sub.ack()
                        return

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(consume)
                    for i in range(1, 6):  # more than its buffer: the feed waits for room, loses nothing
                        await bus.publish(progress(i))
    assert got == [0, 1, 2, 3, 4, 5]


async def test_drain_waits_for_durable_subscribers_to_catch_up(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with Bus(journal=path) as bus:
        got: list[int] = []
        bus.on(lambda e: got.append(e.done), name="d", durable=True, buffer=7)  # type: ignore[attr-defined]
        for i in range(100):
            bus.publish_nowait(progress(i))
        await bus.drain()
        assert got == list(range(100))  # no sleep: drain alone guarantees it


async def test_a_durable_subscriber_sees_another_writers_entries(tmp_path: Path) -> None:
    """Entries another process commits to the same file reach a durable subscriber by its poll."""
    path = tmp_path / "events.db"
    async with Bus(journal=path) as bus:
        arrived = anyio.Event()
        got: list[str] = []

        def handler(event: ev.Event) -> None:
            got.append(event.id)
            arrived.set()

        bus.on(handler, name="d", durable=True)
        await bus.drain()
        async with Journal(path) as other:  # another writer of the file, unknown to this bus
            await other.append([progress(7, job="elsewhere")])
        with anyio.fail_after(10):
            await arrived.wait()
    assert got == ["pronto:elsewhere:7"]


async def test_a_receiver_on_a_journaled_bus_answers_only_once_the_events_are_written(tmp_path: Path) -> None:
    path = tmp_path / "events.db"

    def parse(body: bytes, headers: object) -> list[ev.Event]:
        data = msgspec.json.decode(body)
        return [progress(i, job=data["job"], provider="acme") for i in range(data["n"])]

    async with Bus(journal=path) as bus:
        receiver = WebhookReceiver(bus, {"acme": parse})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver), base_url="http://t") as client:
            response = await client.post("/hooks/acme", content=b'{"job": "w1", "n": 3}', headers=JSON)
            assert response.status_code == 200
            assert journaled_ids(path) == ["acme:w1:0", "acme:w1:1", "acme:w1:2"]


@pytest.mark.parametrize("tracked", [False, True], ids=["bus", "through-a-job-tracker"])
async def test_a_receiver_answers_503_when_the_journal_cannot_be_written(tmp_path: Path, tracked: bool) -> None:
    """The provider retries a 503; a 2xx would have acknowledged events that are nowhere. Also when the receiver
    publishes through a JobTracker (as `follow` wires it): the tracked publisher passes the bus's flush on."""
    from contextlib import AsyncExitStack

    from eventbus.tracker import JobTracker

    path = tmp_path / "events.db"

    def parse(body: bytes, headers: object) -> list[ev.Event]:
        data = msgspec.json.decode(body)
        return [ev.JobAccepted(id=f"acme:{data['job']}:a", provider="acme", job_id=data["job"], source="webhook")]

    async with AsyncExitStack() as stack:
        bus = await stack.enter_async_context(Bus(journal=Journal(path, timeout=0.2)))
        target = await stack.enter_async_context(JobTracker().attach(bus)) if tracked else bus
        receiver = WebhookReceiver(target, {"acme": parse})
        await bus.flush()
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver), base_url="http://t")
        )
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            refused = await client.post("/hooks/acme", content=b'{"job": "w1"}', headers=JSON)
        finally:
            other.execute("ROLLBACK")
            other.close()
        taken = await client.post("/hooks/acme", content=b'{"job": "w2"}', headers=JSON)
        assert taken.status_code == 200 and journaled_ids(path) == ["acme:w2:a"]  # written before the 200
    assert refused.status_code == 503


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda bus: bus.on(print, name="x", durable=True, overflow="drop_oldest"), "overflow is 'block'"),
        (lambda bus: bus.on(print, durable=True), "a durable handler needs name="),
        (lambda bus: bus.on(print, name="x", start=3), "start= is for durable subscribers"),
        (lambda bus: bus.on(print, name="x", durable=True, start=-1), "start must be a journal position"),
        (lambda bus: bus.on(print, name="x", overflow="error"), "overflow='error' cannot be told"),
    ],
)
async def test_durable_misuse_is_named(tmp_path: Path, make: object, message: str) -> None:
    async with Bus(journal=tmp_path / "events.db") as bus:
        with pytest.raises(ConfigError, match=message):
            make(bus)  # type: ignore[operator]


async def test_durable_needs_a_journal() -> None:
    async with Bus() as bus:
        with pytest.raises(ConfigError, match=r"durable=True needs a bus with a journal, e.g. Bus\(journal="):
            bus.on(print, name="x", durable=True)
        with pytest.raises(ConfigError, match="durable=True needs a bus with a journal"):
            async with bus.subscribe("y", durable=True):
                pass
        await bus.flush()  # without a journal there is nothing to wait for


async def test_a_read_only_journal_is_refused_for_a_bus(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is read-only; a bus writes to its journal"):
        Bus(journal=Journal(tmp_path / "j.db", readonly=True))


async def test_publishing_after_close_is_refused(tmp_path: Path) -> None:
    async with Bus(journal=tmp_path / "events.db") as bus:
        pass
    with pytest.raises(BusClosed):
        await bus.publish(progress(1))
    with pytest.raises(BusClosed):
        bus.publish_nowait(progress(1))


async def test_closing_delivers_what_was_queued(tmp_path: Path) -> None:
    """Events queued with publish_nowait right before the block ends are journaled and delivered."""
    path = tmp_path / "events.db"
    got: list[int] = []
    async with Bus(journal=path) as bus:
        bus.on(lambda e: got.append(e.done), name="h")  # type: ignore[attr-defined]
        for i in range(500):
            bus.publish_nowait(progress(i))
    assert got == list(range(500))
    assert len(journaled_ids(path)) == 500


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=5))
def test_a_durable_subscriber_gets_everything_once_acked_and_never_an_acked_event_again(
    tmp_path_factory: pytest.TempPathFactory, runs: list[tuple[int, int]]
) -> None:
    """Runs that publish some events, then receive some and acknowledge them: across all runs, the events
    received are the journal in order, each acknowledged one never again, an unacknowledged one again next run."""
    path = tmp_path_factory.mktemp("prop") / "events.db"
    received: list[list[str]] = []
    published = acked = 0

    async def run(publish: int, take: int) -> None:
        nonlocal published, acked
        async with Bus(journal=path) as bus:
            for _ in range(publish):
                await bus.publish(progress(published))
                published += 1
            got: list[str] = []
            async with bus.subscribe("worker", durable=True) as sub:
                with anyio.fail_after(5):
                    for _ in range(min(take, published - acked)):  # as many as are there to take
                        got.append((await sub.receive()).id)
                await sub.ack()
                acked += len(got)
            received.append(got)

    for publish, take in runs:
        anyio.run(run, publish, take)
    flat = [event_id for got in received for event_id in got]
    assert flat == [f"pronto:j1:{i}" for i in range(acked)]  # in order, none twice, none skipped


def test_what_publish_returned_for_survives_the_process_being_killed(tmp_path: Path) -> None:
    """SIGKILL right after ``publish`` returned: the event is in the file (no clean shutdown, no flush)."""
    import signal
    import subprocess
    import sys

    path = tmp_path / "events.db"
    script = f"""
import anyio, sys
from eventbus import events as ev
from eventbus.bus import Bus

async def main():
    async with Bus(journal={str(path)!r}) as bus:
        for i in range(1000):
            await bus.publish(ev.JobProgress(id=f"k{{i}}", provider="p", job_id="j", source="poll", done=i))
            print(i, flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        last = -1
        for line in proc.stdout:
            last = int(line)
            if last == 50:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert last == 50
    ids = journaled_ids(path)
    assert ids[:51] == [f"k{i}" for i in range(51)]  # every one it had been told was published


async def test_events_queued_when_the_block_fails_are_still_journaled(tmp_path: Path) -> None:
    """An error (or Ctrl-C) ends the bus with events queued by publish_nowait: they are written, not lost."""
    path = tmp_path / "events.db"
    failed = False
    try:
        async with Bus(journal=path) as bus:
            for i in range(300):
                bus.publish_nowait(progress(i))
            raise RuntimeError("boom")
    except* RuntimeError:
        failed = True
    assert failed
    assert journaled_ids(path) == [f"pronto:j1:{i}" for i in range(300)]


async def test_a_durable_subscribers_stats_say_how_far_behind_it_is_in_the_file(tmp_path: Path) -> None:
    """`unread`: the journal positions not yet read into its buffer (`lag` only counts the buffer, at most its size):
    100 published to a subscriber with a 10-event buffer that took 1 leaves lag + unread == 99, unread >= 89; once it
    has taken all, both are 0. A subscriber that is not durable has unread == 0."""
    async with Bus(journal=tmp_path / "events.db") as bus:
        plain = bus.on(lambda e: None, name="plain")
        async with bus.subscribe("slow", durable=True, buffer=10) as sub:
            for i in range(100):
                bus.publish_nowait(progress(i))
            await bus.flush()
            taken = []
            with anyio.fail_after(10):
                async for event in sub:
                    taken.append(event)
                    break
            stats = bus.stats()["slow"]
            assert stats.delivered == 1 and stats.lag <= 10
            assert stats.lag + stats.unread == 99 and stats.unread >= 89
            with anyio.fail_after(10):
                async for event in sub:
                    taken.append(event)
                    if len(taken) == 100:
                        break
            stats = bus.stats()["slow"]
            assert (stats.delivered, stats.lag, stats.unread) == (100, 0, 0)
        await bus.drain()
        assert bus.stats()["plain"].unread == 0 and plain.stats().delivered == 100
