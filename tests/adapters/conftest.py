"""Fixtures shared by the adapter tests: the provider simulator on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
import anyio.abc
import pytest

from adapters.simulator import Clock, Simulator, SimulatorConfig, run_simulator
from adapters.simulator import simulator as sync_simulator


@asynccontextmanager
async def checked_simulator(
    config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, clock: Clock | None = None
) -> AsyncIterator[Simulator]:
    """run_simulator with the same arguments, failing on exit if the simulator's background work crashed.

    A crash in background work (job runners, webhook workers) is a simulator
    bug whatever the test was about, and no HTTP answer shows it, so every
    test that starts a simulator checks it here. The check is skipped when the
    body raised, so the test's own failure is the one reported.
    """
    async with run_simulator(config, host=host, port=port, clock=clock) as sim:
        yield sim
    _assert_no_background_errors(sim)


@contextmanager
def checked_sync_simulator(config: SimulatorConfig | None = None) -> Iterator[Simulator]:
    """The synchronous ``simulator()`` (served from a thread of its own), with :func:`checked_simulator`'s check."""
    with sync_simulator(config) as sim:
        yield sim
    _assert_no_background_errors(sim)


def _assert_no_background_errors(sim: Simulator) -> None:
    errors = sim.state.background_errors
    assert errors == [], f"the simulator's background work crashed {len(errors)} time(s): {errors}"


async def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago): connecting there is refused."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return port


@pytest.fixture
def sim_config() -> SimulatorConfig:
    """The simulator's settings for one test; override this fixture (or mutate it) to set faults and limits."""
    return SimulatorConfig(item_time=0.0001, tick=0.005)


@pytest.fixture
async def simulator(sim_config: SimulatorConfig) -> AsyncIterator[Simulator]:
    """A running simulator, started for the test and stopped after it (failing it if its background work crashed)."""
    async with checked_simulator(sim_config) as sim:
        yield sim


class WebhookSink:
    """A real HTTP receiver for the simulator's webhooks: records each request, answers from a script.

    ``statuses`` is consumed one per request (then 200 forever), so a test can
    make the first deliveries fail. Tests wait with :meth:`wait_for`, which
    blocks on a condition in a worker thread, never sleeps.
    """

    def __init__(self, statuses: list[int] | None = None) -> None:
        import threading

        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        self._cond = threading.Condition()

        async def receive(request: Request) -> Response:
            body = await request.body()
            with self._cond:
                status = self.statuses.pop(0) if self.statuses else 200
                if status == 200:
                    self.requests.append((dict(request.headers), body))
                self._cond.notify_all()
            return Response(status_code=status)

        self.app = Starlette(routes=[Route("/hook", receive, methods=["POST"])])

    def bodies(self) -> list[dict]:
        import msgspec

        with self._cond:
            return [msgspec.json.decode(body) for _, body in self.requests]

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` requests were accepted (raises TimeoutError otherwise)."""
        import anyio

        def wait() -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: len(self.requests) >= count, timeout)

        if not await anyio.to_thread.run_sync(wait):
            raise TimeoutError(f"expected {count} webhooks, got {len(self.requests)}")


@pytest.fixture
async def webhook_sink() -> AsyncIterator[tuple[WebhookSink, str]]:
    """A running WebhookSink and its URL."""
    from adapters.serving import ServedApp

    sink = WebhookSink()
    async with ServedApp(sink.app) as served:
        yield sink, served.url + "/hook"
