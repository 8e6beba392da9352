"""follow() against the simulator (every provider to the end, faults on) and scripted provider hosts (bad input)."""

from __future__ import annotations

import collections
import threading
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.abc
import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, StreamingResponse
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

from adapters.backoff import Backoff
from adapters.follow import FollowResult, _CompleteByCount, _RowKeys, follow
from adapters.http import Settings
from adapters.serving import ServedApp
from adapters.simulator import Faults, Simulator, SimulatorConfig
from adapters.submit import AcceptedJob, SubmitReport
from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.exceptions import ConfigError, TransportError
from eventbus.subscribers.board import JobBoard
from eventbus.testing import capture
from eventbus.tracker import JobTracker
from tests.adapters.conftest import checked_simulator, closed_port

pytestmark = pytest.mark.anyio

CREDENTIALS = {
    "insideview": ("demo", "demo"),
    "mautic": ("demo", "demo"),
    "datananas": ("demo-token", None),
    "pronto": ("demo-key", None),
}
OPTIONS = {"datananas": {"list": "L1"}}


def settings(sim: Simulator, provider: str) -> Settings:
    credential, secret = CREDENTIALS[provider]
    return Settings(sim.urls[provider], credential, secret, backoff_base=0.02, backoff_cap=0.5)


def contacts(provider: str, n: int) -> list:
    if provider == "insideview":
        return [str(1000 + i) for i in range(n)]
    if provider == "pronto":
        return [{"first_name": f"A{i}", "last_name": "B", "domain": "acme.io"} for i in range(n)]
    return [{"email": f"p{i}@x.io"} for i in range(n)]


def per_job(events: list[ev.Event], provider: str) -> dict[str, collections.Counter]:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for e in events:
        if e.provider == provider and e.job_id and not ev.is_chunk_ref(e.job_id):
            counts[e.job_id][type(e).__name__] += 1
    return counts


@pytest.mark.parametrize("provider", ["datananas", "pronto", "mautic", "insideview"])
async def test_10000_contacts_end_with_exact_item_counts(simulator: Simulator, provider: str) -> None:
    """10,000 contacts per provider: every job completes and the items reported equal the input."""
    async with Bus() as bus, capture(bus, providers=provider) as events:
        result = await follow(
            provider,
            contacts(provider, 10_000),
            bus,
            settings=settings(simulator, provider),
            timeout=120,
            **OPTIONS.get(provider, {}),
        )
    assert result.ok and not result.timed_out
    items = [e for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)]
    assert len(items) == 10_000 and len({(e.job_id, e.key) for e in items}) == 10_000
    for job_id, counts in per_job(events, provider).items():
        assert counts["JobAccepted"] == 1 and counts["JobCompleted"] == 1, (job_id, counts)
    completed = [e for e in events if isinstance(e, ev.JobCompleted)]
    assert sum(e.succeeded + e.failed for e in completed) == 10_000


@pytest.mark.parametrize("provider", ["datananas", "pronto"])
async def test_each_job_is_followed_from_its_acceptance_not_from_the_end_of_the_submit(provider: str) -> None:
    """Three chunks sent half a second apart, each job running at once: every job completes, no event is lost.

    A Datananas job sends two events per contact over the WebSocket; when they were held until the whole submit
    had ended, the first job's 20,000 overflowed the buffer of early events and the job never completed.
    """
    n = 3 * {"datananas": 10_000, "pronto": 100}[provider]  # three full chunks
    async with checked_simulator(SimulatorConfig(item_time=0)) as sim, Bus() as bus:
        async with capture(bus, providers=provider) as events:
            result = await follow(
                provider,
                contacts(provider, n),
                bus,
                settings=Settings(sim.urls[provider], CREDENTIALS[provider][0], rate_limit=2),
                concurrency=1,
                timeout=30,
                **OPTIONS.get(provider, {}),
            )
    dropped = [e.reason for e in events if isinstance(e, ev.InvalidSignal)]
    assert result.ok and not result.timed_out and not dropped, (result.unfinished, dropped[:3])
    assert len(result.report.accepted) == 3
    assert len({e.key for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)}) == n


async def test_a_whole_jobs_events_before_its_answer_are_held_not_dropped() -> None:
    """Datananas answers "between _starting and _ending": here after every contact of two 10,000-contact chunks
    in flight at once. The 40,004 events that precede the answers are held until the uuids are known (the buffer
    held 10,000: the rest were dropped and neither job completed)."""
    config = SimulatorConfig(item_time=0, datananas_answer_after=10_000)
    async with checked_simulator(config) as sim, Bus() as bus, capture(bus, providers="datananas") as events:
        result = await follow(
            "datananas",
            contacts("datananas", 20_000),
            bus,
            settings=settings(sim, "datananas"),
            concurrency=2,
            timeout=60,
            list="L1",
        )
    dropped = [e.reason for e in events if isinstance(e, ev.InvalidSignal)]
    assert result.ok and not dropped, dropped[:2]
    assert len({e.key for e in events if isinstance(e, ev.ItemSucceeded)}) == 20_000


async def test_keys_are_input_rows(simulator: Simulator) -> None:
    """Item keys are the contact's row in the submitted input, across chunks (Pronto) and jobs."""
    rows = contacts("pronto", 250)
    rows[3]["last_name"] = ""  # refused before sending: its row has no item from the provider
    async with Bus() as bus, capture(bus, types={ev.ItemSucceeded, ev.ItemFailed}) as items:
        await follow("pronto", rows, bus, settings=settings(simulator, "pronto"), timeout=60)
    from_provider = sorted(int(e.key) for e in items if e.source == "webhook")
    assert from_provider == [i for i in range(250) if i != 3]
    assert [e.key for e in items if e.source == "submit"] == ["3"]


@pytest.mark.parametrize("provider", ["pronto", "datananas", "mautic"])
async def test_given_rows_are_the_keys(simulator: Simulator, provider: str) -> None:
    """rows= (a part of a larger input, as `eventbus submit --rows`): items, invalid rows and jobs carry those rows.

    Pronto sends each contact's row to the provider and back (its completion counts them);
    Datananas' alike contacts take the bulk path, whose chunks are renumbered.
    """
    part = contacts(provider, 150)
    numbers = [1000 + 3 * i for i in range(150)]
    part[7] = {"first_name": "no last name"} if provider == "pronto" else {"email": "nope"}
    async with Bus() as bus, capture(bus, types={ev.ItemSucceeded, ev.ItemFailed}) as items:
        result = await follow(
            provider,
            part,
            bus,
            settings=settings(simulator, provider),
            timeout=60,
            rows=numbers,
            **OPTIONS.get(provider, {}),
        )
    assert not result.timed_out and not result.unfinished
    assert sorted(int(e.key) for e in items if e.source != "submit") == sorted(set(numbers) - {numbers[7]})
    assert [e.key for e in items if e.source == "submit"] == [str(numbers[7])]  # one event, whatever the problems
    assert sorted(r for job in result.report.accepted for r in job.rows) == sorted(set(numbers) - {numbers[7]})
    assert [p.row for p in result.report.invalid] == [numbers[7]] * len(result.report.invalid)


