"""WebSocketSource against real websockets servers on loopback, and the Correlator."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Self

import anyio
import anyio.abc
import httpx
import msgspec
import pytest
import trustme
import websockets.asyncio.server
import websockets.frames
import websockets.http11
import websockets.server
from websockets.datastructures import Headers
from websockets.http11 import Response

from adapters.backoff import Backoff
from adapters.simulator import Faults, Simulator, SimulatorConfig
from adapters.websocket import Correlator, WebSocketSource
from adapters.wsconn import WsConnection
from eventbus import events as ev
from eventbus.bus import Bus, Subscription
from eventbus.exceptions import ConfigError

# --- a Datananas-like frame parser (sans-I/O, as the provider module will be) ------------


class _Running(msgspec.Struct):
    uuid: str
    i: int
    total: int


class _Frame(msgspec.Struct):
    event: str
    data: _Running


_frame = msgspec.json.Decoder(_Frame)


def parse_frame(frame: str | bytes) -> list[ev.Event]:
    message = _frame.decode(frame)
    if message.event != "contact_bulk_create_running":
        raise ValueError(f"unknown event {message.event!r}")
    d = message.data
    return [
        ev.JobProgress(
            id=ev.event_id("datananas", d.uuid, "running", d.i),
            provider="datananas",
            job_id=d.uuid,
            source="websocket",
            done=d.i + 1,
            total=d.total,
        )
    ]


def frame(i: int, uuid: str = "u1", total: int = 100) -> str:
    return msgspec.json.encode(
        {"event": "contact_bulk_create_running", "data": {"uuid": uuid, "i": i, "total": total}}
    ).decode()


# --- real servers in a background thread with their own asyncio loop ---------------------

Handler = Callable[[websockets.asyncio.server.ServerConnection], Awaitable[None]]


class WsServer:
    """A real `websockets` server on loopback (asyncio-only, hence its own thread), counting connections."""

    def __init__(self, handler: Handler, **serve_options: object) -> None:
        self.handler = handler
        self.serve_options = serve_options
        self.connections = 0
        self.requests: list[tuple[str, str | None]] = []
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _serve(self, ws: websockets.asyncio.server.ServerConnection) -> None:
        self.connections += 1
        self.requests.append((ws.request.path, ws.request.headers.get("authorization")))
        await self.handler(ws)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        async with websockets.asyncio.server.serve(self._serve, "127.0.0.1", 0, **self.serve_options) as server:  # type: ignore[arg-type]
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._done.wait()

    @property
    def url(self) -> str:
        scheme = "wss" if self.serve_options.get("ssl") else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/ws"

    def __enter__(self) -> WsServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._done is not None
        self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(10)


class OneConnectionServer:
    """One WebSocket connection on a plain loopback socket, served in a thread by websockets' sans-I/O protocol.

    Subclasses say what to do with each frame the client sends (``on_frame``) and what of the
    protocol's output reaches the client (``send``: all of it here).
    """

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        conn, _ = self._sock.accept()
        protocol = websockets.server.ServerProtocol()
        with conn:
            while data := conn.recv(65536):  # until the client closes
                protocol.receive_data(data)
                for event in protocol.events_received():
                    if isinstance(event, websockets.http11.Request):
                        protocol.send_response(protocol.accept(event))
                    else:
                        self.on_frame(protocol, event)
                self.send(conn, protocol.data_to_send())

    def on_frame(self, protocol: websockets.server.ServerProtocol, received: websockets.frames.Frame) -> None:
        pass

    def send(self, conn: socket.socket, data: list[bytes]) -> None:
        for out in data:
            if out:
                conn.sendall(out)
            else:  # the closing handshake is done: the server closes TCP first
                conn.shutdown(socket.SHUT_WR)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(10)
        self._sock.close()


class SilentServer(OneConnectionServer):
    """Completes the handshake, then never answers anything (no pongs, no close)."""

    _accepted = False

    def send(self, conn: socket.socket, data: list[bytes]) -> None:
        if not self._accepted:  # the handshake response, then silence
            self._accepted = True
            super().send(conn, data)


class PingCountingServer(OneConnectionServer):
    """Answers pings (the protocol does), counts them, and sends one frame once it has answered ``pings``."""

    def __init__(self, pings: int) -> None:
        super().__init__()
        self._wanted = pings
        self.pings = 0

    def on_frame(self, protocol: websockets.server.ServerProtocol, received: websockets.frames.Frame) -> None:
        if received.opcode is websockets.frames.Opcode.PING:
            self.pings += 1
            if self.pings == self._wanted:
                protocol.send_text(frame(0).encode())


async def stay_open(ws: websockets.asyncio.server.ServerConnection) -> None:
    await ws.wait_closed()


def quick_backoff(max_attempts: int | None = 3) -> Backoff:
    return Backoff(base=0.001, cap=0.005, jitter=0.0, max_attempts=max_attempts)


@asynccontextmanager
async def watched(**source_options: object) -> AsyncIterator[tuple[Subscription, WebSocketSource]]:
    """A Bus with one subscription, and a running source publishing to it."""
    async with Bus() as bus, bus.subscribe("test", buffer=10_000) as sub:
        options = {"provider": "datananas", "backoff": quick_backoff(), "healthy_after": 60.0, **source_options}
        url = options.pop("url")
        async with WebSocketSource(url, parse_frame, bus, **options) as source:  # type: ignore[arg-type]
            with anyio.fail_after(10):
                yield sub, source


async def until_given_up(
    url: str, n: int, parse: Callable[[str | bytes], list[ev.Event]] = parse_frame, **source_options: object
) -> tuple[list[ev.Event], WebSocketSource]:
    """Run a source until run() returns by itself (it gave up); the first ``n`` events it published."""
    async with Bus() as bus, bus.subscribe("t", buffer=1000) as sub:
        options = {"provider": "datananas", **source_options}
        source = WebSocketSource(url, parse, bus, **options)  # type: ignore[arg-type]
        with anyio.fail_after(30):
            await source.run()
        return await take(sub, n), source


async def take(sub: Subscription, n: int) -> list[ev.Event]:
    with anyio.fail_after(10):  # fewer events than expected fails the test instead of hanging it
        return [await sub.receive() for _ in range(n)]


def shape(events: list[ev.Event]) -> list[object]:
    """Events as comparable tuples: states with attempt, progress by done, invalid by reason start."""
    out: list[object] = []
    for e in events:
        match e:
            case ev.SourceState():
                out.append((e.state, e.attempt))
            case ev.JobProgress():
                out.append(e.done)
            case ev.InvalidSignal():
                out.append("invalid")
    return out


pytestmark = pytest.mark.anyio


# --- frames ------------------------------------------------------------------------------


async def test_frames_are_delivered_in_order() -> None:
    """Every frame becomes its event on the bus, in the order sent, after a `connected` state."""

    async def send_50(ws: websockets.asyncio.server.ServerConnection) -> None:
        for i in range(50):
            await ws.send(frame(i))
        await ws.wait_closed()

    with WsServer(send_50) as server:
        async with watched(url=server.url) as (sub, source):
            events = await take(sub, 51)
    assert shape(events) == [("connected", 0), *range(1, 51)]
    assert source.frames == 50


async def test_malformed_frames_become_invalid_signals_and_the_connection_stays() -> None:
    """Garbage, invalid UTF-8 (binary or text) and unknown events give InvalidSignal; the connection stays."""

    async def mixed(ws: websockets.asyncio.server.ServerConnection) -> None:
        for message in (
            frame(0),
            "not json",
            b"\xff\xfe\x00",
            '{"event": "nope", "data": {"uuid": "u", "i": 0, "total": 1}}',
        ):
            await ws.send(message)
        await ws.send(b'{"event": "\xff"}', text=True)  # a text frame that is not UTF-8
        await ws.send(frame(1))
        await ws.wait_closed()

    with WsServer(mixed) as server:
        async with watched(url=server.url) as (sub, _):
            events = await take(sub, 7)
    assert shape(events) == [("connected", 0), 1, "invalid", "invalid", "invalid", "invalid", 2]
    assert events[4].reason == "datananas frame not usable: unknown event 'nope'"  # type: ignore[attr-defined]
    assert server.connections == 1


async def test_frame_nested_past_the_recursion_limit_is_one_invalid_signal() -> None:
    """A valid but deeply nested frame (msgspec raises RecursionError) is one InvalidSignal; the next frame arrives."""
    depth = sys.getrecursionlimit() + 1_000  # a few KB, far below max_size
    deep = '{"event": "contact_bulk_create_running", "data": {"uuid": "u1", "i": 0, "total": 1, "x": '
    deep += "[" * depth + "]" * depth + "}}"

    async def deep_then_valid(ws: websockets.asyncio.server.ServerConnection) -> None:
        await ws.send(deep)
        await ws.send(frame(1))
        await ws.wait_closed()

    with WsServer(deep_then_valid) as server:
        async with watched(url=server.url) as (sub, source):
            events = await take(sub, 3)
    assert shape(events) == [("connected", 0), "invalid", 2]
    assert events[1].reason == "datananas frame not usable: JSON nested too deeply to decode"  # type: ignore[attr-defined]
    assert server.connections == 1 and source.invalid == 1


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragments"])
async def test_oversize_message_is_reported_and_the_source_reconnects(fragmented: bool) -> None:
    """A message above max_size closes the connection (1009) with an InvalidSignal; the next connection goes on.

    In one (compressed) frame, max_size applies to the inflated size; in fragments each under the limit,
    to their sum. A fragmented message under the limit is reassembled and parsed as one.
    """

    async def big_then_fine(ws: websockets.asyncio.server.ServerConnection) -> None:
        if server.connections == 1:
            text = frame(0)
            await ws.send([text[:10], text[10:20], text[20:]] if fragmented else text)
            await ws.send(["x" * 600, "y" * 600] if fragmented else "x" * 5000)
        else:
            await ws.send(frame(1))
        await ws.wait_closed()

    # Uncompressed when fragmented, so the server really sends three and two frames.
    with WsServer(big_then_fine, **({"compression": None} if fragmented else {})) as server:
        async with watched(url=server.url, max_size=1024) as (sub, _):
            events = await take(sub, 7)
    assert shape(events) == [
        ("connected", 0),
        1,
        "invalid",
        ("disconnected", 0),
        ("reconnecting", 1),
        ("connected", 1),
        2,
    ]
    assert "max_size=1024" in events[2].reason  # type: ignore[attr-defined]


async def test_headers_and_token_are_sent_and_the_token_is_never_shown() -> None:
    """Headers go with the handshake, the token as a query parameter, and SourceState shows it redacted."""
    with WsServer(stay_open) as server:
        async with watched(url=server.url, headers={"Authorization": "Bearer abc"}, token="t0ps3cret") as (sub, _):
            [connected] = await take(sub, 1)
    assert server.requests == [("/ws?token=t0ps3cret", "Bearer abc")]
    assert connected.detail == f"{server.url}?token=***"  # type: ignore[attr-defined]
    assert "t0ps3cret" not in ev.encode(connected).decode()


# --- reconnecting ------------------------------------------------------------------------


async def test_server_close_after_n_frames_reconnects_and_calls_on_reconnect() -> None:
    """A close after 3 frames gives disconnected → reconnecting → connected, on_reconnect runs, frames resume."""
    recovered = anyio.Event()

    async def three_then_close(ws: websockets.asyncio.server.ServerConnection) -> None:
        first = server.connections == 1
        for i in range(3) if first else range(3, 6):
            await ws.send(frame(i))
        if first:
            await ws.close()
        else:
            await ws.wait_closed()

    with WsServer(three_then_close) as server:
        async with watched(url=server.url, on_reconnect=recovered.set) as (sub, _):
            events = await take(sub, 10)
            await recovered.wait()
    assert shape(events) == [
        ("connected", 0),
        1,
        2,
        3,
        ("disconnected", 0),
        ("reconnecting", 1),
        ("connected", 1),
        4,
        5,
        6,
    ]
    assert "closed by the server" in events[4].detail  # type: ignore[attr-defined]


async def test_accept_then_close_gives_up_after_max_attempts() -> None:
    """A server that accepts and closes at once gets exactly max_attempts retries, then `gave_up`."""

    async def close_at_once(ws: websockets.asyncio.server.ServerConnection) -> None:
        await ws.close()

    with WsServer(close_at_once) as server:
        events, source = await until_given_up(server.url, 12, backoff=quick_backoff(3))
    assert server.connections == 4
    assert shape(events) == [
        *[s for n in range(1, 4) for s in (("connected", n - 1), ("disconnected", n - 1), ("reconnecting", n))],
        ("connected", 3),
        ("disconnected", 3),
        ("gave_up", 3),
    ]
    assert source.state == "gave_up"


async def test_backoff_resets_only_after_a_healthy_connection() -> None:
    """With healthy_after=0 every connection counts as healthy, so each reconnect starts again at attempt 1."""

    async def close_at_once(ws: websockets.asyncio.server.ServerConnection) -> None:
        await ws.close()

    with WsServer(close_at_once) as server:
        async with watched(url=server.url, healthy_after=0.0, backoff=quick_backoff(2)) as (sub, _):
            events = await take(sub, 9)
    assert [a for s, a in shape(events) if s == "reconnecting"] == [1, 1, 1]  # never exhausts 2 attempts


async def test_unreachable_server_gives_up_without_ever_connecting() -> None:
    """Connection refused: reconnecting 1..N then gave_up, and the token stays redacted in every detail."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the source tries it
    events, _ = await until_given_up(f"ws://127.0.0.1:{port}/ws", 3, token="t0ps3cret", backoff=quick_backoff(2))
    assert shape(events) == [("reconnecting", 1), ("reconnecting", 2), ("gave_up", 2)]
    assert all("t0ps3cret" not in e.detail for e in events)  # type: ignore[attr-defined]
    assert "refused" in events[0].detail.lower() or "connect" in events[0].detail.lower()  # type: ignore[attr-defined]


