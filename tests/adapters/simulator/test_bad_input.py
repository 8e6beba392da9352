"""Bad input never gets a 5xx: generated bodies, content types, methods and query strings on every endpoint."""

from __future__ import annotations

import httpx
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.simulator import SimulatorConfig
from tests.adapters.conftest import checked_sync_simulator

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
# Bodies shaped like the real ones, with fields of the wrong type, so validation is exercised past the top level.
CONTACT = st.dictionaries(
    st.sampled_from(
        ["email", "firstname", "lastname", "domain", "company_name", "linkedin_url", "id", "source", "owner"]
    ),
    JSON,
    max_size=6,
)
SHAPED = st.one_of(
    st.fixed_dictionaries({"contactIds": st.lists(JSON, max_size=60)}),
    st.lists(CONTACT, max_size=5),
    st.fixed_dictionaries({"list": JSON, "contacts": st.lists(CONTACT, max_size=5)}),
    st.fixed_dictionaries(
        {
            "contacts": st.lists(CONTACT, max_size=5),
            "enrichment_type": JSON,
            "webhook_url": st.sampled_from(["http://127.0.0.1:9/x", "nope", ""]) | JSON,
            "phone_country_codes": JSON,
        }
    ),
    st.fixed_dictionaries({"contact": CONTACT, "enrichment_type": JSON}),
)
BODIES = st.one_of(
    st.binary(max_size=200),
    JSON.map(msgspec.json.encode),
    SHAPED.map(msgspec.json.encode),
    st.sampled_from([b"[" * 3000, b'{"a":' * 3000, b"\xff\xfe", b"1\n2\n\xff\n", "١٢٣\n²\n".encode()]),
)
ENDPOINTS = [
    "/insideview/Auth/login/v1/token.json?clientId=demo&clientSecret=demo&grantType=cred",
    "/insideview/api/v1/target/contact/job?webhook=%00&retrieveCompanyDetails=maybe",
    "/insideview/api/v1/target/contact/job/{iv_job}",
    "/insideview/api/v1/target/contact/job/{iv_job}/results",
    "/insideview/api/v1/target/contact/job/%2e%2e",
    "/insideview/api/v1/contact/bulk",
    "/mautic/oauth/v2/token",
    "/mautic/api/contacts/bulk/new",
    "/mautic/api/contacts/bulk/edit",
    "/mautic/api/contacts/batch/new",
    "/mautic/api/contacts/job/{mautic_job}?details=1&page=-3",
    "/mautic/api/contacts/job/{mautic_job}?details=1&page=99999999999999999999",
    "/datananas/contacts/bulk?moveExistingToList=%FF",
    "/pronto/api/v2/contacts/bulk_enrich",
    "/pronto/api/v2/contacts/single_enrich?sync=true",
    "/pronto/api/v2/contacts/single_enrich?sync=maybe",
    "/pronto/api/v2/contacts/%00",
]


def _job_ids(client: httpx.Client, sim, iv_token: str, mautic_token: str) -> dict[str, str]:
    iv = client.post(
        sim.urls["insideview"] + "/target/contact/job",
        content="1\n2",
        headers={"accessToken": iv_token, "content-type": "text/plain", "accept": "application/json"},
    ).json()["jobId"]
    mautic = client.post(
        sim.urls["mautic"] + "/api/contacts/bulk/new",
        json=[{"email": "a@b.c"}],
        headers={"authorization": f"Bearer {mautic_token}"},
    ).json()["id"]
    return {"iv_job": iv, "mautic_job": mautic}


