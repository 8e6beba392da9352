"""Poller, follow_pages and CsvRows against a real HTTP server on loopback (uvicorn in a thread)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
import anyio.to_thread
import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from adapters.http import ProviderClient, Settings
from adapters.polling import (
    CsvRows,
    Interpretation,
    JobGone,
    PaginationError,
    Poller,
    PollOutcome,
    follow_pages,
)
from adapters.providers import Mautic, Pronto
from adapters.providers.base import Request as ProviderRequest
from adapters.serving import ServedApp
from adapters.simulator import Faults, Simulator, SimulatorConfig
from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.exceptions import ConfigError
from eventbus.testing import capture

pytestmark = pytest.mark.anyio


class Script:
    """What the test server answers: queued status responses, pages, and CSV chunks."""

    def __init__(self) -> None:
        self.statuses: deque[tuple[int, dict[str, str], bytes]] = deque()
        self.status_requests = 0
        self.pages: dict[str, dict[str, object]] = {}
        self.csv_chunks: list[bytes] = []
        self.csv_gate: threading.Event | None = None  # when set, the server waits on it after the first chunk
        self.csv_finished = threading.Event()


SCRIPT = Script()


async def job_status(request: Request) -> Response:
    SCRIPT.status_requests += 1
    if not SCRIPT.statuses:
        return Response(b"script exhausted", status_code=500)
    status, headers, body = SCRIPT.statuses.popleft()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def page(request: Request) -> Response:
    return Response(msgspec.json.encode(SCRIPT.pages[request.path_params["name"]]), media_type="application/json")


async def results(request: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for i, chunk in enumerate(SCRIPT.csv_chunks):
            yield chunk
            if i == 0 and SCRIPT.csv_gate is not None:
                await anyio.to_thread.run_sync(SCRIPT.csv_gate.wait, 10)
        SCRIPT.csv_finished.set()

    return StreamingResponse(body(), media_type="text/csv")


APP = Starlette(routes=[Route("/jobs/j1", job_status), Route("/pages/{name}", page), Route("/results.csv", results)])


@pytest.fixture(scope="module")
def server() -> Iterator[ServedApp]:
    with ServedApp(APP) as served:
        yield served


@pytest.fixture
async def client(server: ServedApp) -> AsyncIterator[httpx.AsyncClient]:
    SCRIPT.__init__()  # a fresh script per test
    async with httpx.AsyncClient(base_url=server.url) as c:
        yield c


def status(status: str, processed: int, total: int = 10, code: int = 200, **headers: str) -> None:
    body = msgspec.json.encode({"status": status, "processed": processed, "total": total})
    SCRIPT.statuses.append((code, headers, body))


def raw(code: int, body: bytes = b"{}", **headers: str) -> None:
    SCRIPT.statuses.append((code, headers, body))


class _Status(msgspec.Struct):
    status: str
    processed: int
    total: int


def interpreter() -> Callable[[httpx.Response], Interpretation]:
    """A sans-I/O status interpreter like a provider module's: progress on change, completion at the end."""
    decoder = msgspec.json.Decoder(_Status)
    last: list[int] = []

    def interpret(response: httpx.Response) -> Interpretation:
        s = decoder.decode(response.content)
        changed = not last or last[-1] != s.processed
        last.append(s.processed)
        common = {"provider": "acme", "job_id": "j1", "source": "poll"}
        events: list[ev.Event] = []
        if changed:
            events.append(
                ev.JobProgress(
                    id=ev.event_id("acme", "j1", "p", s.processed), done=s.processed, total=s.total, **common
                )
            )
        if s.status == "finished":
            events.append(ev.JobCompleted(id=ev.event_id("acme", "j1", "done"), succeeded=s.processed, **common))
        return events, changed, s.status == "finished"

    return interpret


def poller(client: httpx.AsyncClient, bus: Bus, **options: object) -> Poller[httpx.Response]:
    settings = {"initial": 0.001, "factor": 2.0, "cap": 0.004, **options}
    return Poller(lambda: client.get("/jobs/j1"), interpreter(), bus, provider="acme", job_id="j1", **settings)  # type: ignore[arg-type]


def kinds(events: list[ev.Event]) -> list[object]:
    out: list[object] = []
    for e in events:
        match e:
            case ev.JobProgress():
                out.append(e.done)
            case ev.SourceState():
                out.append(f"{e.state} {e.attempt}" if e.attempt else e.state)
            case _:
                out.append(ev.tag_of(type(e)))
    return out