async def test_ping_timeout_closes_the_connection() -> None:
    """A peer that never answers pings is dropped with a `ping timeout` disconnect."""
    with SilentServer() as server:
        events, _ = await until_given_up(
            f"ws://127.0.0.1:{server.port}/ws",
            3,
            ping_interval=0.05,
            ping_timeout=0.05,
            close_timeout=0.1,  # the silent peer will not answer the close handshake either
            backoff=quick_backoff(0),
        )
    assert shape(events) == [("connected", 0), ("disconnected", 0), ("gave_up", 0)]
    assert "ping timeout" in events[1].detail  # type: ignore[attr-defined]


async def test_answered_pings_keep_the_connection_up() -> None:
    """Each keepalive ping waits for its own pong; answered ones never count as a timeout."""
    with PingCountingServer(pings=3) as server:
        async with watched(url=f"ws://127.0.0.1:{server.port}/ws", ping_interval=0.01, ping_timeout=2.0) as (sub, _):
            events = await take(sub, 2)
    assert shape(events) == [("connected", 0), 1]  # no disconnect in between
    assert server.pings >= 3


async def test_closing_a_connection_ends_its_keepalive() -> None:
    """WsConnection.aclose() ends a keepalive() running beside it at once, not after its next ping."""
    with WsServer(stay_open) as server:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                async with await WsConnection.open(server.url) as conn:
                    tg.start_soon(conn.keepalive, 60.0, 60.0)
                    await anyio.wait_all_tasks_blocked()
            # the task group only closes once keepalive() has returned


