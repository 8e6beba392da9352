"""Simulator conformance: Pronto bulk and single enrichment with per-contact webhooks."""

from __future__ import annotations

import httpx
import pytest

from adapters.simulator import Simulator, SimulatorConfig
from adapters.simulator.pronto import outcome
from tests.adapters.conftest import checked_simulator
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
    async with checked_simulator(sim_config) as sim:
        contacts = [{"firstname": "a", "lastname": "b", "linkedin_url": "https://linkedin.com/in/ab"}] * 2
        r = await enrich(
            sim, {"contacts": contacts, "enrichment_type": ["personal_email"], "webhook_url": "http://h/x"}
        )
        assert r.status_code == 422 and r.json()["error"] == "gdpr_consent_required"
        assert sim.state.jobs["pronto"] == {}


async def test_insufficient_credits_is_422(sim_config: SimulatorConfig) -> None:
    """Credits are checked up front for the whole batch: too few is 422 and nothing is enqueued."""
    sim_config.pronto_credits = 3
    async with checked_simulator(sim_config) as sim:
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


async def single(sim: Simulator, body: dict, sync: bool = False) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            sim.urls["pronto"] + "/contacts/single_enrich",
            params={"sync": "true"} if sync else {},
            json=body,
            headers=KEY,
        )


async def test_single_enrich_sends_its_webhook(simulator: Simulator, webhook_sink) -> None:
    """single_enrich with webhook_url POSTs the same per-contact payload, enrichment_id being the contact id."""
    sink, url = webhook_sink
    contact = {**people(1)[0], "crm_id": "s-1"}
    r = await single(simulator, {"contact": contact, "enrichment_type": ["email"], "webhook_url": url})
    await sink.wait_for(1)
    [body] = sink.bodies()
    assert body["enrichment_id"] == r.json()["id"] and body["contact"] == contact
    assert body["status"] == outcome(contact)


async def test_sync_single_enrich_answers_the_result(simulator: Simulator) -> None:
    """single_enrich?sync=true answers 200 with the finished result at once."""
    contact = people(1)[0]
    r = await single(simulator, {"contact": contact, "enrichment_type": ["email"]}, sync=True)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "finished"
    assert body["enrichment_status"] == outcome(contact) and body["contact"] == contact


async def test_sync_single_enrich_is_limited_to_50_per_second() -> None:
    """The synchronous variant takes 50 requests per second per key; the 51st is 429, the next second is fine."""
    from adapters.simulator import Clock

    clock = Clock(frozen=True)
    config = SimulatorConfig(item_time=0.0001, tick=0.005)
    body = {"contact": people(1)[0], "enrichment_type": ["email"]}
    async with checked_simulator(config, clock=clock) as sim:
        codes = [(await single(sim, body, sync=True)).status_code for _ in range(51)]
        clock.advance(1)
        after = await single(sim, body, sync=True)
    assert codes == [200] * 50 + [429] and after.status_code == 200


async def test_phone_enrichment_with_linkedin_and_country_codes(simulator: Simulator, webhook_sink) -> None:
    """phone needs linkedin_url; valid phone_country_codes are accepted; found results carry a phone."""
    sink, url = webhook_sink
    contacts = [
        {"firstname": f"P{i}", "lastname": "Ng", "linkedin_url": f"https://linkedin.com/in/p{i}"} for i in range(5)
    ]
    body = {"contacts": contacts, "enrichment_type": ["phone"], "webhook_url": url, "phone_country_codes": ["US", "FR"]}
    r = await enrich(simulator, body)
    assert r.status_code == 202
    await sink.wait_for(5)
    assert all(("phone" in b["result"]) == (b["status"] == "found") for b in sink.bodies())


async def test_personal_email_with_consent_is_accepted(simulator: Simulator) -> None:
    """With the account's GDPR consent (the default), personal_email batches are accepted."""
    contacts = [{"firstname": "a", "lastname": f"b{i}", "linkedin_url": "https://linkedin.com/in/ab"} for i in range(2)]
    r = await enrich(
        simulator, {"contacts": contacts, "enrichment_type": ["personal_email"], "webhook_url": "http://127.0.0.1:9/x"}
    )
    assert r.status_code == 202


async def test_outcomes_follow_the_seed(sim_config: SimulatorConfig, webhook_sink) -> None:
    """With another seed, outcomes still match outcome(contact, seed), so totals are predictable."""
    sink, url = webhook_sink
    sim_config.seed = 42
    contacts = people(100)
    async with checked_simulator(sim_config) as sim:
        await enrich(sim, {"contacts": contacts, "enrichment_type": ["email"], "webhook_url": url})
        await sink.wait_for(100)
    got = sorted((b["contact"]["firstname"], b["status"]) for b in sink.bodies())
    assert got == sorted((c["firstname"], outcome(c, 42)) for c in contacts)
    assert [outcome(c, 42) for c in contacts] != [outcome(c, 0) for c in contacts]


async def test_single_enrich_spends_credits(sim_config: SimulatorConfig) -> None:
    """Each single enrichment costs one credit; with none left it is 422."""
    sim_config.pronto_credits = 1
    async with checked_simulator(sim_config) as sim:
        body = {"contact": people(1)[0], "enrichment_type": ["email"]}
        first, second = await single(sim, body), await single(sim, body)
    assert first.status_code == 202 and second.status_code == 422


async def test_bulk_needs_webhook_url(simulator: Simulator) -> None:
    """A bulk without an http(s) webhook_url is 400 (results only come by webhook)."""
    r = await enrich(simulator, {"contacts": people(2), "enrichment_type": ["email"], "webhook_url": "ftp://x"})
    assert r.status_code == 400 and "webhook_url" in r.json()["error"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_bulk_other_methods_are_405(simulator: Simulator, method: str) -> None:
    """Only POST is allowed on bulk_enrich."""
    async with httpx.AsyncClient() as client:
        r = await client.request(method, simulator.urls["pronto"] + "/contacts/bulk_enrich", headers=KEY)
    assert r.status_code == 405
