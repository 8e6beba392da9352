"""HTTPS to the providers: the simulator served with TLS (a test CA from trustme), on asyncio and trio.

A certificate the client cannot trust fails at once with a CertificateError
saying what to do, is never retried, and stops the other chunks; a trusted
one (SSL_CERT_FILE, or the user's own httpx client) submits as over plain HTTP.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import httpx
import pytest
import trustme

from adapters.follow import follow
from adapters.http import ProviderClient, Settings
from adapters.polling import Interpretation, Poller, PollOutcome
from adapters.providers import Datananas
from adapters.providers.base import Request as ProviderRequest
from adapters.serving import ServedApp
from adapters.simulator import Simulator
from adapters.simulator.app import build_app
from adapters.simulator.common import SimState
from adapters.submit import prepare, submit
from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.exceptions import CertificateError, TransportError
from eventbus.testing import capture

pytestmark = pytest.mark.anyio


@dataclass
class TlsSimulator:
    datananas: str  # the Datananas base URL, https://
    ca_file: Path  # the CA that signed the server's certificate, PEM
    ca: trustme.CA
    state: SimState


async def tls_simulator(tmp_path: Path, name: str = "127.0.0.1") -> AsyncIterator[TlsSimulator]:
    ca = trustme.CA()
    cert = ca.issue_cert(name)
    key_file, cert_file, ca_file = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    ca.cert_pem.write_to_path(str(ca_file))
    app, state = build_app()
    async with ServedApp(app, lifespan="on", ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as served:
        yield TlsSimulator(f"https://127.0.0.1:{served.port}/datananas", ca_file, ca, state)


@pytest.fixture
async def tls(tmp_path: Path) -> AsyncIterator[TlsSimulator]:
    async for sim in tls_simulator(tmp_path):
        yield sim


def contacts(n: int) -> list[dict[str, str]]:
    return [{"email": f"p{i}@example.com"} for i in range(n)]


def slow_retries(base_url: str) -> Settings:
    """Settings whose every retry would wait a minute: a test finishing in seconds proves there was none."""
    return Settings(base_url, "demo-token", max_attempts=8, backoff_base=60, backoff_cap=60)


async def send_one_chunk_refused(base_url: str) -> tuple[CertificateError, list[str]]:
    """Send one Datananas chunk to ``base_url`` with retries a minute apart; the CertificateError it must raise
    within 20 s, and the retries made before it (none, for a refusal that would come back every time)."""
    chunk = prepare(Datananas(list="L1"), contacts(1))[0][0]
    retries: list[str] = []

    async def on_retry(reason: str, delay: float, attempt: int) -> None:
        retries.append(reason)

    with anyio.fail_after(20):
        async with ProviderClient(Datananas(list="L1"), slow_retries(base_url)) as http:
            with pytest.raises(CertificateError) as info:
                await http.send(Datananas(list="L1").build_submit(chunk), on_retry=on_retry)
    return info.value, retries


async def test_an_untrusted_certificate_is_a_certificate_error_at_once(tls: TlsSimulator) -> None:
    """Unknown CA: CertificateError naming the provider, the host and SSL_CERT_FILE; no retry, nothing received."""
    error, retries = await send_one_chunk_refused(tls.datananas)
    message = str(error)
    host = tls.datananas.split("/")[2]
    assert f"the TLS certificate of datananas at {host} is not trusted" in message
    assert "certificate verify failed" in message.lower() or "unable to get local issuer" in message
    assert "SSL_CERT_FILE" in message and "demo-token" not in message
    assert retries == [] and tls.state.api_requests == 0


async def test_a_certificate_for_another_host_is_refused_the_same_way(tmp_path: Path) -> None:
    """A trusted CA but a certificate issued for another name: CertificateError saying so."""
    async for sim in tls_simulator(tmp_path, name="somewhere-else.example"):
        context = ssl.create_default_context()
        sim.ca.configure_trust(context)
        settings = slow_retries(sim.datananas)
        async with httpx.AsyncClient(verify=context) as client, Bus() as bus:
            with anyio.fail_after(20):
                report = await submit("datananas", contacts(3), bus, settings=settings, client=client, list="L1")
        assert not report.accepted and "mismatch" in report.stopped and "not trusted" in report.stopped
        assert sim.state.api_requests == 0


async def test_https_to_a_plain_http_port_is_said_at_once(simulator: Simulator) -> None:
    """https:// given for the simulator's plain-HTTP port: no retry for the whole budget (21 s, then a raw
    WRONG_VERSION_NUMBER); a CertificateError saying the port does not speak TLS, at the first attempt."""
    plain = simulator.urls["datananas"]
    error, retries = await send_one_chunk_refused("https" + plain.removeprefix("http"))
    assert "does not speak TLS on that port" in str(error)
    assert "use http:// there" in str(error) and retries == []
    assert simulator.state.api_requests == 0


async def test_submit_stops_every_chunk_after_an_untrusted_certificate(tls: TlsSimulator) -> None:
    """Three chunks: the first fails on the certificate (not retriable), the others are not sent."""
    settings = slow_retries(tls.datananas)
    async with Bus() as bus, capture(bus, types={ev.SubmitRejected}) as rejected:
        with anyio.fail_after(20):
            report = await submit("datananas", contacts(25_000), bus, settings=settings, list="L1", concurrency=1)
        await bus.drain()
    assert report.chunks == 3 and report.rejected_chunks == 3 and not report.accepted
    assert "is not trusted" in report.stopped
    first, *rest = rejected
    assert "is not trusted" in first.reason and not first.retriable
    assert len(rest) == 2 and all(r.reason.startswith("not sent: the TLS certificate") for r in rest)
    assert tls.state.api_requests == 0


async def test_ssl_cert_file_makes_a_private_ca_trusted(tls: TlsSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """With SSL_CERT_FILE pointing at the CA (as behind a company proxy), the contacts go over HTTPS."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    async with Bus() as bus:
        with anyio.fail_after(20):
            report = await submit(
                "datananas", contacts(250), bus, settings=Settings(tls.datananas, "demo-token"), list="L1"
            )
    assert report.ok and [len(j.rows) for j in report.accepted] == [250]
    assert set(tls.state.jobs["datananas"]) == {report.accepted[0].job_id}


