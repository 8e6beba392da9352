"""The webhook receiver: status codes, InvalidSignal on refusals, dedupe, back-pressure, loop bridging."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from adapters.serving import ServedApp
from adapters.signing import signature_headers
from adapters.simulator import Faults, Simulator, SimulatorConfig
from adapters.webhooks import WebhookReceiver
from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.exceptions import ConfigError
from eventbus.testing import capture

pytestmark = pytest.mark.anyio

SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="  # base64("secret-key-for-tests")
JSON = {"content-type": "application/json"}


class _Item(msgspec.Struct):
    key: str
    ok: bool


class _Hook(msgspec.Struct):
    job: str
    items: list[_Item]


_decoder = msgspec.json.Decoder(_Hook)


def parse_acme(body: bytes, headers: Mapping[str, str]) -> list[ev.Event]:
    """A small provider parser in the sans-I/O shape the receiver expects."""
    hook = _decoder.decode(body)
    out: list[ev.Event] = []
    for item in hook.items:
        common = {"id": ev.event_id("acme", hook.job, "item", item.key), "provider": "acme", "job_id": hook.job}
        if item.ok:
            out.append(ev.ItemSucceeded(source="webhook", key=item.key, outcome="found", **common))
        else:
            out.append(ev.ItemFailed(source="webhook", key=item.key, code="not_found", message="no match", **common))
    return out


def body_of(job: str = "j1", keys: tuple[str, ...] = ("a",)) -> bytes:
    return msgspec.json.encode({"job": job, "items": [{"key": k, "ok": True} for k in keys]})


@dataclass
class Harness:
    bus: Bus
    receiver: WebhookReceiver
    client: httpx.AsyncClient
    events: list[ev.Event]

    async def settled(self) -> list[ev.Event]:
        await self.bus.drain(timeout=5)
        return self.events

    def invalid(self) -> list[ev.InvalidSignal]:
        return [e for e in self.events if isinstance(e, ev.InvalidSignal)]


@asynccontextmanager
async def harness(**options: object) -> AsyncIterator[Harness]:
    """A real Bus, a receiver built in the test's loop, and an in-process httpx client."""
    async with Bus() as bus, capture(bus) as events:
        receiver = WebhookReceiver(bus, {"acme": parse_acme}, **options)  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=receiver)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            with anyio.fail_after(10):
                yield Harness(bus, receiver, client, events)


# --- the happy path -----------------------------------------------------------


async def test_valid_webhook_publishes_its_events() -> None:
    """A well-formed callback answers 200 and its parsed events reach the bus in order."""
    async with harness() as h:
        response = await h.client.post("/hooks/acme", content=body_of(keys=("a", "b")), headers=JSON)
        assert response.status_code == 200
        assert response.json() == {"ok": True, "events": 2}
        assert [(type(e), e.key) for e in await h.settled()] == [(ev.ItemSucceeded, "a"), (ev.ItemSucceeded, "b")]


