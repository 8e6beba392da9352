"""`eventbus follow`: InsideView and Mautic jobs submitted earlier, followed by id, as users run it (subprocesses)."""

from __future__ import annotations

import csv
import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from adapters.simulator import Simulator, SimulatorConfig
from eventbus import events as ev
from eventbus.journal import Journal
from tests.adapters.conftest import checked_simulator
from tests.adapters.test_cli_submit import cli_env, interrupted

pytestmark = pytest.mark.anyio


def env_for(sim: Simulator, provider: str) -> dict[str, str]:
    name = provider.upper()
    return {f"{name}_CLIENT_ID": "demo", f"{name}_CLIENT_SECRET": "demo", f"{name}_BASE_URL": sim.urls[provider]}


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`eventbus ARGS` in a subprocess (the environment's provider credentials replaced by ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "eventbus", *args], capture_output=True, text=True, env=cli_env(env), timeout=timeout
    )


def ids_file(tmp_path: Path, n: int, first: int = 1000) -> str:
    f = tmp_path / "ids.txt"
    f.write_text("".join(f"{first + i}\n" for i in range(n)))
    return str(f)


def mautic_file(tmp_path: Path, n: int) -> str:
    f = tmp_path / "people.csv"
    f.write_text("email,firstname\n" + "".join(f"p{i}@x.io,A{i}\n" for i in range(n)))
    return str(f)


async def submitted_jobs(provider: str, file: str, env: dict[str, str]) -> list[str]:
    """`eventbus submit --json FILE` (no follow): the ids of the jobs it was given, in the order accepted."""
    proc = await anyio.to_thread.run_sync(lambda: cli("submit", "--provider", provider, "--json", file, env=env))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [e.job_id for e in map(ev.decode, proc.stdout.splitlines()) if isinstance(e, ev.JobAccepted)]


@pytest.mark.parametrize("provider", ["insideview", "mautic"])
async def test_the_command_submit_prints_follows_the_jobs_to_their_end(
    simulator: Simulator, tmp_path: Path, provider: str
) -> None:
    """`eventbus submit` (without --follow) prints the `eventbus follow` command for its jobs; run as printed, it
    shows each job completing and the summary table, and exits 0."""
    env = env_for(simulator, provider)
    file = ids_file(tmp_path, 10_500) if provider == "insideview" else mautic_file(tmp_path, 10_500)
    submitted = await anyio.to_thread.run_sync(lambda: cli("submit", "--provider", provider, file, env=env))
    assert submitted.returncode == 0, submitted.stderr
    (hint,) = [line for line in submitted.stdout.splitlines() if "eventbus follow" in line]
    command = shlex.split(hint.split(": ", 1)[1])
    assert command[:4] == ["eventbus", "follow", "--provider", provider] and len(command) == 6  # two jobs
    proc = await anyio.to_thread.run_sync(lambda: cli(*command[1:], env=env))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "all 2 jobs completed" in proc.stdout and f"{provider} jobs" in proc.stdout
    for job_id in command[4:]:
        assert job_id[:20] in proc.stdout  # (the summary table shortens Mautic's 36-character ids)


async def test_json_lines_carry_each_contacts_results(simulator: Simulator, tmp_path: Path) -> None:
    """--json: every event one decodable line on stdout; each contact of the job once, with InsideView's data."""
    env = env_for(simulator, "insideview")
    (job_id,) = await submitted_jobs("insideview", ids_file(tmp_path, 200), env)
    journal = tmp_path / "follow.db"
    command = ["follow", "--provider", "insideview", "--json", "--journal", str(journal), job_id]
    proc = await anyio.to_thread.run_sync(lambda: cli(*command, env=env))
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [ev.decode(line) for line in proc.stdout.splitlines()]
    async with Journal(journal, readonly=True) as j:
        assert [entry.event for entry in (await j.read(limit=10_000)).entries] == events  # --journal: the same
    items = [e for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)]
    assert sorted(int(e.key) for e in items) == list(range(1000, 1200))
    found = [e for e in items if isinstance(e, ev.ItemSucceeded)]
    assert found and all(e.data.get("email") for e in found)
    of_job = [e for e in events if e.job_id == job_id]
    assert isinstance(of_job[0], ev.JobAccepted) and isinstance(of_job[-1], ev.JobCompleted)
    assert of_job[-1].total == 200
    assert "all 1 job completed" in proc.stderr  # the summary goes to stderr: stdout holds the events only


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
async def test_results_file_has_each_contact_once_with_the_providers_data(
    simulator: Simulator, tmp_path: Path, suffix: str
) -> None:
    """--results: one line per contact of each job, by job then key, with InsideView's fields as data; the
    stderr says how many of each."""
    env = env_for(simulator, "insideview")
    jobs = await submitted_jobs("insideview", ids_file(tmp_path, 10_100), env)
    assert len(jobs) == 2
    out = tmp_path / f"out.{suffix}"
    args = ["follow", "--provider", "insideview", "--results", str(out), *reversed(jobs)]
    proc = await anyio.to_thread.run_sync(lambda: cli(*args, env=env))
    assert proc.returncode == 0, proc.stderr[-2000:]
    if suffix == "csv":
        with out.open(newline="") as f:
            lines = list(csv.DictReader(f))
    else:
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        lines = [{**x, **{f"data.{k}": v for k, v in x["data"].items()}} for x in lines]
    assert [x["job_id"] for x in lines] == [jobs[1]] * 100 + [jobs[0]] * 10_000  # in the order given
    assert sorted(int(x["key"]) for x in lines) == list(range(1000, 11_100))
    assert [int(x["key"]) for x in lines[:100]] == sorted(int(x["key"]) for x in lines[:100])
    succeeded = [x for x in lines if x["status"] == "succeeded"]
    failed = [x for x in lines if x["status"] == "failed"]
    assert len(succeeded) + len(failed) == 10_100 and succeeded and failed
    assert all(x["data.email"] for x in succeeded)
    assert f"eventbus follow: 10100 contacts in {out} ({len(succeeded)} succeeded, {len(failed)} failed)" in proc.stderr


