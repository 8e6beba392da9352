"""Results files: every input row's fate, from a real run against the simulator (and from the CLI)."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import anyio
import msgspec
import pytest

from adapters.http import Settings
from adapters.results import ResultRow, Results, _formula_like, read_results, write_rows
from adapters.simulator import Faults, Simulator, SimulatorConfig
from adapters.submit import plan, submit
from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.exceptions import ConfigError
from tests.adapters.conftest import checked_simulator
from tests.adapters.test_cli_submit import interrupted, run_cli, thirty_thousand

pytestmark = pytest.mark.anyio


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


async def test_follow_results_csv_matches_the_item_events(simulator: Simulator, tmp_path: Path) -> None:
    """--follow --results out.csv: one line per input row, in order, with what each item event said."""
    f = tmp_path / "people.csv"
    rows = ["Ann,Lee,Acme", "Bob,,Acme", "=cmd,Roe,Acme"] + [f"P{i},Fox,Acme" for i in range(150)]
    f.write_text("First Name,Last Name,Company\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out.csv"
    env = {"PRONTO_API_KEY": "demo-key", "PRONTO_BASE_URL": simulator.urls["pronto"]}
    proc = await anyio.to_thread.run_sync(
        lambda: run_cli("--provider", "pronto", "--follow", "--json", "--results", str(out), str(f), env=env)
    )
    assert proc.returncode == 1, proc.stderr  # one invalid row
    items = {e.key: e for e in ev.decode_lines(proc.stdout.encode()) if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)}
    written = read_csv(out)
    assert [r["row"] for r in written] == [str(i) for i in range(153)]
    assert written[1]["status"] == "invalid" and "lastname is required" in written[1]["message"]
    assert items["1"].source == "submit"  # the invalid row's own event
    for r in written[:1] + written[2:]:
        item = items[r["row"]]
        if isinstance(item, ev.ItemSucceeded):
            email = item.data["email"]
            shown = "'" + email if _formula_like(email) else email
            assert (r["status"], r["outcome"], r["data.email"]) == ("succeeded", item.outcome, shown)
        else:
            assert (r["status"], r["outcome"], r["message"]) == ("failed", item.code, item.message)
        assert r["job_id"] == item.job_id
    assert {r["status"] for r in written} == {"succeeded", "failed", "invalid"}
    assert written[2]["First Name"] == "'=cmd"  # a spreadsheet would run it as a formula
    assert written[2]["status"] != "succeeded" or written[2]["data.email"].startswith("'=cmd")
    counts = {s: sum(r["status"] == s for r in written) for s in ("succeeded", "failed", "invalid")}
    shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    assert f"results of 153 rows in {out} ({shown})" in proc.stderr


async def test_submit_results_jsonl_without_follow(simulator: Simulator, tmp_path: Path) -> None:
    """Without --follow each valid row is 'submitted' with its job id; the input is kept as read."""
    f = tmp_path / "people.jsonl"
    f.write_text("".join(json.dumps({"email": f"p{i}@x.io", "tags": ["a", i]}) + "\n" for i in range(12_000)))
    out = tmp_path / "out.jsonl"
    env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": simulator.urls["datananas"]}
    proc = await anyio.to_thread.run_sync(
        lambda: run_cli("--provider", "datananas", "--list", "L", "--json", "--results", str(out), str(f), env=env)
    )
    assert proc.returncode == 0, proc.stderr
    jobs = {e.chunk_index: e.job_id for e in ev.decode_lines(proc.stdout.encode()) if isinstance(e, ev.JobAccepted)}
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == 12_000 and {r["status"] for r in written} == {"submitted"}
    assert written[0]["job_id"] == jobs[0] and written[11_999]["job_id"] == jobs[1] and jobs[0] != jobs[1]
    assert written[7]["input"] == {"email": "p7@x.io", "tags": ["a", 7]}


async def test_refused_and_unsent_chunks(tmp_path: Path) -> None:
    """A quota refusal: its chunk's rows are 'rejected' with the reason, the chunks never sent 'not_sent'."""
    # The Connect quota is counted when a job is accepted (the total one when its contacts are created, later).
    config = SimulatorConfig(item_time=0, datananas_connect_quota=15_000)
    contacts = [{"email": f"p{i}@x.io", "source": "connect"} for i in range(40_000)]
    async with checked_simulator(config) as sim, Bus() as bus:
        results = Results("datananas")
        bus.on(results, name="results", buffer=65_536)
        report = await submit(
            "datananas", contacts, bus, settings=Settings(sim.urls["datananas"], "demo-token"), list="L", concurrency=1
        )
        await bus.drain()
    rows = list(results.rows(contacts, report))
    statuses = [r.status for r in rows]
    # One chunk fits in the quota, the next one sent is refused, the two others are never sent (in any order).
    per_chunk = sorted({statuses[i] for i in range(start, start + 10_000)} for start in range(0, 40_000, 10_000))
    assert sorted(map(sorted, per_chunk)) == [["not_sent"], ["not_sent"], ["rejected"], ["submitted"]]
    refused = next(r for r in rows if r.status == "rejected")
    assert refused.message == "contact_connect_quotas" and refused.job_id == ""
    assert {r.job_id for r in rows if r.status == "submitted"} == {j.job_id for j in report.accepted}
    # The same from a plan, as when the run is interrupted before its report: the same rows in the same chunks.
    assert [r.status for r in results.rows(contacts, plan("datananas", contacts, list="L"))] == statuses