async def test_ws_dropped_after_n_frames_still_ends_exactly(sim_config: SimulatorConfig) -> None:
    """The socket drops after 1,000 frames; the source reconnects and _ending closes the job with exact totals."""
    sim_config.faults = Faults(ws_drop_after=1000)
    sim_config.item_time = 0.002  # the job outlives the reconnect, so _ending reaches the new socket
    async with checked_simulator(sim_config) as sim, Bus() as bus, capture(bus, providers="datananas") as events:
        result = await follow(
            "datananas", contacts("datananas", 1500), bus, settings=settings(sim, "datananas"), timeout=60, list="L1"
        )
    states = [e.state for e in events if isinstance(e, ev.SourceState)]
    done = [e for e in events if isinstance(e, ev.JobCompleted)]
    items = [e for e in events if isinstance(e, ev.ItemSucceeded)]
    assert result.ok and states.count("connected") == 2 and "disconnected" in states
    assert len(done) == 1 and done[0].created == 1500 and done[0].succeeded == 1500
    assert 0 < len(items) < 1500  # what the gap swallowed is not invented; the totals come from _ending


async def test_a_job_silent_since_the_websocket_dropped_is_given_up_not_waited_for(sim_config: SimulatorConfig) -> None:
    """The socket drops after 100 frames and the job ends before it is back (at least 0.25 s): Datananas replays
    nothing, so the job's end is lost. Once it is silent for stuck_after, follow stops waiting for it (unfinished),
    long before the timeout; a job with no drop is never given up on this way (see the other tests)."""
    sim_config.faults = Faults(ws_drop_after=100)
    sim_config.item_time = 0  # 1,000 contacts processed well within the shortest reconnect delay
    async with checked_simulator(sim_config) as sim, Bus() as bus, capture(bus, providers="datananas") as events:
        result = await follow(
            "datananas",
            contacts("datananas", 1000),
            bus,
            settings=settings(sim, "datananas"),
            timeout=120,
            stuck_after=1,
            list="L1",
        )
    (job,) = result.report.accepted
    assert not result.timed_out and result.unfinished == [job.job_id] and not result.ok
    assert [e.job_id for e in events if isinstance(e, ev.JobStuck)] == [job.job_id]
    assert not [e for e in events if isinstance(e, ev.JobCompleted)]
    assert "disconnected" in [e.state for e in events if isinstance(e, ev.SourceState)]


async def test_ws_accept_then_close_bounded_and_reported(sim_config: SimulatorConfig) -> None:
    """A server that accepts then closes costs a bounded number of attempts; the job is reported unfinished."""
    sim_config.faults = Faults(ws_accept_then_close=True)
    async with checked_simulator(sim_config) as sim, Bus() as bus, capture(bus, types={ev.SourceState}) as states:
        result = await follow(
            "datananas", contacts("datananas", 10), bus, settings=settings(sim, "datananas"), timeout=3, list="L1"
        )
        connections = sim.state.extra["datananas"].connections
    assert not result.ok and result.timed_out and len(result.unfinished) == 1
    assert 1 <= connections <= 10  # bounded by the backoff over the 3-second window
    assert {"connected", "disconnected"} <= {e.state for e in states}


async def test_duplicated_and_reordered_webhooks_report_each_item_once(sim_config: SimulatorConfig) -> None:
    """With every webhook duplicated and delivery shuffled, each contact is reported exactly once."""
    sim_config.faults = Faults(duplicate_webhooks=1.0, reorder_webhooks=7)
    async with checked_simulator(sim_config) as sim, Bus() as bus, capture(bus, providers="pronto") as events:
        result = await follow("pronto", contacts("pronto", 500), bus, settings=settings(sim, "pronto"), timeout=60)
        delivered = sim.webhooks.stats.delivered
    items = [e for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)]
    assert result.ok and delivered == 1000
    assert len(items) == 500 and len({e.key for e in items}) == 500
    assert sum(isinstance(e, ev.JobCompleted) for e in events) == 5


async def test_5xx_bursts_during_polling_and_submit(sim_config: SimulatorConfig) -> None:
    """503 bursts hit submits and polls alike; retries and backoff still take every job to completion."""
    sim_config.faults = Faults(error_every=4, error_burst=2)
    async with checked_simulator(sim_config) as sim, Bus() as bus:
        result = await follow(
            "mautic", contacts("mautic", 2_000), bus, settings=settings(sim, "mautic"), timeout=60, poll_initial=0.05
        )
    assert result.ok
    row = next(iter(result.board.rows.values()))
    assert row.succeeded == 2_000


async def test_mautic_job_expiry_becomes_job_expired(sim_config: SimulatorConfig) -> None:
    """A job that expires before it is read ends as JobExpired, and follow reports it unfinished."""
    sim_config.faults = Faults(mautic_expire_after=0.3)
    sim_config.item_time = 0.001  # 2,000 contacts take ~2 s: the job is gone before it completes
    async with checked_simulator(sim_config) as sim, Bus() as bus, capture(bus, types={ev.JobExpired}) as expired:
        result = await follow(
            "mautic", contacts("mautic", 2_000), bus, settings=settings(sim, "mautic"), timeout=30, poll_initial=0.05
        )
    assert len(expired) == 1 and not result.ok and not result.timed_out
    assert next(iter(result.board.rows.values())).state == "expired"


async def test_insideview_watched_by_poll_and_webhook(simulator: Simulator) -> None:
    """InsideView jobs are watched by polls and status webhooks at once; one acceptance, one completion each."""
    async with Bus() as bus, capture(bus, providers="insideview") as events:
        result = await follow(
            "insideview", contacts("insideview", 3_000), bus, settings=settings(simulator, "insideview"), timeout=60
        )
        webhooks = simulator.webhooks.stats.delivered
    assert result.ok and webhooks >= 2  # processing + finished, at least
    for counts in per_job(events, "insideview").values():
        assert counts["JobAccepted"] == 1 and counts["JobCompleted"] == 1
    assert sum(isinstance(e, ev.ItemFailed) for e in events) == 300  # ids ending in 7


async def test_backoff_object_is_bounded() -> None:
    """The WebSocket source's default backoff has a finite attempt budget (no hot reconnect loop)."""
    from adapters.websocket import WebSocketSource

    source = WebSocketSource("ws://127.0.0.1:9/ws", lambda f: [], None, provider="datananas")  # type: ignore[arg-type]
    assert isinstance(source.backoff, Backoff) and source.backoff.max_attempts is not None


