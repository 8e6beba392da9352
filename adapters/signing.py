"""Standard Webhooks signatures: sign what the simulator sends, verify what the receiver gets.

The scheme (https://www.standardwebhooks.com/): three headers, ``webhook-id``,
``webhook-timestamp`` (Unix seconds) and ``webhook-signature``, a space-separated
list of ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``. The secret may be
given raw or as ``whsec_<base64>``. Verification compares in constant time and
refuses timestamps further than ``tolerance`` seconds from now, in either
direction, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Final

__all__ = [
    "HEADER_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "SignatureError",
    "secret_key",
    "sign",
    "signature_headers",
    "verify",
]

HEADER_ID: Final = "webhook-id"
HEADER_TIMESTAMP: Final = "webhook-timestamp"
HEADER_SIGNATURE: Final = "webhook-signature"
DEFAULT_TOLERANCE: Final = 300.0  # seconds, as the Standard Webhooks reference libraries use
_TIMESTAMP_DIGITS: Final = 20  # far past any real Unix time in seconds; bounds the int and float work


class SignatureError(ValueError):
    """A webhook's signature headers are missing, malformed, stale or do not match."""


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key ``secret`` stands for: bytes as given, ``whsec_<base64>`` decoded, other text UTF-8.

    Raises ``ValueError`` when a ``whsec_`` secret is not base64, when a text
    secret begins or ends with white space (a newline left from a file), or
    when the key is empty (anyone could sign with it). Decode once and pass the bytes to
    :func:`sign` and :func:`verify` to skip this per message.
    """
    if isinstance(secret, bytes):
        key = secret
    elif secret != secret.strip():
        # Every signature would fail to match, with nothing to say why: refuse it here instead.
        raise ValueError(
            "webhook secret begins or ends with a space or line break (often a trailing newline from the file it "
            "was read from); remove it"
        )
    elif secret.startswith("whsec_"):
        try:
            key = base64.b64decode(secret[len("whsec_") :], validate=True)
        except ValueError as exc:
            raise ValueError("webhook secret starts with 'whsec_' but the rest is not base64") from exc
    else:
        key = secret.encode()
    if not key:
        raise ValueError("webhook secret is empty: give a real secret, or none to accept unsigned webhooks")
    return key


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_headers(secret: str | bytes, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three headers to send with ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {HEADER_ID: msg_id, HEADER_TIMESTAMP: str(ts), HEADER_SIGNATURE: sign(secret, msg_id, ts, body)}


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> str:
    """Check a request's signature; return its ``webhook-id`` or raise :class:`SignatureError`.

    ``headers`` must be case-insensitive for HTTP header names (Starlette's and
    httpx's are) or use the lowercase names. The timestamp must be plain ASCII
    digits (no sign, spaces or underscores); a NaN ``tolerance`` refuses every
    timestamp rather than none.
    """
    msg_id = headers.get(HEADER_ID)
    ts_text = headers.get(HEADER_TIMESTAMP)
    sig_text = headers.get(HEADER_SIGNATURE)
    if not msg_id or not ts_text or not sig_text:
        missing = [
            h for h, v in ((HEADER_ID, msg_id), (HEADER_TIMESTAMP, ts_text), (HEADER_SIGNATURE, sig_text)) if not v
        ]
        raise SignatureError(f"missing signature header(s): {', '.join(missing)}")
    # Plain ASCII digits only: int() would also take "1_0", " 10", "-10" and other
    # scripts' digits, and a 400-digit number overflows the float subtraction below.
    if not (ts_text.isascii() and ts_text.isdigit() and len(ts_text) <= _TIMESTAMP_DIGITS):
        raise SignatureError(
            f"{HEADER_TIMESTAMP} is not an integer Unix time (at most {_TIMESTAMP_DIGITS} ASCII digits)"
        )
    ts = int(ts_text)
    current = time.time() if now is None else now
    if not abs(current - ts) <= tolerance:  # written so that a NaN tolerance refuses instead of accepting all
        raise SignatureError(
            f"{HEADER_TIMESTAMP} is {ts - current:+.0f}s from now (tolerance {tolerance:.0f}s): "
            "stale or replayed request, or the clocks disagree"
        )
    expected = sign(secret, msg_id, ts, body).encode()
    for candidate in sig_text.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return msg_id
    raise SignatureError("no v1 signature matches: wrong secret, or the body was altered")
