"""Simulator conformance: InsideView, as providers.md describes it, over real loopback HTTP."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET

import httpx
import pytest

from adapters.simulator import Clock, Simulator, SimulatorConfig, Throttle
from tests.adapters.conftest import checked_simulator
from tests.adapters.simulator.helpers import insideview_token, poll_until

pytestmark = pytest.mark.anyio


async def submit(client: httpx.AsyncClient, sim: Simulator, token: str, ids: list[str], **params) -> httpx.Response:
    return await client.post(
        sim.urls["insideview"] + "/target/contact/job",
        params=params,
        content="\n".join(ids),
        headers={"accessToken": token, "content-type": "text/plain", "accept": "application/json"},
    )


async def test_login_returns_token_details(simulator: Simulator) -> None:
    """The login endpoint returns accessTokenDetails with a bearer token and an expiration time."""
    async with httpx.AsyncClient() as client:
        r = await client.post(
            simulator.urls["insideview_login"] + "/Auth/login/v1/token.json",
            params={"clientId": "demo", "clientSecret": "demo", "grantType": "cred"},
        )
    details = r.json()["accessTokenDetails"]
    assert r.status_code == 200 and details["tokenType"] == "bearer" and details["accessToken"]
    assert details["expirationTime"].endswith("Z")


async def test_login_refuses_bad_credentials(simulator: Simulator) -> None:
    """Wrong client credentials get 401."""
    async with httpx.AsyncClient() as client:
        url = simulator.urls["insideview_login"] + "/Auth/login/v1/token.json"
        r = await client.post(url, params={"clientId": "demo", "clientSecret": "nope", "grantType": "cred"})
    assert r.status_code == 401


async def test_login_needs_grant_type_cred(simulator: Simulator) -> None:
    """A grant type other than cred gets 400."""
    async with httpx.AsyncClient() as client:
        url = simulator.urls["insideview_login"] + "/Auth/login/v1/token.json"
        r = await client.post(url, params={"clientId": "demo", "clientSecret": "demo", "grantType": "x"})
    assert r.status_code == 400


async def test_token_goes_in_accessToken_header(simulator: Simulator) -> None:
    """Calls without the accessToken header, or with it in Authorization, get 401."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.post(
            simulator.urls["insideview"] + "/target/contact/job",
            content="1",
            headers={"Authorization": f"Bearer {token}", "content-type": "text/plain"},
        )
    assert r.status_code == 401


async def test_token_expires_after_an_hour(simulator: Simulator) -> None:
    """A token stops working once the simulator's clock passes one hour."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        assert (await submit(client, simulator, token, ["1"])).status_code == 200
        simulator.clock.advance(3601)
        assert (await submit(client, simulator, token, ["1"])).status_code == 401


async def test_submit_answers_200_json_when_asked(simulator: Simulator) -> None:
    """A job submission answers 200 (not 202) with jobId, status accepted and the job type."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await submit(client, simulator, token, ["123", "456"])
    body = r.json()
    assert r.status_code == 200
    assert body["status"] == "accepted" and body["type"] == "targetContactDetails" and body["jobId"]


async def test_submit_defaults_to_xml(simulator: Simulator) -> None:
    """Without an Accept header the answer is XML: BulkJobStatus with jobId, status and type."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.post(
            simulator.urls["insideview"] + "/target/contact/job",
            content="1\n2",
            headers={"accessToken": token, "content-type": "text/plain"},
        )
    root = ET.fromstring(r.text)
    assert r.headers["content-type"].startswith("application/xml")
    assert root.tag == "BulkJobStatus" and root.findtext("status") == "accepted" and root.findtext("jobId")


async def test_submit_takes_10000_ids(simulator: Simulator) -> None:
    """Exactly 10,000 ids is accepted."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await submit(client, simulator, token, [str(i) for i in range(10_000)])
    assert r.status_code == 200