# --- Poller ------------------------------------------------------------------------------


async def test_polls_until_terminal_and_stops(client: httpx.AsyncClient) -> None:
    """Progress changes are published in order, completion ends the run, and no extra request is made."""
    for n in (0, 4, 4, 9):
        status("processing", n)
    status("finished", 10)
    async with Bus() as bus, capture(bus) as events:
        with anyio.fail_after(10):
            assert await poller(client, bus).run() is PollOutcome.TERMINAL
        await bus.drain(timeout=5)
    assert kinds(events) == [0, 4, 9, 10, "job_completed"]
    assert SCRIPT.status_requests == 5


async def test_interval_backs_off_while_unchanged_and_resets_on_change(client: httpx.AsyncClient) -> None:
    """Waits double (up to the cap) while nothing changes and return to the initial interval after a change."""
    for n in (1, 1, 1, 1, 2, 2):
        status("processing", n)
    status("finished", 2)
    async with Bus() as bus:
        p = poller(client, bus)
        with anyio.fail_after(10):
            await p.run()
    assert list(p.delays) == [0.001, 0.002, 0.004, 0.004, 0.001, 0.002]


async def test_429_waits_retry_after_and_publishes_throttled(client: httpx.AsyncClient) -> None:
    """A 429 with X-RateLimit-Reset waits that long (not the short interval) and reports Throttled."""
    status("processing", 1)
    raw(429, **{"X-RateLimit-Reset": "0.02"})
    raw(429, **{"Retry-After": "0.03"})
    status("finished", 10)
    async with Bus() as bus, capture(bus) as events:
        p = poller(client, bus)
        with anyio.fail_after(10):
            assert await p.run() is PollOutcome.TERMINAL
        await bus.drain(timeout=5)
    assert kinds(events) == [1, "throttled", "throttled", 10, "job_completed"]
    assert [e.retry_after for e in events if isinstance(e, ev.Throttled)] == [0.02, 0.03]
    assert list(p.delays)[1:3] == [0.02, 0.03]


async def test_404_on_a_known_job_is_expired_and_keeps_what_was_reported(client: httpx.AsyncClient) -> None:
    """After a successful poll, a 404 publishes JobExpired; earlier progress stays on the bus."""
    status("processing", 3)
    raw(404)
    async with Bus() as bus, capture(bus) as events:
        with anyio.fail_after(10):
            assert await poller(client, bus).run() is PollOutcome.EXPIRED
        await bus.drain(timeout=5)
    assert kinds(events) == [3, "job_expired"]
    assert "kept" in events[1].reason  # type: ignore[attr-defined]


async def test_404_on_an_unseen_job_is_not_found(client: httpx.AsyncClient) -> None:
    """A 404 on the very first poll of a job never seen is an InvalidSignal, not an expiry."""
    raw(404)
    async with Bus() as bus, capture(bus) as events:
        with anyio.fail_after(10):
            assert await poller(client, bus).run() is PollOutcome.NOT_FOUND
        await bus.drain(timeout=5)
    assert [(type(e), e.status) for e in events] == [(ev.InvalidSignal, 404)]  # type: ignore[attr-defined]


async def test_404_on_a_job_declared_known_is_expired(client: httpx.AsyncClient) -> None:
    """known=True (the job was accepted at submit) turns even a first-poll 404 into JobExpired."""
    raw(404)
    async with Bus() as bus, capture(bus) as events:
        with anyio.fail_after(10):
            assert await poller(client, bus, known=True).run() is PollOutcome.EXPIRED
        await bus.drain(timeout=5)
    assert kinds(events) == ["job_expired"]


async def test_job_gone_signal_from_interpret_is_honoured(client: httpx.AsyncClient) -> None:
    """interpret may raise JobGone itself (a provider that says 'expired' in a 200 body)."""
    status("expired", 0)

    def interpret(response: httpx.Response) -> Interpretation:
        raise JobGone

    async with Bus() as bus:
        p = Poller(lambda: client.get("/jobs/j1"), interpret, bus, provider="acme", job_id="j1", known=True)
        with anyio.fail_after(10):
            assert await p.run() is PollOutcome.EXPIRED


