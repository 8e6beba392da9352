"""RedisBus against a real redis-server: delivery, filters, fan-out, competing consumers, claims, failures, drain.

Asyncio only (trio: redis-py has no trio support). The tests use the session's own
``redis-server`` on a free port (``redis_server`` in conftest.py); without one
on PATH they are skipped, unless ``EVENTBUS_REQUIRE_REDIS=1`` (CI) makes that
a failure. What both buses promise is tested on both in test_bus.py
(``make_bus``); this module tests what is RedisBus's own.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from eventbus import events as ev
from eventbus.backends.redis import RedisBus
from eventbus.exceptions import BusClosed, ConfigError, TransportError
from tests.eventbus.conftest import RedisServer, free_port, need_redis_server, new_stream

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: redis-py's asyncio client has no trio support (RedisBus refuses trio, tested below)."""
    return "asyncio"


def progress(i: int, job: str = "j1", provider: str = "pronto") -> ev.JobProgress:
    return ev.JobProgress(id=f"{provider}:{job}:{i}", provider=provider, job_id=job, source="poll", done=i)


def completed(job: str = "j1", provider: str = "pronto") -> ev.JobCompleted:
    return ev.JobCompleted(id=f"{provider}:{job}:done", provider=provider, job_id=job, source="poll")


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def stream() -> str:
    """A stream of its own for each test: tests share the server, never a key."""
    return new_stream()


@pytest.fixture
async def raw(url: str) -> AsyncIterator[aioredis.Redis]:
    """redis-py directly, to look at (or spoil) what RedisBus wrote."""
    client = aioredis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


class Seen:
    """A handler that records events; ``await seen.reach(n)`` waits (bounded) until it has ``n``."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self._want = math.inf
        self._reached = anyio.Event()

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)
        if len(self.events) >= self._want:
            self._reached.set()

    @property
    def done(self) -> list[int]:
        return [e.done for e in self.events]  # type: ignore[attr-defined]

    async def reach(self, n: int, timeout: float = 10) -> None:
        self._want = n
        if len(self.events) >= n:
            return
        self._reached = anyio.Event()
        with anyio.fail_after(timeout):
            await self._reached.wait()


async def pending(raw: aioredis.Redis, stream: str, group: str) -> int:
    return (await raw.xpending(stream, group))["pending"]


# --- delivery -----------------------------------------------------------------------------------


async def test_publishes_over_several_xadd_batches_reach_a_handler_once_each_in_order(url: str, stream: str) -> None:
    """Awaited and queued publishes (1,450 queued: three pipelines of batch=500) reach a handler once each, in order."""
    seen = Seen()
    async with RedisBus(url, stream=stream) as bus:
        bus.on(seen, name="h")
        for i in range(50):
            await bus.publish(progress(i))
        for i in range(50, 1500):
            bus.publish_nowait(progress(i))
        await bus.drain(timeout=10)
        assert seen.done == list(range(1500))
        assert bus.published == 1500
        stats = bus.stats()["h"]
        assert (stats.kind, stats.received, stats.delivered, stats.failed, stats.lag) == ("handler", 1500, 1500, 0, 0)


async def test_publish_returns_once_redis_has_the_entry(url: str, stream: str, raw: aioredis.Redis) -> None:
    """After publish the entry is in the stream: the event's JSON under "e", its type tag under "t"."""
    async with RedisBus(url, stream=stream) as bus:
        event = progress(7)
        await bus.publish(event)
        entries = await raw.xrange(stream)
        assert [fields for _id, fields in entries] == [{b"e": ev.encode(event), b"t": b"job_progress"}]
        bus.publish_nowait(progress(8))
        await bus.flush()
        assert await raw.xlen(stream) == 2


async def test_filters_combine_and_what_they_refuse_is_acknowledged(url: str, stream: str, raw: aioredis.Redis) -> None:
    """types, providers, jobs and where each select; refused entries leave nothing pending."""
    by_type, by_provider, by_job, by_where = Seen(), Seen(), Seen(), Seen()
    async with RedisBus(url, stream=stream) as bus:
        bus.on(by_type, name="types", types={"job_completed"})
        bus.on(by_provider, name="providers", providers="datananas")
        bus.on(by_job, name="jobs", jobs={"j2"})
        bus.on(by_where, name="where", where=lambda e: isinstance(e, ev.JobProgress) and e.done % 2 == 1)
        for i in range(4):
            await bus.publish(progress(i, job=f"j{i % 3}"))
        await bus.publish(progress(9, provider="datananas"))
        await bus.publish(completed())
        await bus.drain(timeout=10)
    assert [e.id for e in by_type.events] == ["pronto:j1:done"]
    assert [e.id for e in by_provider.events] == ["datananas:j1:9"]
    assert [e.id for e in by_job.events] == ["pronto:j2:2"]
    assert [e.id for e in by_where.events] == ["pronto:j1:1", "pronto:j0:3", "datananas:j1:9"]
    for group in ("types", "providers", "jobs", "where"):
        assert await pending(raw, stream, group) == 0