# --- bad provider input while following, against scripted stand-ins of the providers' hosts -----


class ScriptedMautic:
    """A Mautic stand-in: takes bulk jobs (J1, J2, ...) that are completed at once; ``details`` scripts the pages.

    ``details(job_id, page, size, request)`` returns the answer for one
    ``details=1`` request, ``size`` being the number of contacts the job took.
    Every request's path and raw query are recorded.
    """

    def __init__(self, details: Callable[..., StarletteResponse]) -> None:
        self.details = details
        self.sizes: dict[str, int] = {}
        self.requests: list[tuple[str, bytes]] = []
        self.status_failures = 0  # answer this many status polls 503 first (an outage)
        self.lock = threading.Lock()

    def app(self) -> Starlette:
        async def token(request: StarletteRequest) -> StarletteResponse:
            await request.body()
            return JSONResponse({"access_token": "tok-123", "expires_in": 3600})

        async def bulk(request: StarletteRequest) -> StarletteResponse:
            contacts = msgspec.json.decode(await request.body())
            with self.lock:
                job_id = f"J{len(self.sizes) + 1}"
                self.sizes[job_id] = len(contacts)
            return JSONResponse({"id": job_id}, status_code=202)

        async def job(request: StarletteRequest) -> StarletteResponse:
            job_id = request.path_params["job_id"]
            with self.lock:
                self.requests.append((request.url.path, request.scope["query_string"]))
            if "details" not in request.query_params:
                with self.lock:
                    failing, self.status_failures = self.status_failures > 0, max(0, self.status_failures - 1)
                if failing:
                    return JSONResponse({"message": "down for a deploy"}, status_code=503)
                return JSONResponse({"status": "completed"})
            page = int(request.query_params.get("page", "1"))
            return self.details(job_id, page, self.sizes[job_id], request)

        return Starlette(
            routes=[
                Route("/oauth/v2/token", token, methods=["POST"]),
                Route("/api/contacts/bulk/new", bulk, methods=["POST"]),
                Route("/api/contacts/job/{job_id}", job, methods=["GET"]),
            ]
        )


def details_page(first: int, count: int, next_page: str | None = None) -> StarletteResponse:
    """A details page of ``count`` created contacts (ids from ``first``), with an optional next-page."""
    details: dict = {"contacts": [{"statusCode": 201, "id": first + i} for i in range(count)]}
    if next_page is not None:
        details["next-page"] = next_page
    return JSONResponse({"status": "completed", "details": details})


