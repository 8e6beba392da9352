"""Capped, jittered exponential backoff."""

from __future__ import annotations

import random

import pytest

from adapters.backoff import Backoff


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
