"""RedisBus: what publishing through the bus to a handler costs, against redis-py doing only the Redis part.

Measured in the same run, against a ``redis-server`` this module starts on a
free port (no persistence), each over the same events:

- ``redis_bus``: ``RedisBus`` with one handler; events published with
  ``publish_nowait`` (``publish`` when its queue is full) until ``drain``:
  the writer pipelines XADDs, the reader XREADGROUPs, decodes, filters,
  hands over and XACKs;
- ``raw_redis``: the baseline, the least redis-py does for the same entries:
  a task XADDs the encoded events in pipelines of 500 while another
  XREADGROUPs 500 at a time, decodes them with ``msgspec`` and XACKs them,
  same fields, same connection settings, no bus.

Without ``redis-server`` on PATH it returns ``{"skipped": "redis-server not found"}``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from benchmarks._util import ratio
from eventbus import events as ev

NAME = "redis"

_BATCH = 500


def _events(n: int) -> list[ev.Event]:
    return [
        ev.JobProgress(id=f"pronto:job-{i % 10}:{i}", provider="pronto", job_id=f"job-{i % 10}", source="poll", done=i)
        for i in range(n)
    ]


@contextmanager
def _redis_server(path: str) -> Iterator[str]:
    """A redis-server of our own on a free port; yields its URL once it answers PING."""
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp]
        proc = subprocess.Popen([path, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start on port {port}") from None
                    time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            client.close()
            proc.terminate()
            proc.wait(10)


def _bus_rate(url: str, stream: str, events: list[ev.Event]) -> tuple[float, float]:
    """(events per wall second, per CPU second of this process) from the first publish until drain."""
    from eventbus.backends.redis import RedisBus

    async def main() -> tuple[float, float]:
        got: list[ev.Event] = []
        async with RedisBus(url, stream=stream, maxlen=None, batch=_BATCH) as bus:
            bus.on(got.append, name="h", buffer=_BATCH * 4)
            await bus.publish(events[0])
            await bus.drain()
            wall, cpu = time.perf_counter(), time.process_time()
            for event in events[1:]:
                try:
                    bus.publish_nowait(event)
                except anyio.WouldBlock:
                    await bus.publish(event)
            await bus.drain()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert len(got) == len(events), (len(got), len(events))
        return (len(events) - 1) / wall, (len(events) - 1) / cpu

    return anyio.run(main, backend="asyncio")


def _raw_rate(url: str, stream: str, events: list[ev.Event]) -> tuple[float, float]:
    """The baseline: pipelined XADD in one task, XREADGROUP + decode + XACK in another, redis-py directly."""
    import msgspec
    import redis.asyncio as aioredis

    async def main() -> tuple[float, float]:
        client = aioredis.Redis.from_url(url)
        await client.xgroup_create(stream, "h", id="$", mkstream=True)
        decode = msgspec.json.Decoder(ev.AnyEvent).decode
        got = 0

        async def write() -> None:
            for start in range(0, len(events), _BATCH):
                async with client.pipeline(transaction=False) as pipe:
                    for event in events[start : start + _BATCH]:
                        pipe.xadd(stream, {"e": ev.encode(event), "t": ev.tag_of(type(event))})
                    await pipe.execute()

        async def read() -> None:
            nonlocal got
            while got < len(events):
                reply = await client.xreadgroup("h", "c", {stream: ">"}, count=_BATCH, block=1000)
                for _key, entries in reply or ():
                    for _id, fields in entries:
                        decode(fields[b"e"])
                    await client.xack(stream, "h", *[i for i, _ in entries])
                    got += len(entries)

        wall, cpu = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            tg.start_soon(write)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await client.aclose()
        return len(events) / wall, len(events) / cpu

    return anyio.run(main, backend="asyncio")


def run(quick: bool) -> dict:
    path = shutil.which("redis-server")
    if path is None:
        return {"skipped": "redis-server not found"}
    n = 10_000 if quick else 100_000
    rounds = 2 if quick else 3
    events = _events(n)
    best: dict[str, tuple[float, float]] = {}
    with _redis_server(path) as url:
        for r in range(rounds):  # interleaved, so that the machine's load weighs on each alike
            for name, fn in (
                ("redis_bus", lambda r=r: _bus_rate(url, f"bench-bus-{r}", events)),
                ("raw_redis", lambda r=r: _raw_rate(url, f"bench-raw-{r}", events)),
            ):
                wall, cpu = fn()
                old = best.get(name, (0.0, 0.0))
                best[name] = (max(old[0], wall), max(old[1], cpu))
    rates = {name: {"events_per_s": round(w), "events_per_cpu_s": round(c)} for name, (w, c) in best.items()}
    return {
        "events": n,
        **rates,
        "redis_bus_vs_raw_redis_wall": ratio(best["raw_redis"][0], best["redis_bus"][0]),
        "redis_bus_vs_raw_redis_cpu": ratio(best["raw_redis"][1], best["redis_bus"][1]),
    }
