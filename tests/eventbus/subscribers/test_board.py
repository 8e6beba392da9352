"""JobBoard: one row per job from the merged stream."""

from __future__ import annotations

from eventbus import events as ev
from eventbus.subscribers.board import JobBoard

P = {"provider": "datananas", "source": "websocket"}


def feed(board: JobBoard, *events: ev.Event) -> JobBoard:
    for e in events:
        board(e)
    return board


def test_chunk_row_becomes_job_row_on_acceptance() -> None:
    """A submitted chunk's row is replaced by the job's row when the provider accepts it."""
    board = feed(
        JobBoard(),
        ev.BatchSubmitted(
            id="b",
            job_id="B1#0",
            batch_id="B1",
            chunk_index=0,
            chunk_count=1,
            size=3,
            provider="datananas",
            source="submit",
        ),
        ev.JobAccepted(id="a", job_id="u1", batch_id="B1", chunk_index=0, provider="datananas", source="submit"),
    )
    assert list(board.rows) == [("datananas", "u1")]
    assert board.rows[("datananas", "u1")].total == 3
    assert board.rows[("datananas", "u1")].state == "accepted"


def test_items_and_completion_counted() -> None:
    """Item events are counted by outcome and the provider's totals win at completion."""
    board = feed(
        JobBoard(),
        ev.JobAccepted(id="a", job_id="u1", total=3, **P),
        ev.ItemSucceeded(id="1", job_id="u1", key="0", outcome="created", **P),
        ev.ItemSucceeded(id="2", job_id="u1", key="1", outcome="updated", **P),
        ev.ItemFailed(id="3", job_id="u1", key="2", code="400", message="bad email", **P),
    )
    row = board.rows[("datananas", "u1")]
    assert (row.state, row.succeeded, row.failed, row.created, row.updated) == ("running", 2, 1, 1, 1)
    feed(board, ev.JobCompleted(id="c", job_id="u1", succeeded=2, failed=1, created=1, updated=1, **P))
    assert row.state == "completed" and row.finished and row.progress == 3
    assert board.all_completed()


def test_rejected_chunk_is_terminal_with_reason() -> None:
    """A chunk refused by the provider stays on the board, finished, with the reason."""
    board = feed(
        JobBoard(),
        ev.QuotaExhausted(
            id="q", job_id="B1#1", status=402, reason="contact_total_quotas", provider="datananas", source="submit"
        ),
    )
    row = board.rows[("datananas", "B1#1")]
    assert row.finished and row.state == "rejected" and "contact_total_quotas" in row.reason
    assert not board.all_completed() and board.all_finished()


def test_other_terminal_states_and_stuck() -> None:
    """Failed, expired and stuck jobs show their state; stuck never overrides a terminal state."""
    board = feed(
        JobBoard(),
        ev.JobAccepted(id="a", job_id="j1", **P),
        ev.JobStuck(id="s", job_id="j1", silent_for=60, **P),
    )
    assert board.rows[("datananas", "j1")].state == "stuck"
    feed(
        board,
        ev.JobExpired(id="e", job_id="j1", reason="404", **P),
        ev.JobStuck(id="s2", job_id="j1", silent_for=90, **P),
    )
    assert board.rows[("datananas", "j1")].state == "expired"


def test_non_job_events_are_counted_not_rows() -> None:
    """SourceState, InvalidSignal and Throttled do not create job rows."""
    board = feed(
        JobBoard(),
        ev.SourceState(id="s", job_id="", state="connected", **P),
        ev.InvalidSignal(id="i", job_id="", reason="bad json", **P),
        ev.Throttled(id="t", job_id="B#0", retry_after=1.0, provider="pronto", source="submit"),
    )
    assert board.rows == {}
    assert (board.invalid, board.throttled, len(board.source_states)) == (1, 1, 1)


def test_invalid_rows_are_a_finished_row() -> None:
    """Rows refused by validation appear under the batch's '#-1' reference, finished as invalid."""
    board = feed(
        JobBoard(),
        ev.ItemFailed(id="i", provider="pronto", job_id="B#-1", source="submit", key="3", code="invalid", message="m"),
    )
    row = board.rows[("pronto", "B#-1")]
    assert row.state == "invalid" and row.failed == 1 and board.all_finished()


def test_websocket_drops_are_counted_since_a_time() -> None:
    """websocket_drops counts a WebSocket's disconnections, all or those at or after a time; other states and
    other sources are not drops."""
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    board = feed(
        JobBoard(),
        ev.SourceState(id="c", job_id="", state="connected", at=t0, **P),
        ev.SourceState(id="d1", job_id="", state="disconnected", at=t0 + timedelta(seconds=1), **P),
        ev.SourceState(id="r", job_id="", state="reconnecting", at=t0 + timedelta(seconds=2), **P),
        ev.SourceState(id="d2", job_id="", state="disconnected", at=t0 + timedelta(seconds=3), **P),
        ev.SourceState(id="p", job_id="", state="disconnected", provider="mautic", source="poll", at=t0),
    )
    assert board.websocket_drops() == 2
    assert board.websocket_drops(since=t0 + timedelta(seconds=3)) == 1
    assert board.websocket_drops(since=t0 + timedelta(seconds=4)) == 0


def test_source_states_are_bounded_and_websocket_drops_all_counted() -> None:
    """Failed polls say a SourceState each: the board keeps the last 1,024, but counts every WebSocket drop."""
    board = JobBoard()
    common = {"provider": "datananas", "job_id": ""}
    for i in range(3):
        board(ev.SourceState(id=f"d{i}", source="websocket", state="disconnected", **common))
    for i in range(5000):
        board(ev.SourceState(id=f"p{i}", source="poll", state="reconnecting", attempt=i + 1, **common))
    assert len(board.source_states) == 1024 and board.source_states[-1].attempt == 5000
    assert board.websocket_drops() == 3
