"""Datananas (sans-I/O): bulk create of 1–10,000 contacts, progress over the account's WebSocket.

Facts from providers.md: ``POST /contacts/bulk`` with ``{"list", "contacts"}``;
flags ``moveExistingToList`` and ``replaceOwner`` in the query; 402 with
``{"reason": "contact_connect_quotas" | "contact_total_quotas"}`` when a quota
is exhausted (nothing of that request is created); 200 ``{"uuid", "listId",
"total"}``. Unknown contact fields go into ``vars`` (custom properties).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final

import msgspec

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
    Table,
    all_emails,
    decode_json,
    email_problem,
    reason_of,
    trim_email,
)
from eventbus import events as ev
from eventbus.exceptions import ConfigError

__all__ = ["MAX_CONTACTS", "QUOTA_REASONS", "Datananas"]

MAX_CONTACTS: Final = 10_000
QUOTA_REASONS: Final = ("contact_connect_quotas", "contact_total_quotas")
FIELDS: Final = (
    "email", "firstname", "lastname", "company", "companyWebsite", "linkedinUrl", "phone", "mobilePhone", "title",
    "city", "country", "zipcode", "language", "owner", "source", "collectedAt",
)  # fmt: skip


class _Accepted(msgspec.Struct):
    uuid: str
    listId: str | int | None = None
    total: Any = None  # a count when it is a non-negative int; anything else is not one (see read_submit)


class Datananas(Provider):
    """Datananas's requests and readings. Options: ``list`` (object or id), ``move_existing``, ``replace_owner``."""

    name: ClassVar[str] = "datananas"
    chunk_max = MAX_CONTACTS
    aliases: ClassVar[dict[str, str]] = {
        **{f.lower(): f for f in FIELDS},
        "first": "firstname",
        "last": "lastname",
        "companyname": "company",
        "website": "companyWebsite",
        "linkedin": "linkedinUrl",
        "mobile": "mobilePhone",
        "jobtitle": "title",
        "zip": "zipcode",
        "postcode": "zipcode",
        "vars": "vars",  # custom properties given as an object already: merged with the unknown fields
    }

    def __init__(
        self,
        *,
        list: Any = None,
        move_existing: bool = False,
        replace_owner: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if list is None or list == "":
            raise ConfigError("Datananas needs the list to add contacts to: a list id or object (--list)")
        self.list = list
        self.move_existing = move_existing
        self.replace_owner = replace_owner

    def place_custom(self, contact: Contact, custom: dict[str, Any]) -> Contact:
        if custom:
            given = contact.get("vars", {})
            contact["vars"] = {**given, **custom} if isinstance(given, dict) else given  # a non-object: validate
        return contact

    def validate(self, row: int, contact: Contact) -> list[Problem]:
        if "vars" in contact and not isinstance(contact["vars"], dict):
            given = type(contact["vars"]).__name__
            return [
                Problem(row, "vars", f"vars must be an object of custom properties, not {given} (rename the field)")
            ]
        trim_email(contact)
        email = contact.get("email")
        if email is None and not contact.get("linkedinUrl"):
            return [Problem(row, "email", "an email or a linkedinUrl is required")]
        problem = None if email is None else email_problem(row, email)
        return [] if problem is None else [problem]

    def valid_in_bulk(self, table: Table) -> bool:
        if "vars" in table.names:  # an object to check (and merge with custom fields) contact by contact
            return False
        if "email" in table.names:
            return all_emails(table.column("email"))
        return "linkedinUrl" in table.names and all(table.column("linkedinUrl"))  # msgspec.UNSET is falsy

    def auth_headers(self, credential: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {credential}"}

    def build_submit(self, chunk: Chunk) -> Request:
        params = {}
        if self.move_existing:
            params["moveExistingToList"] = "true"
        if self.replace_owner:
            params["replaceOwner"] = "true"
        body = msgspec.json.encode({"list": self.list, "contacts": chunk.payload()})
        return Request(
            "POST", "/contacts/bulk", params=params, headers={"Content-Type": "application/json"}, content=body
        )

    def read_submit(self, chunk: Chunk, response: Response) -> Outcome:
        if response.status in TAKEN:  # 200 is documented
            try:
                accepted = msgspec.json.decode(response.body, type=_Accepted)
            except (msgspec.MsgspecError, RecursionError):  # RecursionError: JSON nested too deeply
                return Refused(response.status, "accepted, but the answer had no uuid")
            if not accepted.uuid.strip():
                return Refused(response.status, "accepted, but the answer's uuid is empty: the job cannot be followed")
            # The uuid names a job Datananas took; a total that is no count (negative, not an integer)
            # must not reach the events, so the job counts the contacts sent, as when total is absent.
            total = accepted.total if type(accepted.total) is int and accepted.total >= 0 else len(chunk.rows)
            return Accepted(accepted.uuid, total=total)
        common = self.common_outcome(response)
        if common is not None:
            return common
        if response.status == 402:
            data = decode_json(response.body)
            reason = data.get("reason") if isinstance(data, dict) else None
            # Events carry code and reason as strings: a reason of another shape is told as its JSON.
            code = reason if isinstance(reason, str) else ""
            told = code or ("unknown quota" if reason in (None, "") else ev.excerpt(msgspec.json.encode(reason)))
            return Refused(
                402, f"quota exhausted: {told}", retriable=True, account=True, code=code or "quota"
            )  # none taken
        if response.status in (401, 403):
            return Refused(response.status, "the token was refused (DATANANAS_TOKEN)", account=True, code="auth")
        return Refused(response.status, reason_of(response))


# --- progress over the WebSocket ------------------------------------------------------------

Count = Annotated[int, msgspec.Meta(ge=0)]  # a negative count is a malformed frame, not a number to add up
BULK_CREATE: Final = "contact_bulk_create_"
STARTING: Final = "contact_bulk_create_starting"
RUNNING: Final = "contact_bulk_create_running"
ENDING: Final = "contact_bulk_create_ending"


class _Frame(msgspec.Struct):
    event: str
    data: msgspec.Raw


class _Starting(msgspec.Struct):
    uuid: str
    listId: str | int | None = None


class _Running(msgspec.Struct):
    uuid: str
    i: int
    total: int


class _Ending(msgspec.Struct):
    uuid: str
    created: Count = 0
    updated: Count = 0


_frame = msgspec.json.Decoder(_Frame)
_running = msgspec.json.Decoder(_Running)


def parse_frame(frame: str | bytes) -> list[ev.Event]:
    """One WebSocket text frame → events keyed by the bulk request's ``uuid`` (the job id).

    ``_running`` (``i`` is the 0-based index of the contact in the request)
    reports the contact processed and the progress ``i + 1`` of ``total``;
    ``_ending`` completes the job with the provider's created/updated counts.
    A frame of another event (the account's WebSocket may carry more than bulk
    creation) gives no events; an unknown ``contact_bulk_create_*`` event, or
    a frame that is not an event at all, raises ``ValueError``.
    """
    try:
        return _frame_events(frame)
    except RecursionError:  # valid JSON nested past the interpreter's limit
        raise ValueError("JSON nested too deeply") from None


def _frame_events(frame: str | bytes) -> list[ev.Event]:
    f = _frame.decode(frame)
    p, src = "datananas", "websocket"
    if f.event == RUNNING:
        r = _running.decode(f.data)
        _check_uuid(r.uuid)
        if not 0 <= r.i < r.total:
            raise ValueError(f"contact index {r.i} outside 0..{r.total - 1}")
        return [
            ev.ItemSucceeded(
                id=ev.event_id(p, r.uuid, "item", r.i),
                provider=p,
                job_id=r.uuid,
                source=src,
                key=str(r.i),
                outcome="processed",
            ),
            ev.JobProgress(
                id=ev.event_id(p, r.uuid, "progress", r.i + 1),
                provider=p,
                job_id=r.uuid,
                source=src,
                done=r.i + 1,
                total=r.total,
            ),
        ]
    if f.event == STARTING:
        s = msgspec.json.decode(f.data, type=_Starting)
        _check_uuid(s.uuid)
        return [ev.JobAccepted(id=ev.event_id(p, s.uuid, "accepted"), provider=p, job_id=s.uuid, source=src)]
    if f.event == ENDING:
        e = msgspec.json.decode(f.data, type=_Ending)
        _check_uuid(e.uuid)
        return [
            ev.JobCompleted(
                id=ev.event_id(p, e.uuid, "completed"),
                provider=p,
                job_id=e.uuid,
                source=src,
                succeeded=e.created + e.updated,
                failed=0,
                created=e.created,
                updated=e.updated,
                total=e.created + e.updated,
            )
        ]
    if f.event.startswith(BULK_CREATE):  # one of ours we do not know: said, it may matter (a failure?)
        raise ValueError(f"unknown Datananas event {f.event!r}")
    return []  # the account's WebSocket may carry other events than bulk creation: not ours, not malformed


def _check_uuid(uuid: str) -> None:
    """A frame's uuid names its job: an empty one is a malformed frame, not events of job ''."""
    if not uuid.strip():
        raise ValueError("the frame's uuid is empty: it names no job")
