"""Simulator conformance: Mautic (Acquia Campaign Studio), over real loopback HTTP."""

from __future__ import annotations

import httpx
import pytest

from adapters.simulator import Clock, Simulator, SimulatorConfig, Throttle
from tests.adapters.conftest import checked_simulator
from tests.adapters.simulator.helpers import mautic_token, poll_until

pytestmark = pytest.mark.anyio


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def finished(client: httpx.AsyncClient, sim: Simulator, token: str, job_id: str) -> httpx.Response:
    url = sim.urls["mautic"] + f"/api/contacts/job/{job_id}"
    return await poll_until(lambda: client.get(url, headers=auth(token)), lambda r: r.json()["status"] == "completed")


async def all_details(client: httpx.AsyncClient, sim: Simulator, token: str, job_id: str) -> tuple[list, int]:
    """Follow next-page until it is absent; return every contact entry and the number of pages."""
    url: str | None = sim.urls["mautic"] + f"/api/contacts/job/{job_id}?details=1"
    entries, pages = [], 0
    while url:
        body = (await client.get(url, headers=auth(token))).json()
        entries += body["details"]["contacts"]
        pages += 1
        url = body["details"].get("next-page")
    return entries, pages


async def test_client_credentials_token(simulator: Simulator) -> None:
    """OAuth2 client credentials return a bearer token that lives 3600 s; bad secrets get 401."""
    async with httpx.AsyncClient() as client:
        ok = await client.post(
            simulator.urls["mautic"] + "/oauth/v2/token",
            data={"grant_type": "client_credentials", "client_id": "demo", "client_secret": "demo"},
        )
        bad = await client.post(
            simulator.urls["mautic"] + "/oauth/v2/token",
            data={"grant_type": "client_credentials", "client_id": "demo", "client_secret": "x"},
        )
    assert ok.json()["expires_in"] == 3600 and ok.json()["token_type"] == "bearer"
    assert bad.status_code == 401


async def test_missing_or_expired_token_is_401(simulator: Simulator) -> None:
    """No token, or one past its hour, gets 401."""
    async with httpx.AsyncClient() as client:
        token = await mautic_token(client, simulator)
        url = simulator.urls["mautic"] + "/api/contacts/bulk/new"
        none = await client.post(url, json=[{"email": "a@b.c"}])
        simulator.clock.advance(3601)
        expired = await client.post(url, json=[{"email": "a@b.c"}], headers=auth(token))
    assert none.status_code == 401 and expired.status_code == 401


async def test_bulk_new_is_202_and_job_completes(simulator: Simulator) -> None:
    """bulk/new answers 202 {id}; the job goes queued/in_progress → completed."""
    async with httpx.AsyncClient() as client:
        token = await mautic_token(client, simulator)
        r = await client.post(
            simulator.urls["mautic"] + "/api/contacts/bulk/new",
            json=[{"email": f"p{i}@x.io"} for i in range(10)],
            headers=auth(token),
        )
        assert r.status_code == 202
        done = await finished(client, simulator, token, r.json()["id"])
    assert done.json()["status"] == "completed" and "details" not in done.json()


async def test_details_paginate_blindly_with_outcomes(simulator: Simulator) -> None:
    """details=1 pages through next-page until absent: 201 created, 200 updated, 400 with field errors."""
    simulator.config.mautic_page_size = 4
    contacts = [{"email": f"c{i}@x.io"} for i in range(8)] + [{"email": "c0@x.io"}, {"email": "not-an-email"}]
    async with httpx.AsyncClient() as client:
        token = await mautic_token(client, simulator)
        r = await client.post(simulator.urls["mautic"] + "/api/contacts/bulk/new", json=contacts, headers=auth(token))
        await finished(client, simulator, token, r.json()["id"])
        entries, pages = await all_details(client, simulator, token, r.json()["id"])
    assert pages == 3 and len(entries) == 10
    assert [e["statusCode"] for e in entries] == [201] * 8 + [200, 400]
    assert entries[9]["errors"]["details"] == {"email": ["A valid email is required."]}


async def test_bulk_over_10000_is_400(simulator: Simulator) -> None:
    """More than 10,000 contacts is a 400 saying the limit."""
    async with httpx.AsyncClient() as client:
        token = await mautic_token(client, simulator)
        url = simulator.urls["mautic"] + "/api/contacts/bulk/new"
        r = await client.post(url, json=[{"email": "a@b.c"}] * 10_001, headers=auth(token))
    assert r.status_code == 400 and "at most 10000" in r.json()["errors"][0]["message"]


async def test_bulk_empty_array_is_400(simulator: Simulator) -> None:
    """An empty array of contacts is a 400."""
    async with httpx.AsyncClient() as client:
        token = await mautic_token(client, simulator)
        r = await client.post(simulator.urls["mautic"] + "/api/contacts/bulk/new", json=[], headers=auth(token))
    assert r.status_code == 400


