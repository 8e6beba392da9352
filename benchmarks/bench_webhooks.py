"""Webhook receiver throughput against a bare Starlette endpoint answering 200, same server, same load.

Each app runs in its own process (uvicorn, asyncio, h11, no access log), so
the server has a core of its own and the load generator is not measured as
part of it. The load generator, in this process, is a raw asyncio HTTP/1.1
keep-alive client: ``connections`` sockets, each sending its share of the
requests one after the other. Every request is a distinct Pronto-like
callback with its own ``webhook-id`` (fresh per run), so the receiver does the
full work each time: stream the body, check the content type, dedupe, parse
(msgspec typed decode), publish on an :class:`eventbus.bus.Bus` whose handler
subscriber counts the events, and answer 200 only after that.

* ``bare``: ``Route("/hooks/{provider}", endpoint)`` returning 200.
* ``receiver``: :class:`adapters.webhooks.WebhookReceiver`, bus in the same loop.
* ``receiver_bridged`` (extra): the bus on trio in the main thread, uvicorn in a
  background thread (:class:`adapters.serving.ServedApp`): every request crosses
  loops through ``anyio.from_thread``.

Target (issue 6): receiver >= 0.8x bare requests/s. Best of ``repeat``
interleaved runs. Because wall-clock rates swing with other load on the
machine, the server process's CPU time per request (user + system, via
psutil) is reported too, with the capacity ratio it implies.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
from typing import Any

import msgspec
import psutil

from benchmarks._util import ratio, rounded

NAME = "webhook_receiver"


class _Contact(msgspec.Struct):
    id: str
    firstname: str = ""
    lastname: str = ""


class _Callback(msgspec.Struct):
    enrichment_id: str
    status: str
    contact: _Contact
    result: dict[str, str] = {}


def _parse_pronto():
    """A Pronto-like sans-I/O webhook parser: one typed decode, one item event."""
    from eventbus import events as ev

    decode = msgspec.json.Decoder(_Callback).decode

    def parse(body: bytes, headers: Any) -> list[ev.Event]:
        c = decode(body)
        common = {
            "id": f"pronto:{c.enrichment_id}:item:{c.contact.id}",
            "provider": "pronto",
            "job_id": c.enrichment_id,
            "source": "webhook",
        }
        if c.status == "found":
            return [ev.ItemSucceeded(key=c.contact.id, outcome="found", data=c.result, **common)]
        return [ev.ItemFailed(key=c.contact.id, code=c.status, message=c.status, **common)]

    return parse


def _bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def endpoint(request: Any) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    return Starlette(routes=[Route("/hooks/{provider}", endpoint, methods=["POST"])])


class _ReceiverApp:
    """The receiver with a Bus opened for the server's lifetime through the ASGI lifespan."""

    def __init__(self) -> None:
        self.receiver: Any = None
        self.events = 0

    def _count(self, event: object) -> None:
        self.events += 1

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            from adapters.webhooks import WebhookReceiver
            from eventbus.bus import Bus

            await receive()  # startup
            async with Bus() as bus:
                bus.on(self._count, name="counter", buffer=10_000)
                self.receiver = WebhookReceiver(bus, {"pronto": _parse_pronto()})
                await send({"type": "lifespan.startup.complete"})
                await receive()  # shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        await self.receiver(scope, receive, send)


def _serve(kind: str, conn: Any) -> None:  # pragma: no cover - child process
    import anyio
    import uvicorn

    if kind == "receiver_bridged":
        from adapters.serving import ServedApp
        from adapters.webhooks import WebhookReceiver
        from eventbus.bus import Bus

        async def bridged() -> None:
            async with Bus() as bus:
                bus.on(lambda e: None, name="counter", buffer=10_000)
                receiver = WebhookReceiver(bus, {"pronto": _parse_pronto()})
                async with ServedApp(receiver, access_log=False) as served:
                    conn.send(served.port)
                    await anyio.sleep_forever()

        anyio.run(bridged, backend="trio")
        return
    app = _bare_app() if kind == "bare" else _ReceiverApp()
    # proto=IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted sockets; listening
    # now, so early connects wait in the backlog.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    conn.send(sock.getsockname()[1])
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off" if kind == "bare" else "on", http="h11"
    )
    uvicorn.Server(config).run(sockets=[sock])