async def test_stop_publishes_stopped_and_ends_run() -> None:
    """Leaving the source's context closes the connection and publishes `stopped`."""
    with WsServer(stay_open) as server:
        async with Bus() as bus, bus.subscribe("t", buffer=1000) as sub:
            with anyio.fail_after(10):
                async with WebSocketSource(server.url, parse_frame, bus, provider="datananas") as source:
                    await take(sub, 1)
                events = await take(sub, 1)
    assert shape(events) == [("stopped", 0)]
    assert source.state == "stopped"


async def test_closing_the_bus_ends_the_source_quietly() -> None:
    """When the bus is closed under a running source, run() returns instead of raising."""

    async def send_forever(ws: websockets.asyncio.server.ServerConnection) -> None:
        i = 0
        while True:
            await ws.send(frame(i))
            i += 1

    with WsServer(send_forever) as server:
        async with Bus() as bus:
            flowing = anyio.Event()
            bus.on(lambda e: flowing.set() if isinstance(e, ev.JobProgress) else None, name="watch")
            # close_timeout: the flooding server's close reply queues behind frames nobody reads any more.
            source = WebSocketSource(server.url, parse_frame, bus, provider="datananas", close_timeout=0.2)
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(source.run)
                    await flowing.wait()
                    await bus.aclose()
    assert source.state == "stopped"