async def test_mounted_under_a_prefix_in_an_app_of_ones_own() -> None:
    """Mounted in a user's Starlette app, the receiver answers under the prefix as it does alone."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    async with Bus() as bus, capture(bus) as events:
        receiver = WebhookReceiver(bus, {"acme": parse_acme})
        app = Starlette(routes=[Mount("/incoming", app=receiver)])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            ok = await client.post("/incoming/hooks/acme", content=body_of(keys=("a",)), headers=JSON)
            unknown = await client.post("/incoming/hooks/nope", content=body_of(), headers=JSON)
            elsewhere = await client.post("/incoming/other", content=body_of(), headers=JSON)
        await bus.drain(timeout=5)
    assert (ok.status_code, ok.json()) == (200, {"ok": True, "events": 1})
    assert unknown.status_code == 404 and "unknown provider 'nope'" in unknown.json()["error"]
    assert elsewhere.status_code == 404  # not a hook URL: Starlette's own 404
    assert [type(e) for e in events] == [ev.ItemSucceeded, ev.InvalidSignal]


@pytest.mark.parametrize("path", ["/other", "/hooks/acme/extra", "/hooks/"])
async def test_paths_that_are_not_hook_urls_get_starlettes_answer(path: str) -> None:
    """Served alone, a path the hook route does not match is answered as by the Starlette app: 404, no event."""
    async with harness() as h:
        response = await h.client.post(path, content=body_of(), headers=JSON)
        direct = httpx.AsyncClient(transport=httpx.ASGITransport(app=h.receiver.app), base_url="http://test")
        async with direct:
            expected = await direct.post(path, content=body_of(), headers=JSON)
        assert (
            (response.status_code, response.content) == (expected.status_code, expected.content) == (404, b"Not Found")
        )
        assert await h.settled() == []


async def test_answer_waits_for_bus_back_pressure() -> None:
    """With a full blocking subscriber the 200 is held until the bus has taken every event."""
    async with Bus() as bus, bus.subscribe("slow", buffer=1) as sub:
        receiver = WebhookReceiver(bus, {"acme": parse_acme})
        answered = anyio.Event()
        statuses: list[int] = []

        async def send() -> None:
            transport = httpx.ASGITransport(app=receiver)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.post("/hooks/acme", content=body_of(keys=("a", "b", "c")), headers=JSON)
            statuses.append(r.status_code)
            answered.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                await wait_all_tasks_blocked()
                assert not answered.is_set()  # "b" cannot enter the 1-slot buffer yet
                keys = [(await sub.receive()).key for _ in range(3)]  # type: ignore[attr-defined]
                await answered.wait()
        assert keys == ["a", "b", "c"]
        assert statuses == [200]


async def test_bus_failure_answers_503_and_does_not_mark_seen() -> None:
    """When the bus refuses, the sender gets 503; its retry is then published, not treated as a duplicate."""
    async with Bus() as bus, bus.subscribe("strict", buffer=1, overflow="error") as sub:
        receiver = WebhookReceiver(bus, {"acme": parse_acme})
        transport = httpx.ASGITransport(app=receiver)
        headers = {**JSON, "webhook-id": "msg-1"}
        with anyio.fail_after(10):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await bus.publish(ev.JobProgress(id="x", provider="p", job_id="j", source="poll", done=1))
                refused = await client.post("/hooks/acme", content=body_of(), headers=headers)
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "1"
                assert (await sub.receive()).id == "x"
                retried = await client.post("/hooks/acme", content=body_of(), headers=headers)
                assert retried.json() == {"ok": True, "events": 1}
                assert (await sub.receive()).id == "acme:j1:item:a"


async def test_bus_full_past_publish_timeout_answers_503() -> None:
    """A bus that stays full longer than publish_timeout gets the sender a 503, not a hung request."""
    async with Bus() as bus, bus.subscribe("stuck", buffer=1) as sub:
        receiver = WebhookReceiver(bus, {"acme": parse_acme}, publish_timeout=0.05)
        transport = httpx.ASGITransport(app=receiver)
        with anyio.fail_after(10):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post("/hooks/acme", content=body_of(keys=("a", "b")), headers=JSON)
        assert response.status_code == 503
        assert receiver.stats()["unavailable"] == 1
        assert (await sub.receive()).key == "a"  # type: ignore[attr-defined]


# --- dedupe -------------------------------------------------------------------


async def test_duplicate_webhook_id_is_acknowledged_but_not_republished() -> None:
    """The same webhook-id twice answers 200 both times and publishes once."""
    async with harness() as h:
        headers = {**JSON, "webhook-id": "msg-7"}
        first = await h.client.post("/hooks/acme", content=body_of(), headers=headers)
        second = await h.client.post("/hooks/acme", content=body_of(keys=("other",)), headers=headers)
        assert (first.status_code, second.status_code) == (200, 200)
        assert second.json() == {"ok": True, "duplicate": True}
        assert [e.key for e in await h.settled()] == ["a"]


async def test_without_webhook_id_the_payload_is_the_dedupe_key() -> None:
    """Identical bodies without an id are published once; a different body is published."""
    async with harness() as h:
        for body in (body_of(keys=("a",)), body_of(keys=("a",)), body_of(keys=("b",))):
            assert (await h.client.post("/hooks/acme", content=body, headers=JSON)).status_code == 200
        assert [e.key for e in await h.settled()] == ["a", "b"]


@pytest.mark.parametrize("secret", [None, SECRET], ids=["unsigned", "signed"])
async def test_overlong_webhook_id_is_refused_not_remembered(secret: str | None) -> None:
    """A webhook-id over 256 characters is 400 and nothing is published (every id is kept for dedupe)."""
    async with harness(secret=secret) as h:
        body = body_of()

        def headers(msg_id: str) -> dict[str, str]:
            return {**JSON, **(signature_headers(SECRET, msg_id, body) if secret else {"webhook-id": msg_id})}

        response = await h.client.post("/hooks/acme", content=body, headers=headers("m" * 257))
        assert response.status_code == 400 and "webhook-id is longer than 256" in response.text
        assert (await h.client.post("/hooks/acme", content=body, headers=headers("m" * 256))).status_code == 200
        await h.settled()
        assert [type(e).__name__ for e in h.events] == ["InvalidSignal", "ItemSucceeded"]
        assert h.invalid()[0].status == 400


async def test_dedupe_memory_is_bounded() -> None:
    """Past dedupe_size distinct webhooks the oldest is forgotten (and would be published again)."""
    async with harness(dedupe_size=2) as h:
        for key in ("a", "b", "c", "a"):
            await h.client.post("/hooks/acme", content=body_of(keys=(key,)), headers=JSON)
        assert [e.key for e in await h.settled()] == ["a", "b", "c", "a"]


async def test_concurrent_copies_publish_once() -> None:
    """Two copies of one webhook arriving together publish once; both get 200."""
    async with Bus() as bus, bus.subscribe("gate", buffer=1) as gate:
        receiver = WebhookReceiver(bus, {"acme": parse_acme})
        statuses: list[int] = []

        async def send() -> None:
            transport = httpx.ASGITransport(app=receiver)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.post(
                    "/hooks/acme", content=body_of(keys=("a", "b")), headers={**JSON, "webhook-id": "m"}
                )
            statuses.append(r.status_code)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                tg.start_soon(send)
                await wait_all_tasks_blocked()  # the first copy is blocked on the 1-slot gate
                keys = [(await gate.receive()).key for _ in range(2)]  # type: ignore[attr-defined]
        assert statuses == [200, 200]
        assert keys == ["a", "b"]
        with pytest.raises(anyio.WouldBlock):
            gate.receive_nowait()


# --- refusals -----------------------------------------------------------------


async def test_wrong_method_is_405_with_allow() -> None:
    """GET on a hook answers 405 with Allow: POST and an InvalidSignal."""
    async with harness() as h:
        response = await h.client.get("/hooks/acme")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        await h.settled()
        assert [(s.status, s.provider) for s in h.invalid()] == [(405, "acme")]


async def test_unknown_provider_is_404() -> None:
    """A provider without a parser answers 404 and the reason names the known ones."""
    async with harness() as h:
        response = await h.client.post("/hooks/nobody", content=body_of(), headers=JSON)
        assert response.status_code == 404
        await h.settled()
        [signal] = h.invalid()
        assert signal.status == 404 and "'nobody'" in signal.reason and "known: acme" in signal.reason


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_non_json_content_type_is_415(content_type: str | None) -> None:
    """A missing or non-JSON Content-Type answers 415."""
    async with harness() as h:
        headers = {} if content_type is None else {"content-type": content_type}
        response = await h.client.post("/hooks/acme", content=body_of(), headers=headers)
        assert response.status_code == 415
        await h.settled()
        assert [s.status for s in h.invalid()] == [415]


async def test_json_with_charset_or_plus_json_is_accepted() -> None:
    """application/json; charset=utf-8 and application/*+json are JSON."""
    async with harness() as h:
        for ct in ("application/json; charset=utf-8", "application/vnd.acme+json"):
            r = await h.client.post("/hooks/acme", content=body_of(keys=(ct,)), headers={"content-type": ct})
            assert r.status_code == 200


async def test_declared_oversize_body_is_413_before_reading() -> None:
    """A Content-Length above max_body answers 413 without reading the body."""
    async with harness(max_body=100) as h:
        response = await h.client.post("/hooks/acme", content=b"x" * 101, headers=JSON)
        assert response.status_code == 413
        await h.settled()
        [signal] = h.invalid()
        assert signal.status == 413 and "100-byte limit" in signal.reason


@pytest.mark.parametrize("digits", [25, 5_000], ids=["25-digits", "past-int-conversion-limit"])
async def test_absurd_content_length_is_413_with_a_bounded_reason(digits: int) -> None:
    """A Content-Length of thousands of digits (int() refuses past 4300) is 413, not 500; the reason stays short."""
    async with harness() as h:
        request = h.client.build_request("POST", "/hooks/acme", content=body_of(), headers=JSON)
        request.headers["content-length"] = "9" * digits
        response = await h.client.send(request)
        assert response.status_code == 413
        await h.settled()
        [signal] = h.invalid()
        assert signal.status == 413 and len(signal.reason) < 120 and "exceeds" in signal.reason


class Chunks(httpx.AsyncByteStream):
    """A length-less request body of ``count`` chunks that counts how many were pulled.

    A class rather than an async generator, so that a body the server stops
    reading is not left as an unfinalized generator.
    """

    def __init__(self, count: int, size: int) -> None:
        self.left = count
        self.size = size
        self.pulled = 0

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> bytes:
        if not self.left:
            raise StopAsyncIteration
        await checkpoint()
        self.left -= 1
        self.pulled += 1
        return b"x" * self.size


def chunked_request(client: httpx.AsyncClient, body: Chunks) -> httpx.Request:
    """A POST whose body is sent with Transfer-Encoding: chunked, without Content-Length."""
    request = client.build_request("POST", "/hooks/acme", headers=JSON)
    del request.headers["content-length"]
    request.headers["transfer-encoding"] = "chunked"
    request.stream = body
    return request


async def test_chunked_oversize_body_is_cut_off_while_streaming() -> None:
    """A chunked body without Content-Length is refused at the limit, not read to its end."""
    body = Chunks(1000, 1024)
    async with harness(max_body=4096) as h:
        response = await h.client.send(chunked_request(h.client, body))
        assert response.status_code == 413
        assert "content-length" not in response.request.headers
        assert body.pulled <= 6  # stopped a chunk past the 4 KiB limit, not after 1000 chunks


# Valid JSON all the way down, nested past the interpreter's recursion limit, in an
# unknown field the parser skips: msgspec raises RecursionError, not a ValueError.
# ("{" * 10_000 above fails at its second byte and never gets that deep.)
DEPTH = sys.getrecursionlimit() + 1_000
DEEP_VALID = b'{"job": "j1", "items": [], "x": ' + b"[" * DEPTH + b"]" * DEPTH + b"}"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b'{"job": "j1"}',
        b'{"job": 1, "items": []}',
        b"[]",
        b'{"job": "j1", "items": [{"key": "a", "ok": "yes"}]}',
        b"{" * 10_000,
        DEEP_VALID,
    ],
    ids=["empty", "text", "invalid-utf8", "missing-field", "wrong-type", "array", "nested-wrong", "deep", "deep-valid"],
)
async def test_garbage_bodies_are_400_never_500(body: bytes) -> None:
    """Unusable bodies answer 400 with an InvalidSignal carrying a bounded excerpt."""
    async with harness() as h:
        response = await h.client.post("/hooks/acme", content=body, headers=JSON)
        assert response.status_code == 400
        await h.settled()
        [signal] = h.invalid()
        assert signal.status == 400 and signal.reason.startswith("acme webhook body not usable")
        assert len(signal.excerpt) <= 250


# --- signatures ---------------------------------------------------------------


async def test_signed_webhook_is_accepted() -> None:
    """With a secret, a correctly signed body is published."""
    async with harness(secret=SECRET) as h:
        body = body_of()
        response = await h.client.post(
            "/hooks/acme", content=body, headers={**JSON, **signature_headers(SECRET, "m1", body)}
        )
        assert response.status_code == 200
        assert [e.key for e in await h.settled()] == ["a"]


@pytest.mark.parametrize(
    "headers_for, fragment",
    [
        (lambda body: {}, "missing signature header"),
        (lambda body: signature_headers("whsec_d3Jvbmc=", "m1", body), "no v1 signature matches"),
        (lambda body: signature_headers(SECRET, "m1", body + b" "), "no v1 signature matches"),
        (lambda body: signature_headers(SECRET, "m1", body, timestamp=int(time.time()) - 3600), "stale"),
        (lambda body: {**signature_headers(SECRET, "m1", body), "webhook-timestamp": "9" * 400}, "not an integer"),
    ],
    ids=["unsigned", "wrong-secret", "altered-body", "stale", "huge-timestamp"],
)
async def test_bad_signatures_are_401_and_leak_nothing(headers_for, fragment: str) -> None:
    """Missing, wrong, altered or stale signatures answer 401; the signal holds neither secret nor signature."""
    async with harness(secret=SECRET) as h:
        body = body_of()
        headers = headers_for(body)
        response = await h.client.post("/hooks/acme", content=body, headers={**JSON, **headers})
        assert response.status_code == 401
        await h.settled()
        [signal] = h.invalid()
        assert signal.status == 401 and fragment in signal.reason
        leaked = ev.encode(signal).decode() + response.text
        assert SECRET not in leaked and "c2VjcmV0" not in leaked
        if "webhook-signature" in headers:
            assert headers["webhook-signature"].split(",", 1)[1] not in leaked
        assert not [e for e in h.events if not isinstance(e, ev.InvalidSignal)]


async def test_signed_duplicate_is_deduped_on_webhook_id() -> None:
    """A retried signed webhook (same id, new timestamp) publishes once."""
    async with harness(secret=SECRET) as h:
        body = body_of()
        for ts in (int(time.time()), int(time.time()) + 1):
            headers = {**JSON, **signature_headers(SECRET, "m1", body, timestamp=ts)}
            assert (await h.client.post("/hooks/acme", content=body, headers=headers)).status_code == 200
        assert len(await h.settled()) == 1


def test_malformed_whsec_secret_is_refused_at_construction() -> None:
    """A whsec_ secret that is not base64 fails when the receiver is built, not per request."""
    with pytest.raises(ValueError, match="not base64"):
        WebhookReceiver(Bus(), {}, secret="whsec_***")


@pytest.mark.parametrize("tolerance", [float("nan"), float("inf"), -1.0])
def test_tolerance_that_would_disable_the_replay_check_is_refused(tolerance: float) -> None:
    """A NaN, infinite or negative signature tolerance fails when the receiver is built."""
    with pytest.raises(
        ConfigError, match=rf"^WebhookReceiver: tolerance must be a finite number, 0 or more, not {tolerance}$"
    ):
        WebhookReceiver(Bus(), {}, secret=SECRET, tolerance=tolerance)


# --- over a real socket, with the bus in the test's own loop -----------------


async def test_served_over_loopback_hands_events_to_the_bus_loop() -> None:
    """Served by uvicorn in its own thread, the receiver publishes into the caller's loop (asyncio or trio)."""
    async with Bus() as bus, capture(bus) as events:
        receiver = WebhookReceiver(bus, {"acme": parse_acme}, max_body=64 * 1024)
        async with ServedApp(receiver) as served, httpx.AsyncClient(base_url=served.url) as client:
            with anyio.fail_after(10):
                ok = await client.post("/hooks/acme", content=body_of(keys=("a", "b")), headers=JSON)
                assert ok.json() == {"ok": True, "events": 2}
                # Published before the 200: already in the bus, only delivery may be pending.
                assert bus.published >= 2
                await bus.drain(timeout=5)
                assert [e.key for e in events] == ["a", "b"]  # type: ignore[attr-defined]


async def test_served_over_loopback_answer_waits_for_the_bus_in_another_loop() -> None:
    """Across threads, back-pressure from a full subscriber in the caller's loop holds the HTTP answer."""
    async with Bus() as bus, bus.subscribe("slow", buffer=1) as sub:
        receiver = WebhookReceiver(bus, {"acme": parse_acme})
        answered = anyio.Event()
        statuses: list[int] = []
        async with ServedApp(receiver) as served, httpx.AsyncClient(base_url=served.url) as client:

            async def send() -> None:
                r = await client.post("/hooks/acme", content=body_of(keys=("a", "b", "c")), headers=JSON)
                statuses.append(r.status_code)
                answered.set()

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(send)
                    first = await sub.receive()
                    # "c" cannot be published before "b" leaves the 1-slot buffer, so no answer yet.
                    assert not answered.is_set()
                    rest = [await sub.receive() for _ in range(2)]
                    await answered.wait()
        assert [e.key for e in (first, *rest)] == ["a", "b", "c"]  # type: ignore[attr-defined]
        assert statuses == [200]


async def test_served_over_loopback_refuses_bad_input_without_500() -> None:
    """Over a real socket: garbage, invalid UTF-8, chunked oversize and missing headers get 4xx, never 500."""

    async with Bus() as bus, capture(bus) as events:
        receiver = WebhookReceiver(bus, {"acme": parse_acme}, max_body=16 * 1024, secret=SECRET)
        async with ServedApp(receiver) as served, httpx.AsyncClient(base_url=served.url) as client:
            chunked = chunked_request(client, Chunks(8, 4096))
            with anyio.fail_after(10):
                statuses = [
                    (await client.post("/hooks/acme", content=b"\xff\xfe{", headers=JSON)).status_code,
                    (await client.send(chunked)).status_code,
                    (await client.post("/hooks/acme", content=b"{}")).status_code,
                    (await client.put("/hooks/acme", content=b"{}", headers=JSON)).status_code,
                ]
                body = b"\xff\xfe{"
                signed = {**JSON, **signature_headers(SECRET, "m2", body)}
                statuses.append((await client.post("/hooks/acme", content=body, headers=signed)).status_code)
                await bus.drain(timeout=5)
        assert statuses == [401, 413, 415, 405, 400]
        assert [e.status for e in events] == statuses  # type: ignore[attr-defined]


async def test_served_receiver_answers_503_when_the_bus_is_gone() -> None:
    """If the bus's loop has closed the bus, the served receiver answers 503 so the sender retries."""
    async with Bus() as bus:
        receiver = WebhookReceiver(bus, {"acme": parse_acme})
    async with ServedApp(receiver) as served, httpx.AsyncClient(base_url=served.url) as client:
        with anyio.fail_after(10):
            response = await client.post("/hooks/acme", content=body_of(), headers=JSON)
    assert response.status_code == 503


# --- `eventbus serve`: the receiver run alone ----------------------------------------------


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of the child's stdout, or fail after ``timeout`` seconds (never block forever)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout}s"
    return proc.stdout.readline()


@contextmanager
def served(*args: str, env: Mapping[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`eventbus serve --port 0 ARGS --parser acme=...` in a subprocess: yields it and its /hooks/acme URL once it
    has said where it listens; stops it on SIGTERM after the block (the block may have) and waits for it to end."""
    command = [sys.executable, "-m", "eventbus", "serve", "--port", "0", *args]
    command += ["--parser", "acme=tests.adapters.test_webhooks:parse_acme"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        announced = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)/hooks/\{provider\}\n", _readline(proc, 30))
        assert announced, "the first line says where to send webhooks"
        yield proc, announced.group(1) + "/hooks/acme"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM, then its remaining stdout and stderr once it has ended."""
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=30)


def test_eventbus_serve_runs_the_receiver_alone() -> None:
    """`eventbus serve` announces its URL, checks signatures with the env secret, logs events, exits 0 on SIGTERM."""
    with served("--json", env={**os.environ, "EVENTBUS_WEBHOOK_SECRET": SECRET}) as (proc, url):
        body = body_of(keys=("a",))
        signed = httpx.post(url, content=body, headers={**JSON, **signature_headers(SECRET, "m1", body)}, timeout=10)
        unsigned = httpx.post(url, content=body, headers=JSON, timeout=10)
        assert (signed.status_code, unsigned.status_code) == (200, 401)
        out, err = stop(proc)
    assert proc.returncode == 0
    logged = [json.loads(line) for line in out.splitlines()]
    assert [(e["event"], e.get("key"), e.get("status")) for e in logged] == [
        ("item_succeeded", "a", None),
        ("invalid_signal", None, 401),
    ]
    assert SECRET not in out + err and SECRET not in " ".join(proc.args)  # type: ignore[arg-type]


def journal_rows(journal: Path, columns: str) -> list[tuple[Any, ...]]:
    """The journal's rows (those ``columns``) as SQLite itself reads them, in position order."""
    import sqlite3

    conn = sqlite3.connect(journal)
    try:
        return conn.execute(f"SELECT {columns} FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_eventbus_serve_with_a_journal_has_written_the_events_before_it_answers(tmp_path: Path) -> None:
    """`eventbus serve --journal F`: when the 200 arrives, the events are already in F (read while it runs)."""
    journal = tmp_path / "hooks.db"
    journaled: list[list[str]] = []
    with served("--json", "--journal", str(journal)) as (proc, url):
        for n, keys in enumerate((("a", "b"), ("c",))):
            response = httpx.post(url, content=body_of(job=f"j{n}", keys=keys), headers=JSON, timeout=10)
            assert response.status_code == 200
            journaled.append([job for (job,) in journal_rows(journal, "job_id")])
        stop(proc)
    assert proc.returncode == 0
    assert journaled == [["j0", "j0"], ["j0", "j0", "j1"]]


def test_eventbus_serve_keeps_its_journal_within_journal_max_entries(tmp_path: Path) -> None:
    """`eventbus serve --journal F --journal-max-entries 3`: every event is written (positions 1-8), and the file
    it leaves holds the last 3; a limit without --journal exits 1 saying what is missing."""
    journal = tmp_path / "hooks.db"
    with served("--journal", str(journal), "--journal-max-entries", "3") as (proc, url):
        for n in range(4):
            response = httpx.post(url, content=body_of(job=f"j{n}", keys=("a", "b")), headers=JSON, timeout=10)
            assert response.status_code == 200
        stop(proc)
    assert proc.returncode == 0
    assert journal_rows(journal, "seq, job_id") == [(6, "j2"), (7, "j3"), (8, "j3")]
    alone = subprocess.run(
        [sys.executable, "-m", "eventbus", "serve", "--port", "0", "--journal-max-age", "60"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert alone.returncode == 1 and "--journal-max-age: there is no journal to keep small; add --journal PATH" in (
        alone.stderr
    )


# --- against the provider simulator: signed, duplicated, reordered Pronto callbacks ---------


class _ProntoContact(msgspec.Struct):
    ref: str  # a custom field: Pronto echoes the contact as sent


class _ProntoCallback(msgspec.Struct):
    enrichment_id: str
    status: str
    contact: _ProntoContact


_pronto = msgspec.json.Decoder(_ProntoCallback)


def parse_pronto(body: bytes, headers: Mapping[str, str]) -> list[ev.Event]:
    """A minimal Pronto webhook parser (the real one lives in adapters/providers)."""
    c = _pronto.decode(body)
    common = {
        "id": ev.event_id("pronto", c.enrichment_id, "item", c.contact.ref),
        "provider": "pronto",
        "job_id": c.enrichment_id,
        "source": "webhook",
        "key": c.contact.ref,
    }
    if c.status == "found":
        return [ev.ItemSucceeded(outcome="found", **common)]
    return [ev.ItemFailed(code=c.status, message=c.status, **common)]


@pytest.fixture
def sim_config() -> SimulatorConfig:
    """Signed webhooks, half of them delivered twice, in shuffled groups of 7."""
    return SimulatorConfig(
        item_time=0.0001, tick=0.005, webhook_secret=SECRET, faults=Faults(duplicate_webhooks=0.5, reorder_webhooks=7)
    )


async def test_simulated_pronto_callbacks_are_each_published_once(simulator: Simulator) -> None:
    """100 signed, duplicated, reordered callbacks from the simulator become exactly 100 item events."""
    contacts = [{"firstname": "Ada", "lastname": f"L{i}", "domain": "acme.test", "ref": f"r{i}"} for i in range(100)]
    async with Bus() as bus, bus.subscribe("items", buffer=1000, types={ev.ItemSucceeded, ev.ItemFailed}) as sub:
        receiver = WebhookReceiver(bus, {"pronto": parse_pronto}, secret=SECRET)
        async with ServedApp(receiver) as served, httpx.AsyncClient() as client:
            with anyio.fail_after(30):
                accepted = await client.post(
                    simulator.urls["pronto"] + "/contacts/bulk_enrich",
                    headers={"X-API-KEY": "demo-key"},
                    json={
                        "contacts": contacts,
                        "enrichment_type": ["email"],
                        "webhook_url": served.url + "/hooks/pronto",
                    },
                )
                assert accepted.status_code == 202
                keys = [(await sub.receive()).key for _ in range(100)]  # type: ignore[attr-defined]
                await simulator.webhooks.wait_settled(simulator.webhooks.stats.queued)
        assert sorted(keys) == sorted(c["ref"] for c in contacts)
        with pytest.raises(anyio.WouldBlock):
            sub.receive_nowait()  # the duplicates, all delivered by now, published nothing
        assert receiver.stats()["duplicates"] == simulator.webhooks.stats.queued - 100 > 0
        assert simulator.webhooks.stats.failed == 0
