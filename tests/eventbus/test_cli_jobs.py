"""`eventbus jobs`: one row per job of a journal, as tables or JSON lines, filtered; clear errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from eventbus import events as ev
from eventbus.cli import commands, main
from eventbus.cli.jobs import STATES
from eventbus.subscribers.board import TERMINAL_STATES
from eventbus.testing import EventFactory
from tests.eventbus.test_cli_tail import journal_of, sample


def jobs(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["jobs", *args])
    out, err = capsys.readouterr()
    return status, out, err


def records(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def test_jobs_is_listed_after_tail() -> None:
    names = [module.NAME for module in commands()]
    assert names.index("jobs") == names.index("tail") + 1


def test_every_state_of_the_board_can_be_asked_for() -> None:
    assert set(STATES) >= TERMINAL_STATES | {"submitted", "accepted", "running", "stuck"}


def test_json_gives_one_record_per_job_with_its_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = journal_of(tmp_path / "j.db", sample())
    status, out, err = jobs(capsys, path, "--json")
    assert (status, err) == (0, "")
    got = [
        (r["provider"], r["job_id"], r["state"], r["total"], r["succeeded"], r["failed"], r["reason"])
        for r in records(out)
    ]
    assert got == [
        ("acme", "j1", "completed", 4, 4, 0, ""),
        ("beta", "j2", "failed", None, 0, 0, "quota"),
        ("acme", "j3", "completed", None, 1, 1, ""),
    ]
    first = records(out)[0]
    assert (first["started"], first["ended"], first["seconds"]) == ("2024-05-01T12:00:00Z", "2024-05-01T12:00:04Z", 4.0)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--provider", "acme"], ["j1", "j3"]),
        (["--state", "failed"], ["j2"]),
        (["--state", "completed,failed", "--provider", "beta"], ["j2"]),
        (["--job", "j3", "--job", "j2"], ["j2", "j3"]),
        (["--provider", "nobody"], []),
    ],
)
def test_filters_combine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: list[str]
) -> None:
    path = journal_of(tmp_path / "j.db", sample())
    status, out, _ = jobs(capsys, path, "--json", *args)
    assert status == 0
    assert [r["job_id"] for r in records(out)] == expected


def test_tables_show_each_job_and_each_provider(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = journal_of(tmp_path / "j.db", sample())
    status, out, _ = jobs(capsys, path)
    assert status == 0
    assert f"3 jobs in {path}" in out
    lines = out.splitlines()
    j2 = next(line for line in lines if " j2 " in line)
    assert "beta" in j2 and "failed" in j2 and "quota" in j2
    assert "By provider" in out
    acme = next(line for line in lines if "acme" in line and "j" not in line.replace("acme", ""))
    assert acme.split("│")[2:4] == ["    2 ", "         2 "]  # 2 jobs, 2 completed


def test_a_rejected_chunk_shows_under_its_chunk_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make = EventFactory(provider="pronto", source="submit")
    ref = ev.chunk_ref("b1", 0)
    events = [
        make(ev.BatchSubmitted, job_id=ref, batch_id="b1", chunk_index=0, chunk_count=1, size=50),
        make(ev.QuotaExhausted, job_id=ref, status=422, reason="insufficient_credits"),
    ]
    path = journal_of(tmp_path / "j.db", events)
    status, out, _ = jobs(capsys, path, "--json", "--state", "rejected")
    assert status == 0
    assert [(r["job_id"], r["total"], r["reason"]) for r in records(out)] == [(ref, 50, "insufficient_credits (422)")]


def test_no_jobs_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = journal_of(tmp_path / "j.db", [])
    assert jobs(capsys, path)[:2] == (0, "no jobs in this journal\n")
    path = journal_of(tmp_path / "k.db", sample())
    assert jobs(capsys, path, "--state", "stuck")[:2] == (0, "no jobs match\n")
    assert jobs(capsys, path, "--json", "--state", "stuck")[:2] == (0, "")


def test_undecodable_rows_are_counted_and_the_rest_summed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = journal_of(tmp_path / "j.db", sample())
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO events (id, type, provider, job_id, at, body)"
            " VALUES ('x', 'job_progress', 'acme', 'j1', 0, ?)",
            (b"{not json",),
        )
    conn.close()
    status, out, err = jobs(capsys, path, "--json")
    assert status == 0 and len(records(out)) == 3
    assert err.endswith("eventbus jobs: 1 rows of the journal could not be decoded and were passed over\n")


def test_a_missing_file_exits_2_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = jobs(capsys, str(tmp_path / "none.db"))
    assert (status, out) == (2, "")
    missing = tmp_path / "none.db"
    advice = "give the path of a journal a bus wrote (Bus(journal=...) or --journal)"
    assert err == f"eventbus jobs: error: journal '{missing}' does not exist; {advice}\n"
    assert not (tmp_path / "none.db").exists()


def test_an_unknown_state_exits_2_naming_the_known_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["jobs", "x.db", "--state", "done"])
    assert exit_info.value.code == 2
    assert (
        "unknown state 'done'; known states: submitted, accepted, running, stuck, cancelled" in capsys.readouterr().err
    )
