"""Standard Webhooks signing and verification."""

from __future__ import annotations

import base64
import re

import pytest

from adapters.signing import SignatureError, secret_key, sign, signature_headers, verify

BODY = b'{"enrichment_id": "e1", "status": "found"}'


def test_verify_accepts_what_sign_produced() -> None:
    """A body signed with a secret verifies with the same secret and returns the id."""
    headers = signature_headers("s3cret", "msg_1", BODY, timestamp=1_700_000_000)
    assert verify("s3cret", headers, BODY, now=1_700_000_010) == "msg_1"


def test_known_vector() -> None:
    """The signature matches an HMAC-SHA256 computed independently over id.timestamp.body."""
    import hashlib
    import hmac

    raw = hmac.new(b"key", b"id1.1700000000.hello", hashlib.sha256).digest()
    assert sign("key", "id1", 1_700_000_000, b"hello") == "v1," + base64.b64encode(raw).decode()


def test_whsec_secret_is_base64_decoded() -> None:
    """A whsec_-prefixed secret signs with its decoded bytes."""
    secret = "whsec_" + base64.b64encode(b"raw-key").decode()
    assert sign(secret, "i", 1, b"x") == sign(b"raw-key", "i", 1, b"x")


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda h, b: ({**h, "webhook-signature": "v1,AAAA"}, b), "no v1 signature matches"),
        (lambda h, b: (h, b + b" "), "no v1 signature matches"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing signature header"),
        (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "not an integer"),
        (lambda h, b: ({**h, "webhook-timestamp": "1699990000"}, b), "tolerance"),
        (lambda h, b: ({**h, "webhook-timestamp": "9" * 400}, b), "not an integer"),
        (lambda h, b: ({**h, "webhook-timestamp": "1_700_000_000"}, b), "not an integer"),
        (lambda h, b: ({**h, "webhook-timestamp": "-1700000000"}, b), "not an integer"),
        (lambda h, b: ({**h, "webhook-timestamp": " 1700000000"}, b), "not an integer"),
        (lambda h, b: ({**h, "webhook-timestamp": "\u0661\u0667\u0660\u0660"}, b), "not an integer"),
    ],
    ids=[
        "bad-signature",
        "altered-body",
        "missing-id",
        "bad-timestamp",
        "stale",
        "huge-timestamp",
        "underscores",
        "negative",
        "space",
        "non-ascii-digits",
    ],
)
def test_verify_refuses_bad_requests(mutate, fragment: str) -> None:
    """Wrong signature, altered body, missing headers, bad or stale timestamps are refused with a reason."""
    headers = signature_headers("s3cret", "msg_1", BODY, timestamp=1_700_000_000)
    bad_headers, bad_body = mutate(headers, BODY)
    with pytest.raises(SignatureError, match=fragment):
        verify("s3cret", bad_headers, bad_body, now=1_700_000_000)


def test_one_of_several_signatures_may_match() -> None:
    """During secret rotation the header lists several signatures; one valid one suffices."""
    headers = signature_headers("new", "m", BODY, timestamp=100)
    headers["webhook-signature"] = sign("old", "m", 100, BODY) + " " + headers["webhook-signature"]
    assert verify("new", headers, BODY, now=100) == "m"


def test_error_message_has_no_secret() -> None:
    """The secret never appears in an error message."""
    headers = signature_headers("wrong-secret-value", "m", BODY, timestamp=100)
    with pytest.raises(SignatureError) as info:
        verify("expected-secret-value", headers, BODY, now=100)
    assert "secret-value" not in str(info.value)


def test_nan_tolerance_does_not_turn_off_the_replay_check() -> None:
    """A NaN tolerance compares false with everything; a stale timestamp must still be refused."""
    headers = signature_headers("s3cret", "msg_1", BODY, timestamp=1_700_000_000)
    with pytest.raises(SignatureError, match="tolerance"):
        verify("s3cret", headers, BODY, tolerance=float("nan"), now=1_700_000_000 + 10**9)


@pytest.mark.parametrize("offset, said", [(-1000, "is -1000s from now"), (1000, "is +1000s from now")])
def test_a_timestamp_out_of_tolerance_says_which_way(offset: int, said: str) -> None:
    """A stale timestamp is in the past (-), one from a clock running ahead in the future (+) (signs were swapped)."""
    headers = signature_headers("s3cret", "msg_1", BODY, timestamp=1_700_000_000 + offset)
    with pytest.raises(SignatureError, match=re.escape(f"webhook-timestamp {said} (tolerance 300s)")):
        verify("s3cret", headers, BODY, now=1_700_000_000)


@pytest.mark.parametrize("secret", ["", b"", "whsec_"], ids=["empty-text", "empty-bytes", "empty-whsec"])
def test_an_empty_secret_is_refused(secret: str | bytes) -> None:
    """An empty HMAC key would let anyone sign; it is a ValueError, not a key."""
    with pytest.raises(ValueError, match="webhook secret is empty"):
        secret_key(secret)


@pytest.mark.parametrize("secret", ["s3cret\n", "whsec_c2VjcmV0\n", " s3cret", "s3cret\r\n"])
def test_a_secret_with_white_space_at_its_ends_is_refused(secret: str) -> None:
    """A newline left from a file would make every signature fail to match, silently: refused, saying so."""
    with pytest.raises(ValueError, match="begins or ends with a space or line break") as info:
        secret_key(secret)
    assert "s3cret" not in str(info.value)
    assert secret_key(secret.strip()) == (b"secret" if secret.strip().startswith("whsec_") else b"s3cret")
