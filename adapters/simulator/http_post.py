"""A minimal keep-alive HTTP/1.1 POST client for the simulator's outgoing webhooks (``http://`` only).

httpx's async connection pool costs more per request than the receivers we
test against, and its cost grows with concurrency, which made the simulator
the bottleneck of webhook benchmarks. Webhook delivery needs one thing —
POST a small body, read the status — so this client does only that, over
anyio TCP streams, with a pool of idle connections per host. Responses with
``Content-Length``, chunked bodies, or bodies delimited by closing the
connection are all read fully; anything unparsable is an error for the caller
to retry.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["HTTPPostError", "RawPoster"]

_MAX_HEADER = 64 * 1024
_MAX_BODY = 1024 * 1024


class HTTPPostError(Exception):
    """The request could not be completed (connection refused or dropped, malformed response, timeout)."""


class _Connection:
    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)


class RawPoster:
    """POSTs bodies to ``http://`` URLs over pooled keep-alive connections."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """Send one POST and return the response status; raise HTTPPostError on failure."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port or 80
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            request = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body
        except (ValueError, UnicodeEncodeError) as exc:
            raise HTTPPostError(f"cannot POST to {url!r}: {exc}") from None
        if parts.scheme != "http" or not host or any(c in target + parts.netloc for c in "\r\n "):
            raise HTTPPostError(f"RawPoster handles http:// URLs only, not {url!r}")
        pool = self._idle.setdefault((host, port), [])
        conn = pool.pop() if pool else None
        try:
            with anyio.fail_after(self.timeout):
                if conn is None:
                    conn = _Connection(await anyio.connect_tcp(host, port))
                await conn.stream.send(request)
                status, keep = await self._read_response(conn)
        except (
            OSError,
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            TimeoutError,
            anyio.DelimiterNotFound,
            ValueError,
        ) as exc:
            if conn is not None:
                await conn.stream.aclose()
            raise HTTPPostError(f"POST {url} failed: {exc!r}") from exc
        if keep:
            pool.append(conn)
        else:
            await conn.stream.aclose()
        return status

    @staticmethod
    async def _read_response(conn: _Connection) -> tuple[int, bool]:
        head = await conn.reader.receive_until(b"\r\n\r\n", _MAX_HEADER)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        version, code, *_ = status_line.split(" ", 2)
        status = int(code)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if "content-length" in headers:
            length = int(headers["content-length"])
            if length > _MAX_BODY:
                raise ValueError("response body too large")
            if length:
                await conn.reader.receive_exactly(length)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await conn.reader.receive_until(b"\r\n", 1024)).split(b";")[0], 16)
                await conn.reader.receive_exactly(size + 2)
                if size == 0:
                    break
        elif status not in (204, 304) and not 100 <= status < 200:
            while True:  # body delimited by the end of the connection
                try:
                    await conn.reader.receive()
                except anyio.EndOfStream:
                    break
            keep = False
        return status, keep

    async def aclose(self) -> None:
        """Close every idle connection."""
        for pool in self._idle.values():
            for conn in pool:
                await conn.stream.aclose()
        self._idle.clear()