async def test_subscribers_of_different_names_each_get_every_event(url: str, stream: str) -> None:
    """Fan-out: one consumer group per name."""
    a, b = Seen(), Seen()
    async with RedisBus(url, stream=stream) as bus:
        bus.on(a, name="a")
        async with bus.subscribe("b") as sub:
            for i in range(30):
                bus.publish_nowait(progress(i))
            with anyio.fail_after(10):
                for _ in range(30):
                    b(await sub.receive())
            await sub.ack()
            await bus.drain(timeout=10)
    assert a.done == list(range(30))
    assert b.done == list(range(30))


async def test_the_same_name_on_two_buses_shares_the_events(url: str, stream: str, raw: aioredis.Redis) -> None:
    """Competing consumers: each event handled exactly once overall, and both consumers got some."""
    first, second = Seen(), Seen()

    async def slowly(seen: Seen, event: ev.Event) -> None:
        seen(event)
        await anyio.sleep(0.002)  # some work, so that one consumer cannot take everything

    async with RedisBus(url, stream=stream, batch=5) as one, RedisBus(url, stream=stream, batch=5) as two:
        assert one.consumer != two.consumer
        one.on(lambda e: slowly(first, e), name="workers", buffer=5)
        two.on(lambda e: slowly(second, e), name="workers", buffer=5)
        for i in range(200):
            await one.publish(progress(i))
        await one.drain(timeout=20)  # the group's acknowledgements count, whichever consumer made them
    assert sorted(first.done + second.done) == list(range(200))
    assert first.done and second.done
    assert first.done == sorted(first.done) and second.done == sorted(second.done)
    assert await pending(raw, stream, "workers") == 0


