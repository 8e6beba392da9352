"""One WebSocket client connection: websockets' sans-I/O protocol driven over an anyio byte stream.

:class:`adapters.websocket.WebSocketSource` reads through this instead of
``websockets.asyncio`` / ``websockets.trio`` connections, for two reasons:

* **Throughput.** The runtime connections hand over one message per
  ``recv()`` call, each through a future, an assembler queue and a
  flow-control check. Here one network read (up to 64 KiB) is fed to
  :class:`websockets.client.ClientProtocol` and every message it completed
  comes back as one list: the per-message cost is the protocol's frame parser
  and nothing else (``docs/benchmarks.md``, ``websocket_ingest``).
* **One code path on asyncio and trio.** anyio's streams run on both, so the
  source behaves the same under either loop (TLS included).

What the runtime connections did and this keeps: the opening handshake
(extra headers, permessage-deflate offered), ``max_size`` on whole messages
(the protocol closes with 1009 past it), fragmented messages reassembled,
pings answered (by the protocol), keepalive pings with a pong timeout (1011
``keepalive ping timeout``), the closing handshake bounded by
``close_timeout``, and :class:`websockets.exceptions.ConnectionClosed`
(``OK`` or ``Error``, with the close frames sent and received) at the end.
HTTP(S) proxies are supported as websockets' own client supports them: the
environment's (``WSS_PROXY``/``HTTPS_PROXY``, ``WS_PROXY``/``HTTP_PROXY``,
``NO_PROXY``, read by :func:`websockets.proxy.get_proxy`) unless told
otherwise, through an HTTP ``CONNECT`` tunnel, TLS to the server inside it.
Not supported: SOCKS proxies and HTTP redirects during the handshake.
"""

from __future__ import annotations

import os
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import cast

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidProxy, ProxyError
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import USER_AGENT, Response
from websockets.protocol import State
from websockets.proxy import Proxy, get_proxy, parse_proxy, prepare_connect_request
from websockets.uri import WebSocketURI, parse_uri

from eventbus.subscribers.log import redact_userinfo

__all__ = ["WsConnection"]

_READ_SIZE = 65536
_TEXT, _BINARY, _CONT, _PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG
_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)
_PROXY_ANSWER_LIMIT = 16384  # a proxy's answer to CONNECT is a status line and a few headers


def checked_proxy(address: str) -> Proxy:
    """An HTTP(S) proxy address parsed; :class:`ProxyError` (no password in it) for anything else."""
    try:
        proxy = parse_proxy(address)
    except InvalidProxy as exc:  # its text repeats the address, password included
        raise ProxyError(f"not a usable proxy address {redact_userinfo(address)!r}: {exc.msg}") from None
    if proxy.scheme not in ("http", "https"):
        raise ProxyError(
            f"{proxy.scheme} proxies are not supported for WebSockets ({redact_userinfo(address)}); "
            "use an HTTP(S) proxy"
        )
    return proxy


async def _tunnel(address: str, uri: WebSocketURI) -> anyio.abc.ByteStream:
    """A stream through an HTTP ``CONNECT`` tunnel to ``uri``'s host and port (TLS inside is the caller's)."""
    proxy = checked_proxy(address)
    shown = f"{proxy.scheme}://{proxy.host}:{proxy.port}"
    stream: anyio.abc.ByteStream = await anyio.connect_tcp(proxy.host, proxy.port, tls=proxy.scheme == "https")
    try:
        await stream.send(prepare_connect_request(proxy, uri, USER_AGENT))
        answer = b""
        while b"\r\n\r\n" not in answer:
            if len(answer) > _PROXY_ANSWER_LIMIT:
                raise ProxyError(f"the proxy {shown} answered CONNECT with more than {_PROXY_ANSWER_LIMIT} bytes")
            try:
                answer += await stream.receive()
            except _GONE:
                raise ProxyError(f"the proxy {shown} closed the connection without answering CONNECT") from None
        head, _, rest = answer.partition(b"\r\n\r\n")
        status_line = head.partition(b"\r\n")[0].decode("latin-1")
        version, _, status = status_line.partition(" ")
        code = status[:3]
        if not version.startswith("HTTP/1.") or not (code.isascii() and code.isdigit()):
            raise ProxyError(f"the proxy {shown} answered CONNECT with no HTTP status: {status_line[:100]!r}")
        if not code.startswith("2"):
            target = f"{uri.host}:{uri.port}"
            raise ProxyError(f"the proxy {shown} refused the tunnel to {target}: {status_line[:100]}")
        if rest:  # the server speaks only after our handshake: anything here is not from it
            raise ProxyError(f"the proxy {shown} sent data after its answer to CONNECT")
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    return stream