async def test_bulk_malformed_json_is_400(simulator: Simulator) -> None:
    """A truncated JSON body is a 400, never a 500."""
    async with httpx.AsyncClient() as client:
        token = await mautic_token(client, simulator)
        r = await client.post(
            simulator.urls["mautic"] + "/api/contacts/bulk/new",
            content=b"[{",
            headers={**auth(token), "content-type": "application/json"},
        )
    assert r.status_code == 400


async def test_edit_put_creates_and_patch_only_edits(simulator: Simulator) -> None:
    """bulk/edit: PUT of an unknown id creates it (201), PATCH of an unknown id is 404."""
    async with httpx.AsyncClient() as client:
        token = await mautic_token(client, simulator)
        url = simulator.urls["mautic"] + "/api/contacts/bulk/edit"
        put = await client.put(url, json=[{"id": 900, "email": "n@x.io"}], headers=auth(token))
        patch = await client.patch(
            url, json=[{"id": 901, "firstname": "Z"}, {"id": 900, "firstname": "Y"}], headers=auth(token)
        )
        assert put.status_code == patch.status_code == 202
        await finished(client, simulator, token, put.json()["id"])
        await finished(client, simulator, token, patch.json()["id"])
        put_entries, _ = await all_details(client, simulator, token, put.json()["id"])
        patch_entries, _ = await all_details(client, simulator, token, patch.json()["id"])
    assert [e["statusCode"] for e in put_entries] == [201]
    assert [e["statusCode"] for e in patch_entries] == [404, 200]


async def test_job_expires_to_404(sim_config: SimulatorConfig) -> None:
    """A job id answers 404 once its lifetime (48 h, shortened by the fault) has passed."""
    sim_config.faults.mautic_expire_after = 60
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await mautic_token(client, sim)
        r = await client.post(
            sim.urls["mautic"] + "/api/contacts/bulk/new", json=[{"email": "a@b.c"}], headers=auth(token)
        )
        await finished(client, sim, token, r.json()["id"])
        sim.clock.advance(61)
        token = await mautic_token(client, sim)
        gone = await client.get(sim.urls["mautic"] + f"/api/contacts/job/{r.json()['id']}", headers=auth(token))
    assert gone.status_code == 404


async def test_default_expiry_is_48_hours(simulator: Simulator) -> None:
    """Without the fault, a job is still there after 47 hours and gone after 49."""
    async with httpx.AsyncClient() as client:
        token = await mautic_token(client, simulator)
        r = await client.post(
            simulator.urls["mautic"] + "/api/contacts/bulk/new", json=[{"email": "a@b.c"}], headers=auth(token)
        )
        await finished(client, simulator, token, r.json()["id"])
        url = simulator.urls["mautic"] + f"/api/contacts/job/{r.json()['id']}"
        simulator.clock.advance(47 * 3600)
        still = await client.get(url, headers=auth(await mautic_token(client, simulator)))
        simulator.clock.advance(2 * 3600)
        gone = await client.get(url, headers=auth(await mautic_token(client, simulator)))
    assert still.status_code == 200 and gone.status_code == 404


async def test_delete_removes_job(simulator: Simulator) -> None:
    """DELETE answers 200 and the job is then 404; deleting it again is 404."""
    async with httpx.AsyncClient() as client:
        token = await mautic_token(client, simulator)
        r = await client.post(
            simulator.urls["mautic"] + "/api/contacts/bulk/new", json=[{"email": "a@b.c"}] * 50, headers=auth(token)
        )
        url = simulator.urls["mautic"] + f"/api/contacts/job/{r.json()['id']}"
        first = await client.delete(url, headers=auth(token))
        after = await client.get(url, headers=auth(token))
        again = await client.delete(url, headers=auth(token))
    assert (first.status_code, after.status_code, again.status_code) == (200, 404, 404)


async def test_batch_new_limit_200_and_201(simulator: Simulator) -> None:
    """batch/new answers 201 with contacts, statusCodes and errors; more than 200 is 400."""
    async with httpx.AsyncClient() as client:
        token = await mautic_token(client, simulator)
        url = simulator.urls["mautic"] + "/api/contacts/batch/new"
        ok = await client.post(url, json=[{"email": "b1@x.io"}, {"email": "bad"}], headers=auth(token))
        over = await client.post(url, json=[{"email": "b@x.io"}] * 201, headers=auth(token))
    body = ok.json()
    assert ok.status_code == 201 and body["statusCodes"] == [201, 400] and "1" in body["errors"]
    assert len(body["contacts"]) == 1 and over.status_code == 400