async def test_5xx_is_retried_then_recovers(client: httpx.AsyncClient) -> None:
    """Server errors are retried on the growing interval, each said as it happens; the job still completes."""
    raw(503)
    raw(500)
    status("finished", 10)
    async with Bus() as bus, capture(bus) as events:
        with anyio.fail_after(10):
            assert await poller(client, bus).run() is PollOutcome.TERMINAL
        await bus.drain(timeout=5)
    assert kinds(events) == ["reconnecting 1", "reconnecting 2", "connected", 10, "job_completed"]
    first, second, back = events[:3]
    assert first.detail.startswith("polling job j1: HTTP 503 from the provider; polling again in ")  # type: ignore[attr-defined]
    assert "HTTP 500" in second.detail  # type: ignore[attr-defined]
    assert back.detail == "polling job j1: answered again after 2 failed poll(s)"  # type: ignore[attr-defined]
    assert {e.source for e in events[:3]} == {"poll"} and {e.job_id for e in events[:3]} == {""}


async def test_unusable_body_is_an_invalid_signal_and_polling_goes_on(client: httpx.AsyncClient) -> None:
    """A status body the interpreter cannot read publishes InvalidSignal with an excerpt and is retried."""
    raw(200, b"<html>maintenance</html>")
    status("finished", 10)
    async with Bus() as bus, capture(bus) as events:
        with anyio.fail_after(10):
            assert await poller(client, bus).run() is PollOutcome.TERMINAL
        await bus.drain(timeout=5)
    assert kinds(events) == ["invalid_signal", "reconnecting 1", "connected", 10, "job_completed"]
    assert events[0].excerpt == "<html>maintenance</html>"  # type: ignore[attr-defined]


async def test_too_many_errors_in_a_row_gives_up(client: httpx.AsyncClient) -> None:
    """More than max_errors consecutive failures end the run with SourceState gave_up."""
    for _ in range(3):
        raw(502)
    async with Bus() as bus, capture(bus) as events:
        with anyio.fail_after(10):
            assert await poller(client, bus, max_errors=2).run() is PollOutcome.GAVE_UP
        await bus.drain(timeout=5)
    said = [(e.state, e.attempt, "3 failed polls" in e.detail) for e in events]  # type: ignore[attr-defined]
    assert said == [("reconnecting", 1, False), ("reconnecting", 2, False), ("gave_up", 0, True)]
    assert SCRIPT.status_requests == 3


async def test_failures_within_error_grace_do_not_give_up(client: httpx.AsyncClient) -> None:
    """With error_grace, eight 503s in a row (four times max_errors) are an outage ridden out: the job completes."""
    for _ in range(8):
        raw(503)
    status("finished", 10)
    async with Bus() as bus, capture(bus) as events:
        with anyio.fail_after(10):
            assert await poller(client, bus, max_errors=2, error_grace=30).run() is PollOutcome.TERMINAL
        await bus.drain(timeout=5)
    outage = [f"reconnecting {n}" for n in range(1, 9)]
    assert kinds(events) == [*outage, "connected", 10, "job_completed"] and SCRIPT.status_requests == 9


async def test_failures_give_up_once_they_outlast_error_grace(client: httpx.AsyncClient) -> None:
    """Failures go on past max_errors until they have lasted error_grace seconds, then the run gives up."""
    async with Bus() as bus, capture(bus, types={ev.SourceState}) as events:
        started = anyio.current_time()
        with anyio.fail_after(10):  # the script is empty: every status poll is a 500
            assert await poller(client, bus, max_errors=2, error_grace=0.2).run() is PollOutcome.GAVE_UP
        lasted = anyio.current_time() - started
        await bus.drain(timeout=5)
    assert lasted >= 0.2 and SCRIPT.status_requests > 3
    assert [e.state for e in events] == ["reconnecting"] * (SCRIPT.status_requests - 1) + ["gave_up"]  # type: ignore[attr-defined]
    assert f"{SCRIPT.status_requests} failed polls in a row over 0." in events[-1].detail  # type: ignore[attr-defined]


@pytest.mark.parametrize("grace", [-1.0, float("inf"), float("nan")])
def test_error_grace_must_be_finite_seconds(grace: float) -> None:
    with pytest.raises(ConfigError, match="error_grace must be a finite number of seconds"):
        Poller(lambda: None, interpreter(), None, provider="acme", job_id="j1", error_grace=grace)  # type: ignore[arg-type]


