"""ProviderClient over loopback: auth per provider, token refresh, retries and backoff, ambiguous sends, typed errors.

The scripted provider is a small real Starlette app served by uvicorn in a
background thread (``ServedApp``), so each test still runs on asyncio and trio.
Connection-level faults (a dropped or silent connection) use a raw anyio TCP
listener inside the test.
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

import anyio
import anyio.abc
import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.responses import StreamingResponse
from starlette.routing import Route

from adapters.http import Pacer, ProviderClient, Settings
from adapters.providers import Datananas, InsideView, Mautic, Pronto
from adapters.providers.base import Request
from adapters.serving import ServedApp
from eventbus.exceptions import AmbiguousSubmit, AuthError, ConfigError, RateLimited, ServerError, TransportError
from tests.adapters.conftest import closed_port

pytestmark = pytest.mark.anyio

SECRET = "s3cret-value-never-shown"
SUBMIT = Request("POST", "/api/submit", headers={"Content-Type": "application/json"}, content=b'{"contacts": []}')


@dataclass
class Scripted:
    """A provider stand-in: answers ``/api/submit`` from a script, issues tokens, remembers what it saw."""

    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    token_answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)  # before any grant
    expires_in: int = 3600
    refused_tokens: set[str] = field(default_factory=set)
    tokens_issued: int = 0
    submits: list[dict[str, str]] = field(default_factory=list)  # headers of each submit request
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def mautic_token(request: StarletteRequest) -> StarletteResponse:
            form = (await request.body()).decode()
            with self.lock:
                scripted = self.token_answers.pop(0) if self.token_answers else None
            if scripted is not None:
                status, headers, body = scripted
                return StarletteResponse(body, status_code=status, headers=headers)
            if f"client_secret={SECRET}" not in form:
                return StarletteResponse(b'{"error": "invalid_client"}', status_code=400)
            return self._grant({"access_token": self._new_token(), "expires_in": self.expires_in})

        async def insideview_token(request: StarletteRequest) -> StarletteResponse:
            if request.query_params.get("clientSecret") != SECRET:
                return StarletteResponse(b'{"message": "bad credentials"}', status_code=401)
            return self._grant({"accessTokenDetails": {"accessToken": self._new_token(), "tokenType": "bearer"}})

        async def submit(request: StarletteRequest) -> StarletteResponse:
            await request.body()
            with self.lock:
                self.submits.append(dict(request.headers))
                token = request.headers.get("authorization", "").removeprefix("Bearer ")
                token = request.headers.get("accesstoken", token)
                if token in self.refused_tokens:
                    return StarletteResponse(b'{"message": "expired token"}', status_code=401)
                status, headers, body = self.answers.pop(0) if self.answers else (202, {}, b'{"id": "job-1"}')
            return StarletteResponse(body, status_code=status, headers=headers)

        return Starlette(
            routes=[
                Route("/oauth/v2/token", mautic_token, methods=["POST"]),
                Route("/Auth/login/v1/token.json", insideview_token, methods=["POST"]),
                Route("/api/submit", submit, methods=["POST"]),
            ]
        )

    def _new_token(self) -> str:
        with self.lock:
            self.tokens_issued += 1
            return f"tok-{self.tokens_issued}"

    @staticmethod
    def _grant(data: dict) -> StarletteResponse:
        return StarletteResponse(msgspec.json.encode(data), media_type="application/json")


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    """A running Scripted provider and its base URL."""
    provider = Scripted()
    async with ServedApp(provider.app()) as served:
        yield provider, served.url


def quick(url: str, credential: str = "id", **overrides) -> Settings:
    """Settings with tiny backoff delays, so retries are quick."""
    overrides.setdefault("backoff_base", 0.001)
    overrides.setdefault("backoff_cap", 0.002)
    return Settings(url, credential, SECRET, **overrides)


class Clock:
    """A monotonic clock the test moves by hand (token expiry is decided with it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- auth ------------------------------------------------------------------------------------------


async def test_insideview_token_goes_in_the_accesstoken_header(scripted: tuple[Scripted, str]) -> None:
    """InsideView's token comes from its login endpoint and travels in a header named accessToken."""
    provider, url = scripted
    async with ProviderClient(InsideView(), quick(url, login_url=url)) as http:
        response = await http.send(SUBMIT)
    assert response.status == 202
    assert provider.submits[0]["accesstoken"] == "tok-1" and "authorization" not in provider.submits[0]


async def test_mautic_uses_oauth2_bearer(scripted: tuple[Scripted, str]) -> None:
    """Mautic's client credentials become a Bearer token, fetched once for several requests."""
    provider, url = scripted
    async with ProviderClient(Mautic(), quick(url)) as http:
        await http.send(SUBMIT)
        await http.send(SUBMIT)
    assert [h["authorization"] for h in provider.submits] == ["Bearer tok-1", "Bearer tok-1"]
    assert provider.tokens_issued == 1


@pytest.mark.parametrize(
    "make, header, value",
    [(lambda: Datananas(list="L1"), "authorization", "Bearer the-token"), (Pronto, "x-api-key", "the-token")],
)
async def test_static_credentials(scripted: tuple[Scripted, str], make, header: str, value: str) -> None:
    """Datananas sends its bearer token and Pronto its X-API-KEY, with no token endpoint involved."""
    provider, url = scripted
    async with ProviderClient(make(), Settings(url, "the-token")) as http:
        await http.send(SUBMIT)
    assert provider.submits[0][header] == value and provider.tokens_issued == 0


async def test_token_refreshed_ahead_of_expiry(scripted: tuple[Scripted, str]) -> None:
    """A token about to expire is replaced before the request, so the provider never sees it expired."""
    provider, url = scripted
    clock = Clock()
    async with ProviderClient(Mautic(), quick(url), clock=clock) as http:
        await http.send(SUBMIT)
        clock.now += provider.expires_in - 30  # inside the refresh margin, not yet expired
        await http.send(SUBMIT)
    assert [h["authorization"] for h in provider.submits] == ["Bearer tok-1", "Bearer tok-2"]


async def test_401_refreshes_the_token_once(scripted: tuple[Scripted, str]) -> None:
    """A token the provider stopped accepting is replaced once after the 401, and the request goes through."""
    provider, url = scripted
    async with ProviderClient(InsideView(), quick(url, login_url=url)) as http:
        await http.send(SUBMIT)
        provider.refused_tokens.add("tok-1")
        response = await http.send(SUBMIT)
    assert response.status == 202 and provider.tokens_issued == 2
    assert [h["accesstoken"] for h in provider.submits] == ["tok-1", "tok-1", "tok-2"]


async def test_second_401_is_an_auth_error(scripted: tuple[Scripted, str]) -> None:
    """When even a fresh token gets 401, AuthError is raised after exactly one refresh."""
    provider, url = scripted
    provider.refused_tokens.update({"tok-1", "tok-2", "tok-3"})
    async with ProviderClient(Mautic(), quick(url)) as http:
        with pytest.raises(AuthError, match="even after a fresh token") as caught:
            await http.send(SUBMIT)
    assert provider.tokens_issued == 2 and len(provider.submits) == 2
    assert caught.value.status == 401 and SECRET not in str(caught.value)


async def test_refused_client_credentials_never_show_the_secret(scripted: tuple[Scripted, str]) -> None:
    """Wrong client credentials are an AuthError whose message does not contain the secret sent."""
    _, url = scripted
    wrong = "wrong-secret-value"
    settings = Settings(url, "id", wrong)
    async with ProviderClient(Mautic(), settings) as http:
        with pytest.raises(AuthError, match="refused the client credentials") as caught:
            await http.send(SUBMIT)
    assert wrong not in str(caught.value) and wrong not in repr(settings)


async def test_token_endpoint_throttled_or_failing_is_retried(scripted: tuple[Scripted, str]) -> None:
    """A token endpoint's 503 and 429 are retried like any request (not read as refused credentials)."""
    provider, url = scripted
    provider.token_answers = [(503, {}, b"maintenance"), (429, {"Retry-After": "0.01"}, b"")]
    async with ProviderClient(Mautic(), quick(url)) as http:
        response = await http.send(SUBMIT)
    assert response.status == 202 and provider.tokens_issued == 1 and len(provider.submits) == 1


async def test_token_request_retries_are_told_to_the_request_waiting_for_it(scripted: tuple[Scripted, str]) -> None:
    """A token endpoint's 503s are said through the waiting request's on_retry ("asking for a token: ..."): a
    submit said nothing while the token was retried."""
    provider, url = scripted
    provider.token_answers = [(503, {}, b"maintenance"), (503, {}, b"maintenance")]
    told: list[tuple[str, int]] = []

    async def on_retry(why: str, delay: float, attempt: int) -> None:
        told.append((why, attempt))

    async with ProviderClient(Mautic(), quick(url)) as http:
        response = await http.send(SUBMIT, on_retry=on_retry)
    assert response.status == 202 and provider.tokens_issued == 1
    assert told == [("asking for a token: HTTP 503", 1), ("asking for a token: HTTP 503", 2)]


async def test_token_endpoint_not_found_points_at_the_url(scripted: tuple[Scripted, str]) -> None:
    """A 404 from the token endpoint (a wrong URL) says to check the URL, not that credentials were refused."""
    provider, url = scripted
    provider.token_answers = [(404, {}, b"Not Found")]
    async with ProviderClient(Mautic(), quick(url)) as http:
        with pytest.raises(
            AuthError, match=r"Mautic's token endpoint answered HTTP 404 \(Not Found\); check its URL"
        ) as e:
            await http.send(SUBMIT)
    assert provider.submits == []
    # which URL was asked, and what the base URL should be (the URL was not shown)
    assert f"({url}/oauth/v2/token; MAUTIC_BASE_URL (--base-url) is the instance's root" in str(e.value)


async def test_token_endpoint_failing_for_good_is_a_server_error(scripted: tuple[Scripted, str]) -> None:
    """A token endpoint that keeps answering 503 ends in ServerError naming it; nothing is submitted."""
    provider, url = scripted
    provider.token_answers = [(503, {}, b'{"message": "maintenance"}')] * 3
    async with ProviderClient(Mautic(), quick(url, max_attempts=3)) as http:
        with pytest.raises(ServerError, match=r"kept failing \(HTTP 503: maintenance\) after 3 attempts"):
            await http.send(SUBMIT)
    assert provider.submits == [] and provider.token_answers == []


async def test_short_lived_token_is_reused_until_halfway(scripted: tuple[Scripted, str]) -> None:
    """A token living under two minutes is renewed halfway through its life, not before every request."""
    provider, url = scripted
    provider.expires_in = 30
    clock = Clock()
    async with ProviderClient(Mautic(), quick(url), clock=clock) as http:
        await http.send(SUBMIT)
        clock.now += 14
        await http.send(SUBMIT)
        clock.now += 2  # 16 s of 30: past halfway
        await http.send(SUBMIT)
    assert [h["authorization"] for h in provider.submits] == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


@pytest.mark.parametrize("expires_in", [0, -7200])
async def test_token_expired_on_arrival_is_not_renewed_before_every_request(
    scripted: tuple[Scripted, str], expires_in: int
) -> None:
    """A grant that expired on arrival by our clock (clocks that disagree, a local time without its zone) is
    kept for the hour tokens live; a 401 would renew it. (It was renewed before every request.)"""
    provider, url = scripted
    provider.expires_in = expires_in
    clock = Clock()
    async with ProviderClient(Mautic(), quick(url), clock=clock) as http:
        for _ in range(3):
            await http.send(SUBMIT)
            clock.now += 60
    assert provider.tokens_issued == 1
    assert [h["authorization"] for h in provider.submits] == ["Bearer tok-1"] * 3


async def test_unreachable_token_endpoint_is_a_transport_error_for_pollers() -> None:
    """request() (the pollers' call) gets a TransportError when no token can be had, not an internal type."""
    port = await closed_port()
    url = f"http://127.0.0.1:{port}"
    async with ProviderClient(InsideView(), quick(url, login_url=url, max_attempts=2)) as http:
        with pytest.raises(TransportError, match=f"could not connect to insideview at {url}.*gave up after 2"):
            await http.request(Request("GET", "/job/j1"))


async def test_password_in_the_base_url_is_never_shown() -> None:
    """A user:password written into the base URL stays out of errors and of the settings' repr."""
    port = await closed_port()
    settings = quick(f"http://admin:TOPSECRETPW@127.0.0.1:{port}", "t", max_attempts=1)
    async with ProviderClient(Datananas(list="L1"), settings) as http:
        with pytest.raises(TransportError, match=rf"at http://\*\*\*@127\.0\.0\.1:{port}") as caught:
            await http.send(SUBMIT)
    assert "TOPSECRETPW" not in str(caught.value) and "TOPSECRETPW" not in repr(settings)
    assert "admin" not in repr(settings) and SECRET not in repr(settings)


async def test_oversized_answer_is_not_read_into_memory(scripted: tuple[Scripted, str]) -> None:
    """An answer declared longer than max_response_bytes is refused unread; a submit that got it is ambiguous."""
    provider, url = scripted
    provider.answers = [(200, {}, b"x" * 5000)]
    async with ProviderClient(Pronto(), quick(url, max_response_bytes=4096)) as http:
        with pytest.raises(AmbiguousSubmit, match=r"answered 5000 bytes, more than max_response_bytes \(4096\)"):
            await http.send(SUBMIT)
    assert len(provider.submits) == 1  # sent once, never resent


async def test_oversized_chunked_answer_is_refused() -> None:
    """Without a Content-Length, an answer past max_response_bytes is refused and not kept in memory."""

    async def chunked(request: StarletteRequest) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(1000):  # 1 MB in all, far past the limit
                yield b"y" * 1024

        return StreamingResponse(chunks())

    app = Starlette(routes=[Route("/job", chunked, methods=["GET"])])
    async with ServedApp(app) as served:
        settings = quick(served.url, "t", max_response_bytes=8192, max_attempts=1)
        async with ProviderClient(Pronto(), settings) as http:
            with pytest.raises(TransportError, match=r"answer \(1024000 bytes\) exceeds max_response_bytes \(8192\)"):
                await http.send(Request("GET", "/job"))
            with pytest.raises(TransportError, match=r"exceeds max_response_bytes \(8192\)"):
                await http.request(Request("GET", "/job"))  # the pollers' call: bounded the same way
            settings.max_response_bytes = 2_000_000
            answer = await http.request(Request("GET", "/job"))
    assert answer.status_code == 200 and answer.content == b"y" * 1_024_000


# --- retries -----------------------------------------------------------------------------------------


async def test_retry_after_is_honoured(scripted: tuple[Scripted, str]) -> None:
    """A 429's Retry-After sets the wait (above our own tiny backoff), then the request goes through."""
    provider, url = scripted
    provider.answers = [(429, {"Retry-After": "0.05"}, b""), (429, {"Retry-After": "0.05"}, b"")]
    waits: list[float] = []

    async def on_throttle(delay: float, attempt: int) -> None:
        waits.append(delay)

    async with ProviderClient(Pronto(), quick(url)) as http:
        response = await http.send(SUBMIT, on_throttle=on_throttle)
    assert response.status == 202 and len(provider.submits) == 3
    assert waits == [0.05, 0.05]


async def test_x_ratelimit_reset_is_honoured(scripted: tuple[Scripted, str]) -> None:
    """Mautic's X-RateLimit-Reset (seconds until reset) sets the wait when there is no Retry-After."""
    provider, url = scripted
    limits = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0.04"}
    provider.answers = [(429, limits, b"")]
    waits: list[float] = []

    async def on_throttle(delay: float, attempt: int) -> None:
        waits.append(delay)

    async with ProviderClient(Mautic(), quick(url)) as http:
        await http.send(SUBMIT, on_throttle=on_throttle)
    assert waits == [0.04] and len(provider.submits) == 2


async def test_retry_after_beyond_max_wait_is_refused_at_once(scripted: tuple[Scripted, str]) -> None:
    """A 429 asking for a wait longer than max_wait raises RateLimited at once instead of hanging."""
    provider, url = scripted
    provider.answers = [(429, {"Retry-After": "86400"}, b"")]
    async with ProviderClient(Pronto(), quick(url, max_wait=60)) as http:
        with pytest.raises(RateLimited, match="asks to wait 86400s") as caught:
            await http.send(SUBMIT)
    assert caught.value.status == 429 and len(provider.submits) == 1


@pytest.mark.parametrize("name", ["Retry-After", "X-RateLimit-Reset"])
async def test_waits_given_as_a_time_are_read_as_waits(scripted: tuple[Scripted, str], name: str) -> None:
    """A Retry-After HTTP date and an X-RateLimit-Reset Unix time are waits until then (here: beyond max_wait)."""
    provider, url = scripted
    ahead = time.time() + 86_400
    date = format_datetime(datetime.fromtimestamp(ahead, UTC), usegmt=True)
    value = date if name == "Retry-After" else f"{ahead:.0f}"
    provider.answers = [(429, {name: value}, b"")]
    async with ProviderClient(Mautic(), quick(url, max_wait=60)) as http:
        with pytest.raises(RateLimited, match=r"asks to wait 86[34]\d\ds") as caught:
            await http.send(SUBMIT)
    assert caught.value.status == 429 and len(provider.submits) == 1


async def test_429_without_header_backs_off_on_its_own(scripted: tuple[Scripted, str]) -> None:
    """InsideView's bare 429: capped jittered backoff, each wait within the cap, until it goes through."""
    provider, url = scripted
    provider.answers = [(429, {}, b"")] * 4
    waits: list[float] = []

    async def on_throttle(delay: float, attempt: int) -> None:
        waits.append(delay)

    settings = quick(url, login_url=url, backoff_base=0.001, backoff_cap=0.004)
    async with ProviderClient(InsideView(), settings) as http:
        response = await http.send(SUBMIT, on_throttle=on_throttle)
    assert response.status == 202 and len(waits) == 4 and all(0 <= w <= 0.004 for w in waits)


async def test_429_budget_is_capped(scripted: tuple[Scripted, str]) -> None:
    """A provider that never stops throttling gets max_attempts requests, then RateLimited."""
    provider, url = scripted
    provider.answers = [(429, {}, b"")] * 10
    async with ProviderClient(Pronto(), quick(url, max_attempts=3)) as http:
        with pytest.raises(RateLimited, match="after 3 attempts"):
            await http.send(SUBMIT)
    assert len(provider.submits) == 3


async def test_5xx_burst_is_retried(scripted: tuple[Scripted, str]) -> None:
    """A burst of 502/503 (the provider did not take the request) is retried until it goes through."""
    provider, url = scripted
    provider.answers = [(503, {}, b"busy"), (502, {}, b""), (500, {}, b'{"message": "oops"}')]
    retries: list[str] = []

    async def on_retry(why: str, delay: float, attempt: int) -> None:
        retries.append(why)

    async with ProviderClient(Datananas(list="L1"), quick(url, credential="t")) as http:
        response = await http.send(SUBMIT, on_retry=on_retry)
    assert response.status == 202 and retries == ["HTTP 503", "HTTP 502", "HTTP 500"]


async def test_5xx_budget_is_capped(scripted: tuple[Scripted, str]) -> None:
    """Endless 503s end in ServerError carrying the status, after max_attempts requests."""
    provider, url = scripted
    provider.answers = [(503, {}, b"busy")] * 10
    async with ProviderClient(Datananas(list="L1"), quick(url, credential="t", max_attempts=4)) as http:
        with pytest.raises(ServerError) as caught:
            await http.send(SUBMIT)
    assert caught.value.status == 503 and len(provider.submits) == 4


async def test_4xx_is_returned_not_retried(scripted: tuple[Scripted, str]) -> None:
    """400/402/415/422 are answers for the provider module to read: returned at once, sent once."""
    provider, url = scripted
    provider.answers = [(402, {}, b'{"reason": "contact_total_quotas"}')]
    async with ProviderClient(Datananas(list="L1"), quick(url, credential="t")) as http:
        response = await http.send(SUBMIT)
    assert response.status == 402 and len(provider.submits) == 1


async def test_injected_client_is_used_and_left_open(scripted: tuple[Scripted, str]) -> None:
    """An injected httpx client carries the requests and is not closed by ProviderClient."""
    provider, url = scripted
    async with httpx.AsyncClient(headers={"User-Agent": "injected"}) as client:
        async with ProviderClient(Pronto(), Settings(url, "k"), client) as http:
            await http.send(SUBMIT)
        assert not client.is_closed
    assert provider.submits[0]["user-agent"] == "injected"


# --- connection faults ----------------------------------------------------------------------------


@asynccontextmanager
async def raw_server(answer: bytes | None) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A TCP server that reads one whole request, then misbehaves as ``answer`` says.

    ``answer`` bytes are sent and the connection closed (a cut-off response);
    ``None`` closes at once; ``b""`` stays silent until the client gives up.
    Yields its base URL and the requests it received.
    """
    received: list[bytes] = []

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.lower().split(b"\r\n")
            length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0)
            while len(body) < length:
                body += await stream.receive()
            received.append(head + b"\r\n\r\n" + body)
            if answer is None:
                return  # close without a word, after the request arrived
            if answer:
                await stream.send(answer)
                return  # close: the answer is cut off where it stands
            try:
                await stream.receive()  # silent: wait for the client to give up and close
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, handle)
        try:
            yield f"http://127.0.0.1:{port}", received
        finally:
            tg.cancel_scope.cancel()


async def test_dropped_connection_after_sending_is_ambiguous() -> None:
    """A connection closed after the request arrived raises AmbiguousSubmit; the request is not sent again."""
    async with raw_server(None) as (url, received), ProviderClient(Datananas(list="L1"), quick(url, "t")) as http:
        with pytest.raises(AmbiguousSubmit, match="not resending") as caught:
            await http.send(SUBMIT)
    assert len(received) == 1 and caught.value.provider == "datananas"


async def test_broken_response_is_ambiguous() -> None:
    """A response cut off mid-body raises AmbiguousSubmit; the request is not sent again."""
    partial = b'HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\n{"id": '
    async with raw_server(partial) as (url, received), ProviderClient(Pronto(), quick(url, "k")) as http:
        with pytest.raises(AmbiguousSubmit):
            with anyio.fail_after(10):
                await http.send(SUBMIT)
    assert len(received) == 1


async def test_read_timeout_after_sending_is_ambiguous() -> None:
    """No answer within the timeout after the request was sent: AmbiguousSubmit, sent exactly once."""
    async with raw_server(b"") as (url, received), ProviderClient(Pronto(), quick(url, "k", timeout=0.2)) as http:
        with pytest.raises(AmbiguousSubmit, match="did not answer"):
            await http.send(SUBMIT)
    assert len(received) == 1


async def test_connection_refused_is_retried_then_transport_error() -> None:
    """A port nobody listens on is retried (the request never left), then TransportError."""
    port = await closed_port()
    retries: list[str] = []

    async def on_retry(why: str, delay: float, attempt: int) -> None:
        retries.append(why)

    settings = quick(f"http://127.0.0.1:{port}", "t", max_attempts=3)
    async with ProviderClient(Datananas(list="L1"), settings) as http:
        with pytest.raises(TransportError, match="gave up after 3 attempts"):
            await http.send(SUBMIT, on_retry=on_retry)
    assert len(retries) == 2 and all("could not connect" in r for r in retries)


async def test_unreachable_login_never_shows_the_secret() -> None:
    """InsideView's login host unreachable: the error (and its cause) does not contain the client secret."""
    port = await closed_port()
    url = f"http://127.0.0.1:{port}"
    async with ProviderClient(InsideView(), quick(url, login_url=url, max_attempts=1)) as http:
        with pytest.raises(TransportError) as caught:
            await http.send(SUBMIT)
    assert SECRET not in str(caught.value) and SECRET not in str(caught.value.__cause__)


# --- client-side rate limit ------------------------------------------------------------------------


def test_pacer_spaces_slots_evenly() -> None:
    """Requests booked at the same instant wait one interval more each; a slot in the past costs no wait."""
    clock = Clock()
    pacer = Pacer(10, clock)
    assert [round(pacer.reserve(), 6) for _ in range(3)] == [0, 0.1, 0.2]
    clock.now += 5
    assert pacer.reserve() == 0 and round(pacer.reserve(), 6) == 0.1


@pytest.mark.parametrize("rate", [0, -1, float("nan")])
def test_pacer_refuses_a_non_positive_rate(rate: float) -> None:
    """A zero, negative or NaN rate limit is a ConfigError, not a division by zero or a hang."""
    with pytest.raises(ConfigError, match=rf"^rate limit: rate_limit must be a finite number above 0, not {rate}$"):
        Pacer(rate)


async def test_settings_with_a_zero_rate_limit_are_refused() -> None:
    """Settings(rate_limit=0) is a ConfigError when made, not silently no limit (None is no limit)."""
    with pytest.raises(ConfigError, match="Settings: rate_limit must be a finite number above 0, or None, not 0"):
        Settings("http://127.0.0.1:9", "k", rate_limit=0)
    ProviderClient(Pronto(), Settings("http://127.0.0.1:9", "k", rate_limit=None))  # no limit


async def test_rate_limited_client_still_sends_everything(scripted: tuple[Scripted, str]) -> None:
    """With a client-side rate limit, every request is still sent once, in order."""
    provider, url = scripted
    async with ProviderClient(Pronto(), quick(url, rate_limit=200)) as http:
        statuses = [(await http.send(SUBMIT)).status for _ in range(3)]
    assert statuses == [202, 202, 202] and len(provider.submits) == 3


async def test_a_socks_proxy_in_the_environment_without_its_package_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx's ImportError for a SOCKS proxy (socksio missing) becomes a ConfigError that says what to do."""
    if importlib.util.find_spec("socksio") is not None:
        pytest.skip("socksio is installed here: httpx supports the SOCKS proxy")
    monkeypatch.setenv("ALL_PROXY", "socks5://user:s3cret@127.0.0.1:9")
    with pytest.raises(ConfigError) as info:
        ProviderClient(Pronto(), Settings("https://app.example", "key"))
    message = str(info.value)
    assert "cannot set up HTTP for pronto" in message and "socksio" in message and "NO_PROXY" in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    "field, value",
    [
        ("timeout", 0),
        ("timeout", float("nan")),
        ("timeout", float("inf")),
        ("max_attempts", 0),
        ("max_attempts", 2.5),
        ("backoff_base", -1),
        ("backoff_cap", 0.1),  # below backoff_base (0.5)
        ("max_wait", float("nan")),
        ("max_response_bytes", 0),
        ("rate_limit", 0),
        ("rate_limit", float("inf")),
    ],
)
def test_settings_that_cannot_work_are_refused_when_made(field: str, value: object) -> None:
    """A zero, NaN or infinite timeout, no attempts, a cap below the base...: ConfigError naming the field."""
    with pytest.raises(ConfigError, match=rf"Settings: {field} must be ") as info:
        Settings("https://api.example", SECRET, **{field: value})  # type: ignore[arg-type]
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "url, why",
    [
        ("app.prontohq.com/api/v2", "must be an http:// or https:// URL with a host"),
        ("ftp://files.example/x", "must be an http:// or https:// URL with a host"),
        ("http://", "must be an http:// or https:// URL with a host"),
        ("http://exa mple.com", "without spaces"),
        ("http://example.com/\x00", "without spaces"),
        ("http://[::1", "is not a usable URL (Invalid IPv6 URL)"),
        ("http://bob:s3cret@example.com:99999/", "is not a usable URL (Port out of range"),
    ],
)
def test_a_base_url_that_cannot_work_is_refused_before_any_request(url: str, why: str) -> None:
    """Settings and from_env refuse it at once, naming where it came from, with a password hidden."""
    with pytest.raises(ConfigError, match=re.escape(why)) as made:
        Settings(url, SECRET)
    assert str(made.value).startswith("base_url ") and "s3cret" not in str(made.value)
    with pytest.raises(ConfigError, match=re.escape(why)) as from_env:
        Settings.from_env("pronto", {"PRONTO_API_KEY": "k", "PRONTO_BASE_URL": url})
    assert str(from_env.value).startswith("PRONTO_BASE_URL ") and "s3cret" not in str(from_env.value)
    with pytest.raises(ConfigError, match=r"^the base URL "):
        Settings.from_env("pronto", {"PRONTO_API_KEY": "k"}, base_url=url)