async def test_an_event_published_by_another_process_reaches_this_one(url: str, stream: str) -> None:
    script = (
        "import anyio\n"
        "from eventbus import events as ev\n"
        "from eventbus.backends.redis import RedisBus\n"
        "async def main():\n"
        f"    async with RedisBus({url!r}, stream={stream!r}) as bus:\n"
        "        for i in range(20):\n"
        "            event = ev.JobProgress(id=f'p{i}', provider='pronto', job_id='j', source='poll', done=i)\n"
        "            await bus.publish(event)\n"
        "anyio.run(main)\n"
    )
    got: list[int] = []
    async with RedisBus(url, stream=stream) as bus, bus.subscribe("listener") as sub:
        proc = await anyio.run_process(
            [sys.executable, "-c", script], check=False, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        with anyio.fail_after(10):
            async for event in sub:
                got.append(event.done)  # type: ignore[attr-defined]
                if len(got) == 20:
                    break
        await sub.ack()
    assert got == list(range(20))


# --- durability ---------------------------------------------------------------------------------


async def test_unacknowledged_events_come_again_to_the_next_subscriber_of_the_name(
    url: str, stream: str, raw: aioredis.Redis
) -> None:
    """At least once: what was received and not acked comes again (claimed after claim_idle); acked ones do not."""
    async with RedisBus(url, stream=stream) as bus, bus.subscribe("exporter") as sub:
        for i in range(10):
            await bus.publish(progress(i))
        with anyio.fail_after(10):
            first = [(await sub.receive()).done for _ in range(3)]  # type: ignore[attr-defined]
            await sub.ack()
            first += [(await sub.receive()).done for _ in range(2)]  # type: ignore[attr-defined]
    assert first == [0, 1, 2, 3, 4]
    assert await pending(raw, stream, "exporter") == 7

    async with RedisBus(url, stream=stream, claim_idle=0.3) as bus, bus.subscribe("exporter") as sub:
        with anyio.fail_after(10):
            again = [(await sub.receive()).done for _ in range(7)]  # type: ignore[attr-defined]
        await sub.ack()
        assert sub.position is not None
    assert again == [3, 4, 5, 6, 7, 8, 9]
    assert await pending(raw, stream, "exporter") == 0


async def test_a_new_group_starts_with_new_events_and_start_0_reads_the_history(url: str, stream: str) -> None:
    old, fresh = Seen(), Seen()
    async with RedisBus(url, stream=stream) as bus:
        for i in range(5):
            await bus.publish(progress(i))
        bus.on(fresh, name="fresh")
        bus.on(old, name="old", start="0")
        await bus.publish(progress(5))
        await bus.drain(timeout=10)
    assert old.done == [0, 1, 2, 3, 4, 5]
    assert fresh.done == [5]


async def test_reset_moves_a_group_back_or_forward_and_creates_one_where_asked(url: str, stream: str) -> None:
    """reset(name, "0") replays the whole stream to the next subscriber of that name, reset(name, ID) what follows
    ID; a group that does not exist is created at the position, so even a default ("$") subscriber starts there."""
    async with RedisBus(url, stream=stream) as bus:
        for i in range(5):
            await bus.publish(progress(i))
        ids = [entry.id for entry in (await bus.read()).entries]
        first = Seen()
        handle = bus.on(first, name="store", start="0")
        await first.reach(5)
        await bus.drain(timeout=10)
        await handle.aclose()
        await bus.reset("store", "0")
        again = Seen()
        bus.on(again, name="store")
        await again.reach(5)
        await bus.drain(timeout=10)
    async with RedisBus(url, stream=stream) as bus:
        await bus.reset("store", ids[2])
        await bus.reset("later", 0)  # no such group yet: made at the start of the stream
        tail, late = Seen(), Seen()
        bus.on(tail, name="store")
        bus.on(late, name="later")  # (start "$" would only see new events: the group exists, it is not used)
        await tail.reach(2)
        await late.reach(5)
        await bus.drain(timeout=10)
        groups = {g.name: g for g in await bus.groups()}
    assert first.done == [0, 1, 2, 3, 4] and again.done == [0, 1, 2, 3, 4]
    assert tail.done == [3, 4] and late.done == [0, 1, 2, 3, 4]
    assert groups["store"].last_delivered == ids[4] and groups["later"].pending == 0


async def test_forget_deletes_a_group_and_refuses_while_it_runs_here(url: str, stream: str) -> None:
    async with RedisBus(url, stream=stream) as bus:
        await bus.publish(progress(0))
        assert await bus.forget("nobody") is False
        await bus.reset("gone", "0")
        assert [g.name for g in await bus.groups()] == ["gone"]
        assert await bus.forget("gone") is True
        assert await bus.groups() == []
        seen = Seen()
        bus.on(seen, name="live", start="0")
        await seen.reach(1)
        with pytest.raises(ConfigError, match="subscriber 'live' is running on this bus; close it before you reset"):
            await bus.reset("live", "0")
        with pytest.raises(ConfigError, match="subscriber 'live' is running on this bus; close it before you forget"):
            await bus.forget("live")
        with pytest.raises(ConfigError, match=r"start must be '\$' \(new events only\), '0' \(the whole stream\)"):
            await bus.reset("other", "yesterday")
        with pytest.raises(ConfigError, match="a subscriber's name is a non-empty string"):
            await bus.forget("")
        assert await bus.forget("missing-stream-group") is False
    async with RedisBus(url, stream=stream + "-never-written") as bus:
        assert await bus.forget("x") is False  # the stream does not exist: nothing to forget
        await bus.reset("x", "0")  # made, with the stream
        assert [g.name for g in await bus.groups()] == ["x"]


async def test_reset_and_forget_with_redis_gone_are_transport_errors_naming_the_group(tmp_path: Path) -> None:
    need_redis_server()
    srv = RedisServer(free_port(), tmp_path)
    srv.start()
    try:
        async with RedisBus(srv.url, stream="s", timeout=1.0) as bus:
            srv.stop()
            with pytest.raises(TransportError, match=r"could not change the group 'g' of the stream 's' at redis://"):
                await bus.reset("g", "0")
            with pytest.raises(TransportError, match=r"could not change the group 'g'"):
                await bus.forget("g")
            srv.start()  # an empty server again, so that leaving the bus does not wait on a dead one
    finally:
        srv.stop()


async def test_a_dead_consumers_pending_entries_are_claimed_after_claim_idle(
    url: str, stream: str, raw: aioredis.Redis
) -> None:
    """A consumer that read five entries and died: another consumer of the group gets them, not before claim_idle."""
    async with RedisBus(url, stream=stream) as bus:
        for i in range(5):
            await bus.publish(progress(i))
    await raw.xgroup_create(stream, "g", id="0")
    read = await raw.xreadgroup("g", "dead-consumer", {stream: ">"}, count=10)
    assert len(read[0][1]) == 5 and await pending(raw, stream, "g") == 5

    seen = Seen()
    started = anyio.current_time()
    async with RedisBus(url, stream=stream, claim_idle=0.5) as bus:
        bus.on(seen, name="g")
        await seen.reach(5)
        waited = anyio.current_time() - started
        await bus.drain(timeout=10)
    assert seen.done == [0, 1, 2, 3, 4]
    assert waited >= 0.5
    assert await pending(raw, stream, "g") == 0


async def test_undecodable_entries_are_counted_logged_acknowledged_and_the_rest_delivered(
    url: str, stream: str, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    caplog.set_level(logging.WARNING, logger="eventbus.redis")
    async with RedisBus(url, stream=stream) as bus:
        handle = bus.on(seen, name="h")
        await bus.publish(progress(0))
        bad = [
            await raw.xadd(stream, {"e": b"not json"}),
            await raw.xadd(stream, {"x": b"1"}),
            await raw.xadd(stream, {"e": b'{"type":"no_such_type","id":"x"}', "t": b"no_such_type"}),
        ]
        await bus.publish(progress(1))
        await seen.reach(2)
        await bus.drain(timeout=10)
        assert handle.stats().failed == 3
    assert seen.done == [0, 1]
    assert await pending(raw, stream, "h") == 0
    skipped = [r.entry_id for r in caplog.records if r.getMessage().startswith("redis_entry_skipped")]  # type: ignore[attr-defined]
    assert skipped == [b.decode() for b in bad]


async def test_the_stream_is_trimmed_to_about_maxlen(url: str, stream: str, raw: aioredis.Redis) -> None:
    """MAXLEN ~: at least maxlen entries stay, the newest, and at most one stream node (100 entries) more."""
    async with RedisBus(url, stream=stream, maxlen=100) as bus:
        for i in range(1000):
            bus.publish_nowait(progress(i))
        await bus.flush()
    length = await raw.xlen(stream)
    assert 100 <= length < 200
    newest = await raw.xrevrange(stream, count=1)
    assert ev.decode(newest[0][1][b"e"]).id == "pronto:j1:999"


async def test_publish_nowait_refuses_past_its_queue_and_loses_nothing(url: str, stream: str) -> None:
    seen = Seen()
    async with RedisBus(url, stream=stream, queue=100) as bus:
        bus.on(seen, name="h")
        for i in range(100):
            bus.publish_nowait(progress(i))
        with pytest.raises(anyio.WouldBlock):
            bus.publish_nowait(progress(100))
        await bus.publish(progress(100))  # waits for room instead
        await bus.drain(timeout=10)
    assert seen.done == list(range(101))


# --- failures ---------------------------------------------------------------------------------


async def test_a_handler_that_raises_is_logged_counted_and_its_entry_acknowledged(
    url: str, stream: str, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()

    def fragile(event: ev.Event) -> None:
        if event.done == 1:  # type: ignore[attr-defined]
            raise RuntimeError("boom")
        seen(event)

    async with RedisBus(url, stream=stream) as bus:
        handle = bus.on(fragile, name="fragile")
        for i in range(3):
            await bus.publish(progress(i))
        await bus.drain(timeout=10)
        assert handle.stats().failed == 1
    assert seen.done == [0, 2]
    assert await pending(raw, stream, "fragile") == 0
    assert [r.event_id for r in caplog.records if r.getMessage().startswith("subscriber_failed")] == ["pronto:j1:1"]  # type: ignore[attr-defined]


async def test_redis_unreachable_at_enter_is_a_transport_error_without_the_password() -> None:
    port = free_port()  # nothing listens there
    bus = RedisBus(f"redis://user:s3cret@127.0.0.1:{port}/0", timeout=2)
    with pytest.raises(TransportError, match=rf"^cannot reach Redis at redis://\*\*\*@127\.0\.0\.1:{port}/0: ") as err:
        await bus.__aenter__()
    assert "s3cret" not in str(err.value)
    assert "s3cret" not in repr(bus) and bus.url == f"redis://***@127.0.0.1:{port}/0"


async def test_redis_killed_mid_run_publish_fails_in_time_and_readers_recover(tmp_path: Path) -> None:
    """publish raises TransportError within its timeout; a server back on the port is picked up by the readers."""
    need_redis_server()
    srv = RedisServer(free_port(), tmp_path)
    srv.start()
    seen = Seen()
    try:
        async with RedisBus(srv.url, stream="s", timeout=1.0, block=0.2) as bus:
            bus.on(seen, name="h")
            await bus.publish(progress(0))
            await seen.reach(1)
            srv.stop()
            started = anyio.current_time()
            with pytest.raises(TransportError, match=r"redis://127\.0\.0\.1:\d+/0"):
                await bus.publish(progress(1))
            assert anyio.current_time() - started < 1.5
            srv.start()  # empty: no persistence; the reader makes its group again
            await bus.publish(progress(2))
            await seen.reach(2)
            await bus.drain(timeout=10)
    finally:
        srv.stop()
    assert seen.done == [0, 2]


async def test_a_webhook_receiver_on_redisbus_answers_2xx_only_once_redis_has_the_events(tmp_path: Path) -> None:
    """The receiver flushes a RedisBus as it does a journaled Bus: the 200 comes once the entries are in the stream,
    and with Redis gone the sender gets a 503 (to retry), not a 200 for events that were never written."""
    import httpx

    from adapters.serving import ServedApp
    from adapters.webhooks import WebhookReceiver
    from tests.adapters.test_webhooks import JSON, body_of, parse_acme

    need_redis_server()
    srv = RedisServer(free_port(), tmp_path)
    srv.start()
    raw = aioredis.Redis.from_url(srv.url)
    try:
        async with RedisBus(srv.url, stream="hooks", timeout=1.0) as bus:
            receiver = WebhookReceiver(bus, {"acme": parse_acme}, publish_timeout=5)
            async with ServedApp(receiver) as served, httpx.AsyncClient(base_url=served.url) as client:
                with anyio.fail_after(10):
                    ok = await client.post("/hooks/acme", content=body_of(keys=("a", "b")), headers=JSON)
                    assert ok.status_code == 200 and await raw.xlen("hooks") == 2
                    srv.stop()
                    down = await client.post("/hooks/acme", content=body_of(job="j2", keys=("c",)), headers=JSON)
                assert down.status_code == 503 and receiver.stats()["unavailable"] == 1
                srv.start()  # an empty server again, so that leaving the bus does not wait on a dead one
    finally:
        await raw.aclose()
        srv.stop()


def test_trio_is_refused_with_a_config_error() -> None:
    """redis-py's asyncio client cannot run under trio: entering says so instead of failing obscurely."""
    trio = pytest.importorskip("trio")

    async def main() -> None:
        async with RedisBus("redis://127.0.0.1:1/0"):
            pass  # pragma: no cover

    with pytest.raises(ConfigError, match="RedisBus runs on asyncio only: redis-py's asyncio client has no trio"):
        trio.run(main)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"url": "http://127.0.0.1:6379"},
            "RedisBus needs a redis://, rediss:// or unix:// URL, not 'http://127.0.0.1:6379'",
        ),
        ({"url": "http://u:pw@host/"}, "RedisBus needs a redis://, rediss:// or unix:// URL, not 'http://***@host/'"),
        ({"stream": ""}, "RedisBus needs a non-empty stream name, not ''"),
        ({"maxlen": 0}, "RedisBus: maxlen must be a whole number, 1 or more, or None (no trimming), not 0"),
        ({"claim_idle": 0}, "RedisBus: claim_idle must be a finite number of seconds above 0, not 0"),
        (
            {"timeout": math.nan, "batch": 1.5},
            "RedisBus: timeout must be a finite number of seconds above 0, not nan; "
            "batch must be a whole number, 1 or more, not 1.5",
        ),
    ],
)
def test_bad_bus_arguments_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        RedisBus(**kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message


async def test_bad_subscriber_arguments_are_config_errors(url: str, stream: str) -> None:
    async with RedisBus(url, stream=stream) as bus:
        bus.on(print, name="taken")
        cases = [
            ({"name": "taken"}, "a subscriber named 'taken' already exists on this bus; give each a unique name="),
            (
                {"overflow": "drop_oldest"},
                "subscriber 'x': a RedisBus subscriber reads from the stream only as fast as it handles, "
                "so nothing is dropped: its overflow is 'block', not 'drop_oldest'",
            ),
            (
                {"start": "yesterday"},
                "subscriber 'x': start must be '$' (new events only), '0' (the whole stream) "
                "or an entry id such as '1700000000000-0', not 'yesterday'",
            ),
            ({"durable": False}, "subscriber 'x': every RedisBus subscriber is a durable consumer group"),
        ]
        for kwargs, message in cases:
            with pytest.raises(ConfigError) as err:
                bus.on(print, **{"name": "x", **kwargs})  # type: ignore[arg-type]
            assert str(err.value).startswith(message), (kwargs, str(err.value))
        assert list(bus.stats()) == ["taken"]


# --- drain and close ---------------------------------------------------------------------------


async def test_drain_waits_for_a_subscription_to_acknowledge(url: str, stream: str) -> None:
    """For a subscription, handled means acknowledged: received but not acked keeps drain waiting."""
    async with RedisBus(url, stream=stream) as bus, bus.subscribe("s") as sub:
        await bus.publish(progress(0))
        with anyio.fail_after(10):
            assert (await sub.receive()).id == "pronto:j1:0"
        with pytest.raises(TimeoutError):
            await bus.drain(timeout=0.3)
        await sub.ack()
        await bus.drain(timeout=10)


async def test_drain_ends_when_filters_refused_everything(url: str, stream: str, raw: aioredis.Redis) -> None:
    seen = Seen()
    async with RedisBus(url, stream=stream) as bus:
        bus.on(seen, name="completions", types="job_completed")
        for i in range(20):
            bus.publish_nowait(progress(i))
        await bus.drain(timeout=10)
        assert seen.events == []
        info = {g["name"]: g for g in await raw.xinfo_groups(stream)}
        assert info[b"completions"]["pending"] == 0 and info[b"completions"]["entries-read"] == 20


async def test_leaving_the_bus_lets_handlers_finish_what_it_published(url: str, stream: str) -> None:
    seen = Seen()
    async with RedisBus(url, stream=stream) as bus:
        bus.on(seen, name="h")
        for i in range(20):
            bus.publish_nowait(progress(i))
    assert seen.done == list(range(20))
    assert bus.closed


# --- the stream as a log: read, start_of_last, groups --------------------------------------------


async def published(url: str, stream: str, raw: aioredis.Redis, events: list[ev.Event]) -> list[str]:
    """Publish ``events`` through a RedisBus (queued, then flushed); the stream's entry ids, in order."""
    async with RedisBus(url, stream=stream) as bus:
        for event in events:
            bus.publish_nowait(event)
        await bus.flush()
    return [entry_id.decode() for entry_id, _ in await raw.xrange(stream)]


def mixed() -> list[ev.Event]:
    """Two providers, three jobs, two types: entries 0..5 in this order."""
    return [
        progress(0, job="j1"),
        completed("j1"),
        progress(1, job="j2", provider="datananas"),
        completed("j2", provider="datananas"),
        progress(2, job="j3"),
        completed("j3"),
    ]


async def test_read_pages_through_the_stream_in_order_creating_no_group(
    url: str, stream: str, raw: aioredis.Redis
) -> None:
    """read(after, limit): the entries after an id, with their ids, page by page (more, upto); no group is made."""
    events = [progress(i) for i in range(7)]
    ids = await published(url, stream, raw, events)
    async with RedisBus(url, stream=stream) as bus:
        pages = [await bus.read(limit=3)]
        while pages[-1].more:
            pages.append(await bus.read(pages[-1].upto, limit=3))
        again = await bus.read(pages[-1].upto)
        middle = await bus.read(ids[4])
    assert [[(e.id, e.event) for e in page.entries] for page in pages] == [
        list(zip(ids[0:3], events[0:3], strict=True)),
        list(zip(ids[3:6], events[3:6], strict=True)),
        [(ids[6], events[6])],
    ]
    assert [(page.upto, page.more, page.skipped) for page in pages] == [
        (ids[2], True, []),
        (ids[5], True, []),
        (ids[6], False, []),
    ]
    assert (again.entries, again.upto, again.more) == ([], ids[6], False)
    assert [e.id for e in middle.entries] == ids[5:]
    assert await raw.xinfo_groups(stream) == []  # read as a log: no consumer group made


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"types": {"job_completed"}}, [1, 3, 5]),
        ({"types": ev.JobCompleted, "providers": "datananas"}, [3]),
        ({"jobs": ["j2", "j3"]}, [2, 3, 4, 5]),
        ({"providers": {"pronto"}, "types": ["job_progress"]}, [0, 4]),
        ({"providers": {"nobody"}}, []),
    ],
)
async def test_read_filters_and_covers_what_they_refuse(
    url: str, stream: str, raw: aioredis.Redis, filters: dict[str, object], expected: list[int]
) -> None:
    """types, providers and jobs combine as on Journal.read; upto is past the refused entries that end the stream."""
    events = mixed()
    ids = await published(url, stream, raw, events)
    async with RedisBus(url, stream=stream) as bus:
        page = await bus.read(**filters)  # type: ignore[arg-type]
    assert [e.id for e in page.entries] == [ids[i] for i in expected]
    assert [e.event for e in page.entries] == [events[i] for i in expected]
    assert (page.upto, page.more) == (ids[-1], False)


