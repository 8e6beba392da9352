"""Simulated Acquia Campaign Studio (Mautic): OAuth2, bulk contact jobs with blind pagination, batch endpoint.

Outcome rule per contact: an ``email`` that is missing or has no ``@`` is
rejected (400, ``{"email": ["A valid email is required."]}``); an email the
account already has updates that contact (200); any other creates one (201).
On ``bulk/edit``, ``PATCH`` of an unknown id is 404 "Item was not found.",
``PUT`` of an unknown id creates it (201).
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.simulator.common import SimState, bearer_token, json_response, media_type, pace, read_body, read_json

__all__ = ["JOB_TTL", "MAX_BATCH", "MAX_BULK", "routes"]

PROVIDER = "mautic"
MAX_BULK = 10_000
MAX_BATCH = 200
JOB_TTL = 48 * 3600.0
EMAIL_REQUIRED = "A valid email is required."


def _errors(message: str, code: int, details: Any = None) -> Response:
    return json_response({"errors": [{"code": code, "message": message, "details": details or []}]}, code)


def _bad_request(message: str) -> Response:
    return _errors(message, 400)


class Mautic:
    """The Mautic routes, bound to one simulator state."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.jobs: dict[str, dict[str, Any]] = state.jobs.setdefault(PROVIDER, {})
        self.contacts: dict[int, dict[str, Any]] = {}
        self.by_email: dict[str, int] = {}
        self.next_id = 1
        state.extra[PROVIDER] = self

    # --- auth -------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        if request.method != "POST":
            return _errors("Method not allowed", 405)
        body = await read_body(request, 64 * 1024)
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return json_response(
                {"error": "unsupported_grant_type", "error_description": "use client_credentials"}, 400
            )
        creds = self.state.config.credentials
        if form.get("client_id") != creds.mautic_client_id or form.get("client_secret") != creds.mautic_client_secret:
            return json_response(
                {"error": "invalid_client", "error_description": "The client credentials are invalid"}, 401
            )
        token, _ = self.state.issue_token(PROVIDER)
        return json_response(
            {"access_token": token, "expires_in": int(self.state.config.token_ttl), "token_type": "bearer"}
        )

    def _check(self, request: Request) -> Response | None:
        token = bearer_token(request)
        if not self.state.token_valid(PROVIDER, token):
            return _errors("API authorization denied.", 401)
        allowed, limit, remaining, reset = self.state.throttle(PROVIDER, token)
        if not allowed:
            return json_response(
                {"errors": [{"code": 429, "message": "API rate limit exceeded.", "details": []}]},
                429,
                headers={
                    "X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Remaining": str(remaining),
                    "X-RateLimit-Reset": str(max(1, round(reset))),
                },
            )
        return None

    # --- contacts -------------------------------------------------------------------

    def _apply(self, contact: Any, mode: str) -> dict[str, Any]:
        """Process one contact; return its result entry (id, statusCode[, errors])."""
        if not isinstance(contact, dict):
            return {"statusCode": 400, "errors": {"code": 400, "message": "contact must be an object", "details": {}}}
        email = contact.get("email")
        email_ok = isinstance(email, str) and "@" in email
        if mode == "new":
            if not email_ok:
                return self._invalid_email(None)
            existing = self.by_email.get(email.lower())
            if existing is not None:
                self.contacts[existing].update(contact)
                return {"id": existing, "statusCode": 200}
            return {"id": self._create(contact), "statusCode": 201}
        contact_id = contact.get("id")
        if not isinstance(contact_id, int):
            return {
                "statusCode": 400,
                "errors": {"code": 400, "message": "id is required", "details": {"id": ["required"]}},
            }
        if "email" in contact and not email_ok:
            return self._invalid_email(contact_id)
        if contact_id in self.contacts:
            self.contacts[contact_id].update(contact)
            return {"id": contact_id, "statusCode": 200}
        if mode == "PUT":
            return {"id": self._create(contact, contact_id), "statusCode": 201}
        return {
            "id": contact_id,
            "statusCode": 404,
            "errors": {"code": 404, "message": "Item was not found.", "details": {}},
        }

    @staticmethod
    def _invalid_email(contact_id: int | None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "statusCode": 400,
            "errors": {"code": 400, "message": f"email: {EMAIL_REQUIRED}", "details": {"email": [EMAIL_REQUIRED]}},
        }
        if contact_id is not None:
            entry["id"] = contact_id
        return entry

    def _create(self, contact: dict[str, Any], contact_id: int | None = None) -> int:
        if contact_id is None:
            contact_id = self.next_id
        self.next_id = max(self.next_id, contact_id) + 1
        self.contacts[contact_id] = {**contact, "id": contact_id}
        if isinstance(contact.get("email"), str):
            self.by_email[contact["email"].lower()] = contact_id
        return contact_id

    async def _contacts_body(self, request: Request, limit: int) -> list[Any] | Response:
        if media_type(request) != "application/json":
            return _errors("Content-Type must be application/json", 415)
        data = await read_json(request, self.state.config.max_body, _bad_request)
        if not isinstance(data, list) or not data:
            return _bad_request("body must be a non-empty JSON array of contacts")
        if len(data) > limit:
            return _bad_request(f"at most {limit} contacts per request, got {len(data)}")
        return data

    async def bulk_new(self, request: Request) -> Response:
        if request.method != "POST":
            return _errors("Method not allowed", 405)
        return await self._start_job(request, "new")

    async def bulk_edit(self, request: Request) -> Response:
        if request.method not in ("PUT", "PATCH"):
            return _errors("Method not allowed", 405)
        return await self._start_job(request, request.method)

    async def _start_job(self, request: Request, mode: str) -> Response:
        if (refused := self._check(request)) is not None:
            return refused
        contacts = await self._contacts_body(request, MAX_BULK)
        if isinstance(contacts, Response):
            return contacts
        job_id = str(uuid.uuid4())
        faults = self.state.config.faults
        job = {
            "id": job_id,
            "status": "queued",
            "contacts": contacts,
            "results": [],
            "mode": mode,
            "created": self.state.clock.now(),
            "ttl": faults.mautic_expire_after or JOB_TTL,
        }
        self.jobs[job_id] = job
        self.state.spawn(self._process, job)
        return json_response({"id": job_id}, 202)

    async def _process(self, job: dict[str, Any]) -> None:
        await anyio.sleep(self.state.config.tick)
        if job["id"] not in self.jobs:
            return
        job["status"] = "in_progress"

        def step(start: int, end: int) -> None:
            job["results"].extend(self._apply(c, job["mode"]) for c in job["contacts"][start:end])

        if not await pace(self.state, len(job["contacts"]), step, stopped=lambda: job["id"] not in self.jobs):
            return  # deleted or expired
        job["status"] = "completed"
        job["created"] = self.state.clock.now()  # the 48 hours count from processing too

    def _live_job(self, job_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        if job is not None and self.state.clock.now() - job["created"] > job["ttl"]:
            del self.jobs[job_id]
            return None
        return job

    async def job(self, request: Request) -> Response:
        if request.method not in ("GET", "DELETE"):
            return _errors("Method not allowed", 405)
        if (refused := self._check(request)) is not None:
            return refused
        job = self._live_job(request.path_params["job_id"])
        if job is None:
            return _errors("Item was not found.", 404)
        if request.method == "DELETE":
            del self.jobs[job["id"]]
            return json_response({"id": job["id"], "status": "deleted"})
        body: dict[str, Any] = {"status": job["status"]}
        if request.query_params.get("details") in ("1", "true") and job["status"] == "completed":
            try:
                page = int(request.query_params.get("page", "1"))
            except ValueError:
                return _bad_request("page must be a positive integer")
            if page < 1:
                return _bad_request("page must be a positive integer")
            size = self.state.config.mautic_page_size
            results = job["results"]
            details: dict[str, Any] = {"contacts": results[(page - 1) * size : page * size]}
            if page * size < len(results):
                details["next-page"] = str(request.url.include_query_params(details="1", page=str(page + 1)))
            body["details"] = details
        return json_response(body)

    async def batch_new(self, request: Request) -> Response:
        if request.method != "POST":
            return _errors("Method not allowed", 405)
        if (refused := self._check(request)) is not None:
            return refused
        contacts = await self._contacts_body(request, MAX_BATCH)
        if isinstance(contacts, Response):
            return contacts
        results = [self._apply(c, "new") for c in contacts]
        errors = {str(i): r["errors"] for i, r in enumerate(results) if "errors" in r}
        created = [self.contacts[r["id"]] for r in results if r["statusCode"] in (200, 201)]
        return json_response(
            {"contacts": created, "statusCodes": [r["statusCode"] for r in results], "errors": errors}, 201
        )


def routes(state: SimState) -> list[Route]:
    """The Mautic routes, to mount under ``/mautic``."""
    m = Mautic(state)
    any_method = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return [
        Route("/oauth/v2/token", m.token, methods=any_method),
        Route("/api/contacts/bulk/new", m.bulk_new, methods=any_method),
        Route("/api/contacts/bulk/edit", m.bulk_edit, methods=any_method),
        Route("/api/contacts/job/{job_id}", m.job, methods=any_method),
        Route("/api/contacts/batch/new", m.batch_new, methods=any_method),
    ]