def test_generated_requests_never_get_a_5xx() -> None:
    """Any method, content type and body on any endpoint, with valid credentials, gets an answer below 500."""
    config = SimulatorConfig(item_time=0, max_body=64 * 1024, insideview_max_queued_jobs=10_000)
    with checked_sync_simulator(config) as sim, httpx.Client(timeout=10) as client:
        iv_token = client.post(
            sim.urls["insideview_login"] + "/Auth/login/v1/token.json",
            params={"clientId": "demo", "clientSecret": "demo", "grantType": "cred"},
        ).json()["accessTokenDetails"]["accessToken"]
        mautic_token = client.post(
            sim.urls["mautic"] + "/oauth/v2/token",
            data={"grant_type": "client_credentials", "client_id": "demo", "client_secret": "demo"},
        ).json()["access_token"]
        ids = _job_ids(client, sim, iv_token, mautic_token)
        auth = {
            "accessToken": iv_token,
            "x-api-key": "demo-key",
        }

        @settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
            endpoint=st.sampled_from(ENDPOINTS),
            content_type=st.sampled_from(
                ["application/json", "text/plain", "application/xml", "application/x-www-form-urlencoded", ""]
            ),
            bearer=st.sampled_from(["demo-token", mautic_token]),
            body=BODIES,
        )
        def check(method: str, endpoint: str, content_type: str, bearer: str, body: bytes) -> None:
            headers = {**auth, "authorization": f"Bearer {bearer}", "content-type": content_type}
            r = client.request(method, sim.base_url + endpoint.format(**ids), content=body, headers=headers)
            assert r.status_code < 500, (method, endpoint, content_type, body[:80], r.status_code, r.text[:300])

        check()
        health = client.get(sim.base_url + "/health")
    assert health.status_code == 200


def test_bad_webhook_urls_are_refused_up_front() -> None:
    """Webhook URLs that are not absolute http(s) ASCII URLs get 400 on submit, so no job is created."""
    bad = ["%00", "http://", "http://h:99999/x", "http://[::1/x", "http://h/ü", "ftp://h/x", "http://h/a b"]
    with checked_sync_simulator(SimulatorConfig(item_time=0)) as sim, httpx.Client() as client:
        token = client.post(
            sim.urls["insideview_login"] + "/Auth/login/v1/token.json",
            params={"clientId": "demo", "clientSecret": "demo", "grantType": "cred"},
        ).json()["accessTokenDetails"]["accessToken"]
        codes = []
        for url in bad:
            codes.append(
                client.post(
                    sim.urls["insideview"] + "/target/contact/job",
                    params={"webhook": url},
                    content="1",
                    headers={"accessToken": token, "content-type": "text/plain"},
                ).status_code
            )
            codes.append(
                client.post(
                    sim.urls["pronto"] + "/contacts/bulk_enrich",
                    json={
                        "contacts": [{"firstname": "a", "lastname": f"b{i}", "domain": "d.io"} for i in range(2)],
                        "enrichment_type": ["email"],
                        "webhook_url": url,
                    },
                    headers={"x-api-key": "demo-key"},
                ).status_code
            )
    assert codes == [400] * 2 * len(bad)
    assert sim.state.jobs["insideview"] == {} and sim.state.jobs["pronto"] == {}


def test_oversized_bodies_are_413_on_every_endpoint() -> None:
    """A body past max_body is refused with 413 while being read, never a 5xx."""
    config = SimulatorConfig(item_time=0, max_body=1024)
    big = b"[" + b'{"email": "a@b.c"},' * 200 + b"{}]"
    with checked_sync_simulator(config) as sim, httpx.Client() as client:
        mautic_token = client.post(
            sim.urls["mautic"] + "/oauth/v2/token",
            data={"grant_type": "client_credentials", "client_id": "demo", "client_secret": "demo"},
        ).json()["access_token"]
        codes = {
            path: client.post(
                sim.base_url + path,
                content=big,
                headers={
                    "content-type": "application/json",
                    "authorization": f"Bearer {mautic_token}" if "mautic" in path else "Bearer demo-token",
                    "x-api-key": "demo-key",
                },
            ).status_code
            for path in (
                "/mautic/api/contacts/bulk/new",
                "/datananas/contacts/bulk",
                "/pronto/api/v2/contacts/bulk_enrich",
            )
        }
    assert set(codes.values()) == {413}, codes
