"""The ledger of failed writes both persistent buses keep: which publish numbers were not written."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from eventbus._writes import Failures


def test_one_number_and_a_span_of_numbers() -> None:
    failures = Failures()
    failures.add(3, 5, "disk full")
    failures.add(9, 9, "locked")
    assert [failures.of(n) for n in (2, 3, 5, 6, 9)] == [None, "disk full", "disk full", None, "locked"]
    assert failures.between(0, 2) is None
    assert failures.between(0, 10) == (4, "locked")  # 3, 4, 5 and 9; the latest reason
    assert failures.between(4, 8) == (1, "disk full")  # only 5 is after 4
    assert failures.between(9, 20) is None


def test_numbers_older_than_what_is_kept_count_as_not_written() -> None:
    """Past `keep` ranges the oldest is forgotten: a question reaching back to it is answered "not written"
    (a false "written" would let a webhook receiver answer 2xx for lost events)."""
    failures = Failures(keep=2)
    for n in (1, 5, 9):
        failures.add(n, n, f"failure {n}")
    assert failures.of(1) == "failures that old are no longer kept; treat it as not written"
    assert failures.of(2) is None and failures.of(6) is None  # past every forgotten range: known written
    assert failures.of(5) == "failure 5"
    count, why = failures.between(0, 10)  # type: ignore[misc]
    assert count == 10 and "no longer kept" in why
    assert failures.between(1, 10) == (2, "failure 9")  # 5 and 9, both kept


@given(
    ranges=st.lists(st.tuples(st.integers(1, 60), st.integers(0, 5)), max_size=12),
    after=st.integers(0, 70),
    span=st.integers(0, 70),
)
def test_between_counts_exactly_the_failed_numbers(ranges: list[tuple[int, int]], after: int, span: int) -> None:
    """Against a brute-force count over disjoint ranges added in order, as a writer adds them."""
    failures = Failures(keep=100)
    failed: set[int] = set()
    start = 0
    for gap, length in ranges:
        first = start + gap
        failures.add(first, first + length, "x")
        failed.update(range(first, first + length + 1))
        start = first + length
    upto = after + span
    expected = len([n for n in failed if after < n <= upto])
    assert (failures.between(after, upto) or (0, ""))[0] == expected
