"""Simulator fault injection and outgoing webhook delivery: each fault off by default, on when set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from adapters.serving import ServedApp
from adapters.signing import verify
from adapters.simulator import Faults, Simulator, SimulatorConfig, parse_fault
from eventbus.exceptions import ConfigError
from tests.adapters.conftest import WebhookSink, checked_simulator

pytestmark = pytest.mark.anyio

KEY = {"x-api-key": "demo-key"}


def batch(n: int, url: str) -> dict:
    contacts = [{"firstname": f"F{i}", "lastname": f"L{i}", "domain": "d.io"} for i in range(n)]
    return {"contacts": contacts, "enrichment_type": ["email"], "webhook_url": url}


@asynccontextmanager
async def pronto_bulk(config: SimulatorConfig, n: int, sink: WebhookSink) -> AsyncIterator[Simulator]:
    """Serve sink, start a simulator and POST one Pronto bulk of n contacts whose webhooks go to sink."""
    async with ServedApp(sink.app) as served, checked_simulator(config) as sim, httpx.AsyncClient() as client:
        await client.post(
            sim.urls["pronto"] + "/contacts/bulk_enrich", json=batch(n, served.url + "/hook"), headers=KEY
        )
        yield sim


async def test_5xx_burst(sim_config: SimulatorConfig) -> None:
    """error_every=3, error_burst=2: each 3rd request starts a burst of two 503s (3, 4, then 6, 7)."""
    sim_config.faults = Faults(error_every=3, error_burst=2)
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        codes = [
            (await client.post(sim.urls["pronto"] + "/contacts/bulk_enrich", json={}, headers=KEY)).status_code
            for _ in range(8)
        ]
    assert codes == [400, 400, 503, 503, 400, 503, 503, 400]


async def test_faults_off_by_default(simulator) -> None:
    """With the default config no request is failed or delayed by a fault."""
    assert simulator.config.faults == Faults()
    async with httpx.AsyncClient() as client:
        codes = {
            (await client.get(simulator.base_url + "/pronto/api/v2/contacts/x", headers=KEY)).status_code
            for _ in range(20)
        }
    assert codes == {404}


async def test_duplicate_webhooks_keep_their_id(sim_config: SimulatorConfig) -> None:
    """duplicate_webhooks=1 delivers every webhook twice, with the same webhook-id."""
    sim_config.faults = Faults(duplicate_webhooks=1.0)
    sink = WebhookSink()
    async with pronto_bulk(sim_config, 3, sink):
        await sink.wait_for(6)
    ids = [h["webhook-id"] for h, _ in sink.requests]
    assert len(ids) == 6 and len(set(ids)) == 3


async def test_reordered_webhooks(sim_config: SimulatorConfig) -> None:
    """reorder_webhooks shuffles delivery order (deterministically for the seed) without losing any."""
    sim_config.faults = Faults(reorder_webhooks=10)
    sim_config.webhook_concurrency = 1  # one worker: arrival order is send order
    sink = WebhookSink()
    async with pronto_bulk(sim_config, 20, sink):
        await sink.wait_for(20)
    order = [int(b["contact"]["firstname"][1:]) for b in sink.bodies()]
    assert sorted(order) == list(range(20)) and order != list(range(20))


async def test_failing_receiver_is_retried(sim_config: SimulatorConfig) -> None:
    """A receiver answering 503 then 500 gets the same webhook again until it answers 200."""
    sink = WebhookSink(statuses=[503, 500])
    sim_config.webhook_concurrency = 1
    async with pronto_bulk(sim_config, 2, sink) as sim:
        await sink.wait_for(2)
        stats = sim.webhooks.stats
    assert stats.delivered == 2 and stats.attempts == 4 and stats.failed == 0


async def test_unreachable_receiver_gives_up_after_attempts(sim_config: SimulatorConfig) -> None:
    """An unreachable receiver is retried webhook_attempts times, then the webhook counts as failed."""
    sim_config.webhook_attempts = 3
    sim_config.webhook_backoff = 0.001
    sink = WebhookSink()
    async with ServedApp(sink.app) as served:
        dead_url = served.url + "/hook"
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        await client.post(sim.urls["pronto"] + "/contacts/bulk_enrich", json=batch(2, dead_url), headers=KEY)
        await sim.webhooks.wait_settled(2, timeout=10)
        assert sim.webhooks.stats.attempts == 6 and sim.webhooks.stats.delivered == 0


async def test_signed_webhooks_verify(sim_config: SimulatorConfig) -> None:
    """With a secret, every webhook carries Standard Webhooks headers that verify with that secret."""
    sim_config.webhook_secret = "whsec_c2VjcmV0LWtleQ=="
    sink = WebhookSink()
    async with pronto_bulk(sim_config, 2, sink):
        await sink.wait_for(2)
    for headers, body in sink.requests:
        assert verify(sim_config.webhook_secret, headers, body).startswith("pr_")


async def test_slow_responses(sim_config: SimulatorConfig) -> None:
    """slow_response delays answers: a client timeout shorter than the delay fires."""
    sim_config.faults = Faults(slow_response=0.5)
    # Only the read waits on the delay; connecting on a loaded machine gets the usual time, so no ConnectTimeout.
    timeout = httpx.Timeout(10.0, read=0.05)
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient(timeout=timeout) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(sim.urls["pronto"] + "/contacts/x", headers=KEY)


def test_parse_fault_values_and_errors() -> None:
    """--fault NAME=VALUE parses typed values and refuses unknown names and bad values, listing valid ones."""
    faults = parse_fault("ws_drop_after=100")
    parse_fault("duplicate-webhooks=0.25", faults)
    parse_fault("ws_accept_then_close", faults)
    assert (faults.ws_drop_after, faults.duplicate_webhooks, faults.ws_accept_then_close) == (100, 0.25, True)
    with pytest.raises(ConfigError, match=r"valid faults: .*ws_drop_after"):
        parse_fault("ws_explode=1")
    with pytest.raises(ConfigError, match="not a valid int"):
        parse_fault("ws_drop_after=lots")
    with pytest.raises(ConfigError, match="probability"):
        parse_fault("duplicate_webhooks=2")
    with pytest.raises(ConfigError, match="negative"):
        parse_fault("error_every=-1")
    for bad in ("nan", "inf", "-inf"):
        with pytest.raises(ConfigError, match=f"'{bad}' is not a valid float"):
            parse_fault(f"slow_response={bad}")


async def test_never_500_on_garbage(simulator) -> None:
    """Garbage bodies, wrong methods and bad JSON on every provider get 4xx, never 5xx."""
    targets = [
        ("POST", "/insideview/api/v1/contact/bulk"),
        ("POST", "/mautic/api/contacts/bulk/new"),
        ("POST", "/datananas/contacts/bulk"),
        ("POST", "/pronto/api/v2/contacts/bulk_enrich"),
        ("POST", "/pronto/api/v2/contacts/single_enrich"),
        ("POST", "/mautic/oauth/v2/token"),
        ("GET", "/insideview/Auth/login/v1/token.json"),
    ]
    bodies = [b"", b"\xff\xfe\x00garbage", b"[" * 5000, b'{"contacts": "many"}', b"null", b"12"]
    async with httpx.AsyncClient() as client:
        for method, path in targets:
            for body in bodies:
                r = await client.request(
                    method,
                    simulator.base_url + path,
                    content=body,
                    headers={"content-type": "application/json", "authorization": "Bearer demo-token", **KEY},
                )
                assert 400 <= r.status_code < 500, (path, body[:20], r.status_code, r.text[:200])


async def deliveries(config: SimulatorConfig, n: int) -> list[tuple[int, str]]:
    """One Pronto bulk of n contacts (item_time 0) through a fresh simulator: (contact, id suffix) as they arrived."""
    sink = WebhookSink()
    async with pronto_bulk(config, n, sink) as sim:
        await sink.wait_for(n)  # item_time=0: every copy was queued in one step, before the first arrived
        await sim.webhooks.wait_settled(sim.webhooks.stats.queued)
    return [
        (int(b["contact"]["firstname"][1:]), h["webhook-id"].rsplit("_", 1)[1])
        for (h, _), b in zip(sink.requests, sink.bodies(), strict=True)
    ]


async def test_duplicates_are_deterministic_under_the_seed() -> None:
    """duplicate_webhooks=0.5 duplicates the same contacts' webhooks in two runs with the same seed."""

    def config() -> SimulatorConfig:
        return SimulatorConfig(item_time=0, seed=3, webhook_concurrency=1, faults=Faults(duplicate_webhooks=0.5))

    first, second = await deliveries(config(), 30), await deliveries(config(), 30)
    assert first == second and 30 < len(first) < 60


