"""Simulator conformance: Datananas bulk create and its WebSocket progress events."""

from __future__ import annotations

import threading

import anyio
import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from adapters.simulator import Simulator, SimulatorConfig
from tests.adapters.conftest import checked_simulator
from tests.adapters.simulator.helpers import poll_until

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


async def collect(sim: Simulator, contacts: list[dict]) -> tuple[httpx.Response, list]:
    """Connect a socket, submit one bulk to list L1, and collect frames until its ending event."""
    responses, frames = await collect_posts(sim, [({}, {"list": {"id": "L1"}, "contacts": contacts})])
    return responses[0], frames


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


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"list": "L", "contacts": []}, "1 to 10000 contacts, got 0"),
        ({"list": "L", "contacts": [{"email": "a@b.c"}] * 10_001}, "1 to 10000 contacts, got 10001"),
        ({"contacts": [{"email": "a@b.c"}]}, '"list" is required'),
        ({"list": "L", "contacts": "many"}, "1 to 10000 contacts"),
    ],
    ids=["empty", "over-10000", "no-list", "contacts-not-a-list"],
)
async def test_invalid_bulks_are_400(simulator: Simulator, body: dict, fragment: str) -> None:
    """Sizes outside 1–10,000, a missing list or a wrong type is a 400 whose body says why."""
    async with httpx.AsyncClient() as client:
        r = await client.post(simulator.urls["datananas"] + "/contacts/bulk", json=body, headers=AUTH)
    assert r.status_code == 400 and fragment in r.json()["error"]


async def test_malformed_json_is_400(simulator: Simulator) -> None:
    """A truncated JSON body is a 400, never a 500."""
    async with httpx.AsyncClient() as client:
        r = await client.post(
            simulator.urls["datananas"] + "/contacts/bulk",
            content=b"{",
            headers={**AUTH, "content-type": "application/json"},
        )
    assert r.status_code == 400


async def test_bad_token_is_401(simulator: Simulator) -> None:
    """A wrong bearer token gets 401."""
    async with httpx.AsyncClient() as client:
        r = await client.post(
            simulator.urls["datananas"] + "/contacts/bulk",
            json={"list": "L", "contacts": [{}]},
            headers={"authorization": "Bearer nope"},
        )
    assert r.status_code == 401


async def test_ws_with_bad_token_is_refused_at_handshake(simulator: Simulator) -> None:
    """A WebSocket with a wrong ?token= is refused with HTTP 403 before it opens."""
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
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        url = sim.urls["datananas"] + "/contacts/bulk"
        contacts = [{"email": f"q{i}@x.io", "source": source} for i in range(4)]
        r = await client.post(url, json={"list": "L", "contacts": contacts}, headers=AUTH)
        d = sim.state.extra["datananas"]
    assert r.status_code == 402 and r.json() == {"reason": reason}
    assert d.jobs == {} and d.contacts == {}


async def test_total_quota_counts_jobs_not_processed_yet(sim_config: SimulatorConfig) -> None:
    """Two jobs in a row, the first still being processed: its contacts count, so the second is refused.

    (The quota counted only contacts already created, so the second squeezed in while the first was at work.)
    """
    sim_config.datananas_total_quota = 8
    sim_config.item_time = 0.5  # the first job is still at its first contact when the second arrives
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        url = sim.urls["datananas"] + "/contacts/bulk"
        first = await client.post(
            url, json={"list": "L", "contacts": [{"email": f"a{i}@x.io"} for i in range(5)]}, headers=AUTH
        )
        again = await client.post(url, json={"list": "L", "contacts": [{"email": "a1@x.io"}]}, headers=AUTH)
        second = await client.post(
            url, json={"list": "L", "contacts": [{"email": f"b{i}@x.io"} for i in range(5)]}, headers=AUTH
        )
        d = sim.state.extra["datananas"]
        created = len(d.contacts)
    assert first.status_code == 200 and again.status_code == 200  # a contact already counted costs nothing more
    assert second.status_code == 402 and second.json() == {"reason": "contact_total_quotas"}
    assert created < 5  # the first job was indeed still at work


