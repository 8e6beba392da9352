"""What every sans-I/O provider module offers: requests to send, and typed readings of what comes back.

A provider module holds no sockets and no awaits. It turns contacts into
:class:`Request` objects (method, path, query, headers, body) and turns a
:class:`Response` (status, headers, body bytes) into an :class:`Outcome`.
The I/O layers (``adapters.http``, ``adapters.submit``) move the bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat
from operator import contains, itemgetter
from typing import Annotated, Any, ClassVar, Final, NamedTuple, TypeVar

import msgspec
from msgspec import UNSET

from adapters.backoff import retry_after_of
from eventbus import events as ev
from eventbus.exceptions import AuthError
from eventbus.subscribers.log import redact_userinfo

__all__ = [
    "Accepted",
    "Chunk",
    "Contact",
    "Items",
    "Outcome",
    "Problem",
    "Provider",
    "Refused",
    "Request",
    "Response",
    "ServerFailure",
    "Table",
    "Throttle",
    "TokenGrant",
    "balanced_chunks",
    "normalise_key",
]

Contact = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """One HTTP request, relative to the provider's base URL."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None
    base: str = "api"  # which base URL: "api", or "login" for InsideView's login host


@dataclass(frozen=True)
class Response:
    """One HTTP response as the provider module sees it (header names lower-case)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Problem(NamedTuple):
    """One reason a contact cannot be sent: which input row, which field, why."""

    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: field {self.field!r}: {self.message}"


class _Plan(NamedTuple):
    """How one set of input field names maps to a provider's (worked out once per set, see ``Provider._plan``)."""

    renames: tuple[tuple[Any, str], ...]  # (input name, provider name) for each known field
    customs: tuple[Any, ...]  # input names the provider does not know
    identity: bool  # every name is already the provider's own, and none is custom
    clashes: tuple[tuple[str, tuple[Any, ...]], ...]  # (provider name, its input names) where there are several


@dataclass(frozen=True)
class Table:
    """Contacts that share one set of fields, held by column: the provider's field names and each field's values.

    A value left out (``None`` or ``""`` in the input, which contact by contact
    is dropped) is ``msgspec.UNSET``: encoding leaves that field out of that
    contact, and :meth:`contacts` leaves it out of the dict. ``sparse`` says
    whether any value is left out.
    """

    names: tuple[str, ...]
    columns: tuple[Sequence[Any], ...]  # one per name, each with one value per contact, in row order
    sparse: bool = False

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def column(self, name: str) -> Sequence[Any]:
        """Every contact's value of one field, in row order (``msgspec.UNSET`` where there is none)."""
        return self.columns[self.names.index(name)]

    def rows(self, start: int, stop: int) -> Table:
        """The contacts from ``start`` to ``stop`` (not included)."""
        return Table(self.names, tuple(c[start:stop] for c in self.columns), self.sparse)

    def contacts(self) -> tuple[Contact, ...]:
        """The contacts as dicts, one per row."""
        rows = zip(*self.columns, strict=True)
        if not self.sparse:
            return tuple(map(dict, map(zip, repeat(self.names), rows)))
        return tuple({k: v for k, v in zip(self.names, row, strict=True) if v is not UNSET} for row in rows)

    def structs(self) -> list[msgspec.Struct]:
        """The contacts as msgspec Structs that encode to the same JSON objects as :meth:`contacts`, much faster."""
        return list(map(_row_type(self.names), *self.columns))


@lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> type[msgspec.Struct]:
    # Attribute names are placeholders; ``rename`` gives each the provider's field name on the wire.
    attrs = [f"f{i}" for i in range(len(names))]
    return msgspec.defstruct("Row", [(a, Any) for a in attrs], rename=dict(zip(attrs, names, strict=True)), gc=False)


