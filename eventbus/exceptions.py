"""The exceptions the library raises: one root, converted at the edges.

Foreign errors (httpx, websockets, msgspec, sqlite3, redis) are caught where
they enter and re-raised as one of these, with the original as ``__cause__``::

    EventBusError
    ├── ConfigError                 bad settings, arguments or environment
    ├── BusError
    │   ├── BusClosed               publish/subscribe on a closed bus
    │   ├── SubscriptionClosed      use of a subscription after it was closed
    │   └── BufferOverflow          overflow="error" and a subscriber's buffer is full
    ├── JournalError                the journal file cannot be read or written (disk full, locked, damaged)
    │   └── StoreError              (eventbus.subscribers.store) the same, for a store file
    ├── ContactError                a contact failed validation (strict mode)
    ├── ProviderError               the provider refused or failed a request
    │   ├── AuthError               credentials refused (401/403 after a refresh)
    │   ├── RateLimited             429 and the retry budget is spent
    │   ├── QuotaError              402 quota / 422 credits or consent: the account is out
    │   ├── Rejected                4xx: the request itself is wrong; do not resend as is
    │   ├── ServerError             5xx and the retry budget is spent
    │   ├── AmbiguousSubmit         sent, but no answer: the provider may or may not have it
    │   └── PaginationError         (adapters.polling) a next-page loop, or too many pages
    └── TransportError              could not reach the peer at all (refused, DNS, TLS)
        └── CertificateError        the peer's TLS certificate is not trusted: retrying cannot help

Every message names what went wrong and what to do about it; none contains a
secret (tokens and keys are redacted before they reach a message).
"""

from __future__ import annotations

__all__ = [
    "AmbiguousSubmit",
    "AuthError",
    "BufferOverflow",
    "BusClosed",
    "BusError",
    "CertificateError",
    "ConfigError",
    "ContactError",
    "EventBusError",
    "JournalError",
    "ProviderError",
    "QuotaError",
    "RateLimited",
    "Rejected",
    "ServerError",
    "StoreError",
    "SubscriptionClosed",
    "TransportError",
    "errors_of",
]


class EventBusError(Exception):
    """Root of every exception this library raises on purpose."""


class ConfigError(EventBusError, ValueError):
    """Settings, command-line arguments or environment variables are invalid."""


class BusError(EventBusError):
    """Misuse or failure of the bus itself."""


class BusClosed(BusError):
    """The bus was closed: it accepts no more events or subscribers."""


class SubscriptionClosed(BusError):
    """The subscription was closed and cannot be iterated or reopened."""


class BufferOverflow(BusError):
    """A subscriber with ``overflow="error"`` has a full buffer."""

    def __init__(self, subscriber: str, size: int) -> None:
        super().__init__(
            f"subscriber {subscriber!r} has a full buffer ({size} events) and "
            f"overflow='error'; give it a larger buffer, make it faster, or "
            f"choose overflow='block', 'drop_oldest' or 'drop_newest'"
        )
        self.subscriber = subscriber
        self.size = size


class JournalError(EventBusError):
    """The journal's file could not be read or written (disk full, locked by another process, damaged)."""


class StoreError(JournalError):
    """The store file cannot be read or written (disk full, locked past ``timeout``, damaged)."""


class ContactError(EventBusError, ValueError):
    """A contact is invalid for its provider (raised in strict mode)."""

    def __init__(self, row: int, field: str, message: str) -> None:
        super().__init__(f"row {row}: field {field!r}: {message}")
        self.row = row
        self.field = field
        self.message = message


class ProviderError(EventBusError):
    """The provider refused or failed a request."""

    def __init__(self, message: str, *, status: int | None = None, provider: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.provider = provider


class AuthError(ProviderError):
    """The provider refused our credentials, even after a token refresh."""


class RateLimited(ProviderError):
    """The provider kept answering 429 until the retry budget ran out."""


class QuotaError(ProviderError):
    """The account is out of quota, credits or consent; nothing more will be accepted."""

    def __init__(self, message: str, *, reason: str, status: int | None = None, provider: str = "") -> None:
        super().__init__(message, status=status, provider=provider)
        self.reason = reason


class Rejected(ProviderError):
    """The provider rejected the request as invalid (4xx); resending it unchanged will not help."""


class ServerError(ProviderError):
    """The provider kept failing (5xx) until the retry budget ran out."""


class AmbiguousSubmit(ProviderError):
    """A request was sent but no answer came back; it may or may not have been taken.

    It is reported, not retried, so that a chunk is never submitted twice.
    """


class TransportError(EventBusError):
    """The peer could not be reached at all (connection refused, DNS, TLS)."""


class CertificateError(TransportError):
    """TLS cannot be set up with the peer: its certificate failed verification (unknown CA, wrong host name,
    expired), or it does not speak TLS on that port at all (``https://`` given for a plain-HTTP port).

    Not retried: the same certificate comes back on every attempt. Behind a
    proxy or a private CA, point ``SSL_CERT_FILE`` (or ``SSL_CERT_DIR``) at
    its CA bundle, or pass an ``httpx.AsyncClient`` built with ``verify=``.
    """


def errors_of(exc: BaseException) -> list[EventBusError] | None:
    """The library's errors ``exc`` is made of (through nested exception groups), or None if it holds anything else.

    Task groups wrap what is raised inside them; this finds the typed errors again.
    """
    if isinstance(exc, EventBusError):
        return [exc]
    if not isinstance(exc, BaseExceptionGroup):
        return None
    found: list[EventBusError] = []
    for inner in exc.exceptions:
        errors = errors_of(inner)
        if errors is None:
            return None
        found += errors
    return found
