"""The journal: what writing every event to SQLite before delivering it costs, against SQLite doing only that.

Measured in the same run, each over the same events:

- ``memory_bus``: ``Bus()`` with one handler, events published with
  ``publish_nowait`` (``publish`` when the buffer is full), until ``drain``;
- ``journaled_bus``: the same on ``Bus(journal=...)``, so each event is also
  encoded and written (batches of up to 1,000 per transaction, in a worker
  thread) before the handler sees it;
- ``raw_sqlite``: the baseline, the least SQLite does for the same rows:
  ``msgspec`` encodes the events and ``executemany`` inserts them, 1,000 per
  transaction, same table and pragmas (WAL, synchronous=NORMAL), in the
  calling thread, no bus;
- ``durable_replay``: a durable handler reading every event back from the
  journal into the bus (decode, filters, buffer, handler) against ``raw_select``,
  a ``SELECT`` of the bodies decoded with ``msgspec``;
- ``awaited_publish``: a publisher that awaits each event alone (``await
  bus.publish``, so one commit per event) against ``raw_commit_per_event``,
  one transaction per row with a hop to a worker thread per commit, as the
  journal makes it.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import anyio
import msgspec

from benchmarks._util import ratio
from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.journal import _CREATE, _INSERT

NAME = "journal"


def _events(n: int) -> list[ev.Event]:
    return [
        ev.JobProgress(id=f"pronto:job-{i % 10}:{i}", provider="pronto", job_id=f"job-{i % 10}", source="poll", done=i)
        for i in range(n)
    ]


async def _publish_all(bus: Bus, events: list[ev.Event]) -> None:
    publish_nowait = bus.publish_nowait
    for event in events:
        try:
            publish_nowait(event)
        except anyio.WouldBlock:
            await bus.publish(event)
    await bus.drain()


def _bus_rate(events: list[ev.Event], journal: Path | None) -> tuple[float, float]:
    """(events per wall second, per CPU second) from the first publish until the handler has them all."""

    async def main() -> tuple[float, float]:
        got: list[ev.Event] = []
        async with Bus(journal=journal) as bus:
            bus.on(got.append, name="h", buffer=65_536)
            wall, cpu = time.perf_counter(), time.process_time()
            await _publish_all(bus, events)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert len(got) == len(events)
        return len(events) / wall, len(events) / cpu

    return anyio.run(main)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for statement in _CREATE:
        conn.execute(statement)
    return conn


def _raw_rate(events: list[ev.Event], path: Path) -> tuple[float, float]:
    """The baseline: encode + executemany in batches of 1,000, one transaction each, no bus, no thread."""
    conn = _connect(path)
    encode = msgspec.json.Encoder().encode
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(events), 1000):
        rows = [
            (e.id, ev.tag_of(type(e)), e.provider, e.job_id, e.at.timestamp(), encode(e))
            for e in events[start : start + 1000]
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    conn.close()
    return len(events) / wall, len(events) / cpu


def _replay_rate(path: Path, n: int, name: str) -> float:
    """Events per wall second a durable handler gets from the journal (start=0: all of it)."""

    async def main() -> float:
        got: list[ev.Event] = []
        async with Bus(journal=path) as bus:
            wall = time.perf_counter()
            bus.on(got.append, name=name, durable=True, start=0, buffer=65_536)
            await bus.drain()
            wall = time.perf_counter() - wall
        assert len(got) == n, (len(got), n)
        return n / wall

    return anyio.run(main)


def _raw_select_rate(path: Path, n: int) -> float:
    conn = sqlite3.connect(path)
    decoder = msgspec.json.Decoder(ev.AnyEvent)
    wall = time.perf_counter()
    out = [decoder.decode(body) for (body,) in conn.execute("SELECT body FROM events ORDER BY seq")]
    wall = time.perf_counter() - wall
    conn.close()
    assert len(out) == n
    return n / wall


def _awaited_rate(events: list[ev.Event], path: Path) -> float:
    async def main() -> float:
        async with Bus(journal=path) as bus:
            wall = time.perf_counter()
            for event in events:
                await bus.publish(event)
            return len(events) / (time.perf_counter() - wall)

    return anyio.run(main)


def _raw_commit_rate(events: list[ev.Event], path: Path) -> float:
    conn = _connect(path)
    encode = msgspec.json.Encoder().encode

    def write(e: ev.Event) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_INSERT, (e.id, ev.tag_of(type(e)), e.provider, e.job_id, e.at.timestamp(), encode(e)))
        conn.execute("COMMIT")

    async def main() -> float:
        wall = time.perf_counter()
        for event in events:
            await anyio.to_thread.run_sync(write, event)
        return len(events) / (time.perf_counter() - wall)

    try:
        return anyio.run(main)
    finally:
        conn.close()


def run(quick: bool) -> dict:
    n = 20_000 if quick else 200_000
    one_by_one = 500 if quick else 3000
    events = _events(n)
    rounds = 2 if quick else 3
    best: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for r in range(rounds):  # interleaved, so that the machine's load weighs on each alike
            for name, fn in (
                ("memory_bus", lambda: _bus_rate(events, None)),
                ("journaled_bus", lambda r=r: _bus_rate(events, root / f"bus-{r}.db")),
                ("raw_sqlite", lambda r=r: _raw_rate(events, root / f"raw-{r}.db")),
            ):
                wall, cpu = fn()
                old = best.get(name, (0.0, 0.0))
                best[name] = (max(old[0], wall), max(old[1], cpu))
        replay = max(_replay_rate(root / "bus-0.db", n, f"replayer-{r}") for r in range(rounds))
        select = max(_raw_select_rate(root / "bus-0.db", n) for _ in range(rounds))
        awaited = _awaited_rate(events[:one_by_one], root / "awaited.db")
        raw_commit = _raw_commit_rate(events[:one_by_one], root / "commit.db")
    rates = {name: {"events_per_s": round(w), "events_per_cpu_s": round(c)} for name, (w, c) in best.items()}
    return {
        "events": n,
        **rates,
        "journaled_vs_raw_sqlite_cpu": ratio(best["raw_sqlite"][1], best["journaled_bus"][1]),
        "journaled_vs_memory_bus_wall": ratio(best["memory_bus"][0], best["journaled_bus"][0]),
        "durable_replay_events_per_s": round(replay),
        "raw_select_decode_events_per_s": round(select),
        "replay_vs_raw_select": ratio(select, replay),
        "awaited_publish": {
            "events": one_by_one,
            "journaled_bus_events_per_s": round(awaited),
            "raw_commit_per_event_in_a_thread_events_per_s": round(raw_commit),
            "ratio": ratio(raw_commit, awaited),
        },
    }