class Recorder:
    """Another host: records every request it gets, answers 200 (it must never be asked anything)."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def app(self) -> Starlette:
        async def anything(request: StarletteRequest) -> StarletteResponse:
            self.paths.append(request.url.path)
            return JSONResponse({"status": "completed", "details": {"contacts": []}})

        return Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])


def scripted_settings(url: str) -> Settings:
    return Settings(url, "client-id", "client-secret", max_attempts=3, backoff_base=0.01, backoff_cap=0.05)


@pytest.mark.parametrize("fault", ["foreign_host", "undecodable", "unavailable"])
async def test_one_bad_details_page_fails_only_its_job(fault: str) -> None:
    """A bad details page of one job (foreign next-page, not JSON, 503 for good) fails that job; the other completes."""
    elsewhere = Recorder()

    def details(job_id: str, page: int, size: int, request: StarletteRequest) -> StarletteResponse:
        if job_id == "J1":
            return details_page(0, size)
        if fault == "unavailable":
            return StarletteResponse(b"down for maintenance", status_code=503)
        if page == 2 and fault == "undecodable":
            return StarletteResponse(b"<html>oops</html>", media_type="text/html")
        base = elsewhere_url if fault == "foreign_host" else str(request.base_url).rstrip("/")
        return details_page(0, 1, f"{base}/api/contacts/job/{job_id}?details=1&page=2")

    mautic = ScriptedMautic(details)
    async with ServedApp(mautic.app()) as served, ServedApp(elsewhere.app()) as other:
        elsewhere_url = other.url
        async with Bus() as bus, capture(bus, providers="mautic") as events:
            result = await follow(
                "mautic", contacts("mautic", 10_001), bus, settings=scripted_settings(served.url), timeout=30
            )
    rows = {job_id: row for (_, job_id), row in result.board.rows.items()}
    assert rows["J1"].state == "completed" and rows["J1"].succeeded == mautic.sizes["J1"]
    assert rows["J2"].state == "failed" and not result.ok and not result.timed_out
    assert "could not be read" in rows["J2"].reason and "J2" not in result.unfinished
    invalid = [e for e in events if isinstance(e, ev.InvalidSignal)]
    if fault == "foreign_host":
        assert "not fetched" in rows["J2"].reason and elsewhere.paths == []
        assert "tok-123" not in rows["J2"].reason
    elif fault == "undecodable":
        assert "not a Mautic details page" in rows["J2"].reason and invalid[0].excerpt == "<html>oops</html>"
    else:
        assert "HTTP 503" in rows["J2"].reason and invalid == []


async def test_next_page_query_is_sent_as_given() -> None:
    """A next-page query with percent-encoded values is sent as Mautic wrote it, not encoded a second time."""
    query = "details=1&cursor=a%2Bb%3D&empty="

    def details(job_id: str, page: int, size: int, request: StarletteRequest) -> StarletteResponse:
        if "cursor" in request.query_params:
            return details_page(1, size - 1)
        return details_page(0, 1, f"{str(request.base_url).rstrip('/')}/api/contacts/job/{job_id}?{query}")

    mautic = ScriptedMautic(details)
    async with ServedApp(mautic.app()) as served, Bus() as bus:
        result = await follow("mautic", contacts("mautic", 3), bus, settings=scripted_settings(served.url), timeout=30)
    assert result.ok
    assert ("/api/contacts/job/J1", query.encode()) in mautic.requests
    assert mautic.requests[-1][1] == query.encode()


async def test_a_short_outage_of_the_status_polls_does_not_end_the_following() -> None:
    """12 status polls answered 503 in a row (twice max_errors, over well under a second here): the job is still
    followed and completes. (Six failures in a row gave up on it for good: some 2.6 s of outage by default.)"""
    mautic = ScriptedMautic(lambda job_id, page, size, request: details_page(0, size))
    mautic.status_failures = 12
    async with ServedApp(mautic.app()) as served, Bus() as bus, capture(bus, types={ev.SourceState}) as states:
        result = await follow(
            "mautic",
            contacts("mautic", 3),
            bus,
            settings=scripted_settings(served.url),
            timeout=30,
            poll_initial=0.01,
            poll_cap=0.05,
        )
    assert result.ok and mautic.status_failures == 0, (result.unfinished, states)
    assert not [s for s in states if s.state == "gave_up"]
    # The outage was said while it lasted (a console printed nothing for two minutes), and its end.
    outage = [s for s in states if s.source == "poll"]
    assert [s.state for s in outage] == ["reconnecting"] * 12 + ["connected"]
    assert all("polling job J1: HTTP 503 from the provider" in s.detail for s in outage[:-1])


async def test_retried_details_pages_are_said_while_they_are_retried() -> None:
    """A details page answered 503 then 429 is read on the third try; each retry is an event naming the job."""
    answers = [StarletteResponse(b"busy", status_code=503), JSONResponse({}, status_code=429)]

    def details(job_id: str, page: int, size: int, request: StarletteRequest) -> StarletteResponse:
        return answers.pop(0) if answers else details_page(0, size)

    mautic = ScriptedMautic(details)
    async with ServedApp(mautic.app()) as served, Bus() as bus, capture(bus, providers="mautic") as events:
        result = await follow("mautic", contacts("mautic", 3), bus, settings=scripted_settings(served.url), timeout=30)
    assert result.ok and answers == []
    retries = [e for e in events if isinstance(e, ev.SourceState | ev.Throttled)]
    assert [type(e).__name__ for e in retries] == ["SourceState", "Throttled"]
    state, throttled = retries
    assert state.state == "reconnecting" and state.attempt == 1  # type: ignore[union-attr]
    assert state.detail.startswith("reading the details of job J1: HTTP 503; trying again in ")  # type: ignore[union-attr]
    assert (throttled.job_id, throttled.source, throttled.attempt) == ("J1", "poll", 2)


async def test_next_page_with_a_repeated_query_key_is_sent_as_given() -> None:
    """A next-page repeating a query key is fetched with its query as written, nothing folded."""
    query = "details=1&f=a&f=b"

    def details(job_id: str, page: int, size: int, request: StarletteRequest) -> StarletteResponse:
        if request.query_params.getlist("f") == ["a", "b"]:
            return details_page(1, size - 1)
        return details_page(0, 1, f"{str(request.base_url).rstrip('/')}/api/contacts/job/{job_id}?{query}")

    mautic = ScriptedMautic(details)
    async with ServedApp(mautic.app()) as served, Bus() as bus:
        result = await follow("mautic", contacts("mautic", 3), bus, settings=scripted_settings(served.url), timeout=30)
    assert result.ok and result.board.rows[("mautic", "J1")].succeeded == 3
    assert mautic.requests[-1][1] == query.encode()


class ScriptedInsideView:
    """An InsideView stand-in (API under ``/api/v1``): jobs finish at once; ``results`` scripts the CSV answer."""

    def __init__(self, results: Callable[[str], StarletteResponse], fetched: list | None = None) -> None:
        self.results = results
        self.fetched = fetched or []
        self.jobs: dict[str, list[str]] = {}
        self.webhooks: list[str | None] = []  # each submit's webhook= query value
        self.callback_first = False  # POST the "processing" callback (and see it taken) before answering the submit
        self.callbacks_taken: list[int] = []  # the receiver's status for each callback POSTed
        self.refuse_status = False  # answer every status poll 401 (an expired token)
        self.statuses: list[str] = []  # the statuses of the first polls, one each, before "finished"
        self.lock = threading.Lock()

    def app(self) -> Starlette:
        async def token(request: StarletteRequest) -> StarletteResponse:
            return JSONResponse({"accessTokenDetails": {"accessToken": "tok-123"}})

        async def submit(request: StarletteRequest) -> StarletteResponse:
            ids = (await request.body()).decode().split("\n")
            with self.lock:
                job_id = f"J{len(self.jobs) + 1}"
                self.jobs[job_id] = ids
                self.webhooks.append(request.query_params.get("webhook"))
            hook = request.query_params.get("webhook")
            if self.callback_first and hook:
                async with httpx.AsyncClient() as client:
                    callback = {"jobId": job_id, "status": "processing", "type": "targetContactDetails"}
                    taken = await client.post(hook, json=callback)
                self.callbacks_taken.append(taken.status_code)
            return JSONResponse({"jobId": job_id, "status": "accepted"})

        async def status(request: StarletteRequest) -> StarletteResponse:
            job_id = request.path_params["job_id"]
            if self.refuse_status:
                return JSONResponse({"message": "token expired"}, status_code=401)
            n = len(self.jobs[job_id])
            with self.lock:
                said = self.statuses.pop(0) if self.statuses else "finished"
            return JSONResponse({"jobId": job_id, "status": said, "processed": n, "total": n})

        async def results(request: StarletteRequest) -> StarletteResponse:
            return self.results(request.path_params["job_id"])

        async def fetch(request: StarletteRequest) -> StarletteResponse:
            await request.body()
            return JSONResponse(self.fetched)

        return Starlette(
            routes=[
                Route("/Auth/login/v1/token.json", token, methods=["POST"]),
                Route("/api/v1/target/contact/job", submit, methods=["POST"]),
                Route("/api/v1/target/contact/job/{job_id}", status, methods=["GET"]),
                Route("/api/v1/target/contact/job/{job_id}/results", results, methods=["GET"]),
                Route("/api/v1/contact/bulk", fetch, methods=["POST"]),
            ]
        )


def csv_answer(*lines: str) -> StarletteResponse:
    return StarletteResponse("newContactId,status\n" + "".join(f"{line}\n" for line in lines), media_type="text/csv")


async def follow_insideview(scripted: ScriptedInsideView, ids: list[str], **options: object) -> tuple:
    """follow() three InsideView ids against ``scripted``; (result, events)."""
    async with ServedApp(scripted.app()) as served:
        async with Bus() as bus, capture(bus, providers="insideview") as events:
            result = await follow(
                "insideview",
                ids,
                bus,
                settings=scripted_settings(served.url + "/api/v1"),
                timeout=30,
                poll_initial=0.01,
                poll_cap=0.05,
                **options,
            )
    return result, events


async def test_insideview_results_columns_and_statuses_are_read_whatever_their_case() -> None:
    """A results file headed "NewContactID,Status,ErrorCode" with "Found"/"ERROR" reports each id as written:
    every row was "without newContactId" and the whole job's contacts "not in results"."""
    body = "NewContactID,Email,Status,ErrorCode\n11,a@x.io,Found,\n12,,ERROR,400-110\n"
    scripted = ScriptedInsideView(lambda job_id: StarletteResponse(body, media_type="text/csv"))
    result, events = await follow_insideview(scripted, ["11", "12"])
    items = {e.key: e for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)}
    assert result.ok and not [e for e in events if isinstance(e, ev.InvalidSignal)]
    assert isinstance(items["11"], ev.ItemSucceeded) and items["11"].data == {"NewContactID": "11", "Email": "a@x.io"}
    assert isinstance(items["12"], ev.ItemFailed) and items["12"].code == "400-110"