async def test_insideview_results_by_id(simulator: Simulator) -> None:
    """InsideView reports by contact id: an id given twice gets its one result on both rows; a bad id is invalid."""
    ids = ["100001", "100002", "x", "100001", "100003"]
    async with Bus() as bus:
        results = Results("insideview")
        bus.on(results, name="results")
        report = await submit(
            "insideview", ids, bus, settings=Settings(simulator.urls["insideview"], "demo", "demo"), endpoint="fetch"
        )
        await bus.drain()
    rows = list(results.rows(ids, report))
    assert [r.contact for r in rows] == [{"id": i} for i in ids]
    assert rows[2].status == "invalid"
    assert {r.status for i, r in enumerate(rows) if i != 2} <= {"succeeded", "failed"}
    assert (rows[3].status, rows[3].outcome, rows[3].data) == (rows[0].status, rows[0].outcome, rows[0].data)
    assert rows[0].job_id == report.accepted[0].job_id


async def test_an_interrupted_run_still_writes_its_results(tmp_path: Path) -> None:
    """Ctrl-C mid-run: accepted rows 'submitted', the chunk in flight 'unknown', the rest 'not_sent'."""
    out = tmp_path / "out.csv"
    config = SimulatorConfig(item_time=0.0001, faults=Faults(slow_response=3.0))
    async with checked_simulator(config) as sim:
        env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": sim.urls["datananas"]}
        args = ["--provider", "datananas", "--list", "L", "--concurrency", "1", "--results", str(out)]
        seen, stderr, status = await interrupted(
            [*args, thirty_thousand(tmp_path)],
            env,
            lambda seen: any(isinstance(e, ev.BatchSubmitted) and e.chunk_index == 1 for e in seen),
            signal.SIGINT,
        )
    assert status == 130, stderr
    (accepted,) = [e for e in seen if isinstance(e, ev.JobAccepted)]
    sent = {e.chunk_index for e in seen if isinstance(e, ev.BatchSubmitted)}
    expected = {accepted.chunk_index: "submitted", **{i: "unknown" for i in sent - {accepted.chunk_index}}}
    written = read_csv(out)
    assert [r["status"] for r in written] == [s for i in range(3) for s in [expected.get(i, "not_sent")] * 10_000]
    assert written[accepted.chunk_index * 10_000]["job_id"] == accepted.job_id
    assert f"results of 30000 rows in {out} (10000 submitted, 10000 unknown, 10000 not sent)" in stderr


