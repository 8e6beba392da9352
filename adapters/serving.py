"""Serve an ASGI app with uvicorn on a loopback port, in a background thread with its own asyncio loop.

uvicorn runs only on asyncio, while the library (and its tests) also run on
trio. :class:`ServedApp` therefore gives uvicorn a thread and an asyncio loop
of its own, so any caller — synchronous code, an asyncio task or a trio
task — can start and stop a real HTTP server without blocking its own loop::

    with ServedApp(app) as served:              # synchronous
        httpx.get(served.url + "/hooks/pronto")

    async with ServedApp(app) as served:        # asyncio or trio (via anyio.to_thread)
        ...

The listening socket is bound before the thread starts (port 0 picks a free
port), so :attr:`ServedApp.port` is known at once and the server is accepting
connections when ``start`` returns. ``stop`` asks uvicorn to shut down
gracefully and joins the thread, bounded by ``shutdown_timeout``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from types import TracebackType
from typing import Any

import anyio.to_thread
import uvicorn

from eventbus.exceptions import ConfigError

__all__ = ["ServedApp", "bind_tcp", "loopback_direct", "url_host"]


def bind_tcp(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv6 if ``host`` has a ``:``; port 0 picks a free one), not yet listening.

    Raises :class:`~eventbus.exceptions.ConfigError` for a port outside 0-65535
    or a host that is no host name (a NUL, a label too long to encode), and
    :class:`OSError` if it cannot bind; the socket is closed then. Messages
    never repeat ``host``, which a caller may have typed with a password in it.
    """
    if not (isinstance(port, int) and 0 <= port <= 65535):
        raise ConfigError(f"port must be a whole number from 0 to 65535, not {port!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose
    # proto says TCP, and accepted sockets inherit it from this one. With
    # proto 0, Nagle holds back each response body for a delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (TypeError, UnicodeError) as exc:  # socket's words for a malformed name: a NUL, an unencodable label
        sock.close()
        raise ConfigError(f"not a usable host name or address: {exc}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def loopback_direct() -> None:
    """Add this machine's loopback to ``NO_PROXY``/``no_proxy`` in this process's environment.

    For a process whose servers and clients all sit on loopback (the demo, the
    tests): httpx and the WebSocket source take the proxy the environment
    names, which cannot reach this machine's loopback; other hosts keep it.
    """
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, (os.environ.get(name, ""), "127.0.0.1,localhost,::1")))


def url_host(host: str) -> str:
    """``host`` as it goes in a URL: IPv6 addresses in brackets (``::1`` → ``[::1]``)."""
    return f"[{host}]" if ":" in host else host


class _Server(uvicorn.Server):
    """A uvicorn server that reports, across threads, when it is accepting connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.loop = asyncio.get_running_loop()
        self.ready.set()


class ServedApp:
    """One ASGI app served by uvicorn on ``host:port`` from a background thread.

    Not reusable: once stopped, build a new one.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 10.0,
        **uvicorn_options: Any,
    ) -> None:
        self.app = app
        self.host = host
        self._requested_port = port
        self.port = port
        self._startup_timeout = startup_timeout
        self._shutdown_timeout = shutdown_timeout
        options = {"lifespan": "auto", "timeout_graceful_shutdown": shutdown_timeout, **uvicorn_options}
        self._config = uvicorn.Config(app, host=host, port=port, log_level=log_level, **options)
        self._server = _Server(self._config)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._used = False

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{url_host(self.host)}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The server thread's asyncio loop while it runs (for callers that must schedule work on it)."""
        return self._server.loop

    def start(self) -> None:
        """Bind the socket, start the server thread, and return once it accepts connections."""
        if self._used:
            raise RuntimeError("a ServedApp can be started once; build a new one")
        self._used = True
        sock = bind_tcp(self.host, self._requested_port)
        try:
            self.port = sock.getsockname()[1]
        except BaseException:
            sock.close()
            raise
        self._thread = threading.Thread(target=self._run, args=(sock,), name=f"uvicorn:{self.port}", daemon=True)
        self._thread.start()
        # Wait for readiness or for the thread to die (startup failure), whichever comes first.
        if not self._server.ready.wait(self._startup_timeout) or self._error is not None:
            self.stop()
            raise RuntimeError(f"uvicorn did not start on {self.url} within {self._startup_timeout}s") from self._error

    def _run(self, sock: socket.socket) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[sock]))
        except BaseException as exc:  # startup failures raise SystemExit in uvicorn
            self._error = exc
            self._server.ready.set()
        finally:
            sock.close()  # uvicorn closes it on a clean shutdown; this covers the failed startup

    def stop(self) -> None:
        """Ask uvicorn to shut down gracefully and wait for its thread (bounded)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(self._shutdown_timeout + 5.0)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(5.0)

    def __enter__(self) -> ServedApp:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> ServedApp:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Shutting down must finish even if the caller's scope is being cancelled.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)