def test_results_path_is_checked_before_anything_is_sent(tmp_path: Path) -> None:
    env = {"MAUTIC_CLIENT_ID": "id", "MAUTIC_CLIENT_SECRET": "s", "MAUTIC_BASE_URL": "http://127.0.0.1:9"}
    proc = cli("follow", "--provider", "mautic", "--results", str(tmp_path / "out.xlsx"), "j1", env=env)
    assert proc.returncode == 2 and ".csv or .jsonl" in proc.stderr, proc.stderr
    proc = cli("follow", "--provider", "mautic", "--results", str(tmp_path / "no" / "out.csv"), "j1", env=env)
    assert proc.returncode == 1 and "cannot write the results" in proc.stderr, proc.stderr


async def test_an_unknown_job_exits_1_saying_so(simulator: Simulator) -> None:
    env = env_for(simulator, "mautic")
    proc = await anyio.to_thread.run_sync(lambda: cli("follow", "--provider", "mautic", "no-such-job", env=env))
    assert proc.returncode == 1
    assert (
        "eventbus follow: not everything completed: 1 job unknown to mautic (404 at the first poll: check the id; "
        "Mautic forgets a job 48 hours after it ran): no-such-job"
    ) in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_a_job_still_running_at_the_timeout_exits_1_naming_it(tmp_path: Path) -> None:
    async with checked_simulator(SimulatorConfig(item_time=0.5, tick=0.05)) as sim:
        env = env_for(sim, "insideview")
        (job_id,) = await submitted_jobs("insideview", ids_file(tmp_path, 500), env)
        proc = await anyio.to_thread.run_sync(
            lambda: cli("follow", "--provider", "insideview", "--timeout", "1", job_id, env=env)
        )
    assert proc.returncode == 1
    assert f"not everything completed: 1 job still open after 1s: {job_id}" in proc.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--provider", "datananas", "j1"], "nothing is replayed"),
        (["--provider", "pronto", "j1"], "eventbus serve"),
        (["--provider", "mautic", "../../oauth/v2/token"], "is not a job id"),
        (["--provider", "mautic", "abc123#4"], "is a chunk reference, not a job id"),
        (["--provider", "mautic", "--timeout", "nan", "j1"], "expected a finite number greater than 0"),
        (["--provider", "mautic"], "name the jobs to follow (JOB_ID ...), or give the submit's --results file"),
        (["--provider", "hubspot", "j1"], "invalid choice: 'hubspot'"),
    ],
)
def test_usage_errors_exit_2_before_anything_is_sent(args: list[str], said: str) -> None:
    """Nothing listens at the base URL: a request would be a connection error, not this message."""
    env = {"MAUTIC_CLIENT_ID": "id", "MAUTIC_CLIENT_SECRET": "s", "MAUTIC_BASE_URL": "http://127.0.0.1:9"}
    proc = cli("follow", *args, env=env)
    assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_credentials_are_named() -> None:
    proc = cli("follow", "--provider", "insideview", "job1", env={})
    assert proc.returncode == 1
    assert "insideview needs the environment variable(s) INSIDEVIEW_CLIENT_ID, INSIDEVIEW_CLIENT_SECRET" in proc.stderr