@pytest.mark.parametrize(
    "name, status, message",
    [
        ("out.txt", 2, "argument --results: "),
        ("missing-folder/out.csv", 1, "cannot write the results: No such file or directory"),
    ],
)
def test_a_results_file_that_cannot_be_written_stops_the_run_first(
    tmp_path: Path, name: str, status: int, message: str
) -> None:
    f = tmp_path / "people.csv"
    f.write_text("email\na@x.io\n")
    env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": "http://127.0.0.1:9/datananas"}
    proc = run_cli("--provider", "datananas", "--list", "L", "--results", str(tmp_path / name), str(f), env=env)
    assert proc.returncode == status and message in proc.stderr and "Traceback" not in proc.stderr
    assert "rejected" not in proc.stdout  # nothing was tried: the unreachable provider would reject the chunk


def test_results_format_by_suffix() -> None:
    with pytest.raises(ConfigError, match=r"out.xlsx: a results file is .csv or .jsonl/.ndjson"):
        Results.check_writable("out.xlsx")


@pytest.mark.parametrize(
    "text, formula",
    [
        ("=1+1", True),
        ("@SUM(A1)", True),
        ("+cmd|' /C calc'!A0", True),
        ("-Lee", True),
        ("\tx", True),
        ("+33 6 12 34 56 78", False),
        ("+33612345678", False),
        ("-12.5", False),
        ("- item", False),
        ("Ann", False),
        ("a=b", False),
    ],
)
def test_cells_a_spreadsheet_would_run_are_made_plain_text(text: str, formula: bool) -> None:
    assert _formula_like(text) is formula