async def test_read_names_undecodable_entries_and_skips_by_tag_without_decoding(
    url: str, stream: str, raw: aioredis.Redis
) -> None:
    """Entries another program wrote are listed in skipped with their id (never raised); the 't' field refuses an
    entry for a type filter before its JSON is looked at."""
    first, last = progress(0), completed()
    async with RedisBus(url, stream=stream) as bus:
        await bus.publish(first)
        bad = [
            await raw.xadd(stream, {"e": b"not json", "t": b"job_progress"}),
            await raw.xadd(stream, {"x": b"1"}),
            await raw.xadd(stream, {"e": b'{"type":"job_paused","id":"x"}', "t": b"job_paused"}),
        ]
        await bus.publish(last)
        page = await bus.read()
        completions = await bus.read(types={"job_completed"})
    bad_ids = [b.decode() for b in bad]
    assert [e.event for e in page.entries] == [first, last]
    assert [entry_id for entry_id, _ in page.skipped] == bad_ids
    json_why, fields_why, type_why = (why for _, why in page.skipped)
    assert json_why.startswith(f"entry {bad_ids[0]} cannot be decoded: ") and json_why.endswith("excerpt: not json")
    assert fields_why == f"entry {bad_ids[1]} cannot be decoded: it has no 'e' field (its fields: x)"
    assert type_why.startswith(f"entry {bad_ids[2]} cannot be decoded: ") and "job_paused" in type_why
    # Refused by their tags unseen; the entry without one cannot be refused, and is named.
    assert [e.event for e in completions.entries] == [last]
    assert completions.skipped == [(bad_ids[1], fields_why)]