async def test_an_interrupted_submit_follow_is_picked_up_by_the_command_it_prints(tmp_path: Path) -> None:
    """Ctrl-C during `submit --follow` of an InsideView job: the line on stderr names `eventbus follow` with the job;
    that command, run next, follows the job to its end (its results are all read), and exits 0."""
    async with checked_simulator(SimulatorConfig(item_time=0.01, tick=0.02)) as sim:  # 300 ids: 3 s of work
        env = env_for(sim, "insideview")
        args = ["--provider", "insideview", "--follow", ids_file(tmp_path, 300)]
        seen, stderr, status = await interrupted(
            args, env, lambda seen: any(isinstance(e, ev.JobAccepted) for e in seen)
        )
        (job_id,) = {e.job_id for e in seen if isinstance(e, ev.JobAccepted)}
        assert status == 130 and "Traceback" not in stderr, stderr
        assert f"to follow them again: eventbus follow --provider insideview {job_id}" in stderr
        command = ["follow", "--provider", "insideview", "--json", job_id]
        proc = await anyio.to_thread.run_sync(lambda: cli(*command, env=env))
    assert proc.returncode == 0, proc.stderr[-2000:]
    items = [e for e in map(ev.decode, proc.stdout.splitlines()) if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)]
    assert len({e.key for e in items}) == len(items) == 300


async def test_ctrl_c_names_the_jobs_not_seen_to_end(tmp_path: Path) -> None:
    """Ctrl-C during `eventbus follow`: exit 130, the jobs not seen to end named, and how to follow them again."""
    async with checked_simulator(SimulatorConfig(item_time=0.5, tick=0.05)) as sim:
        env = env_for(sim, "mautic")
        (job_id,) = await submitted_jobs("mautic", mautic_file(tmp_path, 200), env)
        out = tmp_path / "out.jsonl"
        command = [sys.executable, "-m", "eventbus", "follow", "--provider", "mautic", "--json"]
        command += ["--results", str(out), job_id]
        async with await anyio.open_process(command, env=cli_env(env)) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            with anyio.fail_after(60):
                first = ev.decode(await BufferedByteReceiveStream(proc.stdout).receive_until(b"\n", 1 << 20))
                proc.send_signal(signal.SIGINT)
                stderr = (b"".join([chunk async for chunk in proc.stderr])).decode()
                await proc.wait()
    assert isinstance(first, ev.JobAccepted) and first.job_id == job_id
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert f"eventbus follow: interrupted. 1 job not seen to end: {job_id} (they go on at mautic" in stderr
    assert f"eventbus follow: 0 contacts in {out} (none reported)" in stderr and out.read_text() == ""


async def test_submitted_rows_get_their_mautic_results_by_position_in_their_job(
    simulator: Simulator, tmp_path: Path
) -> None:
    """`follow --submitted run.csv --results out.csv` with no job id: the jobs the submit's results file waits on
    are followed, and each of its rows gets its own contact's result. Rows 0, 3, 6... reuse an email Mautic already
    has (updated), the others are new (created): any shift between rows and positions in the job would show; the
    invalid row (no job) is kept as it was, and a cell the submit made inert stays so."""
    env = env_for(simulator, "mautic")
    known = tmp_path / "known.csv"
    known.write_text("email\n" + "".join(f"old{i}@x.io\n" for i in range(100)))
    first = await anyio.to_thread.run_sync(
        lambda: cli("submit", "--provider", "mautic", "--follow", str(known), env=env)
    )
    assert first.returncode == 0, first.stderr[-2000:]
    people = tmp_path / "people.csv"
    emails = [f"old{i // 3}@x.io" if i % 3 == 0 else f"new{i}@x.io" for i in range(300)]
    emails[150] = "not-an-email"
    people.write_text("email,firstname\n" + "".join(f"{e},=A{i}\n" for i, e in enumerate(emails)))
    run = tmp_path / "run.csv"
    submitted = await anyio.to_thread.run_sync(
        lambda: cli("submit", "--provider", "mautic", "--results", str(run), str(people), env=env)
    )
    assert submitted.returncode == 1  # one invalid row
    out = tmp_path / "out.csv"
    args = ["follow", "--provider", "mautic", "--submitted", str(run), "--results", str(out)]
    proc = await anyio.to_thread.run_sync(lambda: cli(*args, env=env))
    assert proc.returncode == 0, proc.stderr[-2000:]
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["row"]) for r in rows] == list(range(300))
    assert rows[150]["status"] == "invalid" and rows[150]["job_id"] == ""
    for i, r in enumerate(rows):
        if i != 150:
            assert r["status"] == "succeeded" and r["email"] == emails[i], r
            assert r["outcome"] == ("updated" if i % 3 == 0 else "created"), (i, r)
            assert r["firstname"] == f"'=A{i}" and r["data.id"]
    assert f"eventbus follow: 300 rows in {out} (299 succeeded, 1 invalid)" in proc.stderr


