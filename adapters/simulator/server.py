"""Run the simulator: in-process for tests and the demo, or on its own for ``eventbus simulate``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from adapters.serving import ServedApp
from adapters.simulator.app import PREFIXES, build_app
from adapters.simulator.common import SimState
from adapters.simulator.config import Clock, SimulatorConfig
from adapters.simulator.webhooks_out import WebhookSender

__all__ = ["Simulator", "run_simulator", "simulator"]


@dataclass
class Simulator:
    """A running simulator: its base URL, per-provider URLs, settings, clock and state."""

    base_url: str
    config: SimulatorConfig
    clock: Clock
    state: SimState

    @property
    def urls(self) -> dict[str, str]:
        """Base URL of each provider (InsideView's API base, Pronto's API base, ...)."""
        return {
            "insideview": self.base_url + PREFIXES["insideview"] + "/api/v1",
            "insideview_login": self.base_url + PREFIXES["insideview"],
            "mautic": self.base_url + PREFIXES["mautic"],
            "datananas": self.base_url + PREFIXES["datananas"],
            "datananas_ws": self.base_url.replace("http", "ws", 1) + PREFIXES["datananas"] + "/ws",
            "pronto": self.base_url + PREFIXES["pronto"] + "/api/v2",
        }

    @property
    def webhooks(self) -> WebhookSender:
        """The outgoing webhook sender (its ``stats`` say what was delivered; ``wait_settled(n)`` waits)."""
        return self.state.extra["webhooks"]


def _served(config: SimulatorConfig | None, host: str, port: int, clock: Clock | None) -> tuple[ServedApp, Simulator]:
    config = config or SimulatorConfig()
    clock = clock or Clock()
    app, state = build_app(config, clock)
    served = ServedApp(app, host=host, port=port, lifespan="on", ws="websockets-sansio", ws_max_size=1 << 20)
    return served, Simulator("", config, clock, state)


@asynccontextmanager
async def run_simulator(
    config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, clock: Clock | None = None
) -> AsyncIterator[Simulator]:
    """Start the simulator on a free loopback port (asyncio or trio callers alike).

    uvicorn runs in a thread of its own with its own asyncio loop; starting
    and stopping happen in worker threads, so the caller's loop never blocks.
    ``clock`` lets a test pass a ``Clock(frozen=True)``.
    """
    served, sim = _served(config, host, port, clock)
    async with served:
        sim.base_url = served.url
        yield sim


@contextmanager
def simulator(
    config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, clock: Clock | None = None
) -> Iterator[Simulator]:
    """The same as :func:`run_simulator`, for synchronous code and scripts."""
    served, sim = _served(config, host, port, clock)
    with served:
        sim.base_url = served.url
        yield sim