async def test_start_of_last_is_the_id_to_read_after(url: str, stream: str, raw: aioredis.Redis) -> None:
    """start_of_last(n): reading after it gives the last n matching entries; 0: the last id ever added (also once
    deleted); more than there are: "0"."""
    ids = await published(url, stream, raw, mixed())
    async with RedisBus(url, stream=stream) as bus:
        assert await bus.start_of_last(2) == ids[3]
        assert await bus.start_of_last(2, types="job_completed") == ids[2]
        assert await bus.start_of_last(1, providers="datananas", types=["job_progress"]) == ids[1]
        assert await bus.start_of_last(6) == "0"
        assert await bus.start_of_last(7, jobs="j1") == "0"
        last_two = await bus.read(await bus.start_of_last(2, types="job_completed"), types="job_completed")
        assert [e.id for e in last_two.entries] == [ids[3], ids[5]]
        await raw.xdel(stream, ids[5])
        assert await bus.start_of_last(0) == ids[5]  # the last id given, not that of the last entry left
        assert (await bus.read(await bus.start_of_last(0))).entries == []
    async with RedisBus(url, stream=new_stream()) as bus:  # nothing there yet
        assert [await bus.start_of_last(n) for n in (0, 3)] == ["0", "0"]


async def test_start_of_last_scans_back_over_many_pages(url: str, stream: str, raw: aioredis.Redis) -> None:
    """The backward scan goes past its first XREVRANGE page (a thousand entries at a time), filters and all."""
    events = [progress(i, job="even" if i % 2 == 0 else "odd") for i in range(2500)]
    ids = await published(url, stream, raw, events)
    async with RedisBus(url, stream=stream) as bus:
        assert await bus.start_of_last(1001) == ids[1498]
        assert await bus.start_of_last(2499) == ids[0]
        assert await bus.start_of_last(2500) == "0"
        assert await bus.start_of_last(1100, jobs="odd") == ids[300]  # the 1100th last odd entry is ids[301]


