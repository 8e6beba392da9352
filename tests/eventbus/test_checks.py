"""The shared checks on configured numbers: what each rule refuses, and that every wrong value is named."""

from __future__ import annotations

import pytest

from eventbus._checks import COUNT, NOT_NEGATIVE, POSITIVE, SECONDS, SECONDS_OR_NONE, check_numbers
from eventbus.exceptions import ConfigError

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "rule, good, bad",
    [
        (SECONDS, [0.001, 1, 3600.5], [0, -1, NAN, INF, -INF, True, "5", None]),
        (SECONDS_OR_NONE, [None, 0.5], [0, NAN, INF, False]),
        (POSITIVE, [1e-9, 10], [0, -0.0, NAN, INF, "1"]),
        (NOT_NEGATIVE, [0, 0.0, 7], [-1e-9, NAN, INF, None, True]),
        (COUNT, [1, 10**30], [0, -1, 2.5, 1.0, True, NAN, "3"]),
    ],
    ids=["seconds", "seconds-or-none", "positive", "not-negative", "count"],
)
def test_each_rule(rule, good: list, bad: list) -> None:
    assert all(rule.accepts(v) for v in good), [v for v in good if not rule.accepts(v)]
    assert not any(rule.accepts(v) for v in bad), [v for v in bad if rule.accepts(v)]


def test_every_wrong_value_is_named_with_what_it_must_be() -> None:
    with pytest.raises(ConfigError) as info:
        check_numbers("Thing", a=(1, SECONDS), b=(NAN, SECONDS), c=(0, COUNT), d=(None, SECONDS_OR_NONE))
    assert str(info.value) == (
        "Thing: b must be a finite number of seconds above 0, not nan; c must be a whole number, 1 or more, not 0"
    )
    check_numbers("Thing", a=(1, SECONDS), d=(None, SECONDS_OR_NONE))  # nothing wrong: no error
