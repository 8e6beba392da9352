"""submit() against the simulator over loopback: chunking, exactly-once landing, auth, throttling, refusals."""

from __future__ import annotations

import collections
import dataclasses

import anyio
import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from adapters.http import Settings
from adapters.serving import ServedApp
from adapters.simulator import Faults, Simulator, SimulatorConfig, Throttle
from adapters.submit import Tapped, plan, submit
from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.exceptions import ConfigError, ContactError
from eventbus.testing import capture
from tests.adapters.conftest import checked_simulator

pytestmark = pytest.mark.anyio

N = 25_000


def settings(sim: Simulator, provider: str, **overrides) -> Settings:
    creds = {
        "insideview": ("demo", "demo"),
        "mautic": ("demo", "demo"),
        "datananas": ("demo-token", None),
        "pronto": ("demo-key", None),
    }[provider]
    overrides.setdefault("backoff_base", 0.01)
    overrides.setdefault("backoff_cap", 0.2)
    return Settings(sim.urls[provider], creds[0], creds[1], **overrides)


def contacts_for(provider: str, n: int) -> list:
    if provider == "insideview":
        return [str(100_000 + i) for i in range(n)]
    if provider == "pronto":
        return [{"first_name": f"A{i}", "last_name": "B", "domain": "acme.io"} for i in range(n)]
    return [{"email": f"p{i}@x.io", "firstname": f"F{i}"} for i in range(n)]


OPTIONS = {"pronto": {"webhook_url": "http://127.0.0.1:9/hook"}, "datananas": {"list": "L1"}}


def landed(sim: Simulator, provider: str) -> list[int]:
    """The size of every job the simulator created, as it counts them."""
    jobs = sim.state.jobs.get(provider, {}).values()
    key = {"insideview": "total", "mautic": "contacts", "datananas": "total", "pronto": "total"}[provider]
    return sorted(len(j[key]) if isinstance(j[key], list) else j[key] for j in jobs)


@pytest.mark.parametrize(
    "provider, sizes",
    [
        ("insideview", [5000, 10000, 10000]),
        ("mautic", [5000, 10000, 10000]),
        ("datananas", [5000, 10000, 10000]),
        pytest.param("pronto", [100] * 250, marks=pytest.mark.slow),  # 250 requests
    ],
)
async def test_25000_contacts_exact_chunks(simulator: Simulator, provider: str, sizes: list[int]) -> None:
    """25,000 contacts become exactly the allowed chunks, each accepted and landed once."""
    async with Bus() as bus, capture(bus) as events:
        report = await submit(
            provider,
            contacts_for(provider, N),
            bus,
            settings=settings(simulator, provider),
            **OPTIONS.get(provider, {}),
        )
        await bus.drain()
    assert report.ok and report.chunks == len(sizes) and len(report.accepted) == len(sizes)
    assert sorted(len(j.rows) for j in report.accepted) == sizes
    assert landed(simulator, provider) == sizes
    kinds = collections.Counter(type(e) for e in events)
    assert kinds[ev.BatchSubmitted] == kinds[ev.JobAccepted] == len(sizes)
    assert {e.job_id for e in events if isinstance(e, ev.JobAccepted)} == {j.job_id for j in report.accepted}
    assert sum(j.total for j in report.accepted) == N


async def test_throttled_every_chunk_lands_once(sim_config: SimulatorConfig) -> None:
    """With a tight per-window budget, 429s are waited out and every chunk still lands exactly once."""
    # Five chunks, four at once, against 3 per 3 s: over budget even when a loaded machine spreads the burst.
    sim_config.throttle["mautic"] = Throttle(limit=3, window=3)
    async with checked_simulator(sim_config) as sim, Bus() as bus, capture(bus) as events:
        contacts = [{"email": f"t{i}@x.io"} for i in range(1_000)]
        report = await submit(
            "mautic", contacts, bus, settings=settings(sim, "mautic"), endpoint="batch", concurrency=4
        )
        await bus.drain()
    assert report.ok and report.chunks == 5
    throttled = [e for e in events if isinstance(e, ev.Throttled)]
    assert throttled, "the budget should have been exceeded"
    assert all(e.retry_after >= 0 for e in throttled)
    assert sum(isinstance(e, ev.JobCompleted) for e in events) == 5
    assert sum(isinstance(e, ev.ItemSucceeded) for e in events) == 1_000


