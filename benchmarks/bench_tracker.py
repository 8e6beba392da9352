"""JobTracker throughput: raw events merged per second, against a plain dict/set dedupe by event id.

The workload is what the tracker exists for: jobs reported by three sources
at once (every item by each, progress by two, the end by all three, a few
copies after the end), interleaved. The baseline only drops repeated event
ids — no ordering, progress, terminal or bounded-memory guarantees — so the
ratio is the price of those guarantees. The shell figures compare publishing
the raw stream through ``attach()`` to a real Bus with one counting handler
against publishing it straight to the Bus.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable

import anyio

from benchmarks._util import best_interleaved, ratio, rounded
from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.tracker import JobTracker

NAME = "tracker"
SOURCES = ("websocket", "webhook", "poll")


def workload(jobs: int, items: int, seed: int = 7) -> list[ev.Event]:
    """The raw events three redundant sources would send about ``jobs`` jobs of ``items`` items, interleaved."""
    rng = random.Random(seed)
    streams: list[list[ev.Event]] = []
    for j in range(jobs):
        job = f"job{j}"
        common = {"provider": "pronto", "job_id": job}
        streams.append([ev.JobAccepted(id=f"{job}:accepted", source="submit", total=items, **common)])
        for source in SOURCES:
            stream: list[ev.Event] = []
            for k in range(items):
                stream.append(
                    ev.ItemSucceeded(id=f"{job}:item:{k}", source=source, key=str(k), outcome="found", **common)
                )
                if source != "webhook" and k % 10 == 9:
                    stream.append(
                        ev.JobProgress(id=f"{job}:p:{k + 1}", source=source, done=k + 1, total=items, **common)
                    )
            stream.append(ev.JobCompleted(id=f"{job}:end", source=source, **common))
            stream.extend(rng.sample(stream, 3))  # late copies
            streams.append(stream)
    queues = [list(reversed(s)) for s in streams]
    out: list[ev.Event] = []
    while queues:
        q = rng.choice(queues)
        out.append(q.pop())
        if not q:
            queues.remove(q)
    return out


def _tracker(events: list[ev.Event]) -> int:
    """Feed every raw event; return how many were published (the rate is of raw events, see run)."""
    feed = JobTracker().feed
    published = 0
    for event in events:
        published += len(feed(event))
    return published


def _dedupe(events: list[ev.Event]) -> int:
    """The baseline: drop repeated event ids; return how many were kept."""
    seen: set[str] = set()
    published = 0
    for event in events:
        if event.id in seen:
            continue
        seen.add(event.id)
        published += 1
    return published


async def _through_bus(events: list[ev.Event], tracked: bool) -> int:
    count = 0

    def handler(_event: ev.Event) -> None:
        nonlocal count
        count += 1

    async with Bus() as bus:
        bus.on(handler, name="count", buffer=1024)
        if tracked:
            async with JobTracker().attach(bus) as publisher:
                await _publish_all(publisher, events)
        else:
            await _publish_all(bus, events)
        await bus.drain()
    return len(events)  # raw events taken per second, what a source experiences


async def _publish_all(target: Bus | object, events: list[ev.Event]) -> None:
    # The sources' hot path: the non-blocking publish, waiting only when the bus is full.
    publish_nowait, publish = target.publish_nowait, target.publish  # type: ignore[attr-defined]
    for event in events:
        try:
            publish_nowait(event)
        except anyio.WouldBlock:
            await publish(event)


def _raw_rate(fn: Callable[[list[ev.Event]], int], events: list[ev.Event]) -> Callable[[], int]:
    """A run of ``fn`` counted in raw events taken in, whatever came out, like the bus runs."""

    def counted() -> int:
        fn(events)
        return len(events)

    return counted


def run(quick: bool) -> dict:
    jobs, items = (20, 500) if quick else (100, 1000)
    events = workload(jobs, items)
    # The input list is a benchmark artifact: keep the collector from re-traversing it in
    # every run (it would weigh on all runs, unevenly); the tracker's own objects are not frozen.
    gc.collect()
    gc.freeze()
    try:
        return _measure(events, jobs, items, quick)
    finally:
        gc.unfreeze()


def _measure(events: list[ev.Event], jobs: int, items: int, quick: bool) -> dict:
    repeat = 3 if quick else 5
    merged = _tracker(events)
    deduped = _dedupe(events)
    rates = best_interleaved(
        {
            "core": _raw_rate(_tracker, events),
            "base": _raw_rate(_dedupe, events),
            "shell": lambda: anyio.run(_through_bus, events, True),
            "direct": lambda: anyio.run(_through_bus, events, False),
        },
        repeat,
    )
    (core, core_cpu), (base, base_cpu) = rates["core"], rates["base"]
    (shell, shell_cpu), (direct, direct_cpu) = rates["shell"], rates["direct"]
    return {
        "raw_events": len(events),
        "jobs": jobs,
        "items_per_job": items,
        "published_by_tracker": merged,
        "published_by_id_dedupe": deduped,
        "tracker_feed_per_s": rounded(core),
        "tracker_feed_per_cpu_s": rounded(core_cpu),
        "id_dedupe_per_cpu_s": rounded(base_cpu),
        "id_dedupe_per_s": rounded(base),
        "ratio_tracker_vs_id_dedupe": ratio(core, base),
        "ratio_tracker_vs_id_dedupe_cpu": ratio(core_cpu, base_cpu),
        "bus_through_tracker_per_s": rounded(shell),
        "bus_direct_per_s": rounded(direct),
        "bus_through_tracker_per_cpu_s": rounded(shell_cpu),
        "bus_direct_per_cpu_s": rounded(direct_cpu),
        "ratio_bus_through_tracker_vs_direct": ratio(shell, direct),
        "ratio_bus_through_tracker_vs_direct_cpu": ratio(shell_cpu, direct_cpu),
    }
