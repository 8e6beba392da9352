"""The WebSocket source through an HTTP CONNECT proxy (a small real one on loopback), on asyncio and trio.

The proxy reads the CONNECT request, records it, then either answers as
scripted (a refusal, garbage, silence) or opens the tunnel and pipes bytes
both ways, so ws:// and wss:// (TLS inside the tunnel) run end to end.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import pytest
import trustme

from adapters.providers.datananas import parse_frame
from adapters.websocket import WebSocketSource
from eventbus.exceptions import ConfigError
from tests.adapters.test_websocket import WsServer, frame, quick_backoff, shape, take, until_given_up, watched

pytestmark = pytest.mark.anyio

_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)


@dataclass
class ConnectProxy:
    port: int
    answer: bytes | None = None  # scripted: sent instead of opening the tunnel (b"" closes at once)
    requests: list[bytes] = field(default_factory=list)  # each CONNECT request's head

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _pipe(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream, done: anyio.abc.CancelScope) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except _GONE:
        pass
    done.cancel()  # one side ended: the tunnel is over


@asynccontextmanager
async def connect_proxy(answer: bytes | None = None) -> AsyncIterator[ConnectProxy]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    proxy = ConnectProxy(listener.extra(anyio.abc.SocketAttribute.local_port), answer)

    async def handle(client: anyio.abc.SocketStream) -> None:
        async with client:
            head = b""
            while b"\r\n\r\n" not in head:
                try:
                    head += await client.receive()
                except _GONE:
                    return
            request, _, rest = head.partition(b"\r\n\r\n")
            proxy.requests.append(request)
            if proxy.answer is not None:
                if proxy.answer:
                    await client.send(proxy.answer)
                return
            host, _, port = request.split(b" ")[1].decode().rpartition(":")
            async with await anyio.connect_tcp(host, int(port)) as upstream:
                await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    await upstream.send(rest)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_pipe, client, upstream, tg.cancel_scope)
                    tg.start_soon(_pipe, upstream, client, tg.cancel_scope)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield proxy
        tg.cancel_scope.cancel()


async def send_2(ws: object) -> None:
    await ws.send(frame(0))  # type: ignore[attr-defined]
    await ws.send(frame(1))  # type: ignore[attr-defined]
    await ws.wait_closed()  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says which proxy (if any) the environment names."""
    for name in ("ws_proxy", "wss_proxy", "http_proxy", "https_proxy", "all_proxy", "socks_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def test_ws_through_an_explicit_proxy() -> None:
    """proxy="http://..." tunnels with CONNECT host:port (and a Host header); frames flow as without it."""
    with WsServer(send_2) as server:
        async with connect_proxy() as proxy, watched(url=server.url, proxy=proxy.url) as (sub, _):
            assert shape(await take(sub, 3)) == [("connected", 0), 1, 2]
    (request,) = proxy.requests
    assert request.startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n".encode())
    assert f"\r\nHost: 127.0.0.1:{server.port}".encode() in request and b"Proxy-Authorization" not in request


async def test_wss_through_a_proxy_keeps_tls_end_to_end() -> None:
    """wss:// through the tunnel: TLS with the server inside it (the proxy sees only the CONNECT)."""
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with WsServer(send_2, ssl=server_context) as server:
        async with connect_proxy() as proxy:
            async with watched(url=server.url, proxy=proxy.url, ssl_context=client_context) as (sub, _):
                assert shape(await take(sub, 3)) == [("connected", 0), 1, 2]
            events, source = await until_given_up(server.url, 1, proxy=proxy.url, backoff=quick_backoff(5))
    assert len(proxy.requests) == 2 and source.connections == 0  # the untrusted CA: refused inside the tunnel too
    assert "is not trusted (certificate verify failed" in events[0].detail  # type: ignore[attr-defined]


@pytest.mark.parametrize("variable", ["ws_proxy", "HTTP_PROXY", "https_proxy"])
async def test_the_environments_proxy_is_used_unless_no_proxy_says_otherwise(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default the proxy comes from the environment, as for httpx; NO_PROXY for the host connects directly."""
    with WsServer(send_2) as server:
        async with connect_proxy() as proxy:
            monkeypatch.setenv(variable, proxy.url)
            async with watched(url=server.url) as (sub, _):
                assert shape(await take(sub, 3)) == [("connected", 0), 1, 2]
            assert len(proxy.requests) == 1
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            async with watched(url=server.url) as (sub, _):
                assert shape(await take(sub, 3)) == [("connected", 0), 1, 2]
            monkeypatch.delenv("NO_PROXY")
            async with watched(url=server.url, proxy=None) as (sub, _):  # None: never a proxy
                assert shape(await take(sub, 3)) == [("connected", 0), 1, 2]
            assert len(proxy.requests) == 1 and server.connections == 3


async def test_proxy_credentials_go_in_a_header_and_never_in_a_detail() -> None:
    """user:password@ becomes Proxy-Authorization: Basic; a 407 is a failed attempt whose detail has no password."""
    refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
    with WsServer(send_2) as server:
        async with connect_proxy(answer=refusal) as proxy:
            address = f"http://alice:s3cret@127.0.0.1:{proxy.port}"
            events, source = await until_given_up(server.url, 2, proxy=address, backoff=quick_backoff(1))
    assert shape(events) == [("reconnecting", 1), ("gave_up", 1)] and source.connections == 0
    detail = events[0].detail  # type: ignore[attr-defined]
    target = f"127.0.0.1:{server.port}"
    assert f"ProxyError: the proxy http://127.0.0.1:{proxy.port} refused the tunnel to {target}: " in detail
    assert "407 Proxy Authentication Required" in detail
    assert all("s3cret" not in e.detail for e in events)  # type: ignore[attr-defined]
    assert b"Proxy-Authorization: Basic " + base64.b64encode(b"alice:s3cret") in proxy.requests[0]
    assert server.connections == 0


@pytest.mark.parametrize(
    "answer, reason",
    [
        (b"", "closed the connection without answering CONNECT"),
        (b"hello there\r\n\r\n", "answered CONNECT with no HTTP status: 'hello there'"),
        (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "refused the tunnel to 127.0.0.1:"),
        (b"HTTP/1.1 200 OK\r\n\r\nsurprise", "sent data after its answer to CONNECT"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"x" * 20_000, "answered CONNECT with more than 16384 bytes"),
    ],
    ids=["silent", "garbage", "502", "data-after", "oversized"],
)
async def test_bad_proxy_answers_are_failed_attempts_that_say_why(answer: bytes, reason: str) -> None:
    """Whatever the proxy answers instead of a tunnel, the attempt fails with a reason; nothing crashes."""
    with WsServer(send_2) as server:
        async with connect_proxy(answer=answer) as proxy:
            events, source = await until_given_up(server.url, 2, proxy=proxy.url, backoff=quick_backoff(1))
    assert shape(events) == [("reconnecting", 1), ("gave_up", 1)] and source.connections == 0
    assert reason in events[0].detail  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "proxy, message",
    [
        ("socks5://bob:s3cret@127.0.0.1:1080", "socks5 proxies are not supported for WebSockets (socks5://***@"),
        ("http://bob@127.0.0.1:3128", "not a usable proxy address 'http://***@127.0.0.1:3128': username provided"),
        ("http://127.0.0.1:3128/path", "not a usable proxy address 'http://127.0.0.1:3128/path': path is meaningless"),
    ],
    ids=["socks", "user-without-password", "path"],
)
def test_an_unusable_proxy_is_a_config_error_at_once(proxy: str, message: str) -> None:
    """Given explicitly, a proxy that cannot be used is refused when the source is built, password hidden."""
    with pytest.raises(ConfigError) as info:
        WebSocketSource("ws://example.invalid/ws", parse_frame, object(), provider="datananas", proxy=proxy)  # type: ignore[arg-type]
    assert message in str(info.value) and "s3cret" not in str(info.value)


async def test_a_socks_proxy_from_the_environment_is_a_failed_attempt_that_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The environment naming a SOCKS proxy: the attempt fails saying so (it is not silently bypassed)."""
    monkeypatch.setenv("SOCKS_PROXY", "socks5://127.0.0.1:9")
    with WsServer(send_2) as server:
        events, _ = await until_given_up(server.url, 2, backoff=quick_backoff(1))
    assert "socks5 proxies are not supported for WebSockets" in events[0].detail  # type: ignore[attr-defined]
    assert server.connections == 0