async def test_max_polls_bounds_a_job_that_never_ends(client: httpx.AsyncClient) -> None:
    """A job that never reaches a terminal status is given up after max_polls requests."""
    for _ in range(5):
        status("processing", 1)
    async with Bus() as bus, capture(bus, types={ev.SourceState}) as events:
        with anyio.fail_after(10):
            assert await poller(client, bus, max_polls=4).run() is PollOutcome.GAVE_UP
        await bus.drain(timeout=5)
    assert SCRIPT.status_requests == 4
    assert "no terminal status after 4 polls" in events[0].detail  # type: ignore[attr-defined]


async def test_unreachable_provider_is_transient(client: httpx.AsyncClient, server: ServedApp) -> None:
    """Connection errors count as failed polls, bounded by max_errors."""
    async with Bus() as bus, httpx.AsyncClient(base_url="http://127.0.0.1:9") as dead:
        p = Poller(
            lambda: dead.get("/jobs/j1"), interpreter(), bus, provider="acme", job_id="j1", initial=0.001, max_errors=1
        )
        with anyio.fail_after(10):
            assert await p.run() is PollOutcome.GAVE_UP
    assert p.polls == 2


async def test_provider_client_running_out_of_retries_is_a_failed_poll(client: httpx.AsyncClient) -> None:
    """A ProviderClient's ServerError (retries spent on 5xx) counts as a failed poll, not an exception out of run()."""
    for _ in range(4):
        raw(503, b"down")
    settings = Settings(str(client.base_url), "key", max_attempts=2, backoff_base=0.001, backoff_cap=0.002)
    async with Bus() as bus, capture(bus) as events, ProviderClient(Pronto(), settings) as http:
        p = Poller(
            lambda: http.send(ProviderRequest("GET", "/jobs/j1")),
            interpreter(),
            bus,
            provider="acme",
            job_id="j1",
            initial=0.001,
            max_errors=1,
        )
        with anyio.fail_after(10):
            assert await p.run() is PollOutcome.GAVE_UP
        await bus.drain(timeout=5)
    assert p.polls == 2 and SCRIPT.status_requests == 4
    assert "ServerError" in events[-1].detail and "kept failing (HTTP 503" in events[-1].detail  # type: ignore[attr-defined]


async def test_refused_credentials_give_up_at_once(client: httpx.AsyncClient) -> None:
    """A ProviderClient that cannot get a token (AuthError) gives up after one poll: polling again cannot heal it."""
    settings = Settings(str(client.base_url), "client-id", "client-secret", backoff_base=0.001)
    async with Bus() as bus, capture(bus) as events, ProviderClient(Mautic(), settings) as http:
        p = Poller(
            lambda: http.request(ProviderRequest("GET", "/jobs/j1")), interpreter(), bus, provider="acme", job_id="j1"
        )
        with anyio.fail_after(10):
            assert await p.run() is PollOutcome.GAVE_UP
        await bus.drain(timeout=5)
    assert p.polls == 1 and SCRIPT.status_requests == 0
    assert "refused our credentials" in events[-1].detail and "client-secret" not in events[-1].detail  # type: ignore[attr-defined]


# --- follow_pages ------------------------------------------------------------------------


async def fetch_json(client: httpx.AsyncClient, url: str) -> dict[str, object]:
    return msgspec.json.decode((await client.get(url)).content)


async def test_follow_pages_until_next_page_is_absent(client: httpx.AsyncClient) -> None:
    """Pages are fetched in order by following next-page; the last page has none."""
    SCRIPT.pages = {
        "1": {"contacts": [1, 2], "next-page": "/pages/2"},
        "2": {"contacts": [3], "next-page": "/pages/3"},
        "3": {"contacts": [4]},
    }
    with anyio.fail_after(10):
        pages = [
            p async for p in follow_pages(lambda u: fetch_json(client, u), "/pages/1", lambda p: p.get("next-page"))
        ]
    assert [c for p in pages for c in p["contacts"]] == [1, 2, 3, 4]  # type: ignore[union-attr]


async def test_follow_pages_detects_a_loop(client: httpx.AsyncClient) -> None:
    """A next-page pointing back to a fetched page raises PaginationError naming the URL."""
    SCRIPT.pages = {"1": {"next-page": "/pages/2"}, "2": {"next-page": "/pages/1"}}
    with anyio.fail_after(10), pytest.raises(PaginationError, match="'/pages/1' was already fetched"):
        async for _ in follow_pages(lambda u: fetch_json(client, u), "/pages/1", lambda p: p.get("next-page")):
            pass