async def test_reorder_is_deterministic_under_the_seed() -> None:
    """reorder_webhooks gives the same delivery order in two runs with the same seed, and another with another seed."""

    def config(seed: int) -> SimulatorConfig:
        return SimulatorConfig(item_time=0, seed=seed, webhook_concurrency=1, faults=Faults(reorder_webhooks=10))

    a, b, c = await deliveries(config(1), 30), await deliveries(config(1), 30), await deliveries(config(2), 30)
    assert a == b and a != c and sorted(a) == sorted(c)


async def test_token_endpoints_are_exempt_from_5xx_bursts() -> None:
    """error_every=1 fails every API request but never the login endpoints, so clients can still authenticate."""
    config = SimulatorConfig(faults=Faults(error_every=1))
    async with checked_simulator(config) as sim, httpx.AsyncClient() as client:
        login = await client.post(
            sim.urls["insideview_login"] + "/Auth/login/v1/token.json",
            params={"clientId": "demo", "clientSecret": "demo", "grantType": "cred"},
        )
        oauth = await client.post(
            sim.urls["mautic"] + "/oauth/v2/token",
            data={"grant_type": "client_credentials", "client_id": "demo", "client_secret": "demo"},
        )
        api = await client.get(sim.urls["pronto"] + "/contacts/x", headers=KEY)
    assert (login.status_code, oauth.status_code, api.status_code) == (200, 200, 503)


