"""ServedApp: an ASGI app served by uvicorn from a background thread, usable from sync, asyncio and trio code."""

from __future__ import annotations

import socket
import threading

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from adapters.serving import ServedApp, bind_tcp
from eventbus.exceptions import ConfigError


async def where(request: Request) -> PlainTextResponse:
    return PlainTextResponse(threading.current_thread().name)


APP = Starlette(routes=[Route("/where", where)])


def test_sync_context_serves_on_a_free_loopback_port() -> None:
    """Entering the context binds a free port and the server answers before the block starts."""
    with ServedApp(APP) as served:
        assert served.port > 0 and served.url == f"http://127.0.0.1:{served.port}"
        response = httpx.get(served.url + "/where")
        assert response.text == f"uvicorn:{served.port}"  # served from the background thread


def test_stop_releases_the_port() -> None:
    """After the context exits, nothing listens on the port any more."""
    with ServedApp(APP) as served:
        port = served.port
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


def test_a_served_app_cannot_be_restarted() -> None:
    """A stopped ServedApp refuses a second start with a clear message."""
    served = ServedApp(APP)
    with served:
        pass
    with pytest.raises(RuntimeError, match="started once"):
        served.start()


def test_port_in_use_is_reported() -> None:
    """Asking for a port that is already bound fails at start, before any thread runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            ServedApp(
                APP,
                port=taken.getsockname()[1],
            ).start()


@pytest.mark.anyio
async def test_async_context_works_from_asyncio_and_trio() -> None:
    """The async context starts and stops the server without blocking the caller's loop."""
    with anyio.fail_after(10):
        async with ServedApp(APP) as served, httpx.AsyncClient(base_url=served.url) as client:
            responses = []
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(lambda: _get(client, responses))
            assert responses == [f"uvicorn:{served.port}"] * 3


async def _get(client: httpx.AsyncClient, out: list[str]) -> None:
    out.append((await client.get("/where")).text)


@pytest.mark.parametrize("port", [70000, -1])
def test_bind_tcp_refuses_a_port_out_of_range(port: int) -> None:
    """A port outside 0-65535 is a ConfigError saying the range (socket raised OverflowError)."""
    with pytest.raises(ConfigError, match="port must be a whole number from 0 to 65535"):
        bind_tcp("127.0.0.1", port)


@pytest.mark.parametrize("host", ["127.0.0.1\x00", "\u00e9" * 70], ids=["nul", "unencodable-label"])
def test_bind_tcp_refuses_what_is_no_host_name_without_repeating_it(host: str) -> None:
    """A host socket cannot even encode (it raised TypeError) is a ConfigError that does not echo the host."""
    with pytest.raises(ConfigError, match="not a usable host name or address") as info:
        bind_tcp(host, 0)
    assert host not in str(info.value)