async def test_an_unknown_insideview_status_is_said_once_and_the_job_still_followed() -> None:
    """A status none of InsideView's ("done", three polls running) is one InvalidSignal naming it, not one per poll,
    nor silence until the timeout; the job goes on to finish."""
    scripted = ScriptedInsideView(lambda job_id: csv_answer("11,found", "12,found"))
    scripted.statuses = ["done", "done", "done", "processing"]
    result, events = await follow_insideview(scripted, ["11", "12"])
    invalid = [e for e in events if isinstance(e, ev.InvalidSignal)]
    assert result.ok and scripted.statuses == []
    assert len(invalid) == 1 and invalid[0].job_id == "J1"
    assert invalid[0].reason.startswith("InsideView job status 'done' is none of accepted, processing, finished")


async def test_insideview_row_missing_from_results_is_an_item_failed() -> None:
    """A submitted id the results file never mentions is ItemFailed; the job's total is the ids submitted."""
    scripted = ScriptedInsideView(lambda job_id: csv_answer("11,found", "12,found"))
    result, events = await follow_insideview(scripted, ["11", "12", "13"])
    failed = [e for e in events if isinstance(e, ev.ItemFailed)]
    done = [e for e in events if isinstance(e, ev.JobCompleted)]
    assert [(e.key, e.code) for e in failed] == [("13", "not_in_results")]
    assert "not in InsideView's results file" in failed[0].message
    assert len(done) == 1 and (done[0].succeeded, done[0].failed, done[0].total) == (2, 1, 3)
    assert result.board.rows[("insideview", "J1")].total == 3


async def test_insideview_duplicate_and_foreign_result_rows_report_each_id_once() -> None:
    """A second row for an id and a row for an id never submitted are InvalidSignals, not counted items."""
    scripted = ScriptedInsideView(lambda job_id: csv_answer("11,found", "11,found", "99,found", "12,found", "13,found"))
    result, events = await follow_insideview(scripted, ["11", "12", "13"])
    items = [e.key for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)]
    reasons = [e.reason for e in events if isinstance(e, ev.InvalidSignal)]
    assert sorted(items) == ["11", "12", "13"] and result.ok
    assert any("'11' appears again" in r for r in reasons) and any("'99' was not submitted" in r for r in reasons)
    done = next(e for e in events if isinstance(e, ev.JobCompleted))
    assert (done.succeeded, done.failed, done.total) == (3, 0, 3)


async def test_insideview_small_ids_are_not_taken_for_input_rows() -> None:
    """Item keys are InsideView ids even when an id is a small number that could be an input row."""
    scripted = ScriptedInsideView(lambda job_id: csv_answer("1,found", "0,found"))
    _, events = await follow_insideview(scripted, ["not-an-id", "1", "0"])  # the job carries input rows 1 and 2
    items = {e.key: e.data.get("newContactId") for e in events if isinstance(e, ev.ItemSucceeded)}
    assert items == {"0": "0", "1": "1"}


def test_result_is_not_ok_when_a_total_falls_short_of_the_rows_submitted() -> None:
    """A job completed with every item it counted, but fewer than the rows it carried, is not a success."""
    report = SubmitReport("insideview", "b1", contacts=3)
    report.accepted.append(AcceptedJob("insideview", "b1#0", "b1", 0, (0, 1, 2), 2))
    board = JobBoard()
    common = {"provider": "insideview", "job_id": "b1#0", "source": "submit"}
    board(ev.JobAccepted(id="a", total=2, batch_id="b1", chunk_index=0, **common))
    for key in ("11", "12"):
        board(ev.ItemSucceeded(id=key, key=key, outcome="found", **common))
    board(ev.JobCompleted(id="c", succeeded=2, total=2, **common))
    assert not FollowResult(report, board).ok
    board.rows[("insideview", "b1#0")].total = 3
    board.rows[("insideview", "b1#0")].failed = 1
    assert FollowResult(report, board).ok


@pytest.mark.parametrize(("listed", "expected_invalid"), [(2, 0), (5, 1)])
async def test_mautic_details_are_counted_against_the_contacts_submitted(listed: int, expected_invalid: int) -> None:
    """Details listing fewer contacts than submitted give ItemFailed for the rest; extra entries are InvalidSignal."""
    mautic = ScriptedMautic(lambda job_id, page, size, request: details_page(0, listed))
    async with ServedApp(mautic.app()) as served, Bus() as bus, capture(bus, providers="mautic") as events:
        await follow("mautic", contacts("mautic", 3), bus, settings=scripted_settings(served.url), timeout=30)
    items = {e.key: type(e).__name__ for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)}
    done = next(e for e in events if isinstance(e, ev.JobCompleted))
    invalid = [e for e in events if isinstance(e, ev.InvalidSignal)]
    assert done.total == 3 and done.succeeded + done.failed == 3 and len(invalid) == expected_invalid
    if listed == 2:
        assert items == {"0": "ItemSucceeded", "1": "ItemSucceeded", "2": "ItemFailed"}
    else:
        assert items == dict.fromkeys(("0", "1", "2"), "ItemSucceeded") and "2 more contact(s)" in invalid[0].reason


class ScriptedPronto:
    """A Pronto stand-in: takes one enrichment (E1) and posts the scripted ``keys``' webhooks to its webhook_url.

    With ``early`` the webhooks are delivered before the submit is answered
    (racing it); otherwise right after the answer, one after the other.
    """

    def __init__(self, keys: list[str], *, early: bool) -> None:
        self.keys = keys
        self.early = early
        self.answers: list[int] = []

    async def deliver(self, url: str) -> None:
        async with httpx.AsyncClient() as client:
            for key in self.keys:
                body = {"enrichment_id": "E1", "status": "found", "contact": {"eventbus_key": key}, "result": {}}
                self.answers.append((await client.post(url, json=body)).status_code)

    def app(self) -> Starlette:
        async def enrich(request: StarletteRequest) -> StarletteResponse:
            url = msgspec.json.decode(await request.body())["webhook_url"]
            if self.early:
                await self.deliver(url)
                return JSONResponse({"enrichment_id": "E1"})
            return JSONResponse({"enrichment_id": "E1"}, background=BackgroundTask(self.deliver, url))

        return Starlette(routes=[Route("/contacts/bulk_enrich", enrich, methods=["POST"])])