async def test_submit_over_10000_ids_is_400(simulator: Simulator) -> None:
    """10,001 ids is a 400 whose body says the limit."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await submit(client, simulator, token, [str(i) for i in range(10_001)])
    assert r.status_code == 400 and "at most 10000" in r.json()["message"]


async def test_submit_without_ids_is_400(simulator: Simulator) -> None:
    """An empty body is a 400 saying there are no ids."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await submit(client, simulator, token, [])
    assert r.status_code == 400 and "no contact ids" in r.json()["message"]


async def test_submit_wrong_content_type_is_415(simulator: Simulator) -> None:
    """A JSON body on the job endpoint gets 415."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.post(
            simulator.urls["insideview"] + "/target/contact/job", json=["1"], headers={"accessToken": token}
        )
    assert r.status_code == 415


async def test_submit_wrong_method_is_405(simulator: Simulator) -> None:
    """A PUT on the job endpoint gets 405."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.put(simulator.urls["insideview"] + "/target/contact/job", headers={"accessToken": token})
    assert r.status_code == 405


async def test_job_progresses_to_finished_with_counts(simulator: Simulator) -> None:
    """Job status moves to finished with processed == total."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        job_id = (await submit(client, simulator, token, [str(i) for i in range(300)])).json()["jobId"]
        url = simulator.urls["insideview"] + f"/target/contact/job/{job_id}"
        r = await poll_until(
            lambda: client.get(url, headers={"accessToken": token, "accept": "application/json"}),
            lambda r: r.json()["status"] == "finished",
        )
    assert r.json()["processed"] == r.json()["total"] == 300


async def test_results_csv_follows_the_outcome_rule(simulator: Simulator) -> None:
    """The CSV has the documented columns, one row per id: found, 404-602 if it ends in 7, 400-110 if not numeric."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        job_id = (await submit(client, simulator, token, ["100", "107", "abc"])).json()["jobId"]
        base = simulator.urls["insideview"] + f"/target/contact/job/{job_id}"
        await poll_until(
            lambda: client.get(base, headers={"accessToken": token, "accept": "application/json"}),
            lambda r: r.json()["status"] == "finished",
        )
        r = await client.get(base + "/results", headers={"accessToken": token})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv")
    assert list(rows[0]) == [
        "newContactId", "contactId", "firstName", "lastName", "email", "emailValidationStatus",
        "companyId", "companyName", "status", "errorCode", "errorMessage",
    ]  # fmt: skip
    assert [(row["newContactId"], row["status"], row["errorCode"]) for row in rows] == [
        ("100", "found", ""),
        ("107", "error", "404-602"),
        ("abc", "error", "400-110"),
    ]


async def test_results_before_finished_is_refused(simulator: Simulator) -> None:
    """Asking for results of an unknown job is 404."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.get(
            simulator.urls["insideview"] + "/target/contact/job/nope/results", headers={"accessToken": token}
        )
    assert r.status_code == 404


async def test_delete_aborts_a_running_job(sim_config: SimulatorConfig) -> None:
    """DELETE aborts a job that is not finished; a second DELETE is refused."""
    sim_config.item_time = 0.01  # slow enough to abort mid-way
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await insideview_token(client, sim)
        job_id = (await submit(client, sim, token, [str(i) for i in range(5000)])).json()["jobId"]
        url = sim.urls["insideview"] + f"/target/contact/job/{job_id}"
        first = await client.delete(url, headers={"accessToken": token, "accept": "application/json"})
        second = await client.delete(url, headers={"accessToken": token, "accept": "application/json"})
    assert first.status_code == 200 and first.json()["status"] == "aborted"
    assert second.status_code == 400


async def test_status_webhooks_on_each_change(simulator: Simulator, webhook_sink) -> None:
    """With webhook=, the service POSTs {jobId, status, type} for processing and then finished."""
    sink, url = webhook_sink
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        job_id = (await submit(client, simulator, token, ["1", "2"], webhook=url)).json()["jobId"]
        await sink.wait_for(2)
    assert [(b["jobId"], b["status"], b["type"]) for b in sink.bodies()] == [
        (job_id, "processing", "targetContactDetails"),
        (job_id, "finished", "targetContactDetails"),
    ]


async def test_throttled_without_retry_after(sim_config: SimulatorConfig) -> None:
    """Over the per-token budget the answer is 429 with no Retry-After header."""
    sim_config.throttle["insideview"] = Throttle(limit=2, window=300)
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await insideview_token(client, sim)
        codes = [(await submit(client, sim, token, ["1"])) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert "retry-after" not in codes[2].headers


async def test_bulk_fetch_dedupes_and_reports_per_item_errors(simulator: Simulator) -> None:
    """Bulk Contact Fetch collapses duplicates, keeps request order and gives per-id errors."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.post(
            simulator.urls["insideview"] + "/contact/bulk",
            json={"contactIds": ["16935075", "16935075", "abc", "17"]},
            headers={"accessToken": token},
        )
    body = r.json()
    assert r.status_code == 200
    assert [e["requestedContactId"] for e in body] == ["16935075", "abc", "17"]
    assert body[0]["contact"]["contactId"] == 16935075
    assert body[1]["error"] == {"errorCode": "400-110", "errorMessage": "Contact id is not valid."}
    assert body[2]["error"]["errorCode"] == "404-602"