async def test_ws_dropped_after_n_frames(sim_config: SimulatorConfig) -> None:
    """The ws_drop_after fault closes the socket after N frames; nothing missed is replayed."""
    sim_config.faults.ws_drop_after = 5
    async with checked_simulator(sim_config) as sim:
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
    async with checked_simulator(sim_config) as sim:
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


async def collect_posts(sim: Simulator, posts: list[tuple[dict, dict]]) -> tuple[list[httpx.Response], list[dict]]:
    """Connect one socket, send each (query params, body) bulk in turn, collect frames until every _ending."""
    frames: list[dict] = []
    connected = threading.Event()
    url = sim.urls["datananas_ws"] + "?token=demo-token"
    responses = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, run_ws_client(url, len(posts), frames, connected))
        assert await anyio.to_thread.run_sync(connected.wait, 10), "the WebSocket client did not connect"
        async with httpx.AsyncClient() as client:
            for params, body in posts:
                responses.append(
                    await client.post(sim.urls["datananas"] + "/contacts/bulk", params=params, json=body, headers=AUTH)
                )
    return responses, frames


async def test_http_answer_goes_out_after_starting_before_any_running(simulator: Simulator) -> None:
    """The 200 is sent after _starting and before the first _running of its request."""
    response, _ = await collect(simulator, [{"email": f"h{i}@x.io"} for i in range(50)])
    job = simulator.state.extra["datananas"].jobs[response.json()["uuid"]]
    assert job["events_before_answer"] == 1


@pytest.mark.parametrize("ahead", [30, 50, 80])
async def test_answer_after_n_contacts_lets_running_frames_precede_it(ahead: int) -> None:
    """datananas_answer_after=N: _starting and at least N _running frames (all 50 at most) go out before the
    200, and never the _ending."""
    async with checked_simulator(SimulatorConfig(item_time=0, datananas_answer_after=ahead)) as sim:
        response, frames = await collect(sim, [{"email": f"h{i}@x.io"} for i in range(50)])
        job = sim.state.extra["datananas"].jobs[response.json()["uuid"]]
    assert 1 + min(ahead, 50) <= job["events_before_answer"] <= 51  # (51: _starting and every _running)
    assert [f["event"] for f in frames][-1] == "contact_bulk_create_ending" and len(frames) == 52


async def test_one_socket_receives_every_bulk_of_the_account(simulator: Simulator) -> None:
    """Two bulk requests are both reported on the one connection of the account."""
    posts = [
        ({}, {"list": "A", "contacts": [{"email": "a1@x.io"}]}),
        ({}, {"list": "B", "contacts": [{"email": "b1@x.io"}]}),
    ]
    responses, frames = await collect_posts(simulator, posts)
    endings = {f["data"]["uuid"] for f in frames if f["event"] == "contact_bulk_create_ending"}
    assert endings == {r.json()["uuid"] for r in responses}


async def test_events_missed_while_disconnected_are_not_replayed(simulator: Simulator) -> None:
    """A bulk sent while no socket is connected is never reported to a socket that connects later."""
    async with httpx.AsyncClient() as client:
        missed = await client.post(
            simulator.urls["datananas"] + "/contacts/bulk",
            json={"list": "L", "contacts": [{"email": "m@x.io"}]},
            headers=AUTH,
        )
        await poll_until(
            lambda: client.get(simulator.base_url + "/health"), lambda _: bool(missed_job_ended(simulator, missed))
        )
    response, frames = await collect(simulator, [{"email": "n@x.io"}])
    assert {f["data"]["uuid"] for f in frames} == {response.json()["uuid"]}


def missed_job_ended(sim: Simulator, response: httpx.Response) -> bool:
    return sim.state.extra["datananas"].jobs[response.json()["uuid"]]["ended"] == 1


async def test_existing_contacts_stay_put_by_default(simulator: Simulator) -> None:
    """Without flags, an existing contact keeps its list and owner (it is only updated)."""
    first = {"list": "L1", "contacts": [{"email": "o@x.io", "owner": "ann@x.io"}]}
    second = {"list": "L2", "contacts": [{"email": "o@x.io", "owner": "bob@x.io"}]}
    await collect_posts(simulator, [({}, first), ({}, second)])
    assert simulator.state.extra["datananas"].contacts["o@x.io"] == {"listId": "L1", "owner": "ann@x.io"}