@pytest.mark.parametrize("early", [False, True])
async def test_pronto_keys_outside_the_job_do_not_complete_it(early: bool) -> None:
    """For a 2-row job, keys "0" and "999" do not complete it: 999 is InvalidSignal, row 1 still counts."""
    pronto = ScriptedPronto(["0", "999", "1"], early=early)
    async with ServedApp(pronto.app()) as served, Bus() as bus, capture(bus, providers="pronto") as events:
        result = await follow("pronto", contacts("pronto", 2), bus, settings=Settings(served.url, "key"), timeout=30)
    items = sorted(e.key for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed))
    invalid = [e for e in events if isinstance(e, ev.InvalidSignal)]
    done = [e for e in events if isinstance(e, ev.JobCompleted)]
    assert pronto.answers[:2] == [200, 200] and items == ["0", "1"]
    assert len(invalid) == 1 and "'999'" in invalid[0].reason and "not one of the 2 rows" in invalid[0].reason
    assert len(done) == 1 and (done[0].succeeded, done[0].total) == (2, 2) and result.ok


async def test_early_items_past_the_hold_bound_are_checked_once_the_rows_are_known() -> None:
    """With no room left to hold early items, they pass unchecked; a stray key among them is flagged and not counted."""

    def item(key: str) -> ev.ItemSucceeded:
        return ev.ItemSucceeded(id=key, provider="pronto", job_id="E1", source="webhook", key=key, outcome="found")

    tracker = JobTracker(stuck_after=None)
    async with Bus() as bus, capture(bus, providers="pronto") as events:
        async with tracker.attach(bus) as merged:
            counted = _CompleteByCount(merged, tracker, "pronto", max_held=1)
            for key in ("0", "999", "1"):  # "0" is held, the others pass unchecked
                await counted.publish(item(key))
            await counted.register("E1", (0, 1, 2))
            await counted.release()
            await counted.publish(item("2"))
    invalid = [e for e in events if isinstance(e, ev.InvalidSignal)]
    done = [e for e in events if isinstance(e, ev.JobCompleted)]
    assert (
        len(invalid) == 1 and "'999'" in invalid[0].reason and "before the job's rows were known" in invalid[0].reason
    )
    assert len(done) == 1 and done[0].total == 3 and events.index(done[0]) == len(events) - 1


def broken_csv(times: int, malformed: bool = False) -> Callable[[str], StarletteResponse]:
    """A results answer whose body is cut after its first row, the first ``times`` downloads (then whole).

    ``malformed`` puts a line of the wrong width right after the header, in every download.
    """
    downloads = []
    bad = ("only-one-field",) if malformed else ()

    def results(job_id: str) -> StarletteResponse:
        downloads.append(job_id)
        if len(downloads) > times:
            return csv_answer(*bad, "11,found", "12,found", "13,found")

        async def body() -> AsyncIterator[bytes]:
            yield b"newContactId,status\n" + b"".join(line.encode() + b"\n" for line in bad) + b"11,found\n"
            raise ConnectionResetError("cut mid-stream by the test")  # uvicorn drops the connection mid-body

        return StreamingResponse(body(), media_type="text/csv")

    return results


async def test_results_download_cut_mid_stream_is_downloaded_again() -> None:
    """A results download cut after one row is started again; every id is reported exactly once, the job completes."""
    result, events = await follow_insideview(ScriptedInsideView(broken_csv(times=2)), ["11", "12", "13"])
    items = [e.key for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)]
    assert sorted(items) == ["11", "12", "13"] and result.ok
    assert not any(isinstance(e, ev.InvalidSignal) for e in events)
    retries = [e for e in events if isinstance(e, ev.SourceState)]  # each download started again is said
    assert [(e.state, e.attempt) for e in retries] == [("reconnecting", 1), ("reconnecting", 2)]
    assert all(e.detail.startswith("downloading the results of job J1: ") for e in retries)


async def test_results_download_answered_503_then_429_is_said_and_retried() -> None:
    """A results download answered 503, then 429, is tried again; each retry is an event naming the job."""
    answers = [StarletteResponse(b"busy", status_code=503), StarletteResponse(b"slow down", status_code=429)]
    scripted = ScriptedInsideView(lambda job_id: answers.pop(0) if answers else csv_answer("11,found", "12,found"))
    result, events = await follow_insideview(scripted, ["11", "12"])
    assert result.ok and answers == []
    retries = [e for e in events if isinstance(e, ev.SourceState | ev.Throttled)]
    assert [type(e).__name__ for e in retries] == ["SourceState", "Throttled"]
    assert retries[0].detail.startswith("downloading the results of job J1: HTTP 503; trying again in ")  # type: ignore[union-attr]
    assert (retries[1].job_id, retries[1].attempt) == ("J1", 2)


async def test_malformed_results_line_is_reported_once_across_downloads() -> None:
    """A malformed line read again by each retried download is one InvalidSignal, not one per download."""
    scripted = ScriptedInsideView(broken_csv(times=2, malformed=True))
    result, events = await follow_insideview(scripted, ["11", "12", "13"])
    invalid = [e.reason for e in events if isinstance(e, ev.InvalidSignal)]
    assert invalid == ["insideview CSV results: line 2: 1 fields where the header has 2"] and result.ok


async def test_results_download_always_cut_fails_the_job() -> None:
    """A results download cut on every attempt ends the job as JobFailed (no exception out of follow)."""
    result, events = await follow_insideview(ScriptedInsideView(broken_csv(times=100)), ["11", "12", "13"])
    row = result.board.rows[("insideview", "J1")]
    assert row.state == "failed" and "the results download failed" in row.reason and "1 of 3" in row.reason
    assert [e.key for e in events if isinstance(e, ev.ItemSucceeded)] == ["11"] and not result.timed_out


async def test_token_that_cannot_be_renewed_while_polling_ends_the_watch() -> None:
    """Polls answered 401 whose token renewal cannot connect give up; follow returns with the job unfinished."""
    login = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = login.extra(anyio.abc.SocketAttribute.local_port)

    async def one_token() -> None:
        # The login host answers one token request, then goes away: every renewal is refused a connection.
        async with login:
            connection = await login.listeners[0].accept()  # type: ignore[attr-defined]
            async with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += await connection.receive()
                body = b'{"accessTokenDetails": {"accessToken": "tok-1"}}'
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                await connection.send(head.encode() + b"Connection: close\r\n\r\n" + body)

    scripted = ScriptedInsideView(lambda job_id: csv_answer())
    scripted.refuse_status = True
    async with anyio.create_task_group() as tg, ServedApp(scripted.app()) as served:
        tg.start_soon(one_token)
        settings = scripted_settings(served.url + "/api/v1")
        settings.login_url = f"http://127.0.0.1:{port}"
        async with Bus() as bus, capture(bus, types={ev.SourceState}) as states:
            with anyio.fail_after(20):
                result = await follow(
                    "insideview",
                    ["11"],
                    bus,
                    settings=settings,
                    timeout=60,
                    poll_initial=0.01,
                    poll_cap=0.02,
                    poll_error_grace=0.2,  # (120 s by default: an outage is ridden out)
                )
    assert result.unfinished == ["J1"] and not result.timed_out and not result.ok
    # Each failed poll was said while the grace lasted (attempts counted), then the watch gave up.
    assert [s.state for s in states[:-1]] == ["reconnecting"] * (len(states) - 1) and len(states) > 1
    assert [s.attempt for s in states[:-1]] == list(range(1, len(states)))
    assert states[-1].state == "gave_up" and "could not connect" in states[-1].detail
    assert all(s.detail.startswith("polling job J1: ") for s in states)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1])
