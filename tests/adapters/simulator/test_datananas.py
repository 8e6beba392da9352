"""Simulator conformance: Datananas bulk create and its WebSocket progress events."""

from __future__ import annotations

import threading

import anyio
import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from adapters.simulator import Simulator, SimulatorConfig, run_simulator

pytestmark = pytest.mark.anyio

AUTH = {"authorization": "Bearer demo-token"}


def run_ws_client(url: str, stop_after_ending: int, frames: list[dict], connected: threading.Event):
    """A websockets (asyncio-only) client, run in a worker thread so trio tests can use it too."""
    import asyncio

    async def client() -> None:
        async with connect(url) as ws:
            connected.set()
            endings = 0
            async for raw in ws:
                frame = msgspec.json.decode(raw)
                frames.append(frame)
                if frame["event"] == "contact_bulk_create_ending":
                    endings += 1
                    if endings >= stop_after_ending:
                        return

    return lambda: asyncio.run(client())


async def collect(sim: Simulator, contacts: list[dict], expected_endings: int = 1) -> tuple[httpx.Response, list]:
    """Connect a socket, submit, and collect frames until the ending event."""
    frames: list[dict] = []
    url = sim.urls["datananas_ws"] + "?token=demo-token"
    connected = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, run_ws_client(url, expected_endings, frames, connected))
        assert await anyio.to_thread.run_sync(connected.wait, 10), "the WebSocket client did not connect"
        async with httpx.AsyncClient() as client:
            response = await client.post(
                sim.urls["datananas"] + "/contacts/bulk",
                json={"list": {"id": "L1"}, "contacts": contacts},
                headers=AUTH,
            )
    return response, frames


async def test_bulk_events_starting_running_ending(simulator: Simulator) -> None:
    """One _starting, one _running per contact (i, total), one _ending with created/updated."""
    contacts = [{"email": f"d{i}@x.io"} for i in range(25)]
    response, frames = await collect(simulator, contacts)
    body = response.json()
    assert response.status_code == 200 and body["total"] == 25 and body["listId"] == "L1"
    names = [f["event"] for f in frames]
    assert names == ["contact_bulk_create_starting"] + ["contact_bulk_create_running"] * 25 + [
        "contact_bulk_create_ending"
    ]
    assert frames[0]["data"] == {"listId": "L1", "uuid": body["uuid"]}
    assert [f["data"]["i"] for f in frames[1:-1]] == list(range(25))
    assert all(f["data"]["total"] == 25 and f["data"]["uuid"] == body["uuid"] for f in frames[1:-1])
    assert frames[-1]["data"] == {"uuid": body["uuid"], "created": 25, "updated": 0}


async def test_known_emails_are_updated(simulator: Simulator) -> None:
    """A second bulk with the same emails reports them as updated."""
    contacts = [{"email": f"u{i}@x.io"} for i in range(5)]
    await collect(simulator, contacts)
    _, frames = await collect(simulator, [*contacts, {"email": "new@x.io"}])
    assert frames[-1]["data"]["created"] == 1 and frames[-1]["data"]["updated"] == 5


async def test_size_limits(simulator: Simulator) -> None:
    """Zero or more than 10,000 contacts is a 400 whose body says why."""
    async with httpx.AsyncClient() as client:
        url = simulator.urls["datananas"] + "/contacts/bulk"
        empty = await client.post(url, json={"list": "L", "contacts": []}, headers=AUTH)
        over = await client.post(url, json={"list": "L", "contacts": [{"email": "a@b.c"}] * 10_001}, headers=AUTH)
        bad = await client.post(url, content=b"{", headers={**AUTH, "content-type": "application/json"})
        nolist = await client.post(url, json={"contacts": [{"email": "a@b.c"}]}, headers=AUTH)
    assert (empty.status_code, over.status_code, bad.status_code, nolist.status_code) == (400, 400, 400, 400)
    assert "1 to 10000" in over.json()["error"]


async def test_bad_token_is_401_and_ws_refused(simulator: Simulator) -> None:
    """A wrong bearer token gets 401; a WebSocket with a wrong token is refused at the handshake."""
    async with httpx.AsyncClient() as client:
        r = await client.post(
            simulator.urls["datananas"] + "/contacts/bulk",
            json={"list": "L", "contacts": [{}]},
            headers={"authorization": "Bearer nope"},
        )
    assert r.status_code == 401

    import asyncio

    async def try_connect() -> int:
        try:
            async with connect(simulator.urls["datananas_ws"] + "?token=nope"):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert await anyio.to_thread.run_sync(lambda: asyncio.run(try_connect())) == 403


@pytest.mark.parametrize(
    "quota, source, reason",
    [
        ("datananas_total_quota", "manual", "contact_total_quotas"),
        ("datananas_connect_quota", "connect", "contact_connect_quotas"),
    ],
)
async def test_quota_exhausted_is_402_and_creates_nothing(sim_config: SimulatorConfig, quota, source, reason) -> None:
    """Past a quota the answer is 402 with the reason, and nothing of that request is created."""
    setattr(sim_config, quota, 3)
    async with run_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        url = sim.urls["datananas"] + "/contacts/bulk"
        contacts = [{"email": f"q{i}@x.io", "source": source} for i in range(4)]
        r = await client.post(url, json={"list": "L", "contacts": contacts}, headers=AUTH)
        d = sim.state.extra["datananas"]
    assert r.status_code == 402 and r.json() == {"reason": reason}
    assert d.jobs == {} and d.contacts == {}


async def test_ws_dropped_after_n_frames(sim_config: SimulatorConfig) -> None:
    """The ws_drop_after fault closes the socket after N frames; nothing missed is replayed."""
    sim_config.faults.ws_drop_after = 5
    async with run_simulator(sim_config) as sim:
        frames: list[dict] = []
        import asyncio

        connected = threading.Event()

        async def client() -> str:
            async with connect(sim.urls["datananas_ws"] + "?token=demo-token") as ws:
                connected.set()
                try:
                    async for raw in ws:
                        frames.append(msgspec.json.decode(raw))
                except ConnectionClosed:
                    pass
                return "closed"

        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, lambda: asyncio.run(client()))
            assert await anyio.to_thread.run_sync(connected.wait, 10), "the WebSocket client did not connect"
            async with httpx.AsyncClient() as http:
                await http.post(
                    sim.urls["datananas"] + "/contacts/bulk",
                    json={"list": "L", "contacts": [{"email": f"w{i}@x.io"} for i in range(20)]},
                    headers=AUTH,
                )
    assert len(frames) == 5


async def test_ws_accept_then_close(sim_config: SimulatorConfig) -> None:
    """The ws_accept_then_close fault accepts the handshake and closes at once."""
    sim_config.faults.ws_accept_then_close = True
    async with run_simulator(sim_config) as sim:
        import asyncio

        async def client() -> int | None:
            async with connect(sim.urls["datananas_ws"] + "?token=demo-token") as ws:
                try:
                    await ws.recv()
                except ConnectionClosed as exc:
                    return exc.rcvd.code if exc.rcvd else None
            return None

        code = await anyio.to_thread.run_sync(lambda: asyncio.run(client()))
    assert code == 1011