async def test_insideview_throttle_without_retry_after(sim_config: SimulatorConfig) -> None:
    """InsideView's 429 has no Retry-After: the client backs off on its own and every job lands once."""
    sim_config.throttle["insideview"] = Throttle(limit=2, window=0.5)
    async with checked_simulator(sim_config) as sim, Bus() as bus, capture(bus) as events:
        # Backoff sized to the window, as it would be to InsideView's 5 minutes.
        s = settings(sim, "insideview", backoff_base=0.1, backoff_cap=0.5, max_attempts=20)
        report = await submit("insideview", [str(i) for i in range(120)], bus, settings=s, endpoint="fetch")
        await bus.drain()
    assert report.ok, [e for e in events if isinstance(e, ev.SubmitRejected)]
    assert len(report.accepted) == 3 and any(isinstance(e, ev.Throttled) for e in events)


class ExpireTokensAfterFirstJob:
    """A publisher in front of the bus that expires every simulator token once the first job is accepted."""

    def __init__(self, bus: Bus, sim: Simulator) -> None:
        self.bus, self.sim, self.expired = bus, sim, False

    def _see(self, event: ev.Event) -> None:
        if isinstance(event, ev.JobAccepted) and not self.expired:
            self.expired = True
            self.sim.clock.advance(3601)  # the client's cached token is now refused with a 401

    async def publish(self, event: ev.Event) -> None:
        self._see(event)
        await self.bus.publish(event)

    def publish_nowait(self, event: ev.Event) -> None:
        self._see(event)
        self.bus.publish_nowait(event)


@pytest.mark.parametrize("provider", ["insideview", "mautic"])
async def test_expired_token_mid_run_is_refreshed(simulator: Simulator, provider: str) -> None:
    """A token that expires between two chunks of one run is refreshed once after the 401; every chunk lands."""
    async with Bus() as bus:
        publisher = ExpireTokensAfterFirstJob(bus, simulator)
        contacts = contacts_for(provider, 25_000)
        report = await submit(provider, contacts, publisher, settings=settings(simulator, provider), concurrency=1)
    issued = [t for t in simulator.state.tokens.values() if t.provider == provider]
    assert publisher.expired and report.ok and len(issued) == 2
    assert landed(simulator, provider) == [5000, 10000, 10000]


async def test_datananas_402_stops_the_rest(sim_config: SimulatorConfig) -> None:
    """A 402 becomes QuotaExhausted with the provider's reason; no later chunk is sent, each is reported."""
    sim_config.datananas_connect_quota = 15_000
    async with checked_simulator(sim_config) as sim, Bus() as bus, capture(bus) as events:
        contacts = [{"email": f"q{i}@x.io", "source": "connect"} for i in range(40_000)]
        report = await submit("datananas", contacts, bus, settings=settings(sim, "datananas"), list="L", concurrency=1)
        await bus.drain()
    quota_events = [e for e in events if isinstance(e, ev.QuotaExhausted)]
    rejected = [e for e in events if isinstance(e, ev.SubmitRejected)]
    assert len(report.accepted) == 1 and len(quota_events) == 1
    assert quota_events[0].status == 402 and quota_events[0].reason == "contact_connect_quotas"
    assert len(rejected) == 2 and all(e.reason.startswith("not sent:") for e in rejected)
    assert report.rejected_rows == 30_000 and report.stopped
    # The chunk refused for quota is in the report too (it was counted but left out), then the two not sent.
    assert [(len(r.rows), r.sent, r.status) for r in report.rejected] == [
        (10_000, True, 402),
        (10_000, False, None),
        (10_000, False, None),
    ]
    assert report.rejected_chunks == 3 and "contact_connect_quotas" in report.rejected[0].reason


async def test_pronto_422_credits(sim_config: SimulatorConfig) -> None:
    """Too few credits: 422 insufficient_credits as QuotaExhausted, nothing more submitted."""
    sim_config.pronto_credits = 150
    async with checked_simulator(sim_config) as sim, Bus() as bus, capture(bus, types={ev.QuotaExhausted}) as quota:
        report = await submit(
            "pronto",
            contacts_for("pronto", 400),
            bus,
            settings=settings(sim, "pronto"),
            concurrency=1,
            **OPTIONS["pronto"],
        )
        await bus.drain()
    assert len(report.accepted) == 1 and quota[0].reason == "insufficient_credits" and quota[0].status == 422
    assert report.rejected_rows == 300