def test_usable_base_urls_are_taken_as_they_are() -> None:
    """Ports, paths, IPv6 literals and internationalised host names are fine."""
    for url in ("https://api.example.com:8443/v2", "http://[::1]:8000/pronto/api/v2", "https://bücher.example/api"):
        assert Settings(url, "k").base_url == url


def test_an_insideview_login_url_that_cannot_work_is_refused() -> None:
    env = {"INSIDEVIEW_CLIENT_ID": "i", "INSIDEVIEW_CLIENT_SECRET": "s", "INSIDEVIEW_LOGIN_URL": "login.insideview.com"}
    with pytest.raises(ConfigError, match=r"^INSIDEVIEW_LOGIN_URL must be an http:// or https:// URL with a host"):
        Settings.from_env("insideview", env)


@pytest.mark.parametrize("value", ["tok-s3cret\n", "tok-s3cret\r", " tok-s3cret", "tok s3cret", "tok-\x00s3cret"])
def test_a_credential_that_cannot_go_in_a_header_is_refused_without_showing_it(value: str) -> None:
    """A trailing newline (a token read from a file), a space or a control character: ConfigError naming the
    variable, never the value (httpx's own refusal would quote the header, token included)."""
    with pytest.raises(ConfigError, match=r"^credential contains a space, line break or other control") as made:
        Settings("https://api.example", value)
    with pytest.raises(ConfigError, match=r"^DATANANAS_TOKEN contains a space, line break") as from_env:
        Settings.from_env("datananas", {"DATANANAS_TOKEN": value})
    with pytest.raises(ConfigError, match=r"^MAUTIC_CLIENT_SECRET contains"):
        Settings.from_env(
            "mautic", {"MAUTIC_CLIENT_ID": "id", "MAUTIC_CLIENT_SECRET": value, "MAUTIC_BASE_URL": "https://m.example"}
        )
    assert "s3cret" not in str(made.value) + str(from_env.value)