async def test_bulk_fetch_over_50_ids_is_400(simulator: Simulator) -> None:
    """More than 50 distinct ids is a 400."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.post(
            simulator.urls["insideview"] + "/contact/bulk",
            json={"contactIds": [str(i) for i in range(51)]},
            headers={"accessToken": token},
        )
    assert r.status_code == 400 and "at most 50" in r.json()["message"]


async def test_bulk_fetch_limit_counts_distinct_ids(simulator: Simulator) -> None:
    """80 copies of one id collapse to one entry and are accepted."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.post(
            simulator.urls["insideview"] + "/contact/bulk",
            json={"contactIds": ["1"] * 80},
            headers={"accessToken": token},
        )
    assert r.status_code == 200 and len(r.json()) == 1


async def test_bulk_fetch_malformed_json_is_400(simulator: Simulator) -> None:
    """A body that is not JSON is a 400, never a 500."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.post(
            simulator.urls["insideview"] + "/contact/bulk",
            content=b"{nope",
            headers={"accessToken": token, "content-type": "application/json"},
        )
    assert r.status_code == 400


async def test_insufficient_transaction_quota_is_400(sim_config: SimulatorConfig) -> None:
    """A job needing more transactions than the account has left is a 400 that says so."""
    sim_config.insideview_transactions = 5
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await insideview_token(client, sim)
        ok = await submit(client, sim, token, ["1", "2", "3"])
        over = await submit(client, sim, token, ["4", "5", "6"])
    assert ok.status_code == 200
    assert over.status_code == 400 and "insufficient transaction quota" in over.json()["message"]


async def test_insufficient_transaction_quota_is_400_and_enqueues_nothing(sim_config: SimulatorConfig) -> None:
    """More ids than the account's transactions left is a 400 saying so, and no job is created."""
    sim_config.insideview_transactions = 3
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await insideview_token(client, sim)
        r = await submit(client, sim, token, ["1", "2", "3", "4"])
        jobs = sim.state.jobs["insideview"]
    assert r.status_code == 400 and "insufficient transaction quota" in r.json()["message"]
    assert jobs == {}


async def test_transactions_are_spent_by_accepted_jobs(sim_config: SimulatorConfig) -> None:
    """Accepted ids use up the transaction quota: 2 of 3 spent, then 2 more are refused."""
    sim_config.insideview_transactions = 3
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await insideview_token(client, sim)
        first = await submit(client, sim, token, ["1", "2"])
        second = await submit(client, sim, token, ["3", "4"])
    assert first.status_code == 200 and second.status_code == 400


