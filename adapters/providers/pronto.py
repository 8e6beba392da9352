"""Pronto (sans-I/O): bulk enrichment of 2–100 contacts, results by one webhook per contact.

Facts from providers.md: ``POST /contacts/bulk_enrich`` takes 2 to 100
contacts and exactly one ``enrichment_type``; a lone contact must use
``/contacts/single_enrich``. ``firstname`` and ``lastname`` are required, plus
``domain`` or ``company_name`` for ``email`` and ``linkedin_url`` for
``phone``/``personal_email``. 422 means credits or GDPR consent: the whole
account is out, nothing was enqueued. Unknown fields are custom fields, echoed
back in each webhook — which is how webhooks are matched to input rows: every
contact carries ``eventbus_key`` (its 0-based input position).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final

import msgspec

from adapters.iso3166 import is_alpha2
from adapters.providers.base import (
    TAKEN,
    Accepted,
    Chunk,
    Contact,
    Outcome,
    Problem,
    Provider,
    Refused,
    Request,
    Response,
    decode_json,
    reason_of,
    text_of,
)
from eventbus import events as ev
from eventbus.exceptions import ConfigError

__all__ = ["ENRICHMENT_TYPES", "KEY_FIELD", "MAX_CONTACTS", "MIN_CONTACTS", "Pronto"]

MIN_CONTACTS: Final = 2
MAX_CONTACTS: Final = 100
ENRICHMENT_TYPES: Final = ("email", "phone", "personal_email")
KEY_FIELD: Final = "eventbus_key"
API_KEY_HEADER: Final = "X-API-KEY"


class _Accepted(msgspec.Struct):
    enrichment_id: str | int | None = None  # a number is read as its text, as the webhooks' is
    id: str | int | None = None


class Pronto(Provider):
    """Pronto's requests and readings. Options: ``enrichment_type``, ``webhook_url``, ``phone_country_codes``."""

    name: ClassVar[str] = "pronto"
    chunk_min = MIN_CONTACTS
    chunk_max = MAX_CONTACTS
    aliases: ClassVar[dict[str, str]] = {
        "firstname": "firstname",
        "first": "firstname",
        "givenname": "firstname",
        "lastname": "lastname",
        "last": "lastname",
        "surname": "lastname",
        "familyname": "lastname",
        "domain": "domain",
        "companydomain": "domain",
        "website": "domain",
        "companyname": "company_name",
        "company": "company_name",
        "linkedinurl": "linkedin_url",
        "linkedin": "linkedin_url",
    }

    def __init__(
        self,
        *,
        enrichment_type: str = "email",
        webhook_url: str | None = None,
        phone_country_codes: Sequence[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if enrichment_type not in ENRICHMENT_TYPES:
            raise ConfigError(f"enrichment_type must be one of {', '.join(ENRICHMENT_TYPES)}, not {enrichment_type!r}")
        bad = [c for c in phone_country_codes or () if not is_alpha2(c)]
        if bad:
            raise ConfigError(f"phone_country_codes must be ISO 3166-1 alpha-2 codes (e.g. US, FR); invalid: {bad}")
        if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook_url must be an http(s) URL, not {webhook_url!r}")
        self.enrichment_type = enrichment_type
        self.webhook_url = webhook_url
        self.phone_country_codes = list(phone_country_codes) if phone_country_codes else None

    def validate(self, row: int, contact: Contact) -> list[Problem]:
        # Required fields are text: a number, list or object (JSON Lines) would get the whole chunk refused.
        problems = [
            _not_text(row, name, contact) or Problem(row, name, f"{name} is required")
            for name in _NAMES
            if not _is_text(contact.get(name))
        ]
        if self.enrichment_type == "email":
            if not any(_is_text(contact.get(f)) for f in ("domain", "company_name")):
                problems.append(
                    _not_text(row, "domain", contact)
                    or _not_text(row, "company_name", contact)
                    or Problem(row, "domain", "domain or company_name is required for email enrichment")
                )
        elif not _is_text(contact.get("linkedin_url")):
            problems.append(
                _not_text(row, "linkedin_url", contact)
                or Problem(row, "linkedin_url", f"linkedin_url is required for {self.enrichment_type}")
            )
        return problems

    def chunk(self, rows: Sequence[int], contacts: Sequence[Contact]) -> list[Chunk]:
        keyed = [{**c, KEY_FIELD: str(r)} for r, c in zip(rows, contacts, strict=True)]
        if len(keyed) == 1:
            return [Chunk(0, tuple(rows), tuple(keyed), endpoint="single")]
        return super().chunk(rows, keyed)  # balanced between chunk_min and chunk_max (MIN/MAX_CONTACTS)

    def auth_headers(self, credential: str) -> dict[str, str]:
        return {API_KEY_HEADER: credential}

    def build_submit(self, chunk: Chunk) -> Request:
        if self.webhook_url is None:
            raise ConfigError("Pronto reports results only by webhook: give webhook_url (--webhook-url)")
        body: dict[str, Any] = {"enrichment_type": [self.enrichment_type], "webhook_url": self.webhook_url}
        if chunk.endpoint == "single":
            body["contact"] = chunk.contacts[0]
            path = "/contacts/single_enrich"
        else:
            body["contacts"] = list(chunk.contacts)
            path = "/contacts/bulk_enrich"
        if self.phone_country_codes:
            body["phone_country_codes"] = self.phone_country_codes
        return Request("POST", path, headers={"Content-Type": "application/json"}, content=msgspec.json.encode(body))

    def read_submit(self, chunk: Chunk, response: Response) -> Outcome:
        if response.status in TAKEN:  # 202 is documented
            try:
                accepted = msgspec.json.decode(response.body, type=_Accepted)
                named = accepted.enrichment_id if accepted.enrichment_id not in (None, "") else accepted.id
                job_id = None if named is None else str(named)
            except (msgspec.MsgspecError, RecursionError):  # RecursionError: JSON nested too deeply
                job_id = None
            if not job_id or not job_id.strip():
                return Refused(response.status, "accepted, but the answer had no enrichment id", retriable=False)
            return Accepted(job_id, total=len(chunk.rows))
        common = self.common_outcome(response)
        if common is not None:
            return common
        data = decode_json(response.body)
        if response.status == 422:
            fields = data if isinstance(data, dict) else {}
            error, message = fields.get("error"), fields.get("message")
            # Events carry code and reason as strings: a value of another shape is told as its JSON.
            code = error if isinstance(error, str) and error else "unprocessable"
            told = next((value for value in (message, error) if value not in (None, "")), "unprocessable")
            return Refused(422, text_of(told), retriable=True, account=True, code=code)  # nothing enqueued
        if response.status in (401, 403):
            return Refused(response.status, "the API key was refused (PRONTO_API_KEY)", account=True, code="auth")
        reason = reason_of(response)
        if isinstance(data, dict) and isinstance(data.get("details"), list):
            described = [text for d in data["details"][:5] if (text := _describe_detail(d, chunk.rows))]
            if described:
                reason += ": " + "; ".join(described)
        return Refused(response.status, reason)


_NAMES: Final = ("firstname", "lastname")


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _not_text(row: int, name: str, contact: Contact) -> Problem | None:
    """The problem with a field given as something other than text; None when it is text, blank or absent."""
    value = contact.get(name)
    if value is None or isinstance(value, str):
        return None
    return Problem(row, name, f"{name} must be text, not {type(value).__name__} ({ev.excerpt(repr(value), 40)})")


def _describe_detail(detail: Any, rows: Sequence[int] = ()) -> str:
    """One entry of a refusal's ``details`` as short text, whatever its shape ("" when it holds nothing).

    An ``index`` into the chunk's contacts is told as the input row it came from, when it is one."""
    if detail is None:
        return ""
    if not isinstance(detail, dict):
        return text_of(detail)
    index, field, message = detail.get("index"), detail.get("field"), detail.get("message")
    where = []
    if type(index) is int and 0 <= index < len(rows):
        where.append(f"row {rows[index]}")
    elif index is not None:
        where.append(f"contact {text_of(index)}")
    if field is not None:
        where.append(text_of(field))
    what = "" if message is None else text_of(message)
    if where and what:
        return f"{' '.join(where)}: {what}"
    return " ".join(where) or what or text_of(detail)


# --- results by webhook -------------------------------------------------------------------------


class _Result(msgspec.Struct):
    enrichment_id: str | int  # a number is read as its text (the job id the submit answer gave)
    status: str
    contact: dict[str, Any] = {}
    result: dict[str, Any] | None = None  # null for a contact with nothing found is read as no result


_result = msgspec.json.Decoder(_Result)
STATUSES: Final = ("found", "not_found", "error")


def parse_webhook(body: bytes, headers: Any = None) -> list[ev.Event]:
    """One per-contact webhook → one item event, keyed by the ``eventbus_key`` the contact carried.

    ``found`` is an ``ItemSucceeded`` with the result as data; ``not_found``
    and ``error`` are ``ItemFailed``. Raises ``ValueError`` for a payload
    without an enrichment id, an unknown status, or no ``eventbus_key`` that
    is a row number (we send it as a string; a JSON number echoed back is read too).
    """
    try:
        r = _result.decode(body)
    except RecursionError:  # valid JSON nested past the interpreter's limit
        raise ValueError("JSON nested too deeply") from None
    job_id = str(r.enrichment_id)
    if not job_id.strip():
        raise ValueError("the webhook's enrichment_id is empty: it names no job")
    status = r.status if r.status in STATUSES else r.status.strip().lower()  # "Found" is found
    if status not in STATUSES:
        raise ValueError(f"unknown Pronto status {r.status!r}; expected one of {', '.join(STATUSES)}")
    key = r.contact.get(KEY_FIELD)
    if type(key) is int:
        key = str(key)
    if key is None or key == "":
        raise ValueError(f"the contact has no {KEY_FIELD}: it was not submitted by eventbus")
    if not isinstance(key, str):
        shown = ev.excerpt(msgspec.json.encode(key), 40)
        raise ValueError(f"{KEY_FIELD} {shown} is not a row number: it was not submitted by eventbus")
    if not (key.isascii() and key.isdigit()):
        raise ValueError(f"{KEY_FIELD} {ev.excerpt(key, 40)!r} is not a row number: it was not submitted by eventbus")
    common = {
        "id": ev.event_id("pronto", job_id, "item", key),
        "provider": "pronto",
        "job_id": job_id,
        "source": "webhook",
        "key": key,
    }
    if status == "found":
        return [ev.ItemSucceeded(outcome="found", data=r.result or {}, **common)]
    message = "no match found" if status == "not_found" else "Pronto could not enrich this contact"
    return [ev.ItemFailed(code=status, message=message, details={"contact": r.contact}, **common)]