def test_the_jsonl_form_keeps_values_as_they_are(tmp_path: Path) -> None:
    """JSON Lines are for programs: no formula escaping, data kept as JSON values."""
    results = Results("pronto")
    results(ev.JobAccepted(id="a", provider="pronto", job_id="J", source="submit", total=1, chunk_index=0))
    results(
        ev.ItemSucceeded(
            id="i",
            provider="pronto",
            job_id="J",
            source="webhook",
            key="0",
            outcome="found",
            data={"email": "=x@y.z", "phones": ["+1"]},
        )
    )
    run = plan(
        "pronto",
        [
            {"first_name": "=A", "last_name": "B", "domain": "x.io"},
            {"first_name": "C", "last_name": "D", "domain": "y.io"},
        ],
        webhook_url="http://127.0.0.1:9/h",
    )
    counts = results.write(tmp_path / "out.jsonl", [{"first_name": "=A"}, {"first_name": "C"}], run)
    written = [msgspec.json.decode(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert written[0]["input"] == {"first_name": "=A"} and written[0]["data"] == {"email": "=x@y.z", "phones": ["+1"]}
    assert written[1]["status"] == "submitted" and counts == {"succeeded": 1, "submitted": 1}


def test_a_dry_run_writes_the_invalid_rows_too(tmp_path: Path) -> None:
    """--dry-run --results: each invalid row with why, the valid ones 'not_sent'; no credentials, nothing sent."""
    f = tmp_path / "people.csv"
    f.write_text("email,first_name\na@x.io,A\nbad,B\n,C\n")
    out = tmp_path / "check.csv"
    proc = run_cli("--provider", "datananas", "--list", "L", "--dry-run", "--results", str(out), str(f), env={})
    assert proc.returncode == 1, proc.stderr
    written = read_csv(out)
    assert [(r["row"], r["status"], r["email"]) for r in written] == [
        ("0", "not_sent", "a@x.io"),
        ("1", "invalid", "bad"),
        ("2", "invalid", ""),
    ]
    assert "not an email address: 'bad'" in written[1]["message"]
    assert f"results of 3 rows in {out} (2 invalid, 1 not sent)" in proc.stderr


def test_when_events_may_be_missing_a_chunk_heard_nothing_of_is_unknown() -> None:
    """all_seen=False (a subscriber on a bus, the run interrupted): silence is not proof a chunk was never sent."""
    contacts = [{"email": f"p{i}@x.io"} for i in range(25_000)]
    run = plan("datananas", contacts, list="L")
    results = Results("datananas")
    results(
        ev.BatchSubmitted(
            id="s",
            provider="datananas",
            job_id="b#0",
            source="submit",
            batch_id="b",
            chunk_index=0,
            chunk_count=3,
            size=10_000,
        )
    )
    results(ev.JobAccepted(id="a", provider="datananas", job_id="J0", source="submit", chunk_index=0))
    every = [r.status for r in results.rows(contacts, run)]
    maybe = [r.status for r in results.rows(contacts, run, all_seen=False)]
    assert every == ["submitted"] * 10_000 + ["not_sent"] * 15_000
    assert maybe == ["submitted"] * 10_000 + ["unknown"] * 15_000


def test_a_row_whose_report_was_lost_takes_its_completed_jobs_word() -> None:
    """A Datananas job that ended with every contact created or updated: a row whose own event was lost (a dropped
    WebSocket) is succeeded, saying so; a job that ended with failures leaves such a row submitted, with the counts."""
    contacts = [{"email": f"p{i}@x.io"} for i in range(6)]
    run = plan("datananas", contacts, list="L")
    run.chunks[:] = [  # two chunks of three, as if the provider took three at a time
        type(run.chunks[0])(i, "POST", "/contacts/bulk", (3 * i, 3 * i + 1, 3 * i + 2), 100) for i in range(2)
    ]
    results = Results("datananas")
    common = {"provider": "datananas", "source": "websocket"}
    for i, job in enumerate(["J0", "J1"]):
        results(ev.JobAccepted(id=f"a{i}", job_id=job, source="submit", provider="datananas", chunk_index=i))
    results(ev.ItemSucceeded(id="i0", job_id="J0", key="0", outcome="processed", **common))
    results(ev.ItemSucceeded(id="i3", job_id="J1", key="3", outcome="processed", **common))
    results(ev.JobCompleted(id="c0", job_id="J0", succeeded=3, failed=0, created=3, total=3, **common))
    results(ev.JobCompleted(id="c1", job_id="J1", succeeded=2, failed=1, total=3, **common))
    rows = list(results.rows(contacts, run))
    assert [r.status for r in rows] == ["succeeded"] * 4 + ["submitted"] * 2
    assert rows[0].outcome == "processed" and rows[0].message == ""  # its own report
    assert rows[1].message == "its job reported all 3 contacts done; this one's own report was not seen"
    assert rows[4].message == "its job ended (2 done, 1 failed of 3); no report for this contact was seen"


def test_a_row_of_a_job_that_expired_says_so() -> None:
    """A Mautic job that expired before its details were read: its rows are submitted, the message says why."""
    contacts = [{"email": f"p{i}@x.io"} for i in range(2)]
    results = Results("mautic")
    results(ev.JobAccepted(id="a", provider="mautic", job_id="J", source="submit", chunk_index=0))
    results(ev.JobExpired(id="x", provider="mautic", job_id="J", source="poll", reason="gone (404)"))
    rows = list(results.rows(contacts, plan("mautic", contacts)))
    assert [(r.status, r.job_id) for r in rows] == [("submitted", "J")] * 2
    assert rows[0].message == "its job expired: gone (404); no report for this contact was seen"


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl"])
def test_a_write_that_fails_half_way_keeps_the_file_that_was_there(tmp_path: Path, name: str) -> None:
    """The file is written beside its place and moved there whole: a row whose data cannot be written (here, an
    object msgspec cannot encode, after a good row) leaves the old file as it was and no partial file behind."""
    path = tmp_path / name
    path.write_text("the file that was there\n")
    rows = [
        ResultRow(0, {"email": "a@x.io"}, "succeeded", "j1", "created", data={"id": 1}),
        ResultRow(1, {"email": "b@x.io"}, "succeeded", "j1", "created", data={"id": object()}),
    ]
    with pytest.raises(TypeError):
        write_rows(path, rows)
    assert path.read_text() == "the file that was there\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert write_rows(path, rows[:1]) == {"succeeded": 1} and "a@x.io" in path.read_text()


def test_results_written_through_a_symbolic_link_go_to_the_file_it_names(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_text("")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    write_rows(link, [ResultRow(0, {"email": "a@x.io"}, "submitted", "j1")])
    assert link.is_symlink() and [r.contact for r in read_results(real)] == [{"email": "a@x.io"}]