class WsConnection:
    """An open client connection. Build with :meth:`open`; use as an async context manager.

    :meth:`receive` returns the messages (bytes; text frames are not decoded)
    completed by the next network read, and raises the protocol's
    ``ConnectionClosed`` once the connection is over. One task reads;
    :meth:`keepalive` and :meth:`aclose` may run beside it.
    """

    def __init__(self, stream: anyio.abc.ByteStream, protocol: ClientProtocol, close_timeout: float) -> None:
        self._stream = stream
        self.protocol = protocol
        self._close_timeout = close_timeout
        self._outbox: deque[bytes] = deque()
        self._send_lock = anyio.Lock()
        self._parts: list[bytes] = []  # the fragments of a message still arriving
        self._ready: list[bytes] = []  # messages that came with the handshake response
        self._pongs: dict[bytes, anyio.Event] = {}
        self._keepalive = anyio.CancelScope()  # aclose() ends keepalive()
        self._eof = anyio.Event()  # the stream ended (or was cut): the protocol is CLOSED
        self._reading = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_size: int | None = 1 << 20,
        open_timeout: float = 10.0,
        close_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        compression: bool = True,
        proxy: str | bool | None = True,
    ) -> WsConnection:
        """Connect (TCP, TLS for ``wss://``) and complete the opening handshake within ``open_timeout``.

        ``proxy``: True (the default) takes the environment's proxy for this
        URL, if any; None or False connects directly; a string is the
        ``http://`` or ``https://`` proxy to tunnel through.

        Raises ``OSError`` (refused, unreachable, TLS), ``TimeoutError``, or a
        ``websockets.exceptions.InvalidHandshake`` (e.g. ``InvalidStatus`` when
        the server answers 401 instead of 101, ``ProxyError`` when the proxy
        refuses the tunnel).
        """
        uri = parse_uri(url)
        extensions = enable_client_permessage_deflate(None) if compression else None
        protocol = ClientProtocol(uri, extensions=extensions, max_size=max_size)
        address = get_proxy(uri) if proxy is True else (proxy or None)
        with anyio.fail_after(open_timeout):
            try:
                stream = await cls._connect(uri, address, ssl_context)
            except _GONE as exc:  # e.g. a server (or load balancer) that closes during the TLS handshake
                raise ConnectionError(f"the connection closed while being set up ({type(exc).__name__})") from exc
            conn = cls(stream, protocol, close_timeout)
            try:
                await conn._handshake(headers or {})
            except BaseException:
                await anyio.aclose_forcefully(stream)
                raise
        return conn

    @staticmethod
    async def _connect(
        uri: WebSocketURI, proxy: str | None, ssl_context: ssl.SSLContext | None
    ) -> anyio.abc.ByteStream:
        """TCP to the server or through ``proxy``'s tunnel; TLS on top for ``wss://``."""
        if not proxy:
            if not uri.secure:  # ssl_context is for wss:// only; anyio would start TLS whenever it is given
                return await anyio.connect_tcp(uri.host, uri.port)
            # The WebSocket closing handshake says where the data ends; TLS close_notify is not needed.
            return await anyio.connect_tcp(
                uri.host, uri.port, tls=True, ssl_context=ssl_context, tls_standard_compatible=False
            )
        stream = await _tunnel(proxy, uri)
        if not uri.secure:
            return stream
        try:
            return await TLSStream.wrap(
                stream,
                hostname=uri.host,
                ssl_context=ssl_context or ssl.create_default_context(),
                standard_compatible=False,
            )
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise

    async def _handshake(self, headers: Mapping[str, str]) -> None:
        protocol = self.protocol
        request = protocol.connect()
        for name, value in headers.items():
            request.headers[name] = value
        request.headers.setdefault("User-Agent", USER_AGENT)
        protocol.send_request(request)
        await self._flush()
        while True:
            await self._read_once()
            events = protocol.events_received()
            if protocol.handshake_exc is not None:  # a refused or malformed answer, with or without its Response
                raise protocol.handshake_exc
            for i, event in enumerate(events):
                if isinstance(event, Response):
                    self._ready = self._messages(events[i + 1 :])
                    await self._flush()
                    return
            await self._flush()

    async def __aenter__(self) -> WsConnection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.aclose()

    # -- reading ------------------------------------------------------------------

    async def _read_once(self) -> None:
        """One network read fed to the protocol; the end of the stream is fed as EOF."""
        try:
            data = await self._stream.receive(_READ_SIZE)
        except _GONE:
            self._at_eof()
        else:
            self.protocol.receive_data(data)

    async def _read_to_eof(self) -> None:
        """Read, discard what arrives (the closing handshake is under way) and answer, until the stream ends."""
        while not self._eof.is_set():
            await self._read_once()
            self.protocol.events_received()
            await self._flush()

    def _at_eof(self) -> None:
        self.protocol.receive_eof()  # idempotent; takes the protocol to CLOSED
        self._eof.set()

    async def receive(self) -> list[bytes]:
        """The messages completed by the next read (never empty); ``ConnectionClosed`` once it is over."""
        if self._ready:
            ready, self._ready = self._ready, []
            return ready
        protocol = self.protocol
        if self._reading:  # aclose() is reading the end of the closing handshake
            await self._eof.wait()
            raise protocol.close_exc
        self._reading = True
        try:
            while True:
                if self._eof.is_set():
                    raise protocol.close_exc
                if protocol.state is State.CLOSING:
                    # The close frames were exchanged (or we failed the connection): the
                    # server should now close TCP; do not wait for it for ever.
                    with anyio.move_on_after(self._close_timeout):
                        await self._read_to_eof()
                    self._at_eof()
                    await self._flush()
                    continue
                await self._read_once()
                messages = self._messages(protocol.events_received())
                await self._flush()  # pongs, the close frame's echo, EOF
                if messages:
                    return messages
        finally:
            self._reading = False

    def _messages(self, events: Sequence[object]) -> list[bytes]:
        """Whole messages out of received frames (after the handshake every event is a Frame)."""
        out: list[bytes] = []
        for frame in cast("Sequence[Frame]", events):
            op = frame.opcode
            if op is _TEXT or op is _BINARY:
                if frame.fin:
                    out.append(frame.data)  # type: ignore[arg-type]  # bytes from the frame parser and from inflate
                else:
                    self._parts = [bytes(frame.data)]
            elif op is _CONT:
                self._parts.append(bytes(frame.data))
                if frame.fin:
                    out.append(b"".join(self._parts))
                    self._parts = []
            elif op is _PONG:
                waiter = self._pongs.pop(bytes(frame.data), None)
                if waiter is not None:
                    waiter.set()
        return out

    # -- writing ------------------------------------------------------------------

    async def _flush(self) -> None:
        """Send what the protocol wants sent, in order, whichever task asks."""
        self._outbox.extend(self.protocol.data_to_send())
        if not self._outbox:
            return
        async with self._send_lock:
            while self._outbox:
                data = self._outbox.popleft()
                try:
                    if data:
                        await self._stream.send(data)
                    else:  # the protocol asks for a half-close (TLS streams cannot: the close follows)
                        await self._stream.send_eof()  # type: ignore[attr-defined]
                except (*_GONE, OSError, NotImplementedError, AttributeError):
                    self._outbox.clear()  # nobody is listening any more; the read side sees the end

    async def keepalive(self, interval: float, timeout: float | None) -> None:
        """Ping every ``interval`` s; no pong within ``timeout`` s fails the connection (1011) and cuts it.

        Run it beside the reading task; it returns when the connection closes (:meth:`aclose` ends it).
        """
        with self._keepalive:
            while True:
                await anyio.sleep(interval)
                if self.protocol.state is not State.OPEN:
                    return
                payload = os.urandom(4)
                pong = self._pongs[payload] = anyio.Event()
                self.protocol.send_ping(payload)
                with anyio.move_on_after(interval if timeout is None else timeout) as waited:
                    await self._flush()
                    await pong.wait()
                self._pongs.pop(payload, None)  # a pong that never came is not waited for again
                if waited.cancelled_caught and timeout is not None:
                    if self.protocol.state is State.OPEN:
                        self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                        with anyio.move_on_after(self._close_timeout):
                            await self._flush()
                    await self._stream.aclose()  # the reader meets the closed stream: ConnectionClosedError
                    return

    async def aclose(self) -> None:
        """The closing handshake (1000), bounded by ``close_timeout``; then the stream is closed."""
        self._keepalive.cancel()
        protocol = self.protocol
        with anyio.move_on_after(self._close_timeout):
            if protocol.state is State.OPEN:
                protocol.send_close(CloseCode.NORMAL_CLOSURE)
                await self._flush()
            if self._reading:  # the reading task sees the server's close frame and the end of the stream
                await self._eof.wait()
            else:
                self._reading = True
                try:
                    await self._read_to_eof()
                finally:
                    self._reading = False
        if not self._eof.is_set():
            self._at_eof()
        await anyio.aclose_forcefully(self._stream)
