"""Simulated Pronto: bulk and single enrichment, one webhook per contact.

Outcome rule per contact: a ``lastname`` containing ``notfound`` is
``not_found``; one containing ``error`` is ``error``; otherwise a seeded hash
of (firstname, lastname, domain or company_name or linkedin_url) decides:
below 0.8 ``found``, below 0.95 ``not_found``, else ``error``
(:func:`outcome` computes it, so tests can predict totals).

``POST /contacts/single_enrich`` is asynchronous (202, webhook, then ``GET
/contacts/{id}`` says ``pending`` → ``finished``); with ``?sync=true`` it is the
synchronous variant: 200 with the finished body at once, at most
``pronto_sync_rate`` (50) requests per second per API key, then 429.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.iso3166 import is_alpha2
from adapters.simulator.common import (
    SimState,
    error_response,
    is_http_url,
    json_response,
    pace,
    read_json,
    stable_fraction,
    too_many_requests,
)

__all__ = ["ENRICHMENT_TYPES", "MAX_CONTACTS", "MIN_CONTACTS", "outcome", "routes"]

PROVIDER = "pronto"
MIN_CONTACTS = 2
MAX_CONTACTS = 100
ENRICHMENT_TYPES = ("email", "phone", "personal_email")


def outcome(contact: dict[str, Any], seed: int = 0) -> str:
    """``found``, ``not_found`` or ``error`` for one contact — the rule above."""
    last = str(contact.get("lastname", "")).lower()
    if "notfound" in last:
        return "not_found"
    if "error" in last:
        return "error"
    anchor = contact.get("domain") or contact.get("company_name") or contact.get("linkedin_url") or ""
    f = stable_fraction(contact.get("firstname"), contact.get("lastname"), anchor, seed=seed)
    return "found" if f < 0.8 else "not_found" if f < 0.95 else "error"


def _result(contact: dict[str, Any], kind: str, status: str) -> dict[str, Any]:
    if status != "found":
        return {}
    first = str(contact.get("firstname", "x")).lower()
    last = str(contact.get("lastname", "y")).lower()
    domain = contact.get("domain") or "example.com"
    value = {
        "email": f"{first}.{last}@{domain}",
        "phone": "+33 1 23 45 67 89",
        "personal_email": f"{first}.{last}@gmail.example",
    }[kind]
    return {kind: value}


def _contact_problems(index: int, contact: Any, kind: str) -> list[dict[str, Any]]:
    if not isinstance(contact, dict):
        return [{"index": index, "field": "", "message": "contact must be an object"}]
    problems = []
    for field in ("firstname", "lastname"):
        if not isinstance(contact.get(field), str) or not contact[field].strip():
            problems.append({"index": index, "field": field, "message": f"{field} is required"})
    if kind == "email":
        if not any(isinstance(contact.get(f), str) and contact[f].strip() for f in ("domain", "company_name")):
            problems.append({"index": index, "field": "domain", "message": "domain or company_name is required"})
    elif not isinstance(contact.get("linkedin_url"), str) or not contact["linkedin_url"].strip():
        problems.append({"index": index, "field": "linkedin_url", "message": f"linkedin_url is required for {kind}"})
    return problems


class Pronto:
    """The Pronto routes, bound to one simulator state."""

    def __init__(self, state: SimState, webhooks: Any) -> None:
        self.state = state
        self.webhooks = webhooks
        self.jobs: dict[str, dict[str, Any]] = state.jobs.setdefault(PROVIDER, {})
        self.singles: dict[str, dict[str, Any]] = {}
        self.sync_windows: dict[str, tuple[int, int]] = {}  # API key -> (second, requests in it)
        self.credits = state.config.pronto_credits
        state.extra["pronto"] = self

    def _check(self, request: Request) -> Response | None:
        if request.headers.get("x-api-key") != self.state.config.credentials.pronto_api_key:
            return error_response("Invalid or missing API key (X-API-KEY)", 401)
        allowed, *_, reset = self.state.throttle(PROVIDER, "account")
        if not allowed:
            return too_many_requests(reset)
        return None

    def _validate_common(self, data: dict[str, Any]) -> tuple[str, Response | None]:
        kinds = data.get("enrichment_type")
        if not isinstance(kinds, list) or len(kinds) != 1 or kinds[0] not in ENRICHMENT_TYPES:
            return "", error_response(
                "enrichment_type must be exactly one of " + ", ".join(f'["{k}"]' for k in ENRICHMENT_TYPES)
            )
        codes = data.get("phone_country_codes")
        if codes is not None:
            if not isinstance(codes, list) or not all(is_alpha2(c) for c in codes):
                bad = [c for c in codes if not is_alpha2(c)] if isinstance(codes, list) else codes
                return "", error_response(f"phone_country_codes must be ISO 3166-1 alpha-2 codes; invalid: {bad}")
        if kinds[0] == "personal_email" and not self.state.config.pronto_gdpr_consent:
            return "", error_response(
                "gdpr_consent_required",
                422,
                message="personal_email enrichment needs the account's GDPR consent; nothing was enqueued",
            )
        return kinds[0], None

    def _charge(self, count: int) -> Response | None:
        if self.credits is not None:
            if count > self.credits:
                return error_response(
                    "insufficient_credits",
                    422,
                    message=f"{count} contacts need {count} credits, {self.credits} left; nothing was enqueued",
                    credits_left=self.credits,
                )
            self.credits -= count
        return None

    async def bulk(self, request: Request) -> Response:
        if request.method != "POST":
            return error_response("Method not allowed", 405)
        if (refused := self._check(request)) is not None:
            return refused
        data = await read_json(request, self.state.config.max_body, error_response)
        if not isinstance(data, dict):
            return error_response("body must be a JSON object")
        contacts = data.get("contacts")
        if not isinstance(contacts, list) or not MIN_CONTACTS <= len(contacts) <= MAX_CONTACTS:
            count = len(contacts) if isinstance(contacts, list) else 0
            hint = "; use /contacts/single_enrich for one contact" if count == 1 else ""
            return error_response(f"contacts must hold {MIN_CONTACTS} to {MAX_CONTACTS} contacts, got {count}{hint}")
        url = data.get("webhook_url")
        if not is_http_url(url):
            return error_response("webhook_url is required and must be an http(s) URL")
        kind, refused = self._validate_common(data)
        if refused is not None:
            return refused
        problems = [p for i, c in enumerate(contacts) for p in _contact_problems(i, c, kind)]
        if problems:
            return error_response("validation_failed", details=problems)
        if (refused := self._charge(len(contacts))) is not None:
            return refused
        enrichment_id = uuid.uuid4().hex
        job = {"enrichment_id": enrichment_id, "total": len(contacts), "sent": 0}
        self.jobs[enrichment_id] = job
        self.state.spawn(self._process, job, contacts, kind, url)
        return json_response({"enrichment_id": enrichment_id}, 202)

    async def _process(self, job: dict[str, Any], contacts: list[dict[str, Any]], kind: str, url: str) -> None:
        seed = self.state.config.seed

        def step(start: int, end: int) -> None:
            for i in range(start, end):
                contact = contacts[i]
                status = outcome(contact, seed)
                payload = {
                    "enrichment_id": job["enrichment_id"],
                    "status": status,
                    "contact": contact,
                    "result": _result(contact, kind, status),
                }
                self.webhooks.send(url, payload, msg_id=f"pr_{job['enrichment_id']}_{i}")
                job["sent"] = i + 1

        await pace(self.state, len(contacts), step)

    async def single(self, request: Request) -> Response:
        if request.method != "POST":
            return error_response("Method not allowed", 405)
        if (refused := self._check(request)) is not None:
            return refused
        sync = request.query_params.get("sync", "false").lower()
        if sync not in ("true", "false"):
            return error_response("sync must be true or false")
        if sync == "true" and not self._sync_allowed(request.headers["x-api-key"]):
            rate = self.state.config.pronto_sync_rate
            return error_response(
                "rate_limited", 429, message=f"synchronous enrichment is limited to {rate} requests per second"
            )
        data = await read_json(request, self.state.config.max_body, error_response)
        if not isinstance(data, dict) or not isinstance(data.get("contact"), dict):
            return error_response('body must be {"contact": {...}, "enrichment_type": [...], "webhook_url": "..."}')
        kind, refused = self._validate_common(data)
        if refused is not None:
            return refused
        problems = _contact_problems(0, data["contact"], kind)
        if problems:
            return error_response("validation_failed", details=problems)
        url = data.get("webhook_url")
        if url is not None and not is_http_url(url):
            return error_response("webhook_url must be an http(s) URL")
        if (refused := self._charge(1)) is not None:
            return refused
        contact_id = uuid.uuid4().hex
        entry = {"id": contact_id, "status": "pending", "contact": data["contact"], "kind": kind, "url": url}
        self.singles[contact_id] = entry
        if sync == "true":  # enriched while the client waits; the answer is what GET /contacts/{id} would say
            status = outcome(entry["contact"], self.state.config.seed)
            entry.update(status="finished", enrichment_status=status, result=_result(entry["contact"], kind, status))
            return json_response(_contact_body(entry))
        self.state.spawn(self._process_single, entry)
        return json_response({"id": contact_id, "status": "pending"}, 202)

    async def _process_single(self, entry: dict[str, Any]) -> None:
        def step(_start: int, _end: int) -> None:
            status = outcome(entry["contact"], self.state.config.seed)
            result = _result(entry["contact"], entry["kind"], status)
            entry.update(status="finished", enrichment_status=status, result=result)
            if entry["url"]:
                payload = {
                    "enrichment_id": entry["id"],
                    "status": status,
                    "contact": entry["contact"],
                    "result": result,
                }
                self.webhooks.send(entry["url"], payload, msg_id=f"pr_{entry['id']}")

        await pace(self.state, 1, step)

    async def contact(self, request: Request) -> Response:
        if request.method != "GET":
            return error_response("Method not allowed", 405)
        if (refused := self._check(request)) is not None:
            return refused
        entry = self.singles.get(request.path_params["contact_id"])
        if entry is None:
            return error_response("contact not found", 404)
        return json_response(_contact_body(entry))

    def _sync_allowed(self, key: str) -> bool:
        """Count one synchronous request in its one-second window of the clock; False past the rate."""
        second = int(self.state.clock.now())
        window, used = self.sync_windows.get(key, (second, 0))
        used = used + 1 if window == second else 1
        self.sync_windows = {key: (second, used)}  # one key in practice; keep only the current window
        return used <= self.state.config.pronto_sync_rate


def _contact_body(entry: dict[str, Any]) -> dict[str, Any]:
    body = {"id": entry["id"], "status": entry["status"], "contact": entry["contact"]}
    if entry["status"] == "finished":
        body.update(enrichment_status=entry["enrichment_status"], result=entry["result"])
    return body


def routes(state: SimState, webhooks: Any) -> list[Route]:
    """The Pronto routes, to mount under ``/pronto``."""
    p = Pronto(state, webhooks)
    any_method = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return [
        Route("/api/v2/contacts/bulk_enrich", p.bulk, methods=any_method),
        Route("/api/v2/contacts/single_enrich", p.single, methods=any_method),
        Route("/api/v2/contacts/{contact_id}", p.contact, methods=any_method),
    ]
