"""Running the simulator: in-process (async and sync), on free ports, with a test clock, validated settings."""

from __future__ import annotations

import asyncio
import threading

import anyio
import anyio.lowlevel
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from adapters.simulator import Clock, Faults, SimulatorConfig, Throttle, simulator
from eventbus.exceptions import ConfigError
from tests.adapters.conftest import checked_simulator, checked_sync_simulator

PATHS = {
    "insideview": "/insideview/api/v1",
    "insideview_login": "/insideview",
    "mautic": "/mautic",
    "datananas": "/datananas",
    "pronto": "/pronto/api/v2",
}


@pytest.mark.anyio
async def test_run_simulator_yields_a_url_per_provider() -> None:
    """The async context manager listens on a loopback port and names each provider's base URL under it."""
    async with checked_simulator() as sim, httpx.AsyncClient() as client:
        health = await client.get(sim.base_url + "/health")
    assert sim.base_url.startswith("http://127.0.0.1:") and health.json() == {"status": "ok"}
    assert {k: sim.urls[k] for k in PATHS} == {k: sim.base_url + p for k, p in PATHS.items()}
    assert sim.urls["datananas_ws"] == sim.base_url.replace("http://", "ws://") + "/datananas/ws"


def test_sync_simulator_serves_plain_code() -> None:
    """The synchronous context manager serves requests from code with no event loop."""
    with checked_sync_simulator(SimulatorConfig(item_time=0)) as sim, httpx.Client() as client:
        r = client.post(
            sim.urls["insideview_login"] + "/Auth/login/v1/token.json",
            params={"clientId": "demo", "clientSecret": "demo", "grantType": "cred"},
        )
    assert r.status_code == 200 and r.json()["accessTokenDetails"]["accessToken"]


@pytest.mark.anyio
async def test_two_simulators_are_independent() -> None:
    """Two simulators get different ports and separate state."""
    async with checked_simulator() as a, checked_simulator() as b, httpx.AsyncClient() as client:
        await client.post(
            a.urls["pronto"] + "/contacts/single_enrich",
            json={"contact": {"firstname": "A", "lastname": "B", "domain": "d.io"}, "enrichment_type": ["email"]},
            headers={"x-api-key": "demo-key"},
        )
    assert a.base_url != b.base_url
    assert len(a.state.extra["pronto"].singles) == 1 and b.state.extra["pronto"].singles == {}


@pytest.mark.anyio
async def test_credentials_are_overridable() -> None:
    """Configured credentials replace the demo ones."""
    from adapters.simulator import Credentials

    config = SimulatorConfig(credentials=Credentials(pronto_api_key="k2"))
    async with checked_simulator(config) as sim, httpx.AsyncClient() as client:
        url = sim.urls["pronto"] + "/contacts/x"
        old = await client.get(url, headers={"x-api-key": "demo-key"})
        new = await client.get(url, headers={"x-api-key": "k2"})
    assert (old.status_code, new.status_code) == (401, 404)


@pytest.mark.anyio
async def test_stopping_closes_open_websockets() -> None:
    """Leaving the context closes a connected WebSocket client's connection instead of hanging."""
    connected = threading.Event()

    async def client(url: str) -> str:
        async with connect(url) as ws:
            connected.set()
            try:
                await ws.recv()
            except ConnectionClosed:
                return "closed"
        return "message"

    async with anyio.create_task_group() as tg:
        result: list[str] = []
        async with checked_simulator() as sim:
            url = sim.urls["datananas_ws"] + "?token=demo-token"
            tg.start_soon(anyio.to_thread.run_sync, lambda: result.append(asyncio.run(client(url))))
            assert await anyio.to_thread.run_sync(connected.wait, 10)
    assert result == ["closed"]


@pytest.mark.anyio
async def test_stopping_with_a_job_in_flight_is_clean() -> None:
    """A simulator stopped mid-job shuts down without errors or warnings."""
    async with checked_simulator(SimulatorConfig(item_time=0.01)) as sim, httpx.AsyncClient() as client:
        r = await client.post(
            sim.urls["datananas"] + "/contacts/bulk",
            json={"list": "L", "contacts": [{"email": f"j{i}@x.io"} for i in range(5000)]},
            headers={"authorization": "Bearer demo-token"},
        )
        job = sim.state.extra["datananas"].jobs[r.json()["uuid"]]
    assert job["ended"] == 0


@pytest.mark.anyio
async def test_a_cancelled_caller_still_stops_the_server() -> None:
    """Cancelling the scope around the simulator still shuts it down (the port is released)."""
    with anyio.CancelScope() as scope:
        async with checked_simulator() as sim:
            base = sim.base_url
            scope.cancel()
            await anyio.lowlevel.checkpoint()  # the cancellation lands here
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(base + "/health")


def test_frozen_clock_moves_only_when_advanced() -> None:
    """Clock(frozen=True) stands still until advance(); advance refuses to go back."""
    clock = Clock(frozen=True)
    start = clock.now()
    assert clock.now() == start
    clock.advance(10)
    assert clock.now() == start + 10
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_running_clock_adds_advances_to_wall_time() -> None:
    """The default clock follows wall time plus whatever tests advanced."""
    import time

    clock = Clock()
    clock.advance(3600)
    assert clock.now() - time.time() >= 3599


@pytest.mark.parametrize(
    "config, fragment",
    [
        (SimulatorConfig(item_time=-1), "item_time"),
        (SimulatorConfig(tick=0), "tick"),
        (SimulatorConfig(mautic_page_size=0), "mautic_page_size"),
        (SimulatorConfig(pronto_credits=-5), "pronto_credits"),
        (SimulatorConfig(throttle={"hubspot": Throttle(limit=1)}), "unknown provider 'hubspot'"),
        (SimulatorConfig(throttle={"mautic": Throttle(limit=1, window=0)}), "window > 0"),
        (SimulatorConfig(faults=Faults(duplicate_webhooks=1.5)), "probability"),
        (SimulatorConfig(faults=Faults(ws_drop_after=-1)), "ws_drop_after"),
    ],
    ids=["item-time", "tick", "page-size", "credits", "throttle-provider", "throttle-window", "dup", "drop"],
)
def test_invalid_settings_are_refused(config: SimulatorConfig, fragment: str) -> None:
    """Settings the simulator cannot honour raise ConfigError naming the setting, before anything starts."""
    with pytest.raises(ConfigError, match=fragment), simulator(config):
        pass


def test_defaults_are_documented_values() -> None:
    """Default credentials, token lifetime and page size are the documented ones."""
    config = SimulatorConfig()
    creds = config.credentials
    assert (creds.insideview_client_id, creds.insideview_client_secret) == ("demo", "demo")
    assert (creds.mautic_client_id, creds.mautic_client_secret) == ("demo", "demo")
    assert (creds.datananas_token, creds.pronto_api_key) == ("demo-token", "demo-key")
    assert config.token_ttl == 3600 and config.mautic_page_size == 100 and config.faults == Faults()


@pytest.mark.anyio
async def test_state_counts_api_requests_by_path() -> None:
    """sim.state.requests_by_path counts the API requests each path received (token endpoints excluded)."""
    async with checked_simulator() as sim, httpx.AsyncClient() as client:
        for _ in range(3):
            await client.get(sim.urls["pronto"] + "/contacts/x", headers={"x-api-key": "demo-key"})
        await client.post(
            sim.urls["mautic"] + "/oauth/v2/token",
            data={"grant_type": "client_credentials", "client_id": "demo", "client_secret": "demo"},
        )
    assert sim.state.requests_by_path == {"/pronto/api/v2/contacts/x": 3}