async def test_groups_report_each_consumer_groups_position_pending_and_lag(
    url: str, stream: str, raw: aioredis.Redis
) -> None:
    """groups(): every consumer group by name, whoever made it: last delivered id, pending, lag, consumers."""
    async with RedisBus(url, stream=stream) as bus:
        assert await bus.groups() == []  # no stream yet
    ids = await published(url, stream, raw, [progress(i) for i in range(8)])
    await raw.xgroup_create(stream, "slow", id="0")
    await raw.xreadgroup("slow", "worker-1", {stream: ">"}, count=3)  # read, never acknowledged
    await raw.xgroup_create(stream, "from-the-middle", id=ids[4])
    seen = Seen()
    async with RedisBus(url, stream=stream) as bus:
        bus.on(seen, name="store", start="0")
        await seen.reach(8)
        await bus.drain(timeout=10)
    async with RedisBus(url, stream=stream) as bus:
        groups = await bus.groups()
    assert [g.name for g in groups] == ["from-the-middle", "slow", "store"]
    middle, slow, store = groups
    assert (slow.last_delivered, slow.pending, slow.lag, slow.consumers) == (ids[2], 3, 5, 1)
    assert (store.last_delivered, store.pending, store.lag, store.consumers) == (ids[7], 0, 0, 0)
    assert (middle.last_delivered, middle.pending, middle.consumers) == (ids[4], 0, 0)
    assert middle.lag in (None, 3)  # Redis 7.0 cannot tell for a group made at an arbitrary id