async def test_a_client_of_ones_own_with_verify_trusts_the_ca(tls: TlsSimulator) -> None:
    """An httpx.AsyncClient built with verify=<context that trusts the CA> is used as given."""
    context = ssl.create_default_context()
    tls.ca.configure_trust(context)
    async with httpx.AsyncClient(verify=context) as client, Bus() as bus:
        with anyio.fail_after(20):
            report = await submit(
                "datananas", contacts(3), bus, settings=Settings(tls.datananas, "demo-token"), client=client, list="L1"
            )
    assert report.ok and report.accepted[0].total == 3


@pytest.mark.parametrize("fetcher", ["raw httpx", "ProviderClient"])
async def test_a_poller_gives_up_at_once_on_an_untrusted_certificate(tls: TlsSimulator, fetcher: str) -> None:
    """Polling a job over HTTPS with an untrusted certificate: one poll, then gave_up saying why (no retries)."""

    def interpret(_response: object) -> Interpretation:
        raise AssertionError("no answer can come through an untrusted certificate")

    async with AsyncExitStack() as stack:
        bus = await stack.enter_async_context(Bus())
        states = await stack.enter_async_context(capture(bus, types={ev.SourceState}))
        if fetcher == "raw httpx":
            client = await stack.enter_async_context(httpx.AsyncClient())
            fetch = partial(client.get, tls.datananas + "/contacts/jobs/J1")
        else:
            http = await stack.enter_async_context(ProviderClient(Datananas(list="L1"), slow_retries(tls.datananas)))
            fetch = partial(http.send, ProviderRequest("GET", "/contacts/jobs/J1"))
        poller = Poller(fetch, interpret, bus, provider="datananas", job_id="J1", initial=60, cap=60, max_errors=5)
        with anyio.fail_after(20):
            assert await poller.run() is PollOutcome.GAVE_UP
        await bus.drain()
    assert poller.polls == 1 and [s.state for s in states] == ["gave_up"]
    assert "TLS certificate" in states[0].detail and "not trusted" in states[0].detail


async def test_follow_datananas_stops_at_once_on_an_untrusted_websocket_certificate(tls: TlsSimulator) -> None:
    """follow() over wss:// with an untrusted certificate: a TransportError saying so, long before connect_timeout."""
    async with Bus() as bus:
        with anyio.fail_after(20), pytest.raises(TransportError) as info:
            await follow(
                "datananas",
                contacts(3),
                bus,
                settings=Settings(tls.datananas, "demo-token"),
                connect_timeout=120,
                list="L1",
            )
    message = str(info.value)
    assert "could not connect to the Datananas WebSocket: the TLS certificate of wss://127.0.0.1:" in message
    assert "is not trusted (certificate verify failed" in message and "nothing was submitted" in message
    assert "demo-token" not in message and tls.state.api_requests == 0


async def test_follow_datananas_over_https_and_wss_with_ssl_cert_file(
    tls: TlsSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole Datananas flow over TLS: the submit (httpx) and the WebSocket both trust SSL_CERT_FILE's CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    async with Bus() as bus:
        with anyio.fail_after(60):
            result = await follow(
                "datananas", contacts(20), bus, settings=Settings(tls.datananas, "demo-token"), list="L1"
            )
    assert result.ok and len(result.report.accepted) == 1
    (row,) = result.board.rows.values()
    assert row.state == "completed" and row.done == 20