async def test_submitted_rows_get_their_insideview_results_by_id_in_place(simulator: Simulator, tmp_path: Path) -> None:
    """InsideView rows are matched by contact id: an id given twice gets its result on both rows; ids ending in 7
    are not found (the simulator's rule). --results may be the --submitted file itself (JSON Lines here)."""
    env = env_for(simulator, "insideview")
    ids = [str(5000 + i) for i in range(120)] + ["5003", "abc"]
    f = tmp_path / "ids.txt"
    f.write_text("".join(f"{i}\n" for i in ids))
    run = tmp_path / "run.jsonl"
    submitted = await anyio.to_thread.run_sync(
        lambda: cli("submit", "--provider", "insideview", "--results", str(run), str(f), env=env)
    )
    assert submitted.returncode == 1  # "abc" is invalid
    args = ["follow", "--provider", "insideview", "--submitted", str(run), "--results", str(run)]
    proc = await anyio.to_thread.run_sync(lambda: cli(*args, env=env))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in run.read_text().splitlines()]
    assert [r["input"]["id"] for r in rows] == ids
    for r in rows[:121]:
        expected = "failed" if r["input"]["id"].endswith("7") else "succeeded"
        assert r["status"] == expected, r
        if expected == "succeeded":
            assert r["data"]["newContactId"] == r["input"]["id"]
    assert rows[120]["data"] == rows[3]["data"] and rows[121]["status"] == "invalid"
    again = await anyio.to_thread.run_sync(lambda: cli(*args, env=env))
    assert again.returncode == 0 and "nothing to follow" in again.stderr  # no row is 'submitted' any more


def test_submitted_files_that_are_not_a_submits_results_are_refused(tmp_path: Path) -> None:
    env = {"MAUTIC_CLIENT_ID": "id", "MAUTIC_CLIENT_SECRET": "s", "MAUTIC_BASE_URL": "http://127.0.0.1:9"}
    people = tmp_path / "people.csv"
    people.write_text("email\na@x.io\n")
    out = str(tmp_path / "out.csv")
    proc = cli("follow", "--provider", "mautic", "--submitted", str(people), "--results", out, env=env)
    assert proc.returncode == 1 and "not a results file of eventbus submit" in proc.stderr, proc.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("row,status,job_id,outcome,message,email\nx,submitted,j1,,,a@x.io\n")
    proc = cli("follow", "--provider", "mautic", "--submitted", str(bad), "--results", out, env=env)
    assert proc.returncode == 1 and f"{bad}:2: the row number is 'x'" in proc.stderr, proc.stderr
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"row": 0, "status": "submitted", "job_id": "j1"}\n{"row": 1, "sta')
    proc = cli("follow", "--provider", "mautic", "--submitted", str(torn), "--results", out, env=env)
    assert proc.returncode == 1 and f"{torn}:2: not a line of an eventbus submit results file" in proc.stderr
    proc = cli("follow", "--provider", "mautic", "--submitted", str(bad), env=env)
    assert proc.returncode == 2 and "--submitted needs --results FILE" in proc.stderr
    proc = cli("follow", "--provider", "mautic", env=env)
    assert proc.returncode == 2 and "name the jobs to follow" in proc.stderr


async def test_an_interrupted_submit_follow_with_results_is_completed_by_the_command_it_prints(tmp_path: Path) -> None:
    """Ctrl-C during `submit --follow --results run.csv`: the line on stderr gives the `follow --submitted` command
    for run.csv; run as printed, it leaves every row of run.csv with its own result (none 'submitted')."""
    run = tmp_path / "my run.csv"  # (a space: the printed command quotes the path)
    async with checked_simulator(SimulatorConfig(item_time=0.01, tick=0.02)) as sim:
        env = env_for(sim, "insideview")
        args = ["--provider", "insideview", "--follow", "--results", str(run), ids_file(tmp_path, 300)]
        _, stderr, status = await interrupted(args, env, lambda seen: any(isinstance(e, ev.JobAccepted) for e in seen))
        assert status == 130, stderr
        quoted = shlex.quote(str(run))
        hint = f"eventbus follow --provider insideview --submitted {quoted} --results {quoted}"
        assert f"to follow them again and complete {run}: {hint}" in stderr
        with run.open(newline="") as f:
            assert {r["status"] for r in csv.DictReader(f)} == {"submitted"}
        proc = await anyio.to_thread.run_sync(lambda: cli(*shlex.split(hint)[1:], env=env))
    assert proc.returncode == 0, proc.stderr[-2000:]
    with run.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 300 and {r["status"] for r in rows} == {"succeeded", "failed"}
    assert all((r["status"] == "failed") == r["id"].endswith("7") for r in rows)
