"""`eventbus jobs`: one row per job of a journal, as tables or JSON lines, filtered; clear errors."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from eventbus import events as ev
from eventbus.cli import commands, main
from eventbus.cli.jobs import STATES
from eventbus.subscribers.board import TERMINAL_STATES
from eventbus.testing import EventFactory
from tests.eventbus.test_cli_tail import AT, journal_of, sample


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


# --- a store file -----------------------------------------------------------------------------------


def store_of(path: Path, events: list[ev.Event]) -> str:
    """A store file at ``path`` holding ``events``."""
    from eventbus.subscribers.store import Store

    async def write() -> None:
        async with Store(path) as store:
            await store.apply(events)

    anyio.run(write)
    return str(path)


def contacts() -> list[ev.Event]:
    """Job J9 of acme: keys 0..10, every third failed, key 4 reported twice."""
    make = EventFactory(provider="acme", job_id="J9", source="webhook")
    out: list[ev.Event] = [make(ev.JobAccepted, total=11, at=AT)]
    for i in range(11):
        if i % 3 == 2:
            out.append(make(ev.ItemFailed, key=str(i), code="bad_email", message=f"row {i}\x1b[2J", at=AT))
        else:
            out.append(make(ev.ItemSucceeded, key=str(i), outcome="created", data={"i": i}, at=AT))
    out.append(make(ev.ItemSucceeded, key="4", outcome="updated", at=AT + timedelta(seconds=1)))  # later: ignored
    return out


def test_a_store_gives_what_its_journal_gives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same events in a journal and in a store: the same JSON records, the same filters."""
    from_journal = journal_of(tmp_path / "j.db", sample())
    from_store = store_of(tmp_path / "s.db", sample())
    for args in ([], ["--provider", "acme"], ["--state", "failed"], ["--job", "j3,j2"]):
        status, out, err = jobs(capsys, from_store, "--json", *args)
        assert (status, err) == (0, "")
        assert out == jobs(capsys, from_journal, "--json", *args)[1]
    assert len(records(jobs(capsys, from_store, "--json")[1])) == 3


def test_a_stores_tables_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tables from a store: the jobs and the providers; an empty store says so."""
    path = store_of(tmp_path / "s.db", sample())
    status, out, _ = jobs(capsys, path)
    assert status == 0 and f"3 jobs in {path}" in out and "By provider" in out
    assert jobs(capsys, store_of(tmp_path / "e.db", []))[:2] == (0, "no jobs in this store\n")


def test_items_lists_one_jobs_contacts_from_a_store_and_from_a_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--items --job J9: one line per contact in key order, the same from either file; escapes shown."""
    from_store = store_of(tmp_path / "s.db", contacts())
    from_journal = journal_of(tmp_path / "j.db", contacts())
    status, out, err = jobs(capsys, from_store, "--items", "--job", "J9")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[:4] == [
        "0   succeeded  created",
        "1   succeeded  created",
        "2   failed     bad_email  row 2\\x1b[2J",
        "3   succeeded  created",
    ]
    assert len(lines) == 11 and lines[10] == "10  succeeded  created"
    assert lines[4] == "4   succeeded  created"  # the earliest report of key 4
    assert jobs(capsys, from_journal, "--items", "--job", "J9") == (0, out, "")


def test_items_as_json_one_object_per_contact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--items --json: each contact's fields, data included; the same from a journal."""
    from_store = store_of(tmp_path / "s.db", contacts())
    status, out, _ = jobs(capsys, from_store, "--items", "--job", "J9", "--json", "--provider", "acme")
    got = records(out)
    assert status == 0 and len(got) == 11
    assert {k: got[2][k] for k in ("provider", "job_id", "key", "status", "code", "message", "data")} == {
        "provider": "acme",
        "job_id": "J9",
        "key": "2",
        "status": "failed",
        "code": "bad_email",
        "message": "row 2\x1b[2J",
        "data": {},
    }
    assert (got[0]["outcome"], got[0]["data"]) == ("created", {"i": 0})
    from_journal = journal_of(tmp_path / "j.db", contacts())
    assert jobs(capsys, from_journal, "--items", "--job", "J9", "--json")[1] == out
    assert jobs(capsys, from_store, "--items", "--job", "nope") == (0, "no contacts of this job\n", "")


@pytest.mark.parametrize(
    "args", [["--items"], ["--items", "--job", "a,b"], ["--items", "--job", "a", "--state", "failed"]]
)
def test_items_needs_exactly_one_job(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    """--items without one --job (or with --state) exits 2 saying what to give."""
    with pytest.raises(SystemExit) as exit_info:
        main(["jobs", "x.db", *args])
    assert exit_info.value.code == 2
    assert (
        "--items lists the contacts of one job: give exactly one --job ID (and no --state)" in capsys.readouterr().err
    )


def test_another_applications_database_is_refused_as_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that is neither a journal nor a store: exit 2, one line."""
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (id INTEGER)")
    conn.close()
    status, out, err = jobs(capsys, str(path))
    assert (status, out) == (2, "")
    why = "is an SQLite file but not an eventbus journal (tables: ['contacts'])"
    assert err == f"eventbus jobs: error: journal '{path}' {why}\n"