async def test_a_bad_poll_error_grace_is_refused_before_sending(simulator: Simulator, value: float) -> None:
    async with Bus() as bus:
        with pytest.raises(ConfigError, match="poll_error_grace must be a finite number, 0 or more"):
            await follow(
                "mautic", contacts("mautic", 3), bus, settings=settings(simulator, "mautic"), poll_error_grace=value
            )
    assert simulator.state.api_requests == 0


@pytest.mark.parametrize("option", ["timeout", "stuck_after", "poll_initial", "poll_cap", "connect_timeout"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0])
async def test_bad_durations_are_refused_before_sending(simulator: Simulator, option: str, value: float) -> None:
    """A NaN, infinite, zero or negative duration is a ConfigError naming it, and no request reaches the provider."""
    async with Bus() as bus:
        with pytest.raises(ConfigError, match=f"{option} must be a finite number of seconds above 0"):
            s = settings(simulator, "pronto")
            await follow("pronto", contacts("pronto", 3), bus, settings=s, **{option: value})
    assert simulator.state.api_requests == 0


@pytest.mark.parametrize("provider", ["datananas", "pronto"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True])
async def test_a_bad_concurrency_is_refused_by_name_before_sending(simulator: Simulator, provider: str, value) -> None:
    """concurrency also sizes the Datananas WebSocket's buffer: a bad one is named as itself, nothing is sent."""
    async with Bus() as bus:
        with pytest.raises(ConfigError, match=r"follow: concurrency must be a whole number, 1 or more, not "):
            s = settings(simulator, provider)
            await follow(
                provider, contacts(provider, 3), bus, settings=s, concurrency=value, **OPTIONS.get(provider, {})
            )
    assert simulator.state.api_requests == 0


async def test_a_refused_datananas_token_says_so_at_once_and_submits_nothing(simulator: Simulator) -> None:
    """A wrong token is refused at the WebSocket handshake: follow() says which variable at the first refusal (it
    reconnected for the whole connect_timeout, then named only the status); nothing is sent."""
    wrong = Settings(simulator.urls["datananas"], "not-the-token", backoff_base=0.02, backoff_cap=0.5)
    async with Bus() as bus:
        with anyio.fail_after(20), pytest.raises(TransportError) as caught:
            await follow("datananas", contacts("datananas", 3), bus, settings=wrong, connect_timeout=60, list="L1")
    said = str(caught.value)
    assert "answered the handshake with HTTP 40" in said and "the credential was refused" in said
    assert "DATANANAS_TOKEN" in said and "nothing was submitted" in said and "not-the-token" not in said
    assert simulator.state.api_requests == 0


@pytest.mark.parametrize(
    "status, said",
    [
        (503, "the Datananas WebSocket did not reconnect within 1s (last: "),  # retried until connect_timeout
        (403, "the Datananas WebSocket gave up reconnecting (last: "),  # given up at once
    ],
)
async def test_no_datananas_chunk_is_sent_while_the_websocket_is_down(status: int, said: str) -> None:
    """The WebSocket drops once a chunk is on its way and never comes back: the other two are not sent (their
    progress could not be followed: Datananas replays nothing); the run stops saying why, their rows to send later.
    (They were sent, and followed blind until the timeout.)"""
    import asyncio

    import websockets.asyncio.server
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    from tests.adapters.test_websocket import WsServer

    sent_first = threading.Event()

    async def until_a_chunk_is_sent(ws: websockets.asyncio.server.ServerConnection) -> None:
        await asyncio.get_running_loop().run_in_executor(None, sent_first.wait, 30)
        await ws.close(1011, "going away")

    def refuse_after_the_first(connection: object, request: object) -> Response | None:
        if server.connections >= 1:
            return Response(status, "No", Headers(), b"down")
        return None

    def note(event: ev.Event) -> None:
        if isinstance(event, ev.BatchSubmitted):
            sent_first.set()

    config = SimulatorConfig(item_time=0, faults=Faults(slow_response=1.0))  # the first answer: after the drop
    with WsServer(until_a_chunk_is_sent, process_request=refuse_after_the_first) as server:
        async with checked_simulator(config) as sim, Bus() as bus:
            result = await follow(
                "datananas",
                contacts("datananas", 25_000),
                bus,
                settings=Settings(sim.urls["datananas"], "demo-token", backoff_base=0.02, backoff_cap=0.1),
                ws_url=server.url,
                connect_timeout=1.0,
                concurrency=1,
                timeout=5,
                stuck_after=1,
                list="L1",
                on_submit_event=note,
            )
    report = result.report
    (first,) = report.accepted  # whichever chunk took the limiter first (trio schedules in any order)
    assert report.stopped.startswith(said)
    assert sorted(r.chunk_index for r in report.rejected if not r.sent) == sorted({0, 1, 2} - {first.chunk_index})
    assert report.rows_to_send_later == sorted(set(range(25_000)) - set(first.rows))
    assert len(sim.state.jobs["datananas"]) == 1  # nothing else reached the provider


async def test_unreachable_datananas_websocket_submits_nothing(simulator: Simulator) -> None:
    """The Datananas WebSocket cannot connect in time: TransportError naming it and the last failure; nothing sent."""
    port = await closed_port()
    async with Bus() as bus:
        shown = rf"ws://127\.0\.0\.1:{port}/ws\?token=\*\*\*"  # the token never shown
        last = r" \(last attempt: OSError: [^)]+\)"  # why the attempts failed, not only that they did
        with pytest.raises(TransportError, match=rf"WebSocket at {shown} within 0\.3s{last}; nothing was submitted"):
            await follow(
                "datananas",
                contacts("datananas", 3),
                bus,
                settings=settings(simulator, "datananas"),
                ws_url=f"ws://127.0.0.1:{port}/ws",
                connect_timeout=0.3,
                list="L1",
            )
    assert simulator.state.api_requests == 0