async def test_refused_submissions_spend_no_transactions(sim_config: SimulatorConfig) -> None:
    """A job refused for another reason (a bad webhook URL) leaves the quota whole for the next one."""
    sim_config.insideview_transactions = 3
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await insideview_token(client, sim)
        refused = await submit(client, sim, token, ["1", "2", "3"], webhook="not a url")
        accepted = await submit(client, sim, token, ["1", "2", "3"])
    assert refused.status_code == 400 and "webhook" in refused.json()["message"]
    assert accepted.status_code == 200 and sim_config.insideview_transactions == 3


async def test_too_many_jobs_queued_is_400(sim_config: SimulatorConfig) -> None:
    """Past insideview_max_queued_jobs unfinished jobs per token, a submission is a 400 saying so."""
    sim_config.insideview_max_queued_jobs = 1
    sim_config.item_time = 0.01  # the first job is still running when the second arrives
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await insideview_token(client, sim)
        first = await submit(client, sim, token, [str(i) for i in range(2000)])
        second = await submit(client, sim, token, ["1"])
    assert first.status_code == 200
    assert second.status_code == 400 and "too many jobs already queued" in second.json()["message"]


async def test_key_not_allowed_to_submit_is_405(sim_config: SimulatorConfig) -> None:
    """A key without the job API gets 405 "not allowed for this key" on a proper POST."""
    sim_config.insideview_job_api_allowed = False
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await insideview_token(client, sim)
        r = await submit(client, sim, token, ["1"])
    assert r.status_code == 405 and "for this key" in r.json()["message"]


async def test_throttle_window_is_rolling() -> None:
    """The per-token budget covers the last 5 minutes, not a fixed window: old requests age out one by one."""
    config = SimulatorConfig(item_time=0.0001, tick=0.005, throttle={"insideview": Throttle(limit=2, window=300)})
    clock = Clock(frozen=True)
    async with checked_simulator(config, clock=clock) as sim, httpx.AsyncClient() as client:
        token = await insideview_token(client, sim)
        codes = [(await submit(client, sim, token, ["1"])).status_code]  # t = 0
        clock.advance(200)
        codes.append((await submit(client, sim, token, ["1"])).status_code)  # t = 200
        codes.append((await submit(client, sim, token, ["1"])).status_code)  # t = 200: over budget
        clock.advance(101)
        codes.append((await submit(client, sim, token, ["1"])).status_code)  # t = 301: the t=0 one aged out
        codes.append((await submit(client, sim, token, ["1"])).status_code)  # t = 301: t=200 still counts
    assert codes == [200, 200, 429, 200, 429]


async def test_throttle_counts_per_token(sim_config: SimulatorConfig) -> None:
    """Each access token has its own budget."""
    sim_config.throttle["insideview"] = Throttle(limit=1, window=300)
    async with checked_simulator(sim_config, clock=Clock(frozen=True)) as sim, httpx.AsyncClient() as client:
        first, second = await insideview_token(client, sim), await insideview_token(client, sim)
        a = await submit(client, sim, first, ["1"])
        b = await submit(client, sim, second, ["1"])
        c = await submit(client, sim, first, ["1"])
    assert (a.status_code, b.status_code, c.status_code) == (200, 200, 429)


async def test_job_with_only_invalid_ids_fails(simulator: Simulator) -> None:
    """A job none of whose ids is numeric ends failed, and its results are not available."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        job_id = (await submit(client, simulator, token, ["abc", "x-1"])).json()["jobId"]
        url = simulator.urls["insideview"] + f"/target/contact/job/{job_id}"
        r = await poll_until(
            lambda: client.get(url, headers={"accessToken": token, "accept": "application/json"}),
            lambda r: r.json()["status"] in ("finished", "failed"),
        )
        results = await client.get(url + "/results", headers={"accessToken": token})
    assert r.json()["status"] == "failed" and results.status_code == 400


async def test_job_status_defaults_to_xml_with_counts(simulator: Simulator) -> None:
    """GET on a job without Accept answers BulkJobStatus XML with jobId, status, type, processed, total."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        job_id = (await submit(client, simulator, token, ["1", "2", "3"])).json()["jobId"]
        r = await client.get(
            simulator.urls["insideview"] + f"/target/contact/job/{job_id}",
            headers={"accessToken": token, "accept": ""},
        )
    root = ET.fromstring(r.text)
    assert root.tag == "BulkJobStatus" and root.findtext("jobId") == job_id
    assert root.findtext("type") == "targetContactDetails" and root.findtext("total") == "3"
    assert root.findtext("status") in ("accepted", "processing", "finished")


