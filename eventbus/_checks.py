"""Checks on the numbers a component is configured with: each wrong one is named, with its value and what it must be.

One place for what "a duration", "a count" and "a size" accept, so that
every constructor refuses the same things (NaN, infinities, zero or negative
durations, booleans and fractions where a whole number is meant) with the
same words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from eventbus.exceptions import ConfigError

__all__ = [
    "COUNT",
    "COUNT_OR_NONE",
    "NOT_NEGATIVE",
    "POSITIVE",
    "POSITIVE_OR_NONE",
    "SECONDS",
    "SECONDS_OR_NONE",
    "WHOLE",
    "Rule",
    "check_numbers",
]


@dataclass(frozen=True)
class Rule:
    """What a number must be: ``text`` says it to a person."""

    text: str
    minimum: float
    above: bool  # strictly above the minimum
    whole: bool = False
    none: bool = False  # None is allowed (an option left off)

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.none
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.whole and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):  # NaN compares false; inf never ends
            return False
        return value > self.minimum if self.above else value >= self.minimum


SECONDS = Rule("a finite number of seconds above 0", 0, above=True)
SECONDS_OR_NONE = Rule("a finite number of seconds above 0, or None", 0, above=True, none=True)
POSITIVE = Rule("a finite number above 0", 0, above=True)
POSITIVE_OR_NONE = Rule("a finite number above 0, or None", 0, above=True, none=True)
NOT_NEGATIVE = Rule("a finite number, 0 or more", 0, above=False)
COUNT = Rule("a whole number, 1 or more", 1, above=False, whole=True)
WHOLE = Rule("a whole number, 0 or more", 0, above=False, whole=True)
COUNT_OR_NONE = Rule("a whole number, 1 or more, or None", 1, above=False, whole=True, none=True)


def check_numbers(where: str, **rules: tuple[Any, Rule]) -> None:
    """ConfigError naming every ``name=(value, rule)`` whose value the rule refuses, before anything is done."""
    wrong = [
        f"{name} must be {rule.text}, not {value!r}" for name, (value, rule) in rules.items() if not rule.accepts(value)
    ]
    if wrong:
        raise ConfigError(f"{where}: {'; '.join(wrong)}")
