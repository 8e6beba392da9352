"""Bus throughput against a bare asyncio.Queue and pyee, and memory under a stalled subscriber.

Every side moves the same pre-built event objects and counts them in a
handler, so the figures compare delivery machinery, not event creation. The
contenders run interleaved in many short rounds and each keeps its best
round: on a shared machine a burst of load then hurts every side alike
instead of whichever happened to run during it. Rates are reported by wall
clock (what the targets are stated in; ``meets``) and by process CPU time
(steadier under load; ``meets_by_cpu_time``, for information).

The bus runs on asyncio here because the baseline is ``asyncio.Queue``; the
trio figures (bus and a bare ``trio`` memory channel) are for information.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable

import anyio
import psutil

from benchmarks._util import best_interleaved, ratio, rounded
from eventbus import events as ev
from eventbus.bus import Bus

NAME = "bus"
QUEUE_SIZE = 1024


def _events(n: int) -> list[ev.Event]:
    return [ev.JobProgress(id=str(i), provider="pronto", job_id=f"j{i % 8}", source="poll", done=i) for i in range(n)]


async def _bus(events: list[ev.Event], subscribers: int) -> int:
    """Publish every event with ``await bus.publish``; ``subscribers`` counting handlers; drain."""
    counts = [0] * subscribers

    def make_counter(slot: int) -> Callable[[ev.Event], None]:
        def handler(_event: ev.Event) -> None:
            counts[slot] += 1

        return handler

    async with Bus() as bus:
        for i in range(subscribers):
            bus.on(make_counter(i), name=f"count{i}", buffer=QUEUE_SIZE)
        publish = bus.publish
        for event in events:
            await publish(event)
        await bus.drain()
    assert counts == [len(events)] * subscribers, counts
    return len(events) * subscribers


async def _asyncio_queue(events: list[ev.Event]) -> int:
    """The baseline: one producer, one consumer, ``asyncio.Queue(1024)``, a sentinel at the end."""
    queue: asyncio.Queue[ev.Event | None] = asyncio.Queue(QUEUE_SIZE)
    count = 0

    async def producer() -> None:
        for event in events:
            await queue.put(event)
        await queue.put(None)

    async def consumer() -> None:
        nonlocal count
        while await queue.get() is not None:
            count += 1

    await asyncio.gather(producer(), consumer())
    assert count == len(events)
    return count


async def _trio_channel(events: list[ev.Event]) -> int:
    """For information: the same pair over a bare trio memory channel of the same size."""
    import trio

    send, receive = trio.open_memory_channel[ev.Event](QUEUE_SIZE)
    count = 0

    async def producer() -> None:
        async with send:
            for event in events:
                await send.send(event)

    async def consumer() -> None:
        nonlocal count
        async with receive:
            async for _ in receive:
                count += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        nursery.start_soon(consumer)
    assert count == len(events)
    return count


async def _pyee(events: list[ev.Event]) -> int:
    """pyee's AsyncIOEventEmitter with a coroutine handler, at most 1,024 events outstanding.

    pyee schedules each coroutine handler call as its own task; bounding the
    outstanding ones to the queue's size keeps the comparison fair (an
    unbounded burst of tasks is slower per event and grows without bound).
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
    for start in range(0, len(events), QUEUE_SIZE):
        batch = events[start : start + QUEUE_SIZE]
        target += len(batch)
        reached.clear()
        for event in batch:
            emitter.emit("event", event)
        await reached.wait()
    assert count == len(events)
    return count


def _stalled_memory(n: int, size: int = 1000) -> dict:
    """Publish ``n`` events (created on the fly) while a drop_oldest subscriber never reads."""

    async def scenario() -> dict:
        process = psutil.Process(os.getpid())
        async with Bus() as bus, bus.subscribe("stalled", buffer=size, overflow="drop_oldest") as sub:
            gc.collect()
            before = process.memory_info().rss
            publish_nowait = bus.publish_nowait
            for i in range(n):
                publish_nowait(ev.JobProgress(id=str(i), provider="pronto", job_id="j", source="poll", done=i))
            gc.collect()
            after = process.memory_info().rss
            stats = sub.stats()
            first_kept = sub.receive_nowait().done
        return {
            "published": n,
            "buffer": size,
            "dropped": stats.dropped,
            "expected_dropped": n - size,
            "lag": stats.lag,
            "first_event_kept": first_kept,
            "rss_before_mb": round(before / 2**20, 1),
            "rss_growth_mb": round((after - before) / 2**20, 2),
        }

    return anyio.run(scenario)


def run(quick: bool) -> dict:
    n = 50_000 if quick else 100_000
    rounds = 3 if quick else 15
    events = _events(n)
    small = events[: n // 5]  # ten subscribers make ten deliveries per event; pyee and trio channels are slow
    contenders: dict[str, Callable[[], int]] = {
        "bus_1": lambda: asyncio.run(_bus(events, 1)),
        "asyncio_queue": lambda: asyncio.run(_asyncio_queue(events)),
        "bus_10": lambda: asyncio.run(_bus(small, 10)),
        "pyee": lambda: asyncio.run(_pyee(small)),
        "bus_1_trio": lambda: anyio.run(_bus, events, 1, backend="trio"),
        "bus_10_trio": lambda: anyio.run(_bus, small, 10, backend="trio"),
        "trio_channel": lambda: anyio.run(_trio_channel, small, backend="trio"),
    }
    rates = best_interleaved(contenders, rounds)
    wall = {key: w for key, (w, _) in rates.items()}
    cpu = {key: c for key, (_, c) in rates.items()}
    memory = _stalled_memory(100_000 if quick else 1_000_000)
    r1, r10 = ratio(wall["bus_1"], wall["asyncio_queue"]), ratio(wall["bus_10"], wall["asyncio_queue"])
    rp = ratio(wall["bus_1"], wall["pyee"])
    c1, c10 = ratio(cpu["bus_1"], cpu["asyncio_queue"]), ratio(cpu["bus_10"], cpu["asyncio_queue"])
    cp = ratio(cpu["bus_1"], cpu["pyee"])
    return {
        "events": n,
        "events_10_subscribers_and_pyee": len(small),
        "rounds": rounds,
        "per_s_wall": {k: rounded(v) for k, v in wall.items()},
        "per_cpu_s": {k: rounded(v) for k, v in cpu.items()},
        "ratio_bus1_vs_queue": r1,
        "ratio_bus10_vs_queue": r10,
        "ratio_bus1_vs_pyee": rp,
        "cpu_ratio_bus1_vs_queue": c1,
        "cpu_ratio_bus10_vs_queue": c10,
        "cpu_ratio_bus1_vs_pyee": cp,
        "trio_ratio_bus1_vs_trio_channel": ratio(wall["bus_1_trio"], wall["trio_channel"]),
        "stalled_subscriber": memory,
        "meets": {
            "1 subscriber >= 1.0x asyncio.Queue": r1 >= 1.0,
            "1 subscriber >= 15x pyee": rp >= 15,
            "10 subscribers >= 1.5x asyncio.Queue": r10 >= 1.5,
            "stalled: rss growth < 20 MB": memory["rss_growth_mb"] < 20,
            "stalled: drop count exact": memory["dropped"] == memory["expected_dropped"],
            "stalled: keeps the newest events": memory["first_event_kept"] == memory["published"] - memory["buffer"],
        },
        "meets_by_cpu_time": {
            "1 subscriber >= 1.0x asyncio.Queue": c1 >= 1.0,
            "1 subscriber >= 15x pyee": cp >= 15,
            "10 subscribers >= 1.5x asyncio.Queue": c10 >= 1.5,
        },
    }