async def test_pronto_422_consent(sim_config: SimulatorConfig) -> None:
    """personal_email without GDPR consent: 422 gdpr_consent_required, nothing enqueued."""
    sim_config.pronto_gdpr_consent = False
    contacts = [{"firstname": "a", "lastname": "b", "linkedin": "https://linkedin.com/in/ab"}] * 3
    async with checked_simulator(sim_config) as sim, Bus() as bus, capture(bus, types={ev.QuotaExhausted}) as quota:
        report = await submit(
            "pronto",
            contacts,
            bus,
            settings=settings(sim, "pronto"),
            enrichment_type="personal_email",
            **OPTIONS["pronto"],
        )
        await bus.drain()
    assert report.accepted == [] and quota[0].reason == "gdpr_consent_required"
    assert sim.state.jobs["pronto"] == {}


async def test_invalid_rows_reported_valid_rows_sent(simulator: Simulator) -> None:
    """Invalid rows become ItemFailed naming row and field; the valid rows are still submitted."""
    contacts = [{"email": "a@x.io"}, {"email": "not-an-email"}, {"firstname": "no email"}, {"email": "b@x.io"}]
    async with Bus() as bus, capture(bus, types={ev.ItemFailed}) as failed:
        report = await submit("datananas", contacts, bus, settings=settings(simulator, "datananas"), list="L")
        await bus.drain()
    assert [(e.key, e.details["field"]) for e in failed] == [("1", "email"), ("2", "email")]
    assert "row 1: field 'email'" in failed[0].message and failed[0].job_id.endswith("#-1")
    assert report.accepted[0].rows == (0, 3) and landed(simulator, "datananas") == [2]


async def test_strict_mode_sends_nothing(simulator: Simulator) -> None:
    """strict=True refuses the whole input on the first invalid row, before sending anything."""
    async with Bus() as bus:
        with pytest.raises(ContactError, match="row 1"):
            await submit(
                "datananas",
                [{"email": "a@x.io"}, {"email": "x"}],
                bus,
                settings=settings(simulator, "datananas"),
                list="L",
                strict=True,
            )
    assert landed(simulator, "datananas") == []


@pytest.mark.parametrize(
    "provider, contacts, options",
    [
        ("insideview", [*map(str, range(100_000, 100_060)), "100003", "x1", "100004"], {"endpoint": "fetch"}),
        ("insideview", [*map(str, range(100_000, 100_060)), "bad"], {}),
        ("mautic", [{"email": f"p{i}@x.io"} for i in range(450)] + [{"firstname": "no email"}], {"endpoint": "batch"}),
        ("datananas", [{"email": f"p{i}@x.io", "Job": "CTO"} for i in range(12_001)] + [{"email": "x"}], {"list": "L"}),
        ("pronto", [*contacts_for("pronto", 201), {"first_name": "no last name"}], OPTIONS["pronto"]),
    ],
    ids=["insideview-fetch", "insideview-job", "mautic-batch", "datananas", "pronto"],
)
async def test_plan_is_what_submit_sends(simulator: Simulator, provider: str, contacts: list, options: dict) -> None:
    """plan() sends nothing and needs no credentials; submit() then sends exactly the chunks it planned."""
    before = dict(simulator.state.requests_by_path)
    planned = plan(provider, contacts, **options)
    assert simulator.state.requests_by_path == before
    async with Bus() as bus:
        report = await submit(provider, contacts, bus, settings=settings(simulator, provider), **options)
        await bus.drain()
    assert report.ok
    assert sorted((j.chunk_index, j.rows) for j in report.accepted) == [(c.chunk_index, c.rows) for c in planned.chunks]
    assert (planned.contacts, planned.invalid, planned.repeated) == (report.contacts, report.invalid, report.repeated)
    assert planned.invalid_rows == 1 and planned.valid == sum(len(j.rows) for j in report.accepted)
    sent = set(simulator.state.requests_by_path) - before.keys()
    assert all(any(path.endswith(c.path) for path in sent) for c in planned.chunks)  # paths under the base URL
    assert all(c.method == "POST" for c in planned.chunks)
    assert all(c.body_bytes > 6 * len(c.rows) for c in planned.chunks)  # the encoded contacts, not a count