async def test_abort_sends_a_status_webhook(sim_config: SimulatorConfig, webhook_sink) -> None:
    """Aborting a job POSTs {jobId, status: aborted, type} to its webhook, after processing."""
    sink, hook = webhook_sink
    sim_config.item_time = 0.01
    async with checked_simulator(sim_config) as sim, httpx.AsyncClient() as client:
        token = await insideview_token(client, sim)
        job_id = (await submit(client, sim, token, [str(i) for i in range(5000)], webhook=hook)).json()["jobId"]
        await sink.wait_for(1)  # processing
        await client.delete(sim.urls["insideview"] + f"/target/contact/job/{job_id}", headers={"accessToken": token})
        await sink.wait_for(2)
    assert [b["status"] for b in sink.bodies()] == ["processing", "aborted"]


async def test_bulk_fetch_contact_fields_have_documented_types(simulator: Simulator) -> None:
    """A found contact carries the documented fields with their types (ids as int, lists of {id, name})."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.post(
            simulator.urls["insideview"] + "/contact/bulk", json={"contactIds": ["42"]}, headers={"accessToken": token}
        )
    contact = r.json()[0]["contact"]
    assert isinstance(contact["contactId"], int) and isinstance(contact["companyId"], int)
    assert isinstance(contact["confidenceScore"], float) and isinstance(contact["active"], bool)
    assert all(isinstance(contact[k], list) for k in ("titles", "sources", "jobLevelsV2", "jobFunctionsV2"))
    assert set(contact["jobLevelsV2"][0]) == {"id", "name"}
    for field in ("firstName", "lastName", "fullName", "email", "emailValidationStatus", "companyName", "phone"):
        assert isinstance(contact[field], str)
    assert {"corporatePhone", "peopleId", "age"} <= contact.keys()


async def test_bulk_fetch_odd_ids_get_400_110_not_500(simulator: Simulator) -> None:
    """Unicode digits, over-long numbers and non-string ids are per-item 400-110; numbers count as their digits."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.post(
            simulator.urls["insideview"] + "/contact/bulk",
            json={"contactIds": ["²", "1" * 40, None, [1], 12]},
            headers={"accessToken": token},
        )
    body = r.json()
    assert r.status_code == 200
    assert [e.get("error", {}).get("errorCode") for e in body] == ["400-110"] * 4 + [None]
    assert body[4]["requestedContactId"] == "12"


async def test_bulk_fetch_wrong_content_type_is_415(simulator: Simulator) -> None:
    """Bulk Contact Fetch with a non-JSON Content-Type gets 415."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.post(
            simulator.urls["insideview"] + "/contact/bulk",
            content="16935075",
            headers={"accessToken": token, "content-type": "text/plain"},
        )
    assert r.status_code == 415


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_bulk_fetch_other_methods_are_405(simulator: Simulator, method: str) -> None:
    """Any method but POST on Bulk Contact Fetch is 405."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        r = await client.request(method, simulator.urls["insideview"] + "/contact/bulk", headers={"accessToken": token})
    assert r.status_code == 405


async def test_expired_token_is_refused_on_bulk_fetch(simulator: Simulator) -> None:
    """Bulk Contact Fetch with a token past its hour gets 401."""
    async with httpx.AsyncClient() as client:
        token = await insideview_token(client, simulator)
        simulator.clock.advance(3600)
        r = await client.post(
            simulator.urls["insideview"] + "/contact/bulk", json={"contactIds": ["1"]}, headers={"accessToken": token}
        )
    assert r.status_code == 401
