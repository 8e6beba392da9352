"""The event model: tags, round trips, identity helpers and malformed input."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventbus
from eventbus import events as ev

COMMON = {"provider": "pronto", "job_id": "enr_1", "source": "webhook"}


def test_tags_are_snake_case_class_names() -> None:
    """Each event's type tag is its class name in snake_case."""
    assert ev.EVENT_TYPES["job_progress"] is ev.JobProgress
    assert ev.EVENT_TYPES["invalid_signal"] is ev.InvalidSignal
    assert ev.tag_of(ev.ItemSucceeded) == "item_succeeded"
    assert len(ev.EVENT_TYPES) == len(ev.AnyEvent.__args__)


@pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=lambda c: c.__name__)
def test_every_event_round_trips(cls: type[ev.Event]) -> None:
    """encode then decode gives back an equal event of the same class."""
    required = {
        f: v
        for f, v in {
            "batch_id": "b1",
            "chunk_index": 0,
            "chunk_count": 2,
            "size": 10,
            "status": 429,
            "reason": "r",
            "retriable": True,
            "retry_after": 1.5,
            "done": 3,
            "key": "7",
            "outcome": "created",
            "code": "400",
            "message": "bad",
            "silent_for": 30.0,
            "state": "connected",
        }.items()
        if f in cls.__struct_fields__
    }
    event = cls(id="x", **COMMON, **required)
    data = ev.encode(event)
    assert msgspec.json.decode(data)["type"] == ev.tag_of(cls)
    assert ev.decode(data) == event
    assert type(ev.decode(data)) is cls


def test_events_are_frozen() -> None:
    """Events cannot be mutated after creation."""
    event = ev.JobProgress(id="x", done=1, **COMMON)
    with pytest.raises(AttributeError):
        event.done = 2  # type: ignore[misc]


def test_timestamps_are_utc() -> None:
    """`at` defaults to an aware UTC timestamp and survives a round trip."""
    event = ev.JobAccepted(id="x", **COMMON)
    assert event.at.utcoffset() is not None and event.at.utcoffset().total_seconds() == 0
    assert ev.decode(ev.encode(event)).at == event.at


@pytest.mark.parametrize(
    "raw, error",
    [
        (b"", msgspec.DecodeError),
        (b"{not json", msgspec.DecodeError),
        (b'{"type": "no_such_event", "id": "x"}', msgspec.ValidationError),
        (b'{"id": "x", "provider": "p", "job_id": "j", "source": "poll", "done": 1}', msgspec.ValidationError),
        (
            b'{"type": "job_progress", "id": "x", "provider": "p", "job_id": "j", "source": "fax", "done": 1}',
            msgspec.ValidationError,
        ),
        (
            b'{"type": "job_progress", "id": "x", "provider": "p", "job_id": "j", "source": "poll", "done": "1"}',
            msgspec.ValidationError,
        ),
    ],
    ids=["empty", "truncated", "unknown-tag", "missing-tag", "bad-source", "wrong-type"],
)
def test_decode_rejects_malformed_input(raw: bytes, error: type[Exception]) -> None:
    """Malformed bytes raise msgspec's typed errors with a message naming the problem."""
    with pytest.raises(error) as info:
        ev.decode(raw)
    assert str(info.value)


PROGRESS = b'{"type": "job_progress", "id": "x", "provider": "p", "job_id": "j", "source": "poll", "done": 1'


def test_decode_refuses_a_timestamp_without_timezone() -> None:
    """A naive `at` is a ValidationError naming the field (it later broke summaries: naive minus aware)."""
    with pytest.raises(msgspec.ValidationError, match=r"timezone.*\$\.at"):
        ev.decode(PROGRESS + b', "at": "2024-01-01T00:00:00"}')


def test_decode_keeps_a_timestamp_with_any_offset() -> None:
    """An `at` with an offset is kept as given and compares with the UTC timestamps of other events."""
    event = ev.decode(PROGRESS + b', "at": "2024-01-01T02:00:00+02:00"}')
    assert event.at == datetime(2024, 1, 1, tzinfo=UTC) and ev.now() - event.at > timedelta(0)


def _deep_item(depth: int) -> bytes:
    common = b'"id": "x", "provider": "p", "job_id": "j", "source": "poll", "key": "k", "outcome": "found"'
    return b'{"type": "item_succeeded", ' + common + b', "data": {"a": ' + b"[" * depth + b"]" * depth + b"}}"


def test_decode_refuses_data_nested_past_the_recursion_limit_as_a_decode_error() -> None:
    """Valid JSON nested too deeply inside `data` raises msgspec.DecodeError (it raised RecursionError)."""
    deep = _deep_item(sys.getrecursionlimit() + 1_000)
    with pytest.raises(msgspec.DecodeError, match="nested too deeply"):
        ev.decode(deep)
    with pytest.raises(msgspec.DecodeError, match=r"^line 2: JSON nested too deeply"):
        ev.decode_lines(PROGRESS + b"}\n" + deep + b"\n")
    assert isinstance(ev.decode(_deep_item(50)), ev.ItemSucceeded)  # moderate nesting still decodes


def test_decode_lines_skips_blank_lines() -> None:
    """decode_lines reads JSON-lines output back, ignoring blank lines."""
    a = ev.JobProgress(id="a", done=1, **COMMON)
    b = ev.JobCompleted(id="b", succeeded=1, **COMMON)
    data = ev.encode(a) + b"\n\n" + ev.encode(b) + b"\n"
    assert ev.decode_lines(data) == [a, b]


def test_decode_lines_names_the_line_that_failed() -> None:
    """A bad line raises msgspec's own error type, its message starting with the line number."""
    with pytest.raises(msgspec.DecodeError, match=r"^line 3: JSON is malformed"):
        ev.decode_lines(PROGRESS + b"}\n\n{bad\n")
    with pytest.raises(msgspec.ValidationError, match=r"^line 1: Expected `int`"):
        ev.decode_lines(PROGRESS.replace(b'"done": 1', b'"done": "1"') + b"}\n")


def test_deterministic_ids() -> None:
    """The same fact gets the same id; random ids differ."""
    assert ev.event_id("pronto", "j", "item", 3) == ev.event_id("pronto", "j", "item", "3")
    assert ev.new_id() != ev.new_id()
    assert ev.chunk_ref("b1", 2) == "b1#2"


@given(st.binary(max_size=5000) | st.text(max_size=5000))
def test_excerpt_is_bounded(raw: bytes | str) -> None:
    """Excerpts of any input stay short and printable as str."""
    out = ev.excerpt(raw)
    assert isinstance(out, str)
    assert len(out) <= ev.EXCERPT_LIMIT + 30


@pytest.mark.parametrize("size", [801, 5000, 200_000])
def test_an_excerpt_of_bytes_gives_the_size_of_the_whole_input(size: int) -> None:
    """A body's excerpt says how many bytes it had (it said 800, the part decoded, for any body over 800)."""
    out = ev.excerpt(b"[" * size)
    assert out == "[" * ev.EXCERPT_LIMIT + f"… ({size} bytes)"
    assert ev.excerpt(b"x" * ev.EXCERPT_LIMIT) == "x" * ev.EXCERPT_LIMIT  # short enough: as it is


def test_public_all_is_sorted_and_importable() -> None:
    """eventbus.__all__ is sorted and every name in it exists."""
    assert eventbus.__all__ == sorted(eventbus.__all__)
    for name in eventbus.__all__:
        assert hasattr(eventbus, name), name