async def test_throttle_sends_rate_limit_headers(sim_config: SimulatorConfig) -> None:
    """Over the budget the answer is 429 with X-RateLimit-Limit, -Remaining and -Reset (seconds)."""
    sim_config.throttle["mautic"] = Throttle(limit=1, window=60)
    async with checked_simulator(sim_config, clock=Clock(frozen=True)) as sim, httpx.AsyncClient() as client:
        token = await mautic_token(client, sim)
        url = sim.urls["mautic"] + "/api/contacts/bulk/new"
        await client.post(url, json=[{"email": "a@b.c"}], headers=auth(token))
        r = await client.post(url, json=[{"email": "a@b.c"}], headers=auth(token))
    assert r.status_code == 429
    assert r.headers["X-RateLimit-Limit"] == "1" and r.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(r.headers["X-RateLimit-Reset"]) <= 60


async def test_status_moves_queued_in_progress_completed(sim_config: SimulatorConfig) -> None:
    """Observed statuses only move forward through queued → in_progress → completed, and in_progress is seen."""
    sim_config.item_time = 0.0005  # 2,000 contacts take about a second
    order = ["queued", "in_progress", "completed"]
    seen: list[str] = []
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await mautic_token(client, sim)
        r = await client.post(
            sim.urls["mautic"] + "/api/contacts/bulk/new",
            json=[{"email": f"s{i}@x.io"} for i in range(2000)],
            headers=auth(token),
        )
        url = sim.urls["mautic"] + f"/api/contacts/job/{r.json()['id']}"

        def record(response: httpx.Response) -> bool:
            seen.append(response.json()["status"])
            return seen[-1] == "completed"

        await poll_until(lambda: client.get(url, headers=auth(token)), record)
    assert "in_progress" in seen
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)


async def test_details_only_once_completed(sim_config: SimulatorConfig) -> None:
    """details=1 on a job that is not completed answers the status alone."""
    sim_config.item_time = 0.01
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await mautic_token(client, sim)
        r = await client.post(
            sim.urls["mautic"] + "/api/contacts/bulk/new",
            json=[{"email": f"e{i}@x.io"} for i in range(1000)],
            headers=auth(token),
        )
        body = (
            await client.get(sim.urls["mautic"] + f"/api/contacts/job/{r.json()['id']}?details=1", headers=auth(token))
        ).json()
    assert body["status"] in ("queued", "in_progress") and "details" not in body


async def test_delete_stops_a_running_job(sim_config: SimulatorConfig) -> None:
    """DELETE on an in_progress job stops it: it processes no more contacts and is gone."""
    sim_config.item_time = 0.01
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await mautic_token(client, sim)
        r = await client.post(
            sim.urls["mautic"] + "/api/contacts/bulk/new",
            json=[{"email": f"k{i}@x.io"} for i in range(2000)],
            headers=auth(token),
        )
        url = sim.urls["mautic"] + f"/api/contacts/job/{r.json()['id']}"
        await poll_until(lambda: client.get(url, headers=auth(token)), lambda r: r.json()["status"] == "in_progress")
        deleted = await client.delete(url, headers=auth(token))
        mautic = sim.state.extra["mautic"]
        stored = len(mautic.contacts)
        # A later job runs for several ticks: had the deleted one kept going, it would have stored more.
        later = await client.post(
            sim.urls["mautic"] + "/api/contacts/bulk/new", json=[{"email": "later@x.io"}], headers=auth(token)
        )
        await finished(client, sim, token, later.json()["id"])
    assert deleted.status_code == 200 and stored < 2000
    assert len(mautic.contacts) == stored + 1


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/contacts/bulk/new"),
        ("POST", "/api/contacts/bulk/edit"),
        ("PUT", "/api/contacts/batch/new"),
        ("POST", "/api/contacts/job/x"),
    ],
)
async def test_wrong_methods_are_405(simulator: Simulator, method: str, path: str) -> None:
    """Methods an endpoint does not take get 405 (bulk/new POST, bulk/edit PUT/PATCH, batch/new POST)."""
    async with httpx.AsyncClient() as client:
        token = await mautic_token(client, simulator)
        r = await client.request(method, simulator.urls["mautic"] + path, headers=auth(token))
    assert r.status_code == 405


async def test_non_object_contacts_are_rejected_per_item(simulator: Simulator) -> None:
    """A contact that is not an object is a per-contact 400 in details, not a failed request."""
    async with httpx.AsyncClient() as client:
        token = await mautic_token(client, simulator)
        r = await client.post(
            simulator.urls["mautic"] + "/api/contacts/bulk/new", json=[{"email": "o@x.io"}, 5, "x"], headers=auth(token)
        )
        await finished(client, simulator, token, r.json()["id"])
        entries, _ = await all_details(client, simulator, token, r.json()["id"])
    assert [e["statusCode"] for e in entries] == [201, 400, 400]


async def test_token_endpoint_refuses_other_grants(simulator: Simulator) -> None:
    """A grant_type other than client_credentials gets 400 unsupported_grant_type."""
    async with httpx.AsyncClient() as client:
        r = await client.post(
            simulator.urls["mautic"] + "/oauth/v2/token",
            data={"grant_type": "password", "client_id": "demo", "client_secret": "demo"},
        )
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