def test_rows_are_checked() -> None:
    """rows= numbers each contact once: a count that differs, a repeat or a negative number is a ConfigError."""
    two = [{"email": "a@x.io"}, {"email": "b@x.io"}]
    with pytest.raises(ConfigError, match="rows gives 1 row numbers for 2 contacts"):
        plan("datananas", two, list="L", rows=[5])
    for bad in ([5, 5], [-1, 2], [1.0, 2]):
        with pytest.raises(ConfigError, match="rows must be distinct whole numbers from 0 up"):
            plan("datananas", two, list="L", rows=bad)
    assert [c.rows for c in plan("datananas", iter(two), list="L", rows=(9, 4)).chunks] == [(9, 4)]


def test_plan_refuses_what_submit_would() -> None:
    """A missing provider option and strict mode fail in plan() as they would in submit(), before any I/O."""
    with pytest.raises(ConfigError, match="Pronto reports results only by webhook: give webhook_url"):
        plan("pronto", contacts_for("pronto", 3))
    with pytest.raises(ContactError, match="row 1: field 'email'"):
        plan("datananas", [{"email": "a@x.io"}, {"email": "x"}], list="L", strict=True)
    with pytest.raises(ConfigError, match="unknown provider 'hubspot'"):
        plan("hubspot", [])


async def test_insideview_xml_answers(simulator: Simulator) -> None:
    """When the Accept header is lost on the way, InsideView answers XML and the job is still read."""

    async def drop_accept(request: httpx.Request) -> None:
        request.headers.pop("accept", None)

    async with httpx.AsyncClient(event_hooks={"request": [drop_accept]}) as client, Bus() as bus:
        report = await submit(
            "insideview", ["1", "2", "3"], bus, settings=settings(simulator, "insideview"), client=client
        )
    job_id = report.accepted[0].job_id
    assert report.ok and job_id in simulator.state.jobs["insideview"]


async def test_5xx_bursts_are_retried_and_land_once(sim_config: SimulatorConfig) -> None:
    """503 bursts are retried with backoff; every chunk lands exactly once."""
    sim_config.faults = Faults(error_every=3, error_burst=2)  # two of every three requests fail
    # Concurrent chunks share the simulator's request counter, so one chunk may draw several 503s in a row:
    # a budget of 40 attempts makes running out ((2/3)**40 per chunk) practically impossible.
    async with (
        checked_simulator(sim_config) as sim,
        Bus() as bus,
        capture(bus, types={ev.SubmitRejected, ev.SourceState}) as said,
    ):
        s = settings(sim, "pronto", max_attempts=40)
        report = await submit("pronto", contacts_for("pronto", 1_000), bus, settings=s, **OPTIONS["pronto"])
        await bus.drain()
    rejected = [e for e in said if isinstance(e, ev.SubmitRejected)]
    assert report.ok and len(report.accepted) == 10, [e.reason for e in rejected]
    assert landed(sim, "pronto") == [100] * 10
    # Every 503 was said as it was retried: one SourceState per request beyond the ten that landed.
    retries = [e for e in said if isinstance(e, ev.SourceState)]
    sent = sum(n for path, n in sim.state.requests_by_path.items() if path.endswith("/contacts/bulk_enrich"))
    assert len(retries) == sent - 10 > 0
    assert all(e.state == "reconnecting" and e.source == "submit" and "HTTP 503" in e.detail for e in retries)
    assert all(e.detail.startswith("sending chunk ") and "trying again in" in e.detail for e in retries)


async def test_timeout_after_sending_is_not_resent(sim_config: SimulatorConfig) -> None:
    """A request that timed out after it was sent is reported (not retriable) and never sent again."""
    sim_config.faults = Faults(slow_response=0.5)
    async with checked_simulator(sim_config) as sim, Bus() as bus, capture(bus, types={ev.SubmitRejected}) as rejected:
        report = await submit(
            "datananas", [{"email": "a@x.io"}], bus, settings=settings(sim, "datananas", timeout=0.1), list="L"
        )
        await bus.drain()
    assert not report.ok and len(rejected) == 1 and not rejected[0].retriable
    assert "may have been taken" in rejected[0].reason
    assert sim.state.requests_by_path.get("/datananas/contacts/bulk") == 1


