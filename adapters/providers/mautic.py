"""Acquia Campaign Studio / Mautic (sans-I/O): OAuth2 client credentials, bulk contact jobs, batch endpoint.

Facts from providers.md: token from ``POST /oauth/v2/token`` (client
credentials, ``expires_in`` 3600), ``Authorization: Bearer``;
``POST /api/contacts/bulk/new`` (≤ 10,000, 202 ``{"id"}``), ``PUT``/``PATCH
/api/contacts/bulk/edit`` (each contact has ``id``), the synchronous
``POST /api/contacts/batch/new`` (≤ 200, 201 with ``statusCodes``); 429 with
``X-RateLimit-Reset`` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final, TypeVar
from urllib.parse import urlencode

import msgspec

from adapters.providers.base import (
    TAKEN,
    Accepted,
    Chunk,
    Contact,
    HeaderToken,
    Items,
    Outcome,
    Problem,
    Provider,
    Refused,
    Request,
    Response,
    Table,
    TokenGrant,
    all_emails,
    email_problem,
    reason_of,
    text_of,
    trim_email,
)
from eventbus import events as ev
from eventbus.exceptions import ConfigError

__all__ = ["MAX_BATCH", "MAX_BULK", "NO_STATUS", "Mautic"]

MAX_BULK: Final = 10_000
MAX_BATCH: Final = 200
NO_STATUS: Final = "no_status"  # the code of a batch row Mautic's answer gave no status for
ENDPOINTS: Final = {
    "new": ("POST", "/api/contacts/bulk/new"),
    "put": ("PUT", "/api/contacts/bulk/edit"),
    "patch": ("PATCH", "/api/contacts/bulk/edit"),
    "batch": ("POST", "/api/contacts/batch/new"),
}


class _Token(msgspec.Struct):
    access_token: HeaderToken
    expires_in: float = 3600


class _Job(msgspec.Struct):
    id: str | int  # a number names the job as well as a string does


class _Batch(msgspec.Struct):
    statusCodes: list[int]
    contacts: list[Any] = []  # the created or updated contacts, in row order (entries that are no object: no id)
    errors: dict[str, Any] | list[Any] = {}


class Mautic(Provider):
    """Mautic's requests and readings. Option ``endpoint``: ``new`` (default), ``put``, ``patch`` or ``batch``."""

    name: ClassVar[str] = "mautic"
    aliases: ClassVar[dict[str, str]] = {
        "id": "id",
        "email": "email",
        "firstname": "firstname",
        "first": "firstname",
        "lastname": "lastname",
        "last": "lastname",
        "company": "company",
        "companyname": "company",
        "title": "position",
        "position": "position",
        "jobtitle": "position",
        "phone": "phone",
        "mobile": "mobile",
        "points": "points",
        "city": "city",
        "country": "country",
        "website": "website",
    }

    def __init__(self, *, endpoint: str = "new", **options: Any) -> None:
        super().__init__(**options)
        if endpoint not in ENDPOINTS:
            raise ConfigError(f"Mautic endpoint must be one of {', '.join(ENDPOINTS)}, not {endpoint!r}")
        self.endpoint = endpoint
        self.chunk_max = MAX_BATCH if endpoint == "batch" else MAX_BULK  # type: ignore[misc]

    def validate(self, row: int, contact: Contact) -> list[Problem]:
        problems = []
        trim_email(contact)
        email = contact.get("email")
        if self.endpoint in ("new", "batch") and email is None:
            problems.append(Problem(row, "email", "email is required to create a contact"))
        if email is not None and (problem := email_problem(row, email)) is not None:
            problems.append(problem)
        if self.endpoint in ("put", "patch"):
            contact_id = contact.get("id")
            if isinstance(contact_id, str) and contact_id.isascii() and contact_id.isdigit():
                contact["id"] = int(contact_id)
            elif not isinstance(contact_id, int) or isinstance(contact_id, bool):
                problems.append(Problem(row, "id", "an integer contact id is required to edit"))
        return problems

    def valid_in_bulk(self, table: Table) -> bool:
        if "email" in table.names:
            if not all_emails(table.column("email")):
                return False
        elif self.endpoint in ("new", "batch"):
            return False
        if self.endpoint in ("put", "patch"):
            # Only ints pass here; ids given as digit strings are made ints contact by contact.
            return "id" in table.names and set(map(type, table.column("id"))) == {int}
        return True

    # --- auth ----------------------------------------------------------------------

    def token_request(self, client_id: str, client_secret: str) -> Request:
        body = urlencode({"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret})
        return Request(
            "POST",
            "/oauth/v2/token",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            content=body.encode(),
        )

    def read_token(self, response: Response) -> TokenGrant:
        token = self.token_answer(response, _Token, "Mautic")
        return TokenGrant(token.access_token, token.expires_in)

    def auth_headers(self, credential: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {credential}"}

    # --- submit ----------------------------------------------------------------------

    def build_submit(self, chunk: Chunk) -> Request:
        method, path = ENDPOINTS[self.endpoint]
        return Request(
            method,
            path,
            headers={"Content-Type": "application/json"},
            content=msgspec.json.encode(chunk.payload()),
        )

    def read_submit(self, chunk: Chunk, response: Response) -> Outcome:
        if self.endpoint == "batch" and response.status in TAKEN:  # 201 is documented
            return self._read_batch(chunk, response)
        if response.status in TAKEN:  # 202 is documented
            try:
                job_id = str(msgspec.json.decode(response.body, type=_Job).id)
            except (msgspec.MsgspecError, RecursionError):  # RecursionError: JSON nested too deeply
                return Refused(response.status, "accepted, but the answer had no job id")
            if not job_id.strip():
                return Refused(
                    response.status, "accepted, but the answer's job id is empty: the job cannot be followed"
                )
            return Accepted(job_id, total=len(chunk.rows))
        common = self.common_outcome(response)
        if common is not None:
            return common
        return Refused(response.status, reason_of(response))

    def _read_batch(self, chunk: Chunk, response: Response) -> Outcome:
        try:
            batch = msgspec.json.decode(response.body, type=_Batch)
        except (msgspec.MsgspecError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
            return Refused(201, f"batch answer is malformed: {exc}")
        errors = batch.errors if isinstance(batch.errors, dict) else dict(enumerate(batch.errors))
        created = iter(batch.contacts)
        results = []
        # One outcome per submitted row, keyed by its input row (Mautic's contact id is data: keying
        # successes by it let contact id 5 and failed row 5 share an item id). A row past the end of
        # statusCodes was not answered; statuses past the last row answer nothing we sent (ignored).
        for i, row in enumerate(chunk.rows):
            key = str(row)
            if i >= len(batch.statusCodes):
                results.append((row, key, False, NO_STATUS, "Mautic gave no status for this row", {}))
                continue
            code = batch.statusCodes[i]
            if code in (200, 201):
                contact = next(created, None)
                contact_id = contact.get("id") if isinstance(contact, dict) else None
                results.append((row, key, True, "created" if code == 201 else "updated", "", {"id": contact_id}))
            else:
                error = errors.get(str(i)) or errors.get(i) or {}
                message = error.get("message", f"HTTP {code}") if isinstance(error, dict) else error
                details = error.get("details", {}) if isinstance(error, dict) else {}
                results.append((row, key, False, str(code), text_of(message), {"details": details}))
        extra = len(batch.statusCodes) - len(chunk.rows)
        notes = (f"Mautic gave {extra} more statusCodes than the {len(chunk.rows)} contacts sent; ignored",)
        return Items(tuple(results), notes if extra > 0 else ())


# --- watching a job: status polls and blind-paginated details ------------------------------------


class JobStatus(msgspec.Struct):
    status: str
    details: dict[str, Any] | None = None


class DetailEntry(msgspec.Struct):
    statusCode: int
    id: int | None = None
    errors: dict[str, Any] | None = None


class _Details(msgspec.Struct):
    contacts: list[DetailEntry]
    next_page: str | None = msgspec.field(default=None, name="next-page")


class _Page(msgspec.Struct):
    status: str
    details: _Details | None = None


STATUSES: Final = ("queued", "in_progress", "completed")
T = TypeVar("T")


def _decode(body: bytes, shape: type[T]) -> T:
    """``body`` decoded as ``shape``; ValueError for anything unreadable, JSON nested too deeply included."""
    try:
        return msgspec.json.decode(body, type=shape)
    except RecursionError:  # valid JSON nested past the interpreter's limit
        raise ValueError("JSON nested too deeply") from None


def read_status(body: bytes) -> JobStatus:
    """A job status answer. Raises ValueError for an unknown status or a malformed body."""
    status = _decode(body, JobStatus)
    status.status = status.status.strip().lower()  # "Completed" is completed
    if status.status not in STATUSES:
        raise ValueError(f"unknown Mautic job status {status.status!r}")
    return status


def read_details_page(body: bytes) -> tuple[list[DetailEntry], str | None]:
    """One ``details=1`` page: its contact entries (in submitted order) and the next page's URL, if any."""
    page = _decode(body, _Page)
    if page.details is None:
        raise ValueError("a details page without details (is the job completed?)")
    return page.details.contacts, page.details.next_page


def detail_events(job_id: str, entries: Sequence[DetailEntry], start: int) -> list[ev.Event]:
    """Item events for entries ``start, start + 1, ...`` of a job (keyed by that position in the job's input).

    201 is ``created``, 200 ``updated``, any other status a failure carrying
    Mautic's message and per-field details.
    """
    out: list[ev.Event] = []
    for offset, entry in enumerate(entries):
        key = str(start + offset)
        common = {
            "id": ev.event_id("mautic", job_id, "item", key),
            "provider": "mautic",
            "job_id": job_id,
            "source": "poll",
            "key": key,
        }
        if entry.statusCode in (200, 201):
            outcome = "created" if entry.statusCode == 201 else "updated"
            out.append(ev.ItemSucceeded(outcome=outcome, data={"id": entry.id}, **common))
        else:
            error = entry.errors or {}
            details = error.get("details") or {}
            out.append(
                ev.ItemFailed(
                    code=str(entry.statusCode),
                    message=text_of(error.get("message", "")),
                    # An event's details are an object: details of another shape are kept under "details".
                    details=details if isinstance(details, dict) else {"details": details},
                    **common,
                )
            )
    return out