# --- the connection: websockets' sans-I/O protocol over anyio streams ----------------------


@pytest.mark.parametrize("compression", [True, False])
async def test_permessage_deflate_is_offered_and_compressed_frames_are_read(compression: bool) -> None:
    """With compression on (the default) the server compresses what it sends, and it still parses; off, it does not."""
    negotiated: list[str] = []

    async def send_3(ws: websockets.asyncio.server.ServerConnection) -> None:
        negotiated.extend(ext.name for ext in ws.protocol.extensions)
        for i in range(3):
            await ws.send(frame(i) + " " * 2000)  # compressible padding
        await ws.wait_closed()

    with WsServer(send_3) as server:
        async with watched(url=server.url, compression=compression) as (sub, _):
            events = await take(sub, 4)
    assert shape(events) == [("connected", 0), 1, 2, 3]
    assert negotiated == (["permessage-deflate"] if compression else [])


async def test_server_pings_are_answered_and_stop_closes_with_1000() -> None:
    """The protocol answers the server's ping with a pong; leaving the source closes cleanly with code 1000."""
    ponged = threading.Event()
    close_codes: list[int | None] = []

    async def ping_then_wait(ws: websockets.asyncio.server.ServerConnection) -> None:
        waiter = await ws.ping(b"are you there")
        await asyncio.wait_for(waiter, 5)
        ponged.set()
        await ws.send(frame(0))
        await ws.wait_closed()
        close_codes.append(ws.close_code)

    with WsServer(ping_then_wait) as server:
        async with watched(url=server.url) as (sub, _):
            events = await take(sub, 2)
    assert shape(events) == [("connected", 0), 1]
    assert ponged.is_set()
    assert close_codes == [1000]


