"""Bus throughput against a bare asyncio.Queue and pyee, and memory under a stalled subscriber.

Every side moves the same pre-built event objects and counts them in a
handler, so the figures compare delivery machinery, not event creation.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time

import anyio
import psutil

from benchmarks._util import ratio, rounded
from eventbus import events as ev
from eventbus.bus import Bus

NAME = "bus"


def _events(n: int) -> list[ev.Event]:
    return [ev.JobProgress(id=str(i), provider="pronto", job_id=f"j{i % 8}", source="poll", done=i) for i in range(n)]


async def _bus_rate(events: list[ev.Event], subscribers: int) -> float:
    counts = [0] * subscribers

    def make_counter(slot: int):
        def handler(_event: ev.Event) -> None:
            counts[slot] += 1

        return handler

    async with Bus() as bus:
        for i in range(subscribers):
            bus.on(make_counter(i), name=f"count{i}", buffer=1024)
        started = time.perf_counter()
        publish = bus.publish
        for event in events:
            await publish(event)
        await bus.drain()
        elapsed = time.perf_counter() - started
    assert counts == [len(events)] * subscribers, counts
    return len(events) * subscribers / elapsed


async def _queue_rate(events: list[ev.Event]) -> float:
    queue: asyncio.Queue[ev.Event | None] = asyncio.Queue(1024)
    count = 0

    async def producer() -> None:
        for event in events:
            await queue.put(event)
        await queue.put(None)

    async def consumer() -> None:
        nonlocal count
        while await queue.get() is not None:
            count += 1

    started = time.perf_counter()
    await asyncio.gather(producer(), consumer())
    elapsed = time.perf_counter() - started
    assert count == len(events)
    return len(events) / elapsed


async def _pyee_rate(events: list[ev.Event], window: int = 1024) -> float:
    """pyee's AsyncIOEventEmitter with a coroutine handler, at most ``window`` events outstanding.

    pyee schedules each coroutine handler as its own task; bounding the
    outstanding ones to the same 1,024 as the queue keeps the comparison fair
    (an unbounded burst of tasks is slower per event and grows without bound).
    """
    from pyee.asyncio import AsyncIOEventEmitter

    emitter = AsyncIOEventEmitter()
    count = 0
    target = 0
    reached = asyncio.Event()

    async def handler(_event: ev.Event) -> None:
        nonlocal count
        count += 1
        if count == target:
            reached.set()

    emitter.on("event", handler)
    started = time.perf_counter()
    for start in range(0, len(events), window):
        batch = events[start : start + window]
        target += len(batch)
        reached.clear()
        for event in batch:
            emitter.emit("event", event)
        await reached.wait()
    elapsed = time.perf_counter() - started
    assert count == len(events)
    return len(events) / elapsed


def _best(fn, repeat: int) -> float:
    return max(fn() for _ in range(repeat))


def _stalled_memory(n: int) -> dict:
    """Publish ``n`` events while a drop_oldest subscriber (buffer 1,000) never reads."""

    async def scenario() -> dict:
        process = psutil.Process(os.getpid())
        event = ev.JobProgress(id="x", provider="pronto", job_id="j", source="poll", done=1)
        async with Bus() as bus, bus.subscribe("stalled", buffer=1000, overflow="drop_oldest") as sub:
            # Fill the buffer once so the steady state is measured, not the first 1,000 slots.
            for _ in range(1000):
                bus.publish_nowait(event)
            gc.collect()
            before = process.memory_info().rss
            for i in range(n):
                bus.publish_nowait(ev.JobProgress(id=str(i), provider="pronto", job_id="j", source="poll", done=i))
            gc.collect()
            after = process.memory_info().rss
            stats = sub.stats()
        return {
            "published": n + 1000,
            "dropped": stats.dropped,
            "expected_dropped": n,
            "lag": stats.lag,
            "rss_growth_mb": round((after - before) / 2**20, 2),
        }

    return anyio.run(scenario)


def run(quick: bool) -> dict:
    n = 50_000 if quick else 500_000
    repeat = 3 if quick else 5
    events = _events(n)
    bus1 = _best(lambda: asyncio.run(_bus_rate(events, 1)), repeat)
    queue = _best(lambda: asyncio.run(_queue_rate(events)), repeat)
    bus10 = _best(lambda: asyncio.run(_bus_rate(events[: n // 5], 10)), repeat)
    pyee = _best(lambda: asyncio.run(_pyee_rate(events[: n // 5])), repeat)
    bus1_trio = _best(lambda: anyio.run(_bus_rate, events, 1, backend="trio"), repeat)
    memory = _stalled_memory(100_000 if quick else 1_000_000)
    return {
        "events": n,
        "bus_1_subscriber_per_s": rounded(bus1),
        "bus_1_subscriber_trio_per_s": rounded(bus1_trio),
        "asyncio_queue_1024_per_s": rounded(queue),
        "bus_10_subscribers_deliveries_per_s": rounded(bus10),
        "pyee_asyncio_per_s": rounded(pyee),
        "ratio_bus1_vs_queue": ratio(bus1, queue),
        "ratio_bus10_vs_queue": ratio(bus10, queue),
        "ratio_bus1_vs_pyee": ratio(bus1, pyee),
        "stalled_subscriber": memory,
        "meets": {
            "1 subscriber >= 1.0x asyncio.Queue": bus1 >= queue,
            "1 subscriber >= 15x pyee": bus1 >= 15 * pyee,
            "10 subscribers >= 1.5x asyncio.Queue": bus10 >= 1.5 * queue,
            "stalled: rss growth < 20 MB": memory["rss_growth_mb"] < 20,
            "stalled: drop count exact": memory["dropped"] == memory["expected_dropped"],
        },
    }
