"""Capped, jittered exponential backoff, shared by every retry loop in the adapters.

``Backoff`` hands out delays of ``min(cap, base * factor**attempt)`` scaled by
"full jitter" (uniform in ``[delay * (1 - jitter), delay]``), counts attempts
against ``max_attempts``, and is reset by the caller only once a connection or
request has proved healthy — so a peer that accepts then fails at once still
sees the delays grow.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]

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
