"""The typed event stream: every event the product emits, as one tagged union.

Every event is a frozen :class:`msgspec.Struct` carrying the common fields of
:class:`Event` (``id``, ``provider``, ``job_id``, ``source``, ``at``) and a
``type`` tag in snake_case (``JobProgress`` is tagged ``"job_progress"``).
:data:`AnyEvent` names the union; :func:`encode` and :func:`decode` move any
member to and from JSON with one module-level encoder and decoder.

Identity rules:

* ``id`` is unique per event and *deterministic* where the source allows it
  (see :func:`event_id`), so redundant copies of the same fact — the same item
  reported by a webhook and by a poll — carry the same id and dedupe.
* ``job_id`` is the provider's job id once the provider has accepted the work.
  Events that happen before that (``BatchSubmitted``, ``SubmitRejected``,
  ``Throttled``, ``QuotaExhausted``) use the chunk's local reference,
  :func:`chunk_ref` ``(batch_id, chunk_index)``; ``JobAccepted`` carries both
  so that the two can be joined. Events not about one job (``SourceState``,
  some ``InvalidSignal``) have ``job_id == ""``.
* ``key`` on item events is the contact's identity within its job: the
  provider's id where it gives one, else the contact's 0-based position in the
  submitted input, as a string.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, TypeAlias, Union

import msgspec

__all__ = [
    "AnyEvent",
    "BatchSubmitted",
    "Event",
    "EVENT_TYPES",
    "InvalidSignal",
    "ItemFailed",
    "ItemSucceeded",
    "JobAccepted",
    "JobCancelled",
    "JobCompleted",
    "JobExpired",
    "JobFailed",
    "JobProgress",
    "JobStuck",
    "QuotaExhausted",
    "Source",
    "SourceState",
    "SubmitRejected",
    "TERMINAL_TYPES",
    "Throttled",
    "chunk_ref",
    "is_chunk_ref",
    "decode",
    "decode_lines",
    "encode",
    "event_id",
    "excerpt",
    "new_id",
    "now",
    "printable",
    "tag_of",
]

Source: TypeAlias = Literal["submit", "websocket", "webhook", "poll"]

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def now() -> datetime:
    """The current time, timezone-aware UTC (what ``Event.at`` holds)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh random event id, for events that have no natural identity."""
    return uuid.uuid4().hex


def event_id(provider: str, job_id: str, *parts: object) -> str:
    """A deterministic event id: the same fact reported twice gets the same id.

    >>> event_id("pronto", "enr_1", "item", "3")
    'pronto:enr_1:item:3'
    """
    return ":".join((provider, job_id, *map(str, parts)))


def chunk_ref(batch_id: str, chunk_index: int) -> str:
    """The local ``job_id`` of a chunk before the provider has given it a job id.

    Index ``-1`` names the rows of a batch that failed validation and were never sent.
    """
    return f"{batch_id}#{chunk_index}"


def is_chunk_ref(job_id: str) -> bool:
    """True for a local chunk reference (provider job ids never contain ``#``)."""
    return "#" in job_id


EXCERPT_LIMIT: Final = 200


def excerpt(raw: bytes | str, limit: int = EXCERPT_LIMIT) -> str:
    """A short, printable excerpt of raw input for ``InvalidSignal.excerpt``."""
    if isinstance(raw, bytes | bytearray | memoryview):
        text = bytes(raw[: limit * 4]).decode("utf-8", "replace")  # (limit characters take at most 4 bytes each)
        if len(raw) > limit * 4 or len(text) > limit:
            return text[:limit] + f"… ({len(raw)} bytes)"  # the size of the whole input, not of what was decoded
        return text
    if len(raw) > limit:
        return raw[:limit] + f"… ({len(raw)} chars)"
    return raw


def printable(text: str) -> str:
    """``text`` with every character that is not printable shown as its escape (``\\x1b``, ``\\n``, ``\\u202e``).

    For text from outside (a provider's error message, a webhook body, a
    contact file) about to reach a terminal: an ESC could recolour, move the
    cursor or rewrite the title, a CR or newline fake a line of our own.
    Printable text (nearly always) is returned as it is, at the cost of one
    ``str.isprintable`` call.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class Event(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag_field="type",
    tag=_snake,
    omit_defaults=True,
):
    """Fields common to every event."""

    id: str
    provider: str
    job_id: str
    source: Source
    # Decoding refuses a timestamp without a UTC offset: compared with the aware ones
    # every event gets from now(), it would raise TypeError far from where it came in.
    at: Annotated[datetime, msgspec.Meta(tz=True)] = msgspec.field(default_factory=now)


# --- submission ------------------------------------------------------------


class BatchSubmitted(Event, frozen=True, kw_only=True):
    """A chunk of contacts was sent to the provider (before its answer).

    ``job_id`` is ``chunk_ref(batch_id, chunk_index)``.
    """

    batch_id: str
    chunk_index: int
    chunk_count: int
    size: int


class JobAccepted(Event, frozen=True, kw_only=True):
    """The provider took a chunk and gave it a job id (``job_id``).

    ``total`` is the number of contacts the job will report on, when known.
    ``batch_id``/``chunk_index`` link the job to its ``BatchSubmitted``; they are
    empty when the job was discovered by a source rather than submitted here.
    """

    total: int | None = None
    batch_id: str = ""
    chunk_index: int = -1


class SubmitRejected(Event, frozen=True, kw_only=True):
    """The provider refused a chunk. ``retriable`` says whether resending may work."""

    status: int | None
    reason: str
    retriable: bool
    batch_id: str = ""
    chunk_index: int = -1


class Throttled(Event, frozen=True, kw_only=True):
    """The provider answered 429; the client waits ``retry_after`` seconds before retrying."""

    retry_after: float
    attempt: int = 1
    status: int = 429


class QuotaExhausted(Event, frozen=True, kw_only=True):
    """The account ran out of quota, credits or consent; further chunks would fail too.

    ``reason`` is the provider's own word (``contact_connect_quotas``,
    ``insufficient_credits``, ...).
    """

    status: int
    reason: str
    message: str = ""


# --- progress --------------------------------------------------------------


class JobProgress(Event, frozen=True, kw_only=True):
    """``done`` of ``total`` items are processed. After merging, ``done`` never decreases."""

    done: int
    total: int | None = None


class ItemSucceeded(Event, frozen=True, kw_only=True):
    """One contact was processed: ``outcome`` is ``created``, ``updated``, ``found``, ..."""

    key: str
    outcome: str
    data: dict[str, Any] = {}


class ItemFailed(Event, frozen=True, kw_only=True):
    """One contact failed: ``code`` is machine-readable, ``message`` is for people."""

    key: str
    code: str
    message: str
    details: dict[str, Any] = {}


# --- terminal states -------------------------------------------------------


class JobCompleted(Event, frozen=True, kw_only=True):
    """The job finished. Totals are the provider's when it gives them, else counted."""

    succeeded: int = 0
    failed: int = 0
    created: int = 0
    updated: int = 0
    total: int | None = None