async def test_a_token_that_cannot_go_in_a_header_is_a_malformed_token_answer(scripted: tuple[Scripted, str]) -> None:
    """The token endpoint hands out a token with a line break in it: AuthError (malformed), the token not shown."""
    provider, url = scripted
    provider.token_answers = [(200, {}, b'{"access_token": "tok-s3cret\\nx", "expires_in": 3600}')]
    async with ProviderClient(Mautic(), quick(url)) as http:
        with pytest.raises(AuthError, match="Mautic's token answer is malformed") as caught:
            await http.send(SUBMIT)
    assert "s3cret" not in str(caught.value) and provider.submits == []


async def test_an_http_error_quoting_a_credential_shows_it_as_stars(scripted: tuple[Scripted, str]) -> None:
    """Defence in depth: a credential changed after the checks, refused by httpx in a header, is *** in the error,
    and the httpx error (which quotes it) is not chained where a traceback would print it."""
    _, url = scripted
    settings = quick(url, "key-s3cret-value")
    settings.credential = "key-s3cret-value\n"  # past Settings' own check
    async with ProviderClient(Pronto(), settings) as http:
        with pytest.raises(TransportError, match=r"HTTP error talking to pronto: .*\*\*\*") as caught:
            await http.send(SUBMIT)
    assert "s3cret" not in str(caught.value) and caught.value.__cause__ is None and caught.value.__suppress_context__