def _requests(n: int, run_id: int) -> list[bytes]:
    out = []
    for i in range(n):
        body = msgspec.json.encode(
            {
                "enrichment_id": f"enr_{run_id}",
                "status": "found" if i % 5 else "not_found",
                "contact": {"id": f"c{i}", "firstname": "Ada", "lastname": "Lovelace", "company_name": "Acme"},
                "result": {"email": f"ada{i}@example.com"},
            }
        )
        head = (
            f"POST /hooks/pronto HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nwebhook-id: run{run_id}-msg{i}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def _load(port: int, requests: list[bytes], connections: int) -> float:
    """Send every request over ``connections`` keep-alive sockets; return requests per second."""

    async def worker(share: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in share:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected answer: {head[:60]!r}")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
        finally:
            writer.close()
            await writer.wait_closed()

    shares = [requests[i::connections] for i in range(connections)]
    started = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in shares))
    return len(requests) / (time.perf_counter() - started)


def run(quick: bool) -> dict:
    n = 3_000 if quick else 20_000
    repeat = 3 if quick else 5
    connections = 32
    ctx = multiprocessing.get_context("spawn")
    kinds = ["bare", "receiver", "receiver_bridged"]
    servers: dict[str, tuple[Any, int]] = {}
    best = dict.fromkeys(kinds, 0.0)
    cpu = dict.fromkeys(kinds, float("inf"))  # server CPU seconds per request (user + system), best run
    try:
        for kind in kinds:
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_serve, args=(kind, child), daemon=True)
            process.start()
            servers[kind] = (process, parent.recv())
        run_id = 0
        for _ in range(repeat):  # interleaved, so drift in machine load hits all alike
            for kind in kinds:
                run_id += 1
                requests = _requests(n, run_id)
                server = psutil.Process(servers[kind][0].pid)
                before = server.cpu_times()
                rate = asyncio.run(_load(servers[kind][1], requests, connections))
                after = server.cpu_times()
                best[kind] = max(best[kind], rate)
                used = (after.user - before.user) + (after.system - before.system)
                cpu[kind] = min(cpu[kind], used / n)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.join(10)
    return {
        "requests": n,
        "connections": connections,
        "load_generator": "raw asyncio HTTP/1.1 keep-alive client (this process); servers in their own processes",
        "bus": "eventbus.bus.Bus (one handler subscriber), in the server's loop",
        "bare_starlette_requests_per_s": rounded(best["bare"]),
        "receiver_requests_per_s": rounded(best["receiver"]),
        "receiver_bridged_trio_bus_requests_per_s": rounded(best["receiver_bridged"]),
        "ratio_receiver_vs_bare": ratio(best["receiver"], best["bare"]),
        "ratio_bridged_vs_bare": ratio(best["receiver_bridged"], best["bare"]),
        # Server CPU per request is far less sensitive than wall-clock rates to other
        # load on the machine; its inverse is the server's capacity in requests/s.
        "server_cpu_us_per_request": {k: round(v * 1e6, 1) for k, v in cpu.items()},
        "capacity_ratio_receiver_vs_bare": ratio(cpu["bare"], cpu["receiver"]),
        "capacity_ratio_bridged_vs_bare": ratio(cpu["bare"], cpu["receiver_bridged"]),
        "meets": {
            "receiver >= 0.8x bare Starlette (requests/s)": best["receiver"] >= 0.8 * best["bare"],
            "receiver >= 0.8x bare Starlette (server CPU capacity)": cpu["bare"] >= 0.8 * cpu["receiver"],
        },
    }