async def test_unreachable_provider_is_a_transport_rejection(simulator: Simulator) -> None:
    """A provider that cannot be reached is retried, then each chunk is rejected as retriable."""
    s = Settings("http://127.0.0.1:9", "demo-token", max_attempts=2, backoff_base=0.01, backoff_cap=0.02)
    async with Bus() as bus, capture(bus, types={ev.SubmitRejected}) as rejected:
        report = await submit("datananas", [{"email": "a@x.io"}], bus, settings=s, list="L")
        await bus.drain()
    assert not report.ok and rejected[0].retriable and "could not connect" in rejected[0].reason


async def test_secrets_never_in_events(sim_config: SimulatorConfig) -> None:
    """Credentials refused: the events say so without the secret."""
    async with checked_simulator(sim_config) as sim, Bus() as bus, capture(bus) as events:
        s = Settings(sim.urls["mautic"], "demo", "super-secret-value", backoff_base=0.01)
        report = await submit("mautic", [{"email": "a@x.io"}], bus, settings=s)
        await bus.drain()
    text = b"".join(ev.encode(e) for e in events).decode()
    assert not report.ok and "super-secret-value" not in text and "refused the client credentials" in text
    assert "super-secret-value" not in repr(s)


async def test_refused_credentials_stop_the_rest(simulator: Simulator) -> None:
    """Credentials the token endpoint refuses fail the first chunk; later chunks are not sent, each is reported."""
    async with Bus() as bus, capture(bus, types={ev.SubmitRejected, ev.BatchSubmitted}) as events:
        s = Settings(simulator.urls["mautic"], "demo", "wrong-secret", backoff_base=0.01)
        contacts = [{"email": f"a{i}@x.io"} for i in range(600)]
        report = await submit("mautic", contacts, bus, settings=s, endpoint="batch", concurrency=1)
        await bus.drain()
    rejected = [e for e in events if isinstance(e, ev.SubmitRejected)]
    assert report.chunks == 3 and report.rejected_rows == 600 and "credentials refused" in report.stopped
    assert sum(isinstance(e, ev.BatchSubmitted) for e in events) == 1
    assert not rejected[0].retriable and [e.reason.startswith("not sent:") for e in rejected] == [False, True, True]
    first, *rest = report.rejected  # the report says what the events say, chunk by chunk
    assert (first.chunk_index, first.sent, first.retriable, first.reason) == (
        rejected[0].chunk_index,
        True,
        False,
        rejected[0].reason,
    )
    assert [(r.sent, r.status) for r in rest] == [(False, None), (False, None)]
    assert first.account and report.rows_to_send_later == list(range(600))  # refused credentials took nothing


async def test_answer_entries_for_nothing_sent_are_published_as_invalid_signals() -> None:
    """A synchronous answer with more statuses than contacts sent: one outcome per contact, plus an InvalidSignal."""

    async def token(request: object) -> JSONResponse:
        return JSONResponse({"access_token": "t", "expires_in": 3600})

    async def batch(request: object) -> JSONResponse:  # a Mautic host answering for 3 contacts when 2 were sent
        return JSONResponse({"statusCodes": [201, 201, 201], "contacts": [{"id": 7}, {"id": 8}, {"id": 9}]}, 201)

    app = Starlette(
        routes=[
            Route("/oauth/v2/token", token, methods=["POST"]),
            Route("/api/contacts/batch/new", batch, methods=["POST"]),
        ]
    )
    async with ServedApp(app) as served, Bus() as bus, capture(bus) as events:
        report = await submit(
            "mautic",
            [{"email": "a@x.io"}, {"email": "b@x.io"}],
            bus,
            settings=Settings(served.url, "id", "s"),
            endpoint="batch",
        )
        await bus.drain()
    notes = [e.reason for e in events if isinstance(e, ev.InvalidSignal)]
    assert report.ok and [e.key for e in events if isinstance(e, ev.ItemSucceeded)] == ["0", "1"]
    assert notes == ["Mautic gave 1 more statusCodes than the 2 contacts sent; ignored"]