async def test_a_handshake_answered_503_is_a_failed_attempt_with_the_status() -> None:
    """A server answering 503 instead of 101 never counts as connected; it is retried; the detail names the status."""

    def refuse(_conn: object, _request: object) -> Response:
        return Response(503, "Service Unavailable", Headers(), b"busy")

    with WsServer(stay_open, process_request=refuse) as server:
        events, source = await until_given_up(server.url, 2, backoff=quick_backoff(1))
    assert shape(events) == [("reconnecting", 1), ("gave_up", 1)]
    assert "503" in events[0].detail  # type: ignore[attr-defined]
    assert source.connections == 0


@pytest.mark.parametrize(
    "status, why",
    [
        (401, "the credential was refused"),
        (403, "the credential was refused"),
        (404, "no such WebSocket endpoint: check the URL"),
    ],
)
async def test_a_handshake_refused_for_good_gives_up_at_once(status: int, why: str) -> None:
    """401/403 (the credential) and a 404 before ever connecting (the URL) come back on every attempt: the source
    gives up at the first, saying so (it retried for its whole budget, 30 s in follow(), then said only 403)."""

    def refuse(_conn: object, _request: object) -> Response:
        return Response(status, "No", Headers(), b"no")

    with WsServer(stay_open, process_request=refuse) as server:
        events, source = await until_given_up(server.url, 1, backoff=quick_backoff(8))
    assert shape(events) == [("gave_up", 0)]
    assert f"answered the handshake with HTTP {status}: {why}" in events[0].detail  # type: ignore[attr-defined]
    assert source.connections == 0