async def test_follow_pages_is_capped(client: httpx.AsyncClient) -> None:
    """More pages than max_pages raise PaginationError after exactly max_pages fetches."""
    SCRIPT.pages = {str(i): {"next-page": f"/pages/{i + 1}"} for i in range(10)}
    fetched: list[str] = []

    async def fetch(url: str) -> dict[str, object]:
        fetched.append(url)
        return await fetch_json(client, url)

    with anyio.fail_after(10), pytest.raises(PaginationError, match="more than 3 pages"):
        async for _ in follow_pages(fetch, "/pages/0", lambda p: p.get("next-page"), max_pages=3):
            pass
    assert fetched == ["/pages/0", "/pages/1", "/pages/2"]


# --- CsvRows -----------------------------------------------------------------------------

HEADER = b"newContactId,contactId,email,status\r\n"


async def read_rows(client: httpx.AsyncClient, **options: object) -> tuple[list[dict[str, str]], list[ev.Event]]:
    async with Bus() as bus, capture(bus) as signals:
        async with client.stream("GET", "/results.csv") as response:
            async with CsvRows(response, bus, provider="insideview", job_id="j1", **options) as rows:  # type: ignore[arg-type]
                out = [row.fields async for row in rows]
        await bus.drain(timeout=5)
    return out, signals


async def test_csv_rows_are_parsed_with_quotes_newlines_and_bom(client: httpx.AsyncClient) -> None:
    """Rows split across chunks, quoted commas, doubled quotes, quoted newlines, CRLF and a BOM all parse."""
    SCRIPT.csv_chunks = [
        b"\xef\xbb\xbf" + HEADER[:10],
        HEADER[10:] + b'1,11,"a,b@example.com",found\r\n2,',
        b'22,"say ""hi""\nthere",error\n3,33,c@example.com,found',
    ]
    with anyio.fail_after(10):
        rows, signals = await read_rows(client)
    assert rows == [
        {"newContactId": "1", "contactId": "11", "email": "a,b@example.com", "status": "found"},
        {"newContactId": "2", "contactId": "22", "email": 'say "hi"\nthere', "status": "error"},
        {"newContactId": "3", "contactId": "33", "email": "c@example.com", "status": "found"},
    ]
    assert signals == []


async def test_malformed_csv_rows_are_invalid_signals_and_skipped(client: httpx.AsyncClient) -> None:
    """Wrong field counts, invalid UTF-8 and overlong lines are reported with their line; good rows survive."""
    SCRIPT.csv_chunks = [
        HEADER,
        b"1,11,a@example.com,found\n",
        b"2,22,too,many,fields\n",
        b"3,33,\xff\xfe,found\n",
        b"4," + b"x" * 300 + b",found\n",
        b"5,55,e@example.com,found\n",
        b"6," + b"y" * 300,  # an overlong line split across chunks: dropped up to its newline
        b",found\n7,77,g@example.com,found\n",
    ]
    with anyio.fail_after(10):
        rows, signals = await read_rows(client, max_line=200)
    assert [r["newContactId"] for r in rows] == ["1", "5", "7"]
    reasons = [s.reason for s in signals]  # type: ignore[attr-defined]
    assert reasons == [
        "insideview CSV results: line 3: 5 fields where the header has 4",
        "insideview CSV results: line 4: not utf-8 text (invalid start byte)",
        "insideview CSV results: line 5: longer than 200 bytes",
        "insideview CSV results: line 7: longer than 200 bytes",
    ]
    assert all(len(s.excerpt) < 260 for s in signals)  # type: ignore[attr-defined]


async def test_csv_rows_arrive_before_the_download_ends(client: httpx.AsyncClient) -> None:
    """The first row is yielded while the server is still holding back the rest of the file."""
    SCRIPT.csv_chunks = [HEADER + b"1,11,a@example.com,found\n", b"2,22,b@example.com,found\n"]
    SCRIPT.csv_gate = threading.Event()
    async with Bus() as bus:
        with anyio.fail_after(10):
            async with client.stream("GET", "/results.csv") as response:
                async with CsvRows(response, bus, provider="insideview", job_id="j1") as rows:
                    first = await rows.__anext__()
                    assert not SCRIPT.csv_finished.is_set()
                    SCRIPT.csv_gate.set()
                    rest = [r async for r in rows]
    assert [first.line, *[r.line for r in rest]] == [2, 3]


# --- against the provider simulator: Mautic status, blind pages, expiry ---------------------