async def test_bad_read_arguments_are_config_errors(url: str, stream: str, raw: aioredis.Redis) -> None:
    """Positions, limits and filters are checked as the journal checks them, with the same words."""
    cases = [
        (
            {"after": "yesterday"},
            "after must be a stream entry id such as '1700000000000-0' ('0': the start), not 'yesterday'",
        ),
        ({"after": "18446744073709551616-0"}, "after must be a stream entry id such as '1700000000000-0'"),
        ({"after": 5}, "after must be a stream entry id such as '1700000000000-0' ('0': the start), not 5"),
        ({"limit": 0}, "RedisBus.read: limit must be a whole number, 1 or more, not 0"),
        ({"types": {"job_done"}}, "unknown event type 'job_done'; known types: batch_submitted, "),
        ({"types": []}, "types is empty: nothing would ever match"),
        ({"providers": []}, "providers is empty: nothing would ever match"),
        ({"jobs": [1]}, "jobs must be strings, not ['1']"),
    ]
    async with RedisBus(url, stream=stream) as bus:
        for kwargs, message in cases:
            with pytest.raises(ConfigError) as err:
                await bus.read(**kwargs)  # type: ignore[arg-type]
            assert str(err.value).startswith(message), (kwargs, str(err.value))
        with pytest.raises(ConfigError, match=r"^RedisBus.start_of_last: n must be a whole number, 0 or more, not -1"):
            await bus.start_of_last(-1)
        last = await bus.read("18446744073709551615-18446744073709551615")  # nothing can follow the largest id
        assert (last.entries, last.more) == ([], False)
        await raw.set(stream, "not a stream")
        for call in (bus.read(), bus.start_of_last(1), bus.groups()):
            with pytest.raises(
                ConfigError, match=rf"^the key '{stream}' at redis://127\.0\.0\.1:\d+/0 is not a stream"
            ):
                await call
    with pytest.raises(BusClosed, match="the bus is not running"):
        await RedisBus(url, stream=stream).read()
    with pytest.raises(BusClosed, match="the bus is closed"):
        await bus.groups()


async def test_reading_when_redis_is_gone_is_a_transport_error_without_the_password(tmp_path: Path) -> None:
    """read, start_of_last and groups raise TransportError naming the stream and the URL, its password hidden."""
    need_redis_server()
    srv = RedisServer(free_port(), tmp_path)
    srv.start()
    try:
        secret_url = f"redis://default:s3cret@127.0.0.1:{srv.port}/0"  # (the default user takes any password)
        async with RedisBus(secret_url, stream="log", timeout=2) as bus:
            await bus.publish(progress(0))
            assert len((await bus.read()).entries) == 1
            srv.stop()
            for call in (bus.read(), bus.start_of_last(3), bus.groups()):
                with pytest.raises(TransportError) as err:
                    await call
                assert str(err.value).startswith(
                    f"could not read the stream 'log' at redis://***@127.0.0.1:{srv.port}/0: "
                )
                assert "s3cret" not in str(err.value)
            srv.start()  # an empty server again, so that leaving the bus does not wait on a dead one
    finally:
        srv.stop()