async def test_wss_with_a_trusted_certificate_and_refused_with_an_unknown_one() -> None:
    """TLS: frames flow when the CA is trusted (ssl_context); an untrusted certificate gives up at once."""
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def send_2(ws: websockets.asyncio.server.ServerConnection) -> None:
        await ws.send(frame(0))
        await ws.send(frame(1))
        await ws.wait_closed()

    with WsServer(send_2, ssl=server_context) as server:
        assert server.url.startswith("wss://")
        async with watched(url=server.url, ssl_context=client_context) as (sub, _):
            assert shape(await take(sub, 3)) == [("connected", 0), 1, 2]
        events, source = await until_given_up(server.url, 1, backoff=quick_backoff(5))
    # Given up at the first attempt (of 5 allowed): the same certificate would come back every time.
    assert shape(events) == [("gave_up", 0)] and source.connections == 0
    detail = events[0].detail  # type: ignore[attr-defined]
    assert "the TLS certificate of wss://127.0.0.1:" in detail and "is not trusted" in detail
    assert "certificate verify failed" in detail and "SSL_CERT_FILE" in detail
    with WsServer(send_2) as plain:  # an ssl_context does not turn TLS on for a ws:// URL
        async with watched(url=plain.url, ssl_context=client_context) as (sub, _):
            assert shape(await take(sub, 3)) == [("connected", 0), 1, 2]


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_a_server_that_closes_during_set_up_is_a_failed_attempt(scheme: str) -> None:
    """TCP accepted, then closed before TLS or the handshake: failed attempts, then gave_up; run() never raises."""

    async def close_at_once(client: anyio.abc.SocketStream) -> None:
        await client.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, close_at_once)
        events, source = await until_given_up(f"{scheme}://127.0.0.1:{port}/ws", 2, backoff=quick_backoff(1))
        tg.cancel_scope.cancel()
    assert shape(events) == [("reconnecting", 1), ("gave_up", 1)] and source.connections == 0
    why = {"ws": "did not receive a valid HTTP response", "wss": "the connection closed while being set up"}[scheme]
    assert why in events[0].detail  # type: ignore[attr-defined]


async def test_stop_while_blocked_on_a_full_subscriber_ends_cleanly() -> None:
    """Stopping while the source waits for room on the bus closes the connection (1000) and ends run()."""
    close_codes: list[int | None] = []

    async def send_10(ws: websockets.asyncio.server.ServerConnection) -> None:
        for i in range(10):
            await ws.send(frame(i))
        await ws.wait_closed()
        close_codes.append(ws.close_code)

    with WsServer(send_10) as server:
        async with Bus() as bus:
            release, first = anyio.Event(), anyio.Event()
            got: list[ev.Event] = []

            async def stuck(event: ev.Event) -> None:
                got.append(event)
                first.set()
                await release.wait()

            bus.on(stuck, name="stuck", buffer=1, types={ev.JobProgress})  # overflow=block: the source must wait
            source = WebSocketSource(server.url, parse_frame, bus, provider="datananas")
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(source.run)
                    await first.wait()
                    while source.frames < 3:  # frames come in as the network delivers them
                        await anyio.wait_all_tasks_blocked()
                    await anyio.wait_all_tasks_blocked()  # the handler holds one, the buffer one, the source waits
                    assert len(got) == 1
                    source.stop()
                release.set()
    assert source.state == "stopped"
    assert close_codes == [1000]
    assert [e.done for e in got][:1] == [1]  # type: ignore[attr-defined]


def test_a_malformed_url_is_refused_at_construction() -> None:
    """A URL that is not ws:// or wss:// raises ConfigError at once, with the token redacted."""
    with pytest.raises(ConfigError, match=r"not a WebSocket URL.*token=\*\*\*") as info:
        WebSocketSource("http://example.com/ws?token=s3cret", parse_frame, Bus(), provider="datananas")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "option, value",
    [
        ("ping_interval", 0.0),
        ("ping_interval", -1.0),
        ("ping_interval", float("nan")),
        ("ping_timeout", 0.0),
        ("open_timeout", float("nan")),
        ("close_timeout", float("inf")),
        ("healthy_after", float("nan")),
    ],
)
def test_timings_that_would_hot_loop_or_never_end_are_refused_at_construction(option: str, value: float) -> None:
    """Zero, negative, NaN or infinite timings raise ConfigError (a ping_interval of 0 pinged in a hot loop)."""
    with pytest.raises(ConfigError, match=rf"^WebSocketSource: {option} must be a finite number.*, not {value!r}$"):
        WebSocketSource("ws://127.0.0.1:9/ws", parse_frame, Bus(), provider="datananas", **{option: value})


# --- correlation -------------------------------------------------------------------------


