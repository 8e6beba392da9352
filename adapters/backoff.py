"""Capped, jittered exponential backoff, shared by every retry loop in the adapters.

``Backoff`` hands out delays of ``min(cap, base * factor**attempt)`` scaled by
"full jitter" (uniform in ``[delay * (1 - jitter), delay]``), counts attempts
against ``max_attempts``, and is reset by the caller only once a connection or
request has proved healthy — so a peer that accepts then fails at once still
sees the delays grow.

:func:`retry_after_of` reads how long a provider asks to be left alone, with
one set of rules for every caller (submitting, polling, following), and
:func:`certificate_refusal` tells a TLS certificate that failed verification,
which no retry can mend, from the connection failures worth retrying.
"""

from __future__ import annotations

import math
import random
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = ["Backoff", "certificate_refusal", "retry_after_of"]

# An X-RateLimit-Reset this large is a Unix time, not a count of seconds (1e9 s is 31 years; as a
# Unix time it is September 2001), as some APIs send it.
_UNIX_TIME_FROM: float = 1e9


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it (``__cause__``, else ``__context__``), and so on, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def certificate_refusal(exc: BaseException) -> str | None:
    """Why a TLS certificate was refused, when that is behind ``exc`` (followed through its causes); else None.

    httpx wraps the ``ssl.SSLCertVerificationError`` (unknown CA, another
    host's name, expired) in a ``ConnectError``; the same certificate would
    come back on every attempt.
    """
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {cause.verify_message}" if cause.verify_message else str(cause)
    return None


def not_tls(exc: BaseException) -> bool:
    """True when ``exc`` (followed through its causes) says the server answered a TLS handshake with something
    else, as a plain-HTTP port does when given ``https://``: it would answer the same on every attempt."""
    return any(
        isinstance(cause, ssl.SSLError) and cause.reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST")
        for cause in _causes(exc)
    )


def retry_after_of(
    headers: Mapping[str, str], *, cap: float = math.inf, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the provider asks to wait before the next request, or None when it says nothing usable.

    ``headers`` have lower-case names. ``Retry-After`` is read first: a number
    of seconds, or an HTTP date (one already past means 0). Then
    ``X-RateLimit-Reset``: seconds until the limit resets, or, when it is at
    least 1e9, the Unix time it resets at. A value that is not a finite number
    of seconds at least 0 (negative, NaN, infinite, unparsable) says nothing,
    and the next header is read. A wait longer than ``cap`` is ``cap``.
    """
    for name in ("retry-after", "x-ratelimit-reset"):
        value = headers.get(name)
        if not value:
            continue
        try:
            seconds = float(value)
        except ValueError:
            if name != "retry-after":
                continue
            try:
                when = parsedate_to_datetime(value)
                if when.tzinfo is None:  # HTTP dates are GMT (RFC 9110), whether or not they say so
                    when = when.replace(tzinfo=UTC)
                seconds = max(when.timestamp() - now(), 0.0)
            except (TypeError, ValueError, OverflowError):
                continue
        else:
            if name == "x-ratelimit-reset" and seconds >= _UNIX_TIME_FROM:
                seconds = max(seconds - now(), 0.0)
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, cap)
    return None


# The generator of every Backoff not given its own: a new random.Random() seeds itself from the
# OS (~16 us), which each ProviderClient.send paid for; jitter needs no stream of its own.
_SHARED_RNG = random.Random()


@dataclass
class Backoff:
    """Delay generator for one retry loop. Not thread-safe; one per loop."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 1.0
    max_attempts: int | None = 10
    rng: random.Random = field(default=_SHARED_RNG, repr=False)
    attempt: int = 0

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < self.base or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("Backoff needs 0 <= base <= cap, factor >= 1 and 0 <= jitter <= 1")

    @property
    def exhausted(self) -> bool:
        """True once ``max_attempts`` delays have been handed out."""
        return self.max_attempts is not None and self.attempt >= self.max_attempts

    def next_delay(self, at_least: float = 0.0) -> float:
        """The delay before the next attempt (never below ``at_least``, e.g. a Retry-After)."""
        ceiling = min(self.cap, self.base * self.factor**self.attempt)
        self.attempt += 1
        delay = ceiling * (1 - self.jitter * self.rng.random())
        return max(delay, at_least)

    def reset(self) -> None:
        """Start again from the shortest delay (call only after proven health)."""
        self.attempt = 0
