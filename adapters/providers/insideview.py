"""InsideView (sans-I/O): token login, "New Contact Details" jobs (≤ 10,000 ids) and Bulk Contact Fetch (≤ 50).

Facts from providers.md: ``POST …/Auth/login/v1/token.json?clientId&clientSecret&grantType=cred``
gives ``accessTokenDetails``; every call sends the token in a header literally
named ``accessToken``. ``POST /target/contact/job`` takes ids one per line as
``text/plain`` and answers **200** — in XML (``BulkJobStatus``) unless JSON is
asked for, so both are read. ``POST /contact/bulk`` takes ``{"contactIds"}``,
collapses duplicates and answers per id. 429 carries no ``Retry-After``.
Item keys are the new-contact ids themselves.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final

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
    TokenGrant,
    decode_json,
    reason_of,
    text_of,
)
from eventbus import events as ev
from eventbus.exceptions import ConfigError

__all__ = ["MAX_FETCH_IDS", "MAX_JOB_IDS", "NO_ANSWER", "InsideView", "parse_job_status"]

MAX_JOB_IDS: Final = 10_000
MAX_FETCH_IDS: Final = 50
MAX_ID_DIGITS: Final = 19  # contactId is an integer; the largest 64-bit one has 19 digits
TOKEN_HEADER: Final = "accessToken"
LOGIN_PATH: Final = "/Auth/login/v1/token.json"
ID_FIELDS: Final = ("newcontactid", "contactid", "id")
MAX_COUNT_DIGITS: Final = 18  # every count of up to 18 digits fits a signed 64-bit integer, as JSON numbers do
NO_ANSWER: Final = "no_answer"  # the code of an id a Bulk Contact Fetch answer left out


class _TokenDetails(msgspec.Struct):
    accessToken: HeaderToken
    expirationTime: str | int | float | None = None


class _Token(msgspec.Struct):
    accessTokenDetails: _TokenDetails


Count = Annotated[int, msgspec.Meta(ge=0)]  # a negative count is a malformed status, not progress


class JobStatus(msgspec.Struct):
    jobId: str
    status: str
    type: str = ""
    processed: Count | None = None
    total: Count | None = None


def parse_job_status(response: Response) -> JobStatus:
    """Read a BulkJobStatus answer, JSON or XML (InsideView's default).

    Raises ValueError when it is neither, or does not add up: no job id,
    a negative count, more processed than in total.
    """
    body = response.body.lstrip()
    status = _read_xml_status(body) if body.startswith(b"<") else _read_json_status(body)
    if not status.jobId.strip():
        raise ValueError("BulkJobStatus jobId is empty: it names no job")
    status.status = status.status.strip().lower()  # "Finished" is finished: compared below and by the watcher
    if status.processed is not None and status.total is not None and status.processed > status.total:
        raise ValueError(f"BulkJobStatus processed {status.processed} is more than the total {status.total}")
    return status


def _read_json_status(body: bytes) -> JobStatus:
    try:
        return msgspec.json.decode(body, type=JobStatus)
    except (msgspec.MsgspecError, RecursionError) as exc:
        raise ValueError(f"malformed job status: {exc}") from None


def _read_xml_status(body: bytes) -> JobStatus:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"malformed XML: {exc}") from None
    fields: dict[str, Any] = {}
    for child in root:
        name = child.tag.rpartition("}")[2]  # "{urn:x}jobId" in a namespace: read by its local name
        if name in fields and name in JobStatus.__struct_fields__:
            raise ValueError(f"XML BulkJobStatus has more than one {name}")
        fields[name] = child.text or ""
    for name in ("processed", "total"):
        if name in fields:
            fields[name] = _xml_int(name, fields[name])
    try:
        return msgspec.convert(fields, JobStatus)
    except msgspec.ValidationError as exc:
        raise ValueError(f"XML BulkJobStatus not understood: {exc}") from None


def _xml_int(name: str, text: str) -> int | None:
    """An XML count's text as an integer (signed, so that a negative count is caught as one); None if not a number.

    Raises ValueError naming the field for more digits than any count has (past 4,300, ``int()`` itself
    refuses with a message that names nothing).
    """
    text = text.strip()
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        return None
    if len(digits) > MAX_COUNT_DIGITS:
        raise ValueError(f"XML BulkJobStatus {name} is a number of {len(digits)} digits: no count is that large")
    return int(text)


class _Fetched(msgspec.Struct):
    requestedContactId: str | int
    contact: dict[str, Any] | None = None
    error: Any = None  # {"errorCode", "errorMessage"}; a bare string is read as the message


class InsideView(Provider):
    """InsideView's requests and readings. Options: ``endpoint`` (``job``/``fetch``), ``webhook``, ``company``."""

    name: ClassVar[str] = "insideview"

    def __init__(
        self, *, endpoint: str = "job", webhook: str | None = None, company: bool = False, **options: Any
    ) -> None:
        super().__init__(**options)
        if endpoint not in ("job", "fetch"):
            raise ConfigError(f"InsideView endpoint must be 'job' or 'fetch', not {endpoint!r}")
        self.endpoint = endpoint
        self.webhook = webhook
        self.company = company
        self.chunk_max = MAX_JOB_IDS if endpoint == "job" else MAX_FETCH_IDS  # type: ignore[misc]

    def map_fields(self, contact: Mapping[str, Any]) -> Contact:
        for name, value in contact.items():
            if str(name).lower().replace("_", "") in ID_FIELDS and value not in (None, ""):
                return {"id": str(value).strip()}
        return {}

    def field_targets(self, names: Iterable[Any]) -> list[tuple[str, str | None, bool]]:
        # An id column gives the id sent (the first of them filled in, row by row); nothing else is sent.
        return [(str(n), "id" if str(n).lower().replace("_", "") in ID_FIELDS else None, False) for n in names]

    def validate(self, row: int, contact: Contact) -> list[Problem]:
        contact_id = contact.get("id")
        if not contact_id:
            return [Problem(row, "id", "a new-contact id is required")]
        if not (contact_id.isascii() and contact_id.isdigit()):
            return [Problem(row, "id", f"contact id must be numeric, not {contact_id[:40]!r}")]
        if len(contact_id) > MAX_ID_DIGITS:  # contactId is an integer (a 64-bit one: 19 digits at most)
            return [Problem(row, "id", f"contact id {contact_id[:40]!r} has {len(contact_id)} digits; at most 19")]
        return []

    def chunk(self, rows: Sequence[int], contacts: Sequence[Contact]) -> list[Chunk]:
        # Duplicate ids are collapsed: the provider reports each id once, and the id is the item key.
        seen: dict[str, int] = {}
        for row, contact in zip(rows, contacts, strict=True):
            seen.setdefault(contact["id"], row)
        return super().chunk(list(seen.values()), [{"id": x} for x in seen])

    # --- auth ----------------------------------------------------------------------

    def token_request(self, client_id: str, client_secret: str) -> Request:
        params = {"clientId": client_id, "clientSecret": client_secret, "grantType": "cred"}
        return Request("POST", LOGIN_PATH, params=params, headers={"Accept": "application/json"}, base="login")

    def read_token(self, response: Response, now: datetime | None = None) -> TokenGrant:
        details = self.token_answer(response, _Token, "InsideView").accessTokenDetails
        return TokenGrant(details.accessToken, _seconds_until(details.expirationTime, now or datetime.now(UTC)))

    def auth_headers(self, credential: str) -> dict[str, str]:
        return {TOKEN_HEADER: credential}

    # --- submit ----------------------------------------------------------------------

    def build_submit(self, chunk: Chunk) -> Request:
        ids = [c["id"] for c in chunk.contacts]
        if self.endpoint == "fetch":
            return Request(
                "POST",
                "/contact/bulk",
                headers={"Content-Type": "application/json"},
                content=msgspec.json.encode({"contactIds": ids}),
            )
        params = {"retrieveCompanyDetails": "true" if self.company else "false"}
        if self.webhook:
            params["webhook"] = self.webhook
        return Request(
            "POST",
            "/target/contact/job",
            params=params,
            headers={"Content-Type": "text/plain", "Accept": "application/json"},
            content="\n".join(ids).encode(),
        )

    def read_submit(self, chunk: Chunk, response: Response) -> Outcome:
        if response.status in TAKEN:  # 200 is documented ("not 202")
            return self._read_fetch(chunk, response) if self.endpoint == "fetch" else self._read_job(chunk, response)
        common = self.common_outcome(response)
        if common is not None:
            return common
        reason = reason_of(response)
        lowered = reason.lower()
        if response.status == 400 and "quota" in lowered:
            return Refused(400, reason, retriable=True, account=True, code="insufficient_transaction_quota")
        if response.status == 400 and "too many jobs" in lowered:
            return Refused(400, reason, retriable=True, code="too_many_jobs")
        return Refused(response.status, reason)

    def _read_job(self, chunk: Chunk, response: Response) -> Outcome:
        try:
            status = parse_job_status(response)
        except ValueError as exc:
            return Refused(response.status, f"answer not understood: {exc}")
        return Accepted(status.jobId, total=len(chunk.rows))

    def _read_fetch(self, chunk: Chunk, response: Response) -> Outcome:
        data = decode_json(response.body)
        try:
            entries = msgspec.convert(data, list[_Fetched])
        except msgspec.ValidationError as exc:
            return Refused(response.status, f"Bulk Contact Fetch answer not understood: {exc}")
        # One outcome per id sent, in request order: an id answered twice is read once (the first
        # answer), an id not asked for is no row of ours, and an id left out fails saying so.
        answers: dict[str, _Fetched] = {}
        repeated: list[str] = []
        for entry in entries:
            if answers.setdefault(str(entry.requestedContactId), entry) is not entry:
                repeated.append(str(entry.requestedContactId))
        results = []
        for row, contact in zip(chunk.rows, chunk.contacts, strict=True):
            key = contact["id"]
            entry = answers.get(key)
            if entry is None:
                results.append((row, key, False, NO_ANSWER, "InsideView gave no answer for this id", {}))
            elif entry.contact is not None:
                results.append((row, key, True, "found", "", entry.contact))
            else:
                error = entry.error if isinstance(entry.error, dict) else {"errorMessage": entry.error or ""}
                code, message = error.get("errorCode") or "unknown", error.get("errorMessage") or ""
                results.append((row, key, False, text_of(code), text_of(message), {}))
        asked = {contact["id"] for contact in chunk.contacts}
        unknown = [key for key in answers if key not in asked]
        notes = []
        if repeated:
            notes.append(f"InsideView answered {_ids(repeated)} more than once; the first answer was kept")
        if unknown:
            notes.append(f"InsideView answered {_ids(unknown)}, not asked for; ignored")
        return Items(tuple(results), tuple(notes))


def _ids(ids: list[str], shown: int = 5) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return "id" + ("s " if len(ids) > 1 else " ") + ", ".join(ev.excerpt(i, 40) for i in ids[:shown]) + more


def _seconds_until(expiration: str | int | float | None, now: datetime) -> float:
    """Seconds from ``now`` to an ISO-8601 or epoch expiration; an hour when absent or unreadable."""
    if expiration is None:
        return 3600.0
    try:
        if isinstance(expiration, int | float) or str(expiration).replace(".", "", 1).isdigit():
            value = float(expiration)
            if value > 1e11:  # milliseconds
                value /= 1000
            at = datetime.fromtimestamp(value, UTC)
        else:
            at = datetime.fromisoformat(str(expiration).replace("Z", "+00:00"))
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return 3600.0
    return max((at - now).total_seconds(), 0.0)


# --- watching a job: status webhooks, status polls, CSV results ---------------------------------

TERMINAL_STATUSES: Final = ("finished", "failed", "aborted")
STATUSES: Final = ("accepted", "processing", *TERMINAL_STATUSES)
CSV_COLUMNS: Final = (
    "newContactId", "contactId", "firstName", "lastName", "email", "emailValidationStatus",
    "companyId", "companyName", "status", "errorCode", "errorMessage",
)  # fmt: skip


def status_events(status: JobStatus, source: str) -> list[ev.Event]:
    """Events for one job status, from a webhook or a poll.

    ``processed``/``total`` become progress; ``failed`` and ``aborted`` end
    the job. ``finished`` ends nothing here: the job completes once its CSV
    results are read (:func:`result_row_events`), so no item arrives after
    the terminal event.
    """
    p, job = "insideview", status.jobId
    common = {"provider": p, "job_id": job, "source": source}
    out: list[ev.Event] = []
    if status.processed is not None:
        out.append(
            ev.JobProgress(
                id=ev.event_id(p, job, "progress", status.processed),
                done=status.processed,
                total=status.total,
                **common,
            )
        )
    if status.status == "failed":
        out.append(ev.JobFailed(id=ev.event_id(p, job, "failed"), reason="InsideView reports the job failed", **common))
    elif status.status == "aborted":
        out.append(ev.JobCancelled(id=ev.event_id(p, job, "cancelled"), reason="aborted", **common))
    elif not out:
        out.append(ev.JobProgress(id=ev.event_id(p, job, "status", status.status), done=0, **common))
    return out


def parse_webhook(body: bytes, headers: Any = None) -> list[ev.Event]:
    """A status callback ``{"jobId", "status", "type"}`` → events (see :func:`status_events`)."""
    return status_events(parse_job_status(Response(200, {}, body)), "webhook")


def result_row_events(job_id: str, fields: Mapping[str, str]) -> list[ev.Event]:
    """One row of the results CSV → one item event keyed by ``newContactId``. Raises ValueError if unusable."""
    # Columns are read whatever their case ("NewContactID"): a header written another way made every row
    # "without newContactId", and the whole job's contacts "not in results".
    named = {name.strip().lower(): value for name, value in fields.items()}
    key = named.get("newcontactid", "").strip()
    if not key:
        raise ValueError("a results row without newContactId")
    common = {
        "id": ev.event_id("insideview", job_id, "item", key),
        "provider": "insideview",
        "job_id": job_id,
        "source": "poll",
        "key": key,
    }
    status = named.get("status", "").strip().lower()
    if status == "found":
        data = {k: v for k, v in fields.items() if v and k.strip().lower() not in _NOT_DATA}
        return [ev.ItemSucceeded(outcome="found", data=data, **common)]
    if status == "error":
        return [
            ev.ItemFailed(code=named.get("errorcode") or "error", message=named.get("errormessage") or "", **common)
        ]
    raise ValueError(f"results row {key}: unknown status {status!r}")


_NOT_DATA: Final = frozenset({"status", "errorcode", "errormessage"})


def completed_event(job_id: str, succeeded: int, failed: int) -> ev.JobCompleted:
    """The terminal event once every results row was read."""
    return ev.JobCompleted(
        id=ev.event_id("insideview", job_id, "completed"),
        provider="insideview",
        job_id=job_id,
        source="poll",
        succeeded=succeeded,
        failed=failed,
        total=succeeded + failed,
    )
