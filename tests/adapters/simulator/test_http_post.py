"""The simulator's minimal webhook POST client, against real TCP peers sending odd responses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from adapters.simulator.http_post import HTTPPostError, RawPoster
from tests.adapters.conftest import closed_port

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def peer(respond: Callable[[int], bytes], keep_open: bool = True) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A TCP server that reads each request and answers ``respond(n)`` for the n-th one."""
    seen: list[bytes] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        async with stream:
            try:
                while True:
                    head = await reader.receive_until(b"\r\n\r\n", 65536)
                    length = next(
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                    seen.append(head + b"\r\n\r\n" + await reader.receive_exactly(length))
                    await stream.send(respond(len(seen)))
                    if not keep_open:
                        return
            except (anyio.EndOfStream, anyio.IncompleteRead):
                return

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield f"http://127.0.0.1:{port}/hook?x=1", seen
        finally:
            tg.cancel_scope.cancel()


async def test_keep_alive_reuses_one_connection() -> None:
    """Two POSTs with Content-Length responses share a connection and carry method, path, headers and body."""
    async with peer(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as (url, seen):
        poster = RawPoster()
        assert await poster.post(url, b'{"a":1}', {"webhook-id": "m1"}) == 200
        assert await poster.post(url, b'{"a":2}', {}) == 200
        await poster.aclose()
    assert seen[0].startswith(b"POST /hook?x=1 HTTP/1.1\r\n") and b"webhook-id: m1" in seen[0]
    assert seen[0].endswith(b'{"a":1}') and seen[1].endswith(b'{"a":2}')


async def test_chunked_and_connection_close_bodies() -> None:
    """Chunked responses are read fully; a close-delimited body ends the connection."""
    chunked = b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    async with peer(lambda n: chunked) as (url, _):
        poster = RawPoster()
        assert [await poster.post(url, b"x", {}) for _ in range(2)] == [503, 503]
        await poster.aclose()
    async with peer(lambda n: b"HTTP/1.0 201 Created\r\n\r\nbody", keep_open=False) as (url, _):
        poster = RawPoster()
        assert [await poster.post(url, b"x", {}) for _ in range(2)] == [201, 201]
        await poster.aclose()


@pytest.mark.parametrize(
    "reply", [b"garbage\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"]
)
async def test_malformed_or_truncated_responses_raise(reply: bytes) -> None:
    """A malformed status line or a truncated body is an HTTPPostError (the sender retries)."""
    async with peer(lambda n: reply, keep_open=False) as (url, _):
        poster = RawPoster(timeout=2)
        with pytest.raises(HTTPPostError):
            await poster.post(url, b"x", {})
        await poster.aclose()


async def test_refused_connection_and_https_raise() -> None:
    """A closed port and a non-http URL are HTTPPostError with the URL in the message."""
    port = await closed_port()
    poster = RawPoster(timeout=2)
    with pytest.raises(HTTPPostError, match=f"127.0.0.1:{port}"):
        await poster.post(f"http://127.0.0.1:{port}/", b"x", {})
    with pytest.raises(HTTPPostError, match="http:// URLs only"):
        await poster.post("https://example.com/", b"x", {})