class JobFailed(Event, frozen=True, kw_only=True):
    """The job ended in failure on the provider's side."""

    reason: str


class JobCancelled(Event, frozen=True, kw_only=True):
    """The job was cancelled or aborted (by us or by the provider)."""

    reason: str = ""


class JobExpired(Event, frozen=True, kw_only=True):
    """The provider no longer knows the job (e.g. Mautic's 48-hour limit, a 404)."""

    reason: str = ""


# --- health ----------------------------------------------------------------


class JobStuck(Event, frozen=True, kw_only=True):
    """A non-terminal job has had no signal for ``silent_for`` seconds.

    Emitted once per silence by :class:`eventbus.JobTracker`; ``source`` is the
    source of the last signal seen for the job.
    """

    silent_for: float
    last_type: str = ""


class SourceState(Event, frozen=True, kw_only=True):
    """A source's connection changed state. ``job_id`` is ``""``."""

    state: Literal["connected", "disconnected", "reconnecting", "gave_up", "stopped"]
    detail: str = ""
    attempt: int = 0


class InvalidSignal(Event, frozen=True, kw_only=True):
    """A source received something it could not use; ``reason`` says why.

    ``excerpt`` is a bounded, printable excerpt of the raw input (never secrets:
    headers are not included).
    """

    reason: str
    excerpt: str = ""
    status: int | None = None


AnyEvent: TypeAlias = Union[  # noqa: UP007 - msgspec wants a runtime union object
    BatchSubmitted,
    JobAccepted,
    SubmitRejected,
    Throttled,
    QuotaExhausted,
    JobProgress,
    ItemSucceeded,
    ItemFailed,
    JobCompleted,
    JobFailed,
    JobCancelled,
    JobExpired,
    JobStuck,
    SourceState,
    InvalidSignal,
]

EVENT_TYPES: Final[dict[str, type[Event]]] = {
    _snake(cls.__name__): cls
    for cls in AnyEvent.__args__  # type: ignore[attr-defined]
}
"""Every event class by its ``type`` tag."""

TERMINAL_TYPES: Final = (JobCompleted, JobFailed, JobCancelled, JobExpired)
"""The events after which a job has nothing more to say."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def tag_of(cls: type[Event]) -> str:
    """The ``type`` tag of an event class (``JobProgress`` → ``"job_progress"``)."""
    # msgspec already computed it from ``tag=_snake`` when the class was made.
    return cls.__struct_config__.tag  # type: ignore[return-value]


def encode(event: Event) -> bytes:
    """Encode one event as compact JSON bytes, ``type`` tag included."""
    return _encoder.encode(event)


_decode = _decoder.decode
_TOO_DEEP: Final = "JSON nested too deeply to decode (past the interpreter's recursion limit)"


def decode(data: bytes | bytearray | memoryview | str) -> AnyEvent:
    """Decode JSON produced by :func:`encode` back into its event class.

    Raises :class:`msgspec.ValidationError` (wrong shape, unknown ``type``, an
    ``at`` without a UTC offset) or :class:`msgspec.DecodeError` (not JSON, or
    nested too deeply, e.g. inside ``data``), both ``msgspec.MsgspecError``, on
    malformed input. A naive ``at`` is refused rather than guessed: it could not
    be compared with the aware timestamps of every other event.
    """
    # One Python call around the decoder's bound method: try costs nothing until it raises.
    try:
        return _decode(data)
    except RecursionError:
        raise msgspec.DecodeError(_TOO_DEEP) from None


def decode_lines(data: bytes) -> list[AnyEvent]:
    """Decode newline-delimited JSON events (one per line; blank lines ignored).

    Raises as :func:`decode`, the message starting with the 1-based line number.
    """
    out: list[AnyEvent] = []
    for number, line in enumerate(data.splitlines(), 1):
        if line.strip():
            try:
                out.append(_decode(line))
            except RecursionError:
                raise msgspec.DecodeError(f"line {number}: {_TOO_DEEP}") from None
            except msgspec.MsgspecError as exc:
                raise type(exc)(f"line {number}: {exc}") from None
    return out