class Chunk:
    """Contacts sent in one request: their input rows and provider-shaped payloads.

    ``contacts`` are dicts in the provider's field names. A chunk prepared in
    bulk (see :meth:`Provider.valid_in_bulk`) holds its contacts as a
    :class:`Table` and builds those dicts only when they are asked for;
    :meth:`payload` gives what to encode either way.
    """

    __slots__ = ("_contacts", "_table", "endpoint", "index", "rows")

    def __init__(
        self,
        index: int,
        rows: tuple[int, ...],
        contacts: tuple[Contact, ...] = (),
        endpoint: str = "default",  # e.g. Pronto "single" for a lone contact
        *,
        table: Table | None = None,
    ) -> None:
        if table is not None and len(table) != len(rows):
            raise ValueError(f"a chunk of {len(rows)} rows cannot hold a table of {len(table)}")
        self.index = index
        self.rows = rows
        self.endpoint = endpoint
        self._contacts = contacts if table is None else None
        self._table = table

    @property
    def contacts(self) -> tuple[Contact, ...]:
        """The contacts as dicts in the provider's field names."""
        if self._contacts is None:
            self._contacts = self._table.contacts()  # type: ignore[union-attr]
        return self._contacts

    @property
    def table(self) -> Table | None:
        """The contacts held by column, when the chunk was prepared in bulk; None otherwise."""
        return self._table

    def payload(self) -> list[Any]:
        """The contacts to encode, in order: dicts, or Structs that encode to the same JSON objects."""
        return self._table.structs() if self._table is not None else list(self.contacts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Chunk):
            return NotImplemented
        return (self.index, self.rows, self.endpoint, self.contacts) == (
            other.index,
            other.rows,
            other.endpoint,
            other.contacts,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        held = f"table of {len(self.rows)}" if self._table is not None else f"{len(self.contacts)} contacts"
        return f"Chunk(index={self.index}, rows={len(self.rows)}, {held}, endpoint={self.endpoint!r})"


@dataclass(frozen=True)
class TokenGrant:
    """An access token and how long it lives, in seconds."""

    token: str
    expires_in: float


# --- outcomes of a submit --------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """The provider took the chunk and named the job."""

    job_id: str
    total: int | None = None


@dataclass(frozen=True)
class Items:
    """A synchronous endpoint answered per contact at once: (key, ok, outcome/code, message, data) per row."""

    results: tuple[tuple[int, str, bool, str, str, dict[str, Any]], ...]  # row, key, ok, outcome|code, message, data
    notes: tuple[str, ...] = ()  # what the answer held that answers nothing we sent (published as InvalidSignal)


NOT_FOUND: Final = "not_found"  # Refused.code of a 404: the base URL is wrong, not the chunk


@dataclass(frozen=True)
class Refused:
    """The provider refused the chunk. ``account`` means the reason applies to every later chunk too."""

    status: int
    reason: str
    retriable: bool = False
    account: bool = False
    code: str = ""  # the provider's own word for it (contact_total_quotas, insufficient_credits, ...)


@dataclass(frozen=True)
class Throttle:
    """429: wait ``retry_after`` seconds if the provider said, else back off on our own."""

    retry_after: float | None


@dataclass(frozen=True)
class ServerFailure:
    """5xx: the provider did not take the request; retrying later may work."""

    status: int
    reason: str


Outcome = Accepted | Items | Refused | Throttle | ServerFailure


# --- helpers ---------------------------------------------------------------------

_KEY_JUNK = re.compile(r"[\s_\-]")


def normalise_key(name: str) -> str:
    """Field names compared loosely: ``First Name``, ``first_name`` and ``firstName`` are the same."""
    return _KEY_JUNK.sub("", name).lower()


def balanced_chunks(n: int, low: int, high: int) -> list[tuple[int, int]]:
    """Split ``n`` items into [start, end) ranges of ``high`` at most, none below ``low`` where possible.

    The last two chunks are rebalanced so a remainder below ``low`` borrows
    from its neighbour (Pronto: 201 contacts are 100 + 99 + 2, not 100 + 100 + 1).
    A total below ``low`` is one short chunk; the caller decides what to do with it.
    """
    if n <= 0:
        return []
    ranges = [(start, min(n, start + high)) for start in range(0, n, high)]
    if len(ranges) >= 2:
        (a0, _a1), (b0, b1) = ranges[-2], ranges[-1]
        if b1 - b0 < low:
            moved = low - (b1 - b0)
            ranges[-2] = (a0, b0 - moved)
            ranges[-1] = (b0 - moved, b1)
    return ranges


_EMPTY: Final = frozenset((None, ""))


def _no_empty_values(values: Sequence[Any]) -> bool:
    """True when no value is ``None`` or ``""``: one set lookup per value when all are hashable, else two scans."""
    try:
        return _EMPTY.isdisjoint(values)  # a value equal to None or "" hashes like it (Python's hash contract)
    except TypeError:  # an unhashable value (a list, a dict): compare instead
        return None not in values and "" not in values


def _leave_out_empty(values: Sequence[Any]) -> list[Any]:
    """The values with each ``None`` or ``""`` (what :meth:`Provider.map_fields` drops) made ``msgspec.UNSET``."""
    return [UNSET if v is None or v == "" else v for v in values]


# Never in one plain address: white space or any other character that does not print, or the separators
# of a list of addresses. (A provider refuses a whole chunk for one bad address, so the row is refused here.)
def _one_address(email: str) -> bool:
    # Written out: a generator over the separators costs three times as much, for every contact.
    return (
        email.isprintable()
        and " " not in email
        and "," not in email
        and ";" not in email
        and "<" not in email
        and ">" not in email
    )


def email_problem(row: int, email: Any) -> Problem | None:
    """The problem with a given email value, if it is not one plain address: a string with an ``@``, no white
    space nor any character that does not print, no comma, semicolon or angle bracket (see :func:`trim_email`
    for white space around it)."""
    if not (isinstance(email, str) and "@" in email):
        return Problem(row, "email", f"not an email address: {str(email)[:60]!r}")
    if not _one_address(email):
        return Problem(
            row,
            "email",
            f"not one email address: {email[:60]!r} holds white space, an unprintable character or one of , ; < >",
        )
    return None


def all_emails(values: Sequence[Any]) -> bool:
    """:func:`email_problem` finds nothing in any of the values, checked a whole column at once."""
    if not (set(map(type, values)) <= {str} and all(map(contains, values, repeat("@")))):
        return False
    return _one_address("".join(values))  # what is sought is single characters: one pass over them all


def trim_email(contact: Contact) -> None:
    """Take white space off both ends of the contact's email (a CSV cell's stray spaces), in place; an email that
    is only white space is left out, as an empty one is."""
    email = contact.get("email")
    if type(email) is str and email and (email[0].isspace() or email[-1].isspace()):
        if trimmed := email.strip():
            contact["email"] = trimmed
        else:
            del contact["email"]


# A token that is empty, or holds a space or a control character, cannot go in a header: a malformed answer.
# (msgspec's message names the field and the rule, never the value.)
HeaderToken = Annotated[str, msgspec.Meta(pattern=r"^[!-~]+$")]


def text_of(value: Any) -> str:
    """Any decoded JSON value as short text for a reason or message: a string as it is, anything else as its JSON."""
    return ev.excerpt(value if isinstance(value, str) else msgspec.json.encode(value))


def declares_more_than(content_length: str | None, limit: int) -> bool:
    """True when a ``Content-Length`` value is plain ASCII digits declaring more than ``limit`` bytes.

    Never calls ``int()`` on a number longer than the limit's own (``int()``
    refuses more than 4,300 digits with a ValueError); anything that is not
    digits declares nothing here, for the caller to judge.
    """
    if not (content_length and content_length.isascii() and content_length.isdigit()):
        return False
    digits = content_length.lstrip("0")
    return len(digits) > len(str(limit)) or int(digits or "0") > limit


def decode_json(body: bytes) -> Any:
    """Decode a JSON body; ``None`` when it is not JSON (error bodies are not always JSON)."""
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None


class Provider:
    """Base of the four provider modules' classes: names, limits, field mapping, common readings."""

    name: ClassVar[str]
    chunk_min: ClassVar[int] = 1
    chunk_max: ClassVar[int]
    aliases: ClassVar[Mapping[str, str]] = {}  # normalised input name -> provider field name

    def __init__(self, **options: Any) -> None:
        self.options = options
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self.may_clash = False  # some set of field names seen so far has two names for one field (see clashes)

    # --- contacts --------------------------------------------------------------

    def map_fields(self, contact: Mapping[str, Any]) -> Contact:
        """Rename known fields to the provider's names; unknown ones become custom fields.

        Inputs usually share one set of field names, so the renaming plan is
        worked out once per distinct set of names (bounded cache) and applied
        with one dict comprehension per contact.
        """
        keys = tuple(contact)
        renames, customs, identity, _ = self._plans.get(keys) or self._plan(keys)
        if identity and "" not in contact.values() and None not in contact.values():
            return dict(contact)
        out = {dst: v for src, dst in renames if (v := contact[src]) is not None and v != ""}
        if not customs:
            return out
        custom = {src: v for src in customs if (v := contact[src]) is not None and v != ""}
        return self.place_custom(out, custom)

    def clashes(self, row: int, contact: Mapping[str, Any]) -> list[Problem]:
        """Problems where two of a contact's fields mean one provider field and give it different values.

        ``First Name`` and ``first_name`` both mean Datananas's ``firstname``:
        when both are filled in and differ, which one to send is a guess, so
        the contact is not sent. Equal values, or one of them empty, are fine
        (:meth:`map_fields` sends the value given). ``may_clash`` is False
        until a set of field names with such a pair is seen (by this method or
        :meth:`map_fields`); until then there is nothing to look for.
        """
        keys = tuple(contact)
        plan = self._plans.get(keys) or self._plan(keys)
        problems = []
        for target, sources in plan.clashes:
            given = {src: v for src in sources if (v := contact[src]) is not None and v != ""}
            if len(set(map(repr, given.values()))) > 1:
                names = " and ".join(repr(str(src)) for src in given)
                values = ", ".join(ev.excerpt(repr(v), 40) for v in given.values())
                problems.append(
                    Problem(row, target, f"{names} both give it, with different values ({values}); keep one of them")
                )
        return problems

    def _plan(self, keys: tuple[Any, ...]) -> _Plan:
        renames, customs = [], []
        sources: dict[str, list[Any]] = {}
        for name in keys:
            target = self.aliases.get(normalise_key(str(name)))
            if target is None:
                customs.append(name)
            else:
                renames.append((name, target))
                sources.setdefault(target, []).append(name)
        identity = not customs and all(src == dst for src, dst in renames)
        clashes = tuple((target, tuple(names)) for target, names in sources.items() if len(names) > 1)
        plan = _Plan(tuple(renames), tuple(customs), identity, clashes)
        self.may_clash = self.may_clash or bool(clashes)
        if len(self._plans) < 1024:
            self._plans[keys] = plan
        return plan

    def field_targets(self, names: Iterable[Any]) -> list[tuple[str, str | None, bool]]:
        """Where each input field name goes in a request: ``(name, path in the contact, custom)``.

        The path is the provider's field (``firstname``), or for a custom field
        where :meth:`place_custom` puts it (``vars.Prénom`` for Datananas);
        None when the field is not sent at all. Worked out by mapping a
        one-field contact, so it is what :meth:`map_fields` does. For
        ``--dry-run``: a column meant as a known field but sent as a custom
        one is seen before anything is sent.
        """
        out = []
        for name in names:
            marker = _Marker()
            path = _path_to(self.map_fields({name: marker}), marker)
            custom = path is not None and normalise_key(str(name)) not in self.aliases
            out.append((str(name), path, custom))
        return out

    def place_custom(self, contact: Contact, custom: dict[str, Any]) -> Contact:
        """Where unknown fields go; by default they are sent as they are."""
        contact.update(custom)
        return contact

    def validate(self, row: int, contact: Contact) -> list[Problem]:
        """Problems with one mapped contact (none by default)."""
        return []

    def chunk(self, rows: Sequence[int], contacts: Sequence[Contact]) -> list[Chunk]:
        """Split valid contacts into chunks the endpoint accepts."""
        ranges = balanced_chunks(len(contacts), self.chunk_min, self.chunk_max)
        return [Chunk(i, tuple(rows[a:b]), tuple(contacts[a:b])) for i, (a, b) in enumerate(ranges)]

    # --- contacts in bulk ------------------------------------------------------------

    def valid_in_bulk(self, table: Table) -> bool:
        """True when every row of ``table`` is certainly valid, judged one whole field at a time.

        :func:`adapters.submit.prepare` asks this only of contacts that
        :meth:`tabulate` could hold as one table. Whenever the answer is False,
        each contact goes through :meth:`map_fields` and :meth:`validate` on its
        own, so a provider must never answer True for a table in which
        :meth:`validate` would find a problem. A value left out is
        ``msgspec.UNSET`` (see :class:`Table`). By default False: no bulk path.
        """
        return False

    def tabulate(self, contacts: Sequence[Any]) -> Table | None:
        """The contacts as one :class:`Table` in the provider's field names, or None when they are not alike.

        Alike means: every one a plain dict with the same string keys, each
        field sent under a name of its own, and no custom field where the
        provider moves custom fields elsewhere (:meth:`place_custom`). Values
        ``None`` or ``""``, which :meth:`map_fields` drops, become
        ``msgspec.UNSET`` (left out). Each row then holds what
        :meth:`map_fields` makes of its contact. The checks run a whole field
        at a time; they cost a fraction of renaming contact by contact.
        """
        if not contacts or set(map(type, contacts)) != {dict}:
            return None
        keys = tuple(contacts[0])
        n = len(keys)
        if n == 0 or not all(type(k) is str for k in keys) or set(map(len, contacts)) != {n}:
            return None
        renames, customs, _, clashes = self._plans.get(keys) or self._plan(keys)
        if clashes:
            return None  # two inputs for one provider field: contact by contact (see :meth:`clashes`)
        if customs and type(self).place_custom is not Provider.place_custom:
            return None
        names = tuple(dst for _, dst in renames) + customs
        if len(set(names)) != n:
            return None  # a custom field named like a provider field: contact by contact
        try:
            # Same length and every key of the first contact found: the same set of keys.
            columns = tuple(list(map(itemgetter(src), contacts)) for src in (*(s for s, _ in renames), *customs))
        except KeyError:
            return None
        full = [_no_empty_values(c) for c in columns]
        if all(full):
            return Table(names, columns)
        return Table(names, tuple(c if ok else _leave_out_empty(c) for c, ok in zip(columns, full, strict=True)), True)

    def chunk_table(self, table: Table) -> list[Chunk]:
        """Split a table of valid contacts (rows 0..n-1) into chunks the endpoint accepts."""
        ranges = balanced_chunks(len(table), self.chunk_min, self.chunk_max)
        return [Chunk(i, tuple(range(a, b)), table=table.rows(a, b)) for i, (a, b) in enumerate(ranges)]

    # --- requests and readings ---------------------------------------------------------

    def token_answer(self, response: Response, shape: type[T], title: str) -> T:
        """A token endpoint's answer decoded as ``shape``; :class:`AuthError` when refused or malformed."""
        if response.status in (400, 401, 403):
            raise AuthError(
                f"{title} refused the client credentials (HTTP {response.status}): {reason_of(response)}",
                status=response.status,
                provider=self.name,
            )
        if response.status != 200:  # e.g. a 404 from a wrong login URL: not the credentials' fault
            raise AuthError(
                f"{title}'s token endpoint answered HTTP {response.status} ({reason_of(response)[:200]}); "
                "check its URL",
                status=response.status,
                provider=self.name,
            )
        try:
            return msgspec.json.decode(response.body, type=shape)
        except (msgspec.MsgspecError, RecursionError) as exc:
            raise AuthError(f"{title}'s token answer is malformed: {exc}", provider=self.name) from None

    def build_submit(self, chunk: Chunk) -> Request:
        raise NotImplementedError

    def read_submit(self, chunk: Chunk, response: Response) -> Outcome:
        raise NotImplementedError

    def common_outcome(self, response: Response) -> Outcome | None:
        """429, 5xx and 404 read the same way for every provider; None for anything else.

        A 404 to a submit is no such endpoint at the base URL: every chunk would
        get it, so it stops the rest (``account``), and the chunk, certainly not
        taken, may be sent again once the URL is right.
        """
        if response.status == 429:
            return Throttle(retry_after_of(response.headers))
        if response.status >= 500:
            return ServerFailure(response.status, reason_of(response) or f"HTTP {response.status}")
        if response.status == 404:
            said = ev.excerpt(reason_of(response), 200)
            return Refused(
                404,
                f"no such endpoint (HTTP 404{': ' + said if said else ''}): check the base URL "
                f"(--base-url or {self.name.upper()}_BASE_URL)",
                retriable=True,
                account=True,
                code=NOT_FOUND,
            )
        return None


class _Marker:
    """A value found again by identity (see :meth:`Provider.field_targets`)."""


def _path_to(value: Any, marker: _Marker, prefix: str = "") -> str | None:
    """The dotted path of ``marker`` in nested dicts, or None."""
    if isinstance(value, dict):
        for key, item in value.items():
            if item is marker:
                return f"{prefix}{key}"
            found = _path_to(item, marker, f"{prefix}{key}.")
            if found is not None:
                return found
    return None


# A submit answered with any of these and a job id was taken, whichever one the provider documents: read as
# refused, a job that exists would be reported rejected and not followed.
TAKEN: Final = (200, 201, 202)


def reason_of(response: Response) -> str:
    """A short human reason from an error body, whatever its shape; for a redirect, where it points."""
    if 300 <= response.status < 400:
        # Not followed (a submit must never be sent twice): most often http:// given for https://, or an old host.
        location = ev.excerpt(redact_userinfo(response.header("location") or "nowhere"), 200)
        return (
            f"redirected (HTTP {response.status}) to {location}; requests are not redirected: "
            "set the base URL to where it points"
        )
    data = decode_json(response.body)
    if isinstance(data, dict):
        for key in ("message", "error", "reason", "error_description"):
            if isinstance(data.get(key), str):
                return data[key]
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message", ""))
    text = response.body[:200].decode("utf-8", "replace").strip()
    return text
