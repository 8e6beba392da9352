"""Console rendering: one readable line per notable event and a summary table."""

from __future__ import annotations

import io

from rich.console import Console

from eventbus import events as ev
from eventbus.subscribers.board import JobBoard
from eventbus.subscribers.console import ConsoleView, describe, summary_table

P = {"provider": "pronto", "source": "webhook", "job_id": "enr_1"}


def test_items_are_quiet_unless_asked() -> None:
    """Item and progress events print nothing by default and a line with items=True."""
    item = ev.ItemFailed(id="i", key="3", code="not_found", message="no match", **P)
    assert describe(item) is None
    assert describe(item, items=True) == "item 3 failed: not_found no match"


def test_lifecycle_lines_say_what_happened() -> None:
    """Terminal and error events are described with their numbers and reasons."""
    assert describe(ev.JobCompleted(id="c", succeeded=9, failed=1, **P)) == "completed: 9 ok, 1 failed"
    line = describe(ev.SubmitRejected(id="r", status=400, reason="too many contacts", retriable=False, **P))
    assert line == "rejected: HTTP 400, too many contacts (not retriable)"
    assert "waiting 2.5s" in describe(ev.Throttled(id="t", retry_after=2.5, **P))


def test_view_prints_lines_and_table_lists_jobs() -> None:
    """A non-terminal console gets plain lines; the summary table has one row per job."""
    out = io.StringIO()
    board = JobBoard()
    view = ConsoleView(board, Console(file=out, width=200, force_terminal=False))
    view(ev.JobAccepted(id="a", total=2, **P))
    view(ev.ItemSucceeded(id="1", key="0", outcome="found", **P))
    view(ev.JobCompleted(id="c", succeeded=1, failed=1, **P))
    view.stop()
    text = out.getvalue()
    assert "accepted (2 contacts)" in text and "completed: 1 ok, 1 failed" in text
    assert "item 0" not in text
    table_out = io.StringIO()
    Console(file=table_out, width=200).print(summary_table(board))
    assert "enr_1" in table_out.getvalue() and "completed" in table_out.getvalue()


def test_summary_table_shows_whole_job_ids_and_folds_rather_than_cuts_them() -> None:
    """The job column holds the whole id (it is what `eventbus jobs --job ID` takes): a 36-character uuid was cut
    to 22 characters. At the width used for files (FILE_WIDTH) it is on one line with every other column whole;
    in a terminal too narrow for it, it is folded over lines, never cut short."""
    from eventbus.cli import FILE_WIDTH

    board = JobBoard()
    job = "e401d6e1-2d84-4b6b-9d8e-d18f82e28d19"
    common = {"provider": "insideview", "source": "poll", "job_id": job}
    board(ev.JobAccepted(id="a", total=10_000, **common))
    board(ev.JobFailed(id="f", reason="the provider expired the job after 24 hours", **common))
    wide = io.StringIO()
    Console(file=wide, width=FILE_WIDTH).print(summary_table(board))
    row = next(line for line in wide.getvalue().splitlines() if job in line)
    assert "insideview" in row and "failed" in row and "10000" in row
    assert "the provider expired the job after 24 hours" in wide.getvalue() and "…" not in wide.getvalue()
    narrow = io.StringIO()
    Console(file=narrow, width=60).print(summary_table(board))
    cells = [line.split("│")[2].strip() for line in narrow.getvalue().splitlines() if line.count("│") > 2]
    assert job in "".join(cells)


def test_provider_table_separates_refused_rows() -> None:
    """The roll-up counts jobs without the rows refused before sending, which get their own column."""
    from eventbus.subscribers.console import provider_table

    board = JobBoard()
    for event in (
        ev.JobAccepted(id="a", total=2, **P),
        ev.ItemSucceeded(id="1", key="0", outcome="found", **P),
        ev.JobCompleted(id="c", succeeded=1, failed=1, **P),
        ev.ItemFailed(id="i", provider="pronto", job_id="B#-1", source="submit", key="5", code="invalid", message="m"),
    ):
        board(event)
    out = io.StringIO()
    Console(file=out, width=200).print(provider_table(board))
    line = next(line for line in out.getvalue().splitlines() if "pronto" in line)
    assert [cell.strip() for cell in line.split("│")[1:-1]] == ["pronto", "1", "1", "2", "1", "1", "1"]


def test_provider_words_are_printed_as_written_not_read_as_markup() -> None:
    """A reason, message or job id with square brackets is printed literally: "[/x]" made rich raise MarkupError
    (the line was lost, the handler counted a failure) and "[bold]" was taken as a style."""
    out = io.StringIO()
    board = JobBoard()
    view = ConsoleView(board, Console(file=out, width=300, force_terminal=True, color_system=None), items=True)
    odd = {"provider": "mautic", "source": "poll", "job_id": "[j/1]"}
    view(ev.JobAccepted(id="a", total=1, **odd))
    view(ev.ItemFailed(id="i", key="0", code="[400]", message="field [email] is [bold]bad[/bold] [/x]", **odd))
    view(ev.JobFailed(id="f", reason="closed [/] early [link=http://x]", **odd))
    view(ev.InvalidSignal(id="s", reason="frame\x1b[2J\r\nfake line", **odd))
    view.stop()
    text = out.getvalue()
    assert "item 0 failed: [400] field [email] is [bold]bad[/bold] [/x]" in text
    assert "FAILED: closed [/] early [link=http://x]" in text and "[j/1]" in text
    assert r"frame\x1b[2J\r\nfake line" in text and "\x1b[2J" not in text  # no terminal escape from outside
    table_out = io.StringIO()
    Console(file=table_out, width=300, color_system=None).print(summary_table(board))
    assert "closed [/] early [link=http://x]" in table_out.getvalue() and "[j/1]" in table_out.getvalue()


def test_source_lines_say_retrying_for_requests_and_reconnecting_for_connections() -> None:
    """A failed poll or submit is "retrying"; a WebSocket "reconnecting"; each with its attempt and detail."""
    common = {"provider": "mautic", "job_id": ""}
    poll = ev.SourceState(
        id="p", source="poll", state="reconnecting", attempt=2, detail="polling job J: HTTP 503", **common
    )
    back = ev.SourceState(id="b", source="poll", state="connected", detail="polling job J: answered again", **common)
    ws = ev.SourceState(id="w", source="websocket", state="reconnecting", attempt=1, **common)
    assert describe(poll) == "poll retrying (attempt 2): polling job J: HTTP 503"
    assert describe(back) == "poll ok: polling job J: answered again"
    assert describe(ws) == "websocket reconnecting (attempt 1)"
