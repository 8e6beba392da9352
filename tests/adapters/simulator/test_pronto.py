"""Simulator conformance: Pronto bulk and single enrichment with per-contact webhooks."""

from __future__ import annotations

import httpx
import pytest

from adapters.simulator import Simulator, SimulatorConfig, run_simulator
from adapters.simulator.pronto import outcome
from tests.adapters.simulator.helpers import poll_until

pytestmark = pytest.mark.anyio

KEY = {"x-api-key": "demo-key"}


def people(n: int, **extra) -> list[dict]:
    return [{"firstname": f"Ann{i}", "lastname": f"Lee{i}", "domain": "acme.io", **extra} for i in range(n)]


async def enrich(sim: Simulator, body: dict, headers: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(sim.urls["pronto"] + "/contacts/bulk_enrich", json=body, headers=headers or KEY)


async def test_bulk_is_202_and_one_webhook_per_contact(simulator: Simulator, webhook_sink) -> None:
    """202 {enrichment_id}; then one webhook per contact with status, the contact as sent and the result."""
    sink, url = webhook_sink
    contacts = people(6, crm_id="c-1")
    r = await enrich(simulator, {"contacts": contacts, "enrichment_type": ["email"], "webhook_url": url})
    assert r.status_code == 202
    await sink.wait_for(6)
    bodies = sink.bodies()
    assert {b["enrichment_id"] for b in bodies} == {r.json()["enrichment_id"]}
    assert sorted(b["contact"]["firstname"] for b in bodies) == sorted(c["firstname"] for c in contacts)
    assert all(b["contact"]["crm_id"] == "c-1" for b in bodies)  # custom fields are echoed back
    for b in bodies:
        assert b["status"] == outcome(b["contact"])
        assert ("email" in b["result"]) == (b["status"] == "found")


async def test_outcome_rule_is_controllable(simulator: Simulator, webhook_sink) -> None:
    """Last names containing notfound/error force those outcomes."""
    sink, url = webhook_sink
    contacts = [
        {"firstname": "A", "lastname": "x-notfound", "domain": "d.io"},
        {"firstname": "B", "lastname": "x-error", "domain": "d.io"},
    ]
    await enrich(simulator, {"contacts": contacts, "enrichment_type": ["email"], "webhook_url": url})
    await sink.wait_for(2)
    assert sorted(b["status"] for b in sink.bodies()) == ["error", "not_found"]


@pytest.mark.parametrize(
    "body, fragment",
    [
        (
            {"contacts": people(1), "enrichment_type": ["email"]},
            "2 to 100 contacts, got 1; use /contacts/single_enrich",
        ),
        ({"contacts": people(101), "enrichment_type": ["email"]}, "2 to 100 contacts, got 101"),
        ({"contacts": people(2), "enrichment_type": ["email", "phone"]}, "enrichment_type must be exactly one"),
        ({"contacts": people(2), "enrichment_type": ["fax"]}, "enrichment_type must be exactly one"),
        ({"contacts": people(2), "enrichment_type": ["phone"], "phone_country_codes": ["FRA"]}, "alpha-2"),
        ({"contacts": [{"firstname": "a", "lastname": "b"}] * 2, "enrichment_type": ["email"]}, "validation_failed"),
        ({"contacts": people(2), "enrichment_type": ["phone"]}, "validation_failed"),
    ],
    ids=["one-contact", "too-many", "two-types", "unknown-type", "bad-country", "no-domain", "phone-needs-linkedin"],
)
async def test_invalid_batches_are_400(simulator: Simulator, body: dict, fragment: str) -> None:
    """Sizes, enrichment types, country codes and required fields are checked: 400 with a reason."""
    body = {"webhook_url": "http://127.0.0.1:9/hook", **body}
    r = await enrich(simulator, body)
    assert r.status_code == 400 and fragment in r.text


async def test_required_fields_reported_per_contact(simulator: Simulator) -> None:
    """A validation failure names the contact index and the field."""
    contacts = [*people(1), {"firstname": "x", "domain": "d.io"}]
    r = await enrich(simulator, {"contacts": contacts, "enrichment_type": ["email"], "webhook_url": "http://h/x"})
    assert r.json()["details"] == [{"index": 1, "field": "lastname", "message": "lastname is required"}]


async def test_api_key_required(simulator: Simulator) -> None:
    """A missing or wrong X-API-KEY is 401."""
    r = await enrich(simulator, {"contacts": people(2)}, headers={"x-api-key": "wrong"})
    assert r.status_code == 401


async def test_personal_email_without_consent_is_422(sim_config: SimulatorConfig) -> None:
    """personal_email without GDPR consent rejects the whole batch with 422 and enqueues nothing."""
    sim_config.pronto_gdpr_consent = False
    async with run_simulator(sim_config) as sim:
        contacts = [{"firstname": "a", "lastname": "b", "linkedin_url": "https://linkedin.com/in/ab"}] * 2
        r = await enrich(
            sim, {"contacts": contacts, "enrichment_type": ["personal_email"], "webhook_url": "http://h/x"}
        )
        assert r.status_code == 422 and r.json()["error"] == "gdpr_consent_required"
        assert sim.state.jobs["pronto"] == {}


async def test_insufficient_credits_is_422(sim_config: SimulatorConfig) -> None:
    """Credits are checked up front for the whole batch: too few is 422 and nothing is enqueued."""
    sim_config.pronto_credits = 3
    async with run_simulator(sim_config) as sim:
        body = {"contacts": people(4), "enrichment_type": ["email"], "webhook_url": "http://127.0.0.1:9/x"}
        r = await enrich(sim, body)
        ok = await enrich(sim, {**body, "contacts": people(3)})
        assert r.status_code == 422 and r.json()["error"] == "insufficient_credits"
        assert r.json()["credits_left"] == 3 and ok.status_code == 202


async def test_single_enrich_and_poll(simulator: Simulator) -> None:
    """single_enrich answers 202 with an id; GET /contacts/{id} goes pending → finished with the result."""
    async with httpx.AsyncClient() as client:
        r = await client.post(
            simulator.urls["pronto"] + "/contacts/single_enrich",
            json={"contact": people(1)[0], "enrichment_type": ["email"]},
            headers=KEY,
        )
        assert r.status_code == 202 and r.json()["status"] == "pending"
        url = simulator.urls["pronto"] + f"/contacts/{r.json()['id']}"
        done = await poll_until(lambda: client.get(url, headers=KEY), lambda r: r.json()["status"] == "finished")
        missing = await client.get(simulator.urls["pronto"] + "/contacts/nope", headers=KEY)
    assert done.json()["enrichment_status"] == outcome(people(1)[0]) and missing.status_code == 404