async def test_source_holds_uncorrelated_frames_until_bind() -> None:
    """Frames for an unknown uuid wait in the correlator; bind() publishes them with the job id, in order."""

    async def early(ws: websockets.asyncio.server.ServerConnection) -> None:
        for i in range(3):
            await ws.send(frame(i, uuid="u1"))
        await ws.send(frame(0, uuid="u0"))  # already bound: passes straight through, marks "u1 frames were seen"
        await ws.wait_closed()

    correlator = Correlator(max_age=60)
    correlator.bind("u0", "job-0")
    with WsServer(early) as server:
        async with watched(url=server.url, correlator=correlator) as (sub, source):
            before = await take(sub, 2)
            assert len(correlator) == 3
            assert await source.bind("u1", "job-1") == 3
            after = await take(sub, 3)
    assert [(e.job_id, shape([e])) for e in before] == [("", [("connected", 0)]), ("job-0", [1])]
    assert [(e.job_id, e.done) for e in after] == [("job-1", 1), ("job-1", 2), ("job-1", 3)]  # type: ignore[attr-defined]


def progress(i: int, uuid: str) -> ev.JobProgress:
    return parse_frame(frame(i, uuid=uuid))[0]  # type: ignore[return-value]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_correlator_releases_held_events_rewritten_on_bind() -> None:
    """Held events come back from bind() with the job id, in arrival order; later ones pass straight through."""
    c = Correlator()
    assert c.admit(progress(0, "u1")) == [] and c.admit(progress(1, "u1")) == []
    released = c.bind("u1", "job-1")
    assert [(e.job_id, e.done) for e in released] == [("job-1", 1), ("job-1", 2)]  # type: ignore[attr-defined]
    assert [e.job_id for e in c.admit(progress(2, "u1"))] == ["job-1"]
    assert len(c) == 0


def test_correlator_passes_events_without_a_key() -> None:
    """An event whose key is None is never held."""
    c = Correlator(key=lambda e: None)
    e = progress(0, "u1")
    assert c.admit(e) == [e]


def test_correlator_reports_events_that_wait_too_long() -> None:
    """After max_age an unclaimed id's events are dropped and reported as one uncorrelated InvalidSignal."""
    clock = Clock()
    c = Correlator(max_age=5, clock=clock)
    c.admit(progress(0, "u1"))
    clock.now = 3
    c.admit(progress(0, "u2"))
    assert c.expire() == []
    clock.now = 5
    [signal] = c.expire()
    assert isinstance(signal, ev.InvalidSignal)
    assert signal.reason == "uncorrelated event(s): 1 event(s) for 'u1' dropped: no submission claimed it within 5s"
    assert len(c) == 1 and c.bind("u1", "late") == []


def test_correlator_is_bounded_in_count() -> None:
    """Past max_events the oldest id's events are dropped and reported; the newest are kept."""
    c = Correlator(max_events=3)
    for i in range(2):
        c.admit(progress(i, "u1"))
    c.admit(progress(0, "u2"))
    [signal] = c.admit(progress(1, "u2"))
    assert "2 event(s) for 'u1'" in signal.reason and "buffer of 3" in signal.reason  # type: ignore[attr-defined]
    assert len(c) == 2 and len(c.bind("u2", "j")) == 2


@pytest.mark.parametrize("max_age", [0.0, -1.0, float("nan")])
def test_correlator_refuses_an_age_limit_that_is_not_positive(max_age: float) -> None:
    """max_age must be > 0; NaN (which compares false with everything) is refused too."""
    with pytest.raises(ConfigError, match="max_age"):
        Correlator(max_age=max_age)


def test_correlator_timeout_handler_is_configurable() -> None:
    """on_timeout decides what an expired id becomes (here: nothing)."""
    clock = Clock()
    seen: list[tuple[str, int]] = []
    c = Correlator(max_age=1, clock=clock, on_timeout=lambda cid, held, why: seen.append((cid, len(held))) or [])
    c.admit(progress(0, "u1"))
    clock.now = 2
    assert c.expire() == [] and seen == [("u1", 1)]


# --- against the provider simulator's Datananas WebSocket ---------------------------------


class _Payload(msgspec.Struct):
    uuid: str
    i: int = -1
    total: int = 0
    created: int = 0
    updated: int = 0


class _DatananasFrame(msgspec.Struct):
    event: str
    data: _Payload


_datananas = msgspec.json.Decoder(_DatananasFrame)