class _MauticStatus(msgspec.Struct):
    status: str


def interpret_mautic(job_id: str) -> Callable[[httpx.Response], Interpretation]:
    """A minimal Mautic status interpreter (the real one lives in adapters/providers)."""
    decoder = msgspec.json.Decoder(_MauticStatus)
    last: list[str] = []

    def interpret(response: httpx.Response) -> Interpretation:
        status = decoder.decode(response.content).status
        changed = not last or last[-1] != status
        last.append(status)
        return [], changed, status == "completed"

    return interpret


@pytest.mark.parametrize(
    "sim_config",
    [SimulatorConfig(item_time=0.0001, tick=0.005, mautic_page_size=40, faults=Faults(mautic_expire_after=60))],
)
async def test_simulated_mautic_job_is_polled_paged_and_then_expires(simulator: Simulator) -> None:
    """A Mautic job is polled to completion, its blind pages read to the end, and a 404 later is JobExpired."""
    base = simulator.urls["mautic"]
    contacts = [{"email": f"c{i}@example.com" if i % 10 else "not-an-email"} for i in range(250)]
    async with httpx.AsyncClient(base_url=base) as client, Bus() as bus, capture(bus) as events:
        with anyio.fail_after(30):
            auth = await client.post(
                "/oauth/v2/token",
                data={"grant_type": "client_credentials", "client_id": "demo", "client_secret": "demo"},
            )
            client.headers["Authorization"] = "Bearer " + auth.json()["access_token"]
            job = (await client.post("/api/contacts/bulk/new", json=contacts)).json()["id"]

            def fetch() -> Awaitable[httpx.Response]:
                return client.get(f"/api/contacts/job/{job}")

            poller = Poller(fetch, interpret_mautic(job), bus, provider="mautic", job_id=job, initial=0.002, cap=0.02)
            assert await poller.run() is PollOutcome.TERMINAL

            async def page(url: str) -> dict:
                return msgspec.json.decode((await client.get(url)).content)

            codes = [
                c["statusCode"]
                async for p in follow_pages(
                    page, f"/api/contacts/job/{job}?details=1", lambda p: p["details"].get("next-page")
                )
                for c in p["details"]["contacts"]
            ]
            assert len(codes) == 250 and codes.count(400) == 25 and codes.count(201) == 225

            simulator.clock.advance(61)  # past the job's lifetime, not the token's
            again = Poller(fetch, interpret_mautic(job), bus, provider="mautic", job_id=job, known=True, initial=0.002)
            assert await again.run() is PollOutcome.EXPIRED
            await bus.drain(timeout=5)
    assert [type(e) for e in events] == [ev.JobExpired]


async def test_simulated_insideview_results_are_streamed_row_by_row(simulator: Simulator) -> None:
    """An InsideView job is polled to `finished` and its CSV results are read row by row, one per id."""
    ids = [str(1000 + i) for i in range(500)] + ["abc"]  # ids ending in 7 are not found; "abc" is invalid
    async with httpx.AsyncClient(base_url=simulator.urls["insideview"]) as client, Bus() as bus:
        with anyio.fail_after(30):
            login = await client.post(
                simulator.urls["insideview_login"] + "/Auth/login/v1/token.json",
                params={"clientId": "demo", "clientSecret": "demo", "grantType": "cred"},
            )
            client.headers["accessToken"] = login.json()["accessTokenDetails"]["accessToken"]
            client.headers["Accept"] = "application/json"
            submitted = await client.post(
                "/target/contact/job", content="\n".join(ids), headers={"Content-Type": "text/plain"}
            )
            job = submitted.json()["jobId"]

            def interpret(response: httpx.Response) -> Interpretation:
                s = msgspec.json.decode(response.content)
                return [], True, s["status"] in ("finished", "failed", "aborted")

            poller = Poller(
                lambda: client.get(f"/target/contact/job/{job}"),
                interpret,
                bus,
                provider="insideview",
                job_id=job,
                initial=0.002,
                cap=0.02,
            )
            assert await poller.run() is PollOutcome.TERMINAL
            async with client.stream("GET", f"/target/contact/job/{job}/results") as response:
                async with CsvRows(response, bus, provider="insideview", job_id=job) as rows:
                    statuses = [row.fields["status"] async for row in rows]
            assert rows.invalid == 0
    assert len(statuses) == 501
    assert statuses.count("error") == 1 + sum(1 for i in ids if i.endswith("7"))
