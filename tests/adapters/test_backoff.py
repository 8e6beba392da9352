"""Capped, jittered exponential backoff."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.backoff import Backoff, retry_after_of
from adapters.polling import RETRY_AFTER_CAP


def test_delays_grow_then_cap() -> None:
    """Without jitter the delays double up to the cap and stay there."""
    b = Backoff(base=1, factor=2, cap=5, jitter=0, max_attempts=None)
    assert [b.next_delay() for _ in range(5)] == [1, 2, 4, 5, 5]


def test_jitter_stays_within_bounds() -> None:
    """With full jitter every delay lies in [0, ceiling]."""
    b = Backoff(base=1, factor=2, cap=8, jitter=1, max_attempts=None, rng=random.Random(1))
    ceilings = [1, 2, 4, 8, 8, 8]
    for ceiling in ceilings:
        assert 0 <= b.next_delay() <= ceiling


def test_at_least_overrides_a_shorter_delay() -> None:
    """A Retry-After longer than the computed delay wins."""
    assert Backoff(base=0.1, jitter=0).next_delay(at_least=7.5) == 7.5


def test_exhausted_after_max_attempts_and_reset() -> None:
    """The attempt budget runs out and reset() restores it."""
    b = Backoff(max_attempts=2, jitter=0)
    b.next_delay()
    assert not b.exhausted
    b.next_delay()
    assert b.exhausted
    b.reset()
    assert not b.exhausted and b.next_delay() == b.base


def test_invalid_settings_are_refused() -> None:
    """Nonsensical settings raise ValueError at construction."""
    with pytest.raises(ValueError):
        Backoff(base=10, cap=1)


def test_adapters_public_names_sorted_and_importable() -> None:
    """adapters.__all__ is sorted and every name in it exists."""
    import adapters

    assert adapters.__all__ == sorted(adapters.__all__)
    for name in adapters.__all__:
        assert hasattr(adapters, name), name


# --- retry_after_of: one reading of Retry-After / X-RateLimit-Reset for every caller -------------

NOW = 1_795_000_000.0  # a fixed "now" (2026-11-18) for the date and Unix-time cases


def clock() -> float:
    return NOW


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": "0"}, 0.0),
        ({"x-ratelimit-reset": "2.5"}, 2.5),
        ({"retry-after": "4", "x-ratelimit-reset": "9"}, 4.0),  # Retry-After first
        ({"retry-after": "Wed, 18 Nov 2026 11:07:10 GMT"}, 30.0),  # NOW + 30 s as an HTTP date
        ({"retry-after": "Wednesday, 18-Nov-26 11:07:10 GMT"}, 30.0),  # the obsolete RFC 850 form
        ({"retry-after": "Wed, 18 Nov 2026 11:07:10"}, 30.0),  # no zone: GMT, as HTTP dates are
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # already past
        ({"x-ratelimit-reset": str(int(NOW) + 90)}, 90.0),  # a Unix time, not 56 years
        ({"x-ratelimit-reset": str(int(NOW) - 90)}, 0.0),  # a Unix time already past
        ({}, None),
    ],
)
def test_retry_after_reads_seconds_dates_and_unix_times(headers: dict[str, str], wait: float | None) -> None:
    """Seconds, HTTP dates (past ones mean now) and X-RateLimit-Reset seconds or Unix times."""
    assert retry_after_of(headers, now=clock) == wait


@pytest.mark.parametrize("bad", ["-5", "nan", "inf", "-inf", "1e400", "soon", "", "7 seconds", "Wed, 99 Foo 2026"])
def test_retry_after_that_says_nothing_usable_falls_through(bad: str) -> None:
    """A negative, non-finite or unparsable value is ignored: the next header is read, else None."""
    assert retry_after_of({"retry-after": bad}, now=clock) is None
    assert retry_after_of({"retry-after": bad, "x-ratelimit-reset": "3"}, now=clock) == 3.0
    assert retry_after_of({"x-ratelimit-reset": bad}, now=clock) is None


def test_retry_after_caps_long_waits() -> None:
    """A wait beyond the caller's cap is the cap (polling's is an hour); without a cap it is as given."""
    assert retry_after_of({"retry-after": "86400"}, cap=RETRY_AFTER_CAP) == RETRY_AFTER_CAP == 3600.0
    assert retry_after_of({"retry-after": "86400"}) == 86400.0


@given(st.dictionaries(st.sampled_from(["retry-after", "x-ratelimit-reset"]), st.text(max_size=40)))
def test_retry_after_of_any_header_values_is_none_or_a_finite_wait(headers: dict[str, str]) -> None:
    """Whatever a provider sends, the answer is None or a finite number of seconds in [0, cap]."""
    wait = retry_after_of(headers, cap=60.0, now=clock)
    assert wait is None or (math.isfinite(wait) and 0.0 <= wait <= 60.0)
