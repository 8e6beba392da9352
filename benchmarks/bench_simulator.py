"""The simulator must never be the bottleneck: WebSocket progress events and outgoing webhooks per second.

* ``ws``: one Datananas bulk of N contacts with no simulated work; one
  ``websockets`` client counts frames until ``_ending``. Baseline: a bare
  ``websockets`` server in a process of its own sending N pre-encoded frames
  of the same shape to the same kind of client.
* ``webhooks``: Pronto bulks of 100 contacts; the simulator POSTs one webhook
  per contact to a receiver that answers 200 at once. Baseline: a plain
  ``httpx.AsyncClient`` loop in a process of its own POSTing the same number
  of bodies to the same receiver, with the simulator's concurrency (32) and
  with 4 connections (httpx's best here).

In each pair the sender (simulator or bare baseline) runs in a process of its
own and the receiving side (WebSocket client, webhook receiver) in this one,
so the ratios compare like with like on the same cores.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import httpx
import msgspec
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from adapters.serving import ServedApp
from benchmarks._util import ratio, rounded, simulator_process

NAME = "simulator"


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used: unlike wall time, hardly moved by other load on the host."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


@contextmanager
def _spawned(target: Callable[..., None], *args: object) -> Iterator[tuple[BaseProcess, Connection]]:
    """``target(*args, conn)`` in a spawned process of its own; yields it and the parent end of ``conn``.

    On the way out the child gets 30 s to finish, then is killed.
    """
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    try:
        yield proc, parent
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _ws_simulator(n: int) -> tuple[float, float]:
    """(events/s to the client, simulator CPU seconds spent) for n contacts."""
    with simulator_process() as (base, pid):
        urls = {"datananas_ws": base.replace("http", "ws", 1) + "/datananas/ws", "datananas": base + "/datananas"}

        async def main() -> tuple[int, float]:
            url = urls["datananas_ws"] + "?token=demo-token"
            bulks = range(0, n, 10_000)  # the endpoint's limit per request
            async with connect(url, max_size=1 << 20) as ws:
                started = time.perf_counter()
                async with httpx.AsyncClient() as client:
                    for start in bulks:
                        contacts = [{"email": f"b{i}@x.io"} for i in range(start, min(n, start + 10_000))]
                        r = await client.post(
                            urls["datananas"] + "/contacts/bulk",
                            json={"list": "L", "contacts": contacts},
                            headers={"authorization": "Bearer demo-token"},
                        )
                        assert r.status_code == 200, r.text
                count, endings = 0, 0
                async for raw in ws:
                    count += 1
                    if '"contact_bulk_create_ending"' in raw:
                        endings += 1
                        if endings == len(bulks):
                            break
                return count - 2 * len(bulks), time.perf_counter() - started

        cpu_before = _cpu(pid)
        count, elapsed = asyncio.run(main())
        cpu = _cpu(pid) - cpu_before
    assert count == n, count
    return n / elapsed, cpu


def _bare_ws_server(n: int, conn: Connection) -> None:
    """Child process: a bare ``websockets`` server sending n pre-encoded progress frames to one client."""
    frames = [
        msgspec.json.encode(
            {"event": "contact_bulk_create_running", "data": {"uuid": "u" * 36, "i": i, "total": n}}
        ).decode()
        for i in range(n)
    ]

    async def run() -> None:
        served = asyncio.Event()

        async def handler(ws) -> None:
            for frame in frames:
                await ws.send(frame)
            await ws.wait_closed()
            served.set()

        async with serve(handler, "127.0.0.1", 0) as server:
            conn.send(server.sockets[0].getsockname()[1])
            await served.wait()

    asyncio.run(run())


def _ws_baseline(n: int) -> tuple[float, float]:
    """(frames/s to the client, server CPU seconds spent) for n pre-encoded frames."""
    with _spawned(_bare_ws_server, n) as (proc, parent):
        if not parent.poll(60):
            raise RuntimeError("the bare websockets server did not start")
        port = parent.recv()
        cpu_before = _cpu(proc.pid)

        async def client() -> tuple[int, float]:
            count = 0
            async with connect(f"ws://127.0.0.1:{port}", max_size=1 << 20) as ws:
                started = time.perf_counter()
                async for _raw in ws:
                    count += 1
                    if count >= n:
                        break
                return count, time.perf_counter() - started

        count, elapsed = asyncio.run(client())
        cpu = _cpu(proc.pid) - cpu_before
    assert count == n
    return n / elapsed, cpu


class _Receiver:
    """A bare ASGI app answering 200 at once and counting POSTs (thread-safe wait)."""

    def __init__(self) -> None:
        self.count = 0
        self.cond = threading.Condition()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        with self.cond:
            self.count += 1
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 120) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= n, timeout)


def _webhooks_simulator(n: int) -> tuple[float, float]:
    """(webhooks/s arriving at the receiver, simulator CPU seconds spent) for n contacts."""
    receiver = _Receiver()
    with ServedApp(receiver) as served, simulator_process() as (base, pid):
        url = served.url + "/hook"
        cpu_before = _cpu(pid)
        started = time.perf_counter()
        with httpx.Client() as client:
            for start in range(0, n, 100):
                contacts = [
                    {"firstname": f"F{i}", "lastname": f"L{i}", "domain": "d.io"} for i in range(start, start + 100)
                ]
                r = client.post(
                    base + "/pronto/api/v2/contacts/bulk_enrich",
                    json={"contacts": contacts, "enrichment_type": ["email"], "webhook_url": url},
                    headers={"x-api-key": "demo-key"},
                )
                assert r.status_code == 202, r.text
        assert receiver.wait_for(n), f"only {receiver.count} of {n} webhooks arrived"
        return n / (time.perf_counter() - started), _cpu(pid) - cpu_before


def _httpx_sender(url: str, n: int, concurrency: int, conn: Connection) -> None:
    """Child process: a plain ``httpx.AsyncClient`` loop POSTing n webhook-sized bodies once told to go."""
    body = msgspec.json.encode(
        {
            "enrichment_id": "e" * 32,
            "status": "found",
            "contact": {"firstname": "F", "lastname": "L", "domain": "d.io"},
            "result": {"email": "f.l@d.io"},
        }
    )

    async def main() -> None:
        remaining = [n]
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(limits=limits) as client:

            async def worker() -> None:
                while remaining[0] > 0:
                    remaining[0] -= 1
                    r = await client.post(url, content=body, headers={"content-type": "application/json"})
                    assert r.status_code == 200

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    conn.send("ready")
    conn.recv()
    asyncio.run(main())


def _webhooks_baseline(n: int, concurrency: int) -> tuple[float, float]:
    """The same receiver, hit by a bare httpx loop in a process of its own (as the simulator is)."""
    receiver = _Receiver()
    with ServedApp(receiver) as served, _spawned(_httpx_sender, served.url + "/hook", n, concurrency) as (proc, parent):
        if not parent.poll(60) or parent.recv() != "ready":
            raise RuntimeError("the httpx sender did not start")
        cpu_before = _cpu(proc.pid)
        started = time.perf_counter()
        parent.send("go")
        assert receiver.wait_for(n), f"only {receiver.count} of {n} POSTs arrived"
        elapsed = time.perf_counter() - started
        cpu = _cpu(proc.pid) - cpu_before
    return n / elapsed, cpu


def run(quick: bool) -> dict:
    ws_n = 20_000 if quick else 100_000
    hook_n = 1_000 if quick else 5_000
    concurrency = 32
    ws_sim, ws_sim_cpu = max(_ws_simulator(ws_n) for _ in range(2))
    ws_base, ws_base_cpu = max(_ws_baseline(ws_n) for _ in range(2))
    hooks_sim, hooks_sim_cpu = _webhooks_simulator(hook_n)
    hooks_base, hooks_base_cpu = _webhooks_baseline(hook_n, concurrency)
    hooks_base4, hooks_base4_cpu = _webhooks_baseline(hook_n, 4)  # httpx does better with fewer connections

    def us_per(cpu: float, n: int) -> float:
        return round(cpu / n * 1e6, 1)

    return {
        "ws_frames": ws_n,
        "ws_simulator_events_per_s": rounded(ws_sim),
        "ws_bare_websockets_server_per_s": rounded(ws_base),
        "ratio_ws_simulator_vs_bare": ratio(ws_sim, ws_base),
        # Server-side CPU per frame: the load-independent view (wall-clock rates move with other load on the host).
        "ws_simulator_cpu_us_per_event": us_per(ws_sim_cpu, ws_n),
        "ws_bare_server_cpu_us_per_frame": us_per(ws_base_cpu, ws_n),
        "ws_simulator_cpu_bound_events_per_s": rounded(ws_n / ws_sim_cpu) if ws_sim_cpu else None,
        "webhooks": hook_n,
        "webhook_concurrency": concurrency,
        "webhooks_simulator_per_s": rounded(hooks_sim),
        "webhooks_bare_httpx_client_per_s": rounded(hooks_base),
        "ratio_webhooks_simulator_vs_bare": ratio(hooks_sim, hooks_base),
        "webhooks_bare_httpx_client_4_connections_per_s": rounded(hooks_base4),
        "ratio_webhooks_simulator_vs_bare_4_connections": ratio(hooks_sim, hooks_base4),
        "webhooks_simulator_cpu_us_per_post": us_per(hooks_sim_cpu, hook_n),
        "webhooks_bare_httpx_cpu_us_per_post": us_per(hooks_base_cpu, hook_n),
        "webhooks_bare_httpx_4_connections_cpu_us_per_post": us_per(hooks_base4_cpu, hook_n),
        "meets": {
            "ws >= 20,000 progress events/s to one client": ws_sim >= 20_000,
            "webhooks >= 1,000 POSTs/s": hooks_sim >= 1_000,
        },
    }
