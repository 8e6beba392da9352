"""Simulated InsideView: token login, "New Contact Details" jobs, CSV results, Bulk Contact Fetch.

Outcome rule for a new-contact id (jobs and Bulk Contact Fetch alike): a
non-numeric id is an error ``400-110`` "Contact id is not valid."; a numeric
id whose value ends in 7 is ``404-602`` "contact not found."; any other id
is found, with contact data derived from the id. A job none of whose ids is
numeric ends ``failed`` (there is nothing to look up); others end ``finished``.

Throttling counts the requests of each access token over a rolling window
and answers 429 without ``Retry-After``.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.simulator.common import SimState, is_http_url, json_response, media_type, pace, read_body, read_json

__all__ = ["CSV_COLUMNS", "MAX_BULK_FETCH", "MAX_JOB_IDS", "contact_outcome", "is_valid_id", "routes"]

PROVIDER = "insideview"
MAX_JOB_IDS = 10_000
MAX_BULK_FETCH = 50
JOB_TYPE = "targetContactDetails"
CSV_COLUMNS = (
    "newContactId",
    "contactId",
    "firstName",
    "lastName",
    "email",
    "emailValidationStatus",
    "companyId",
    "companyName",
    "status",
    "errorCode",
    "errorMessage",
)
TERMINAL = ("finished", "failed", "aborted")


def _error(message: str, status: int = 400) -> Response:
    return json_response({"message": message}, status)


def is_valid_id(contact_id: str) -> bool:
    """A contact id is 1 to 19 ASCII digits (an int64); anything else is ``400-110``."""
    return contact_id.isascii() and contact_id.isdigit() and len(contact_id) <= 19


def contact_outcome(contact_id: str) -> tuple[str, dict[str, Any]]:
    """("found", contact) or ("error", {"errorCode", "errorMessage"}) for one id — the rule above."""
    if not is_valid_id(contact_id):
        return "error", {"errorCode": "400-110", "errorMessage": "Contact id is not valid."}
    if contact_id.endswith("7"):
        return "error", {"errorCode": "404-602", "errorMessage": "contact not found."}
    n = int(contact_id)
    return "found", {
        "contactId": n,
        "firstName": f"First{n % 1000}",
        "lastName": f"Last{n % 997}",
        "fullName": f"First{n % 1000} Last{n % 997}",
        "email": f"contact{n}@example.com",
        "emailValidationStatus": "ValidEmail" if n % 3 else "ValidDomain",
        "confidenceScore": round(50 + (n % 500) / 10, 1),
        "companyId": 1000 + n % 5000,
        "companyName": f"Company {n % 5000}",
        "phone": f"+1 415 555 {n % 10_000:04d}",
        "corporatePhone": f"+1 415 555 {(n // 7) % 10_000:04d}",
        "titles": ["Engineer"],
        "sources": ["simulator"],
        "active": True,
        "jobLevelsV2": [{"id": 1, "name": "Staff"}],
        "jobFunctionsV2": [{"id": 2, "name": "Engineering"}],
        "peopleId": f"p{n}",
        "age": 25 + n % 40,
    }


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _status_body(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "jobId": job["jobId"],
        "status": job["status"],
        "type": JOB_TYPE,
        "processed": job["processed"],
        "total": job["total"],
    }


def _render(request: Request, data: dict[str, Any], status: int = 200) -> Response:
    if _wants_json(request):
        return json_response(data, status)
    children = "".join(f"<{k}>{v}</{k}>" for k, v in data.items())
    xml = f'<?xml version="1.0" encoding="UTF-8"?><BulkJobStatus>{children}</BulkJobStatus>'
    return Response(xml, status_code=status, media_type="application/xml")


class InsideView:
    """The InsideView routes, bound to one simulator state."""

    def __init__(self, state: SimState, webhooks: Any) -> None:
        self.state = state
        self.webhooks = webhooks
        self.jobs: dict[str, dict[str, Any]] = state.jobs.setdefault(PROVIDER, {})
        # The transaction quota: checked and spent in submit, by accepted jobs only (also read by tests and
        # docs/simulator.md's introspection); the config keeps the starting value.
        self.transactions_left = state.config.insideview_transactions
        state.extra[PROVIDER] = self

    async def login(self, request: Request) -> Response:
        if request.method != "POST":
            return _error("Method not allowed", 405)
        q = request.query_params
        if q.get("grantType") != "cred":
            return _error("grantType must be 'cred'", 400)
        creds = self.state.config.credentials
        if q.get("clientId") != creds.insideview_client_id or q.get("clientSecret") != creds.insideview_client_secret:
            return _error("invalid client credentials", 401)
        token, expires_at = self.state.issue_token(PROVIDER)
        expiration = datetime.fromtimestamp(expires_at, UTC).isoformat().replace("+00:00", "Z")
        return json_response(
            {"accessTokenDetails": {"accessToken": token, "tokenType": "bearer", "expirationTime": expiration}}
        )

    def _check(self, request: Request) -> Response | None:
        token = request.headers.get("accessToken")
        if not self.state.token_valid(PROVIDER, token):
            return _error("missing, invalid or expired access token", 401)
        allowed, *_ = self.state.throttle(PROVIDER, token or "", rolling=True)
        if not allowed:
            return _error("Too many requests", 429)  # InsideView sends no Retry-After
        return None

    async def submit(self, request: Request) -> Response:
        if request.method != "POST":
            return _error("Method not allowed", 405)
        if (refused := self._check(request)) is not None:
            return refused
        config = self.state.config
        if not config.insideview_job_api_allowed:
            return _error("Method not allowed for this key: it may not submit contact jobs", 405)
        if media_type(request) != "text/plain":
            return _error("Content-Type must be text/plain: one new-contact id per line", 415)
        body = await read_body(request, self.state.config.max_body)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error("body is not valid UTF-8 text")
        ids = [line.strip() for line in text.splitlines() if line.strip()]
        if not ids:
            return _error("validation failed: no contact ids in the body")
        if len(ids) > MAX_JOB_IDS:
            return _error(f"validation failed: at most {MAX_JOB_IDS} ids per job, got {len(ids)}")
        left = self.transactions_left
        if left is not None and len(ids) > left:
            return _error(f"insufficient transaction quota: {len(ids)} ids requested, {left} transactions left")
        token = request.headers["accessToken"]
        webhook = request.query_params.get("webhook")
        if webhook is not None and not is_http_url(webhook):
            return _error("validation failed: webhook must be an http(s) URL")
        company = request.query_params.get("retrieveCompanyDetails", "false")
        if company not in ("true", "false"):
            return _error("validation failed: retrieveCompanyDetails must be true or false")
        active = sum(1 for j in self.jobs.values() if j["token"] == token and j["status"] not in TERMINAL)
        if active >= config.insideview_max_queued_jobs:
            return _error(f"too many jobs already queued ({active}); wait for some to finish")
        if left is not None:  # spent only by a job that is accepted (no await since the check above)
            self.transactions_left = left - len(ids)
        job_id = uuid.uuid4().hex[:20]
        job = {
            "jobId": job_id,
            "status": "accepted",
            "processed": 0,
            "total": len(ids),
            "ids": ids,
            "rows": [],
            "token": token,
            "webhook": webhook,
            "company": company == "true",
        }
        self.jobs[job_id] = job
        self.state.spawn(self._process, job)
        return _render(request, {"jobId": job_id, "status": "accepted", "type": JOB_TYPE})

    def _notify(self, job: dict[str, Any]) -> None:
        if job["webhook"]:
            self.webhooks.send(
                job["webhook"],
                {"jobId": job["jobId"], "status": job["status"], "type": JOB_TYPE},
                msg_id=f"iv_{job['jobId']}_{job['status']}",
            )

    async def _process(self, job: dict[str, Any]) -> None:
        await anyio.sleep(self.state.config.tick)
        if job["status"] != "accepted":
            return
        job["status"] = "processing"
        self._notify(job)

        def step(start: int, end: int) -> None:
            for new_id in job["ids"][start:end]:
                job["rows"].append(_csv_row(new_id))
            job["processed"] = end

        if not await pace(self.state, job["total"], step, stopped=lambda: job["status"] != "processing"):
            return  # aborted (DELETE)
        job["status"] = "finished" if any(is_valid_id(i) for i in job["ids"]) else "failed"
        self._notify(job)

    def _find_job(self, request: Request, methods: tuple[str, ...]) -> dict[str, Any] | Response:
        """The job named in the path, or the answer refusing the request: 405, then token/throttle, then 404."""
        if request.method not in methods:
            return _error("Method not allowed", 405)
        if (refused := self._check(request)) is not None:
            return refused
        job = self.jobs.get(request.path_params["job_id"])
        return _error("job not found", 404) if job is None else job

    async def job(self, request: Request) -> Response:
        job = self._find_job(request, ("GET", "DELETE"))
        if isinstance(job, Response):
            return job
        if request.method == "DELETE":
            if job["status"] in TERMINAL:
                return _error(f"job is already {job['status']}", 400)
            job["status"] = "aborted"
            self._notify(job)
        return _render(request, _status_body(job))

    async def results(self, request: Request) -> Response:
        job = self._find_job(request, ("GET",))
        if isinstance(job, Response):
            return job
        if job["status"] != "finished":
            return _error(f"results are available once the job is finished (status: {job['status']})", 400)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(job["rows"])
        return Response(out.getvalue(), media_type="text/csv")

    async def bulk_fetch(self, request: Request) -> Response:
        if request.method != "POST":
            return _error("Method not allowed", 405)
        if (refused := self._check(request)) is not None:
            return refused
        if media_type(request) != "application/json":
            return _error("Content-Type must be application/json", 415)
        data = await read_json(request, self.state.config.max_body, _error)
        ids = data.get("contactIds") if isinstance(data, dict) else None
        if not isinstance(ids, list) or not ids:
            return _error('body must be {"contactIds": [ ... ]} with at least one id')
        if len(ids) > MAX_JOB_IDS:  # bounded work even for absurd requests; the 50 limit is on distinct ids
            return _error(f"at most {MAX_BULK_FETCH} contact ids per request, got {len(ids)}")
        # Ids are strings on the wire; a number is accepted as its digits, anything else gets 400-110.
        distinct = list(dict.fromkeys(i if isinstance(i, str) else msgspec.json.encode(i).decode() for i in ids))
        if len(distinct) > MAX_BULK_FETCH:
            return _error(f"at most {MAX_BULK_FETCH} contact ids per request, got {len(distinct)}")
        entries = []
        for contact_id in distinct:
            status, payload = contact_outcome(contact_id)
            key = "contact" if status == "found" else "error"
            entries.append({"requestedContactId": contact_id, key: payload})
        return json_response(entries)


def _csv_row(new_id: str) -> list[object]:
    status, payload = contact_outcome(new_id)
    if status == "found":
        return [
            new_id,
            payload["contactId"],
            payload["firstName"],
            payload["lastName"],
            payload["email"],
            payload["emailValidationStatus"],
            payload["companyId"],
            payload["companyName"],
            "found",
            "",
            "",
        ]
    return [new_id, "", "", "", "", "", "", "", "error", payload["errorCode"], payload["errorMessage"]]


def routes(state: SimState, webhooks: Any) -> list[Route]:
    """The InsideView routes, to mount under ``/insideview``."""
    iv = InsideView(state, webhooks)
    any_method = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return [
        Route("/Auth/login/v1/token.json", iv.login, methods=any_method),
        Route("/api/v1/target/contact/job", iv.submit, methods=any_method),
        Route("/api/v1/target/contact/job/{job_id}", iv.job, methods=any_method),
        Route("/api/v1/target/contact/job/{job_id}/results", iv.results, methods=any_method),
        Route("/api/v1/contact/bulk", iv.bulk_fetch, methods=any_method),
    ]