async def test_move_existing_to_list_and_replace_owner(simulator: Simulator) -> None:
    """moveExistingToList=true moves existing contacts to the list; replaceOwner=true replaces their owner."""
    first = {"list": "L1", "contacts": [{"email": "p@x.io", "owner": "ann@x.io"}]}
    second = {"list": "L2", "contacts": [{"email": "p@x.io", "owner": "bob@x.io"}]}
    flags = {"moveExistingToList": "true", "replaceOwner": "true"}
    _, frames = await collect_posts(simulator, [({}, first), (flags, second)])
    assert simulator.state.extra["datananas"].contacts["p@x.io"] == {"listId": "L2", "owner": "bob@x.io"}
    assert frames[-1]["data"]["updated"] == 1


async def test_bad_flag_value_is_400(simulator: Simulator) -> None:
    """A query flag that is not true/false is a 400 naming the flag."""
    async with httpx.AsyncClient() as client:
        r = await client.post(
            simulator.urls["datananas"] + "/contacts/bulk",
            params={"replaceOwner": "maybe"},
            json={"list": "L", "contacts": [{"email": "f@x.io"}]},
            headers=AUTH,
        )
    assert r.status_code == 400 and "replaceOwner" in r.json()["error"]


async def test_contact_without_email_or_linkedin_is_400(simulator: Simulator) -> None:
    """A contact with neither email nor linkedinUrl is a 400 naming its index; nothing is created."""
    async with httpx.AsyncClient() as client:
        r = await client.post(
            simulator.urls["datananas"] + "/contacts/bulk",
            json={"list": "L", "contacts": [{"email": "ok@x.io"}, {"firstname": "No"}]},
            headers=AUTH,
        )
    assert r.status_code == 400 and r.json()["index"] == 1
    assert simulator.state.extra["datananas"].jobs == {}


async def test_wrong_content_type_is_415(simulator: Simulator) -> None:
    """A form body gets 415."""
    async with httpx.AsyncClient() as client:
        r = await client.post(simulator.urls["datananas"] + "/contacts/bulk", data={"list": "L"}, headers=AUTH)
    assert r.status_code == 415


async def test_wrong_method_is_405(simulator: Simulator) -> None:
    """A GET on /contacts/bulk gets 405."""
    async with httpx.AsyncClient() as client:
        r = await client.get(simulator.urls["datananas"] + "/contacts/bulk", headers=AUTH)
    assert r.status_code == 405


async def test_throttled_with_retry_after() -> None:
    """Over a configured budget the answer is 429 with Retry-After."""
    from adapters.simulator import Clock, Throttle

    config = SimulatorConfig(item_time=0.0001, tick=0.005, throttle={"datananas": Throttle(limit=1, window=60)})
    async with checked_simulator(config, clock=Clock(frozen=True)) as sim, httpx.AsyncClient() as client:
        url = sim.urls["datananas"] + "/contacts/bulk"
        body = {"list": "L", "contacts": [{"email": "t@x.io"}]}
        first = await client.post(url, json=body, headers=AUTH)
        second = await client.post(url, json=body, headers=AUTH)
    assert first.status_code == 200 and second.status_code == 429 and 1 <= int(second.headers["retry-after"]) <= 60


async def test_ten_thousand_contacts_with_default_pacing() -> None:
    """A full 10,000-contact bulk at the default pace reports every index once, then the ending."""
    async with checked_simulator(SimulatorConfig()) as sim:
        contacts = [{"email": f"t{i}@x.io"} for i in range(10_000)]
        with anyio.fail_after(60):
            response, frames = await collect(sim, contacts)
    running = [f["data"]["i"] for f in frames if f["event"] == "contact_bulk_create_running"]
    assert response.status_code == 200 and running == list(range(10_000))
    assert frames[-1]["data"] == {"uuid": response.json()["uuid"], "created": 10_000, "updated": 0}