@pytest.mark.parametrize("provider", ["pronto", "datananas"])
async def test_a_redirect_is_not_followed_and_says_where_it_points(provider: str) -> None:
    """http:// given for https:// (a 301): the chunk is rejected naming the new address, sent once, not followed."""
    posts: list[str] = []

    async def moved(request: StarletteRequest) -> RedirectResponse:
        posts.append(request.url.path)
        return RedirectResponse("https://user:pw@api.example.com" + request.url.path, status_code=301)

    app = Starlette(routes=[Route("/{path:path}", moved, methods=["POST"])])
    options = {"webhook_url": "http://127.0.0.1:9/h"} if provider == "pronto" else {"list": "L"}
    contacts = [{"first_name": "A", "last_name": "B", "domain": "x.io", "email": "a@x.io"}] * 3
    async with ServedApp(app) as served, Bus() as bus:
        report = await submit(provider, contacts, bus, settings=Settings(served.url, "key"), **options)
    (rejected,) = report.rejected
    assert rejected.status == 301 and not report.accepted and len(posts) == 1
    assert rejected.reason.startswith(f"redirected (HTTP 301) to https://***@api.example.com{posts[0]}; ")
    assert "set the base URL to where it points" in rejected.reason and "pw" not in rejected.reason


@pytest.mark.parametrize("endpoint, expected", [("new", 3), ("batch", 0)])
async def test_on_accepted_is_told_each_job_as_it_is_taken(simulator: Simulator, endpoint: str, expected: int) -> None:
    """on_accepted gets each job right after its JobAccepted, before submit returns; a chunk answered in full
    (Mautic's synchronous batch endpoint) is a finished job and is not passed."""
    told: list[tuple[str, bool]] = []
    async with Bus() as bus, capture(bus) as events:

        async def on_accepted(job) -> None:
            await bus.drain()  # what was published before this call reaches the capture
            told.append((job.job_id, job.job_id in {e.job_id for e in events if isinstance(e, ev.JobAccepted)}))

        n = 3 * (10_000 if endpoint == "new" else 200)
        report = await submit(
            "mautic",
            contacts_for("mautic", n),
            bus,
            settings=settings(simulator, "mautic"),
            concurrency=1,
            endpoint=endpoint,
            on_accepted=on_accepted,
        )
    assert len(report.accepted) == 3
    assert [job for job, _ in told] == [j.job_id for j in report.accepted][:expected]
    assert all(published for _, published in told)  # its own JobAccepted was published first


async def test_tapped_hands_each_event_to_the_tap_once() -> None:
    """Tapped: the tap sees each event as it is published; one refused by a full buffer only when it goes."""
    tapped: list[str] = []
    event = ev.BatchSubmitted(
        id="s0", provider="pronto", job_id="b#0", source="submit", batch_id="b", chunk_index=0, chunk_count=1, size=2
    )
    async with Bus() as bus, bus.subscribe("slow", buffer=1) as sub:
        publisher = Tapped(bus, lambda e: tapped.append(e.id))
        publisher.publish_nowait(event)
        with pytest.raises(anyio.WouldBlock):
            publisher.publish_nowait(msgspec.structs.replace(event, id="s1"))
        assert tapped == ["s0"]
        assert (await sub.__anext__()).id == "s0"
        await publisher.publish(msgspec.structs.replace(event, id="s1"))
        assert tapped == ["s0", "s1"]


@pytest.mark.parametrize("provider", ["insideview", "mautic", "datananas", "pronto"])
async def test_a_wrong_base_url_stops_at_the_first_404_and_says_so(simulator: Simulator, provider: str) -> None:
    """A base URL missing its path answers 404: one chunk refused (may be sent again), the rest not sent."""
    given = settings(simulator, provider, login_url=simulator.urls["insideview_login"])
    wrong = dataclasses.replace(given, base_url=given.base_url.rsplit("/", 1)[0] + "/nowhere")
    async with Bus() as bus, capture(bus) as events:
        report = await submit(
            provider,
            contacts_for(provider, 25_000 if provider != "pronto" else 500),
            bus,
            settings=wrong,
            concurrency=1,
            **OPTIONS.get(provider, {}),
        )
    (refused,) = [r for r in report.rejected if r.sent]
    assert refused.status == 404 and len(report.rejected) == report.chunks and not report.accepted
    assert not [e for e in events if isinstance(e, ev.QuotaExhausted)]  # not a quota: a wrong URL
    if provider == "mautic":  # its token endpoint is under the base URL: refused there first
        assert "Mautic's token endpoint answered HTTP 404 (Not Found); check its URL" in refused.reason
        assert report.stopped.startswith("no token: ") and report.rows_to_send_later == list(range(25_000))
        return
    assert refused.retriable and report.stopped.startswith("not_found: no such endpoint (HTTP 404")
    assert f"check the base URL (--base-url or {provider.upper()}_BASE_URL)" in refused.reason