async def test_receiver_4xx_is_final(sim_config: SimulatorConfig) -> None:
    """A receiver answering 400 is not retried: one attempt, counted as failed."""
    sink = WebhookSink(statuses=[400, 400])
    async with pronto_bulk(sim_config, 2, sink) as sim:
        await sim.webhooks.wait_settled(2)
        stats = sim.webhooks.stats
    assert (stats.attempts, stats.failed, stats.delivered) == (2, 2, 0)


async def test_receiver_429_is_retried(sim_config: SimulatorConfig) -> None:
    """A receiver answering 429 gets the webhook again."""
    sink = WebhookSink(statuses=[429])
    sim_config.webhook_concurrency = 1
    async with pronto_bulk(sim_config, 2, sink) as sim:
        await sink.wait_for(2)
        stats = sim.webhooks.stats
    assert (stats.attempts, stats.delivered) == (3, 2)


async def test_unsigned_webhooks_carry_only_an_id(simulator, webhook_sink) -> None:
    """Without a secret, webhooks carry webhook-id but no signature headers."""
    sink, url = webhook_sink
    async with httpx.AsyncClient() as client:
        await client.post(simulator.urls["pronto"] + "/contacts/bulk_enrich", json=batch(2, url), headers=KEY)
    await sink.wait_for(2)
    for headers, _ in sink.requests:
        assert headers["webhook-id"].startswith("pr_") and "webhook-signature" not in headers


async def test_insideview_status_webhooks_are_signed(sim_config: SimulatorConfig, webhook_sink) -> None:
    """InsideView status callbacks are signed too, with ids iv_<jobId>_<status>."""
    sink, url = webhook_sink
    sim_config.webhook_secret = "whsec_c2VjcmV0LWtleQ=="
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = (
            await client.post(
                sim.urls["insideview_login"] + "/Auth/login/v1/token.json",
                params={"clientId": "demo", "clientSecret": "demo", "grantType": "cred"},
            )
        ).json()["accessTokenDetails"]["accessToken"]
        r = await client.post(
            sim.urls["insideview"] + "/target/contact/job",
            params={"webhook": url},
            content="1",
            headers={"accessToken": token, "content-type": "text/plain", "accept": "application/json"},
        )
        await sink.wait_for(2)
    ids = [verify(sim_config.webhook_secret, headers, body) for headers, body in sink.requests]
    assert ids == [f"iv_{r.json()['jobId']}_processing", f"iv_{r.json()['jobId']}_finished"]