@pytest.mark.parametrize("provider", ["pronto", "insideview"])
@pytest.mark.parametrize("where", ["taken", "no host"])
async def test_a_webhook_address_that_cannot_be_listened_on_submits_nothing(
    simulator: Simulator, provider: str, where: str
) -> None:
    """A port in use, or a host that is no host name: a ConfigError saying where, and no request to the provider."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as taken, Bus() as bus:
        port = taken.extra(anyio.abc.SocketAttribute.local_port)
        host, expected = {
            "taken": ("127.0.0.1", rf"cannot listen for webhooks on 127\.0\.0\.1:{port}: Address already in use"),
            "no host": ("bad\x00host", r"cannot listen for webhooks on bad\x00host:\d+: not a usable host name"),
        }[where]
        with pytest.raises(ConfigError, match=expected):
            await follow(
                provider,
                contacts(provider, 3),
                bus,
                settings=settings(simulator, provider),
                webhook_host=host,
                webhook_port=port,
            )
    assert simulator.state.api_requests == 0


async def test_item_positions_become_input_rows_but_submit_items_keep_theirs() -> None:
    """A job's item at position 1 is input row 7; an item submit published already names its input row."""
    async with Bus() as bus, capture(bus, types={ev.ItemSucceeded}) as seen:
        keyed = _RowKeys(bus)
        keyed.rows["J1"] = (5, 7, 9)

        def item(key: str, source: str) -> ev.ItemSucceeded:
            return ev.ItemSucceeded(
                id=ev.new_id(), provider="mautic", job_id="J1", source=source, key=key, outcome="created"
            )

        await keyed.publish(item("1", "poll"))
        keyed.publish_nowait(item("2", "websocket"))
        await keyed.publish(item("1", "submit"))  # row 1 of the input, not position 1 of J1
        await keyed.publish(item("3", "poll"))  # past the job's rows: left as it is
        await bus.drain()
    assert [(e.key, e.source) for e in seen] == [("7", "poll"), ("9", "websocket"), ("1", "submit"), ("3", "poll")]


async def test_pronto_with_a_public_webhook_url_is_followed_on_the_port_it_forwards_to(simulator: Simulator) -> None:
    """webhook_url is what Pronto is told; the receiver listens on webhook_host:webhook_port all the same.

    (It was started only without a webhook_url: given one, every result was refused and the run timed out.)
    """
    port = await closed_port()  # free a moment ago: the receiver takes it
    url = f"http://127.0.0.1:{port}/hooks/pronto"  # as a public URL forwarded to the receiver would be
    async with Bus() as bus:
        result = await follow(
            "pronto",
            contacts("pronto", 5),
            bus,
            settings=settings(simulator, "pronto"),
            webhook_url=url,
            webhook_host="127.0.0.1",
            webhook_port=port,
            timeout=30,
        )
    assert result.ok and not result.timed_out, result.unfinished
    assert result.board.rows[("pronto", result.report.accepted[0].job_id)].total == 5


@pytest.mark.parametrize("provider", ["pronto", "insideview"])
async def test_a_webhook_url_without_the_port_it_forwards_to_is_refused(provider: str) -> None:
    """The receiver would listen on a free port nothing forwards to: refused before anything is sent."""
    async with Bus() as bus:
        with pytest.raises(ConfigError, match=r"give that port \(webhook_port, --webhook-listen HOST:PORT\)"):
            await follow(
                provider,
                contacts(provider, 2),
                bus,
                settings=Settings("https://provider.invalid/api", "key", "secret"),
                webhook_url="https://hooks.example.com/hooks/x",
            )


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::1", "localhost"])
async def test_pronto_elsewhere_with_a_receiver_only_this_machine_reaches_is_refused(host: str) -> None:
    """Pronto's results come only by webhook, and a provider elsewhere cannot call this machine's loopback."""
    async with Bus() as bus, capture(bus) as events:
        with pytest.raises(ConfigError, match=r"cannot reach a receiver on .*give webhook_url \(--webhook-url\)"):
            await follow(
                "pronto",
                contacts("pronto", 2),
                bus,
                settings=Settings("https://app.prontohq.invalid/api/v2", "key"),
                webhook_host=host,
            )
    assert events == []  # nothing was submitted


async def test_insideview_elsewhere_is_given_no_webhook_its_receiver_cannot_be_reached() -> None:
    """InsideView on another host is not told to call this machine's loopback: its status polls say it all.

    The stand-in answers under a public-looking host name, in process (httpx's ASGI transport): a provider host
    elsewhere is what cannot run here.
    """
    scripted = ScriptedInsideView(lambda job_id: csv_answer("11,found", "12,found"))
    transport = httpx.ASGITransport(app=scripted.app())
    async with httpx.AsyncClient(transport=transport) as client, Bus() as bus:
        result = await follow(
            "insideview",
            ["11", "12"],
            bus,
            client=client,
            settings=scripted_settings("https://api.insideview.example/api/v1"),
            timeout=30,
            poll_initial=0.01,
            poll_cap=0.05,
        )
    assert result.ok, result.unfinished
    assert scripted.webhooks == [None]


async def test_insideview_on_this_machine_is_given_the_receivers_url() -> None:
    """The other side of the rule above: a provider on this machine (the simulator) calls the receiver's own URL."""
    scripted = ScriptedInsideView(lambda job_id: csv_answer("11,found"))
    async with ServedApp(scripted.app()) as served, Bus() as bus:
        result = await follow(
            "insideview", ["11"], bus, settings=scripted_settings(served.url + "/api/v1"), timeout=30, poll_initial=0.01
        )
    assert result.ok, result.unfinished
    assert len(scripted.webhooks) == 1
    assert scripted.webhooks[0] is not None and scripted.webhooks[0].startswith("http://127.0.0.1:")
    assert scripted.webhooks[0].endswith("/hooks/insideview")


async def test_an_insideview_callback_before_the_submit_answer_waits_for_it() -> None:
    """The "processing" callback is taken before the submit is answered: the job's acceptance is still the
    submit's own, linking it to its chunk (the callback stood for it, and the chunk row stayed "submitted")."""
    scripted = ScriptedInsideView(lambda job_id: csv_answer("11,found", "12,found"))
    scripted.callback_first = True
    async with ServedApp(scripted.app()) as served, Bus() as bus, capture(bus, providers="insideview") as events:
        result = await follow(
            "insideview", ["11", "12"], bus, settings=scripted_settings(served.url + "/api/v1"), timeout=30
        )
    assert result.ok, result.unfinished
    (accepted,) = [e for e in events if isinstance(e, ev.JobAccepted)]
    assert (accepted.job_id, accepted.source, accepted.chunk_index) == ("J1", "submit", 0)
    assert scripted.callbacks_taken == [200]
    assert {row.job_id: row.state for row in result.board.rows.values()} == {"J1": "completed"}