def parse_datananas(frame: str | bytes) -> list[ev.Event]:
    """A minimal Datananas frame parser (the real one lives in adapters/providers)."""
    m = _datananas.decode(frame)
    d = m.data
    common = {"provider": "datananas", "job_id": d.uuid, "source": "websocket"}
    match m.event:
        case "contact_bulk_create_starting":
            return [ev.JobAccepted(id=ev.event_id("datananas", d.uuid, "accepted"), **common)]
        case "contact_bulk_create_running":
            return [
                ev.JobProgress(id=ev.event_id("datananas", d.uuid, "i", d.i), done=d.i + 1, total=d.total, **common)
            ]
        case "contact_bulk_create_ending":
            return [
                ev.JobCompleted(
                    id=ev.event_id("datananas", d.uuid, "done"),
                    created=d.created,
                    updated=d.updated,
                    succeeded=d.created + d.updated,
                    **common,
                )
            ]
    raise ValueError(f"unknown Datananas event {m.event!r}")


async def submit_datananas(simulator: Simulator, n: int) -> str:
    async with httpx.AsyncClient() as client:
        r = await client.post(
            simulator.urls["datananas"] + "/contacts/bulk",
            headers={"Authorization": "Bearer demo-token"},
            json={"list": "l1", "contacts": [{"email": f"c{i}@example.com"} for i in range(n)]},
        )
    assert r.status_code == 200, r.text
    return r.json()["uuid"]


async def test_simulated_datananas_job_is_followed_with_early_events_correlated(simulator: Simulator) -> None:
    """Frames before bind() wait in the correlator (they may precede the HTTP answer); all arrive in order."""
    async with Bus() as bus, bus.subscribe("t", buffer=10_000) as sub:
        source = WebSocketSource(
            simulator.urls["datananas_ws"],
            parse_datananas,
            bus,
            provider="datananas",
            token="demo-token",
            correlator=Correlator(max_age=60),
        )
        async with source:
            with anyio.fail_after(30):
                assert shape(await take(sub, 1)) == [("connected", 0)]
                uuid = await submit_datananas(simulator, 300)
                await source.bind(uuid, uuid)  # releases whatever arrived before the HTTP answer
                events = []
                while not events or not isinstance(events[-1], ev.JobCompleted):
                    events.append(await sub.receive())
    assert isinstance(events[0], ev.JobAccepted)
    assert [e.done for e in events[1:-1]] == list(range(1, 301))  # type: ignore[attr-defined]
    assert (events[-1].created, events[-1].updated) == (300, 0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("sim_config", [SimulatorConfig(item_time=0.0001, tick=0.005, faults=Faults(ws_drop_after=40))])
async def test_simulated_drop_after_n_frames_reconnects_and_asks_for_recovery(simulator: Simulator) -> None:
    """The simulator drops the socket after 40 frames: the source reconnects and calls on_reconnect."""
    recovered = anyio.Event()
    async with Bus() as bus, bus.subscribe("t", buffer=10_000) as sub:
        source = WebSocketSource(
            simulator.urls["datananas_ws"],
            parse_datananas,
            bus,
            provider="datananas",
            token="demo-token",
            backoff=quick_backoff(None),
            on_reconnect=recovered.set,
        )
        async with source:
            with anyio.fail_after(30):
                await take(sub, 1)
                await submit_datananas(simulator, 300)
                seen: list[ev.Event] = []
                while shape(seen[-1:]) != [("connected", 1)]:
                    seen.append(await sub.receive())
                await recovered.wait()
    states = [s for s in shape(seen) if isinstance(s, tuple)]
    assert states == [("disconnected", 0), ("reconnecting", 1), ("connected", 1)]
    assert "1011" in next(e.detail for e in seen if isinstance(e, ev.SourceState))
    done = [e.done for e in seen if isinstance(e, ev.JobProgress)]
    assert done == sorted(set(done)) and len(done) <= 40


@pytest.mark.parametrize(
    "sim_config", [SimulatorConfig(item_time=0.0001, tick=0.005, faults=Faults(ws_accept_then_close=True))]
)
async def test_simulated_accept_then_close_costs_bounded_attempts(simulator: Simulator) -> None:
    """Against the simulator's accept-then-close fault the source makes max_attempts retries, then gives up."""
    events, _ = await until_given_up(
        simulator.urls["datananas_ws"], 12, parse_datananas, token="demo-token", backoff=quick_backoff(3)
    )
    assert [s for s, _ in shape(events)].count("connected") == 4
    assert shape(events)[-1] == ("gave_up", 3)
