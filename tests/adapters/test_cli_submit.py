"""`eventbus submit` as a user runs it: a real subprocess against the simulator."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from adapters.simulator import Faults, Simulator, SimulatorConfig
from eventbus import events as ev
from eventbus.cli.submit import _listen, _Record, _row_spec, _selected, rows_spec
from eventbus.exceptions import ConfigError
from tests.adapters.conftest import checked_simulator, checked_sync_simulator

pytestmark = pytest.mark.anyio


def cli_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without any provider credentials it may hold, then ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY", "_CLIENT_ID", "_SECRET"))}
    return {**base, **env}


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventbus", "submit", *args],
        capture_output=True,
        text=True,
        env=cli_env(env),
        timeout=120,
    )


async def test_submit_json_lines(simulator: Simulator, tmp_path: Path) -> None:
    """--json writes every event as one decodable JSON line; the jobs land on the simulator."""
    f = tmp_path / "people.jsonl"
    f.write_text("".join(f'{{"email": "c{i}@x.io", "first_name": "C{i}"}}\n' for i in range(250)))
    env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": simulator.urls["datananas"]}
    proc = await anyio.to_thread.run_sync(
        lambda: run_cli("--provider", "datananas", "--list", "L", "--json", str(f), env=env)
    )
    assert proc.returncode == 0, proc.stderr
    events = ev.decode_lines(proc.stdout.encode())
    assert [type(e) for e in events] == [ev.BatchSubmitted, ev.JobAccepted]
    assert events[1].job_id in simulator.state.jobs["datananas"] and events[1].total == 250


async def test_submit_journal_holds_the_events_it_printed(simulator: Simulator, tmp_path: Path) -> None:
    """--journal F: the run's events are in F too, the same as --json printed; a second run appends after them."""
    from eventbus.journal import Journal

    f = tmp_path / "people.jsonl"
    f.write_text("".join(f'{{"email": "c{i}@x.io"}}\n' for i in range(30)))
    journal = tmp_path / "runs.db"
    env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": simulator.urls["datananas"]}
    printed: list[ev.Event] = []
    for _ in range(2):
        proc = await anyio.to_thread.run_sync(
            lambda: run_cli(
                "--provider", "datananas", "--list", "L", "--json", "--journal", str(journal), str(f), env=env
            )
        )
        assert proc.returncode == 0, proc.stderr
        printed += ev.decode_lines(proc.stdout.encode())
    async with Journal(journal, readonly=True) as j:
        page = await j.read()
    assert [e.event for e in page.entries] == printed
    assert [e.seq for e in page.entries] == [1, 2, 3, 4]


async def test_submit_journal_that_is_not_one_stops_before_anything_is_sent(
    simulator: Simulator, tmp_path: Path
) -> None:
    f = tmp_path / "people.jsonl"
    f.write_text('{"email": "a@x.io"}\n')
    notes = tmp_path / "notes.txt"
    notes.write_text("not a journal\n" * 200)
    env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": simulator.urls["datananas"]}
    proc = await anyio.to_thread.run_sync(
        lambda: run_cli("--provider", "datananas", "--list", "L", "--journal", str(notes), str(f), env=env)
    )
    assert proc.returncode == 1
    assert "notes.txt' cannot be opened: file is not a database" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert simulator.state.jobs["datananas"] == {}


async def test_submit_summary_and_invalid_rows(simulator: Simulator, tmp_path: Path) -> None:
    """Without --json a readable summary is printed; invalid rows are listed and the exit status is 1."""
    f = tmp_path / "people.csv"
    f.write_text("first name,last name,company\nAnn,Lee,Acme\nBob,,Acme\nCid,Roe,Acme\n")
    env = {"PRONTO_API_KEY": "demo-key", "PRONTO_BASE_URL": simulator.urls["pronto"]}
    proc = await anyio.to_thread.run_sync(
        lambda: run_cli("--provider", "pronto", "--webhook-url", "http://127.0.0.1:9/h", str(f), env=env)
    )
    assert proc.returncode == 1
    assert "3 contacts, 1 invalid, 1 chunk, 1 accepted, 0 rejected" in proc.stdout
    assert "row 1: field 'lastname': lastname is required" in proc.stderr


async def test_two_columns_for_one_field_hold_back_rows_where_they_differ(simulator: Simulator, tmp_path: Path) -> None:
    """A CSV with `First Name` and `first_name`: rows where both are filled in and differ are reported, not guessed."""
    f = tmp_path / "people.csv"
    f.write_text("email,First Name,first_name\na@x.io,Ann,Anne\nb@x.io,Bob,\nc@x.io,Cy,Cy\n")
    env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": simulator.urls["datananas"]}
    proc = await anyio.to_thread.run_sync(lambda: run_cli("--provider", "datananas", "--list", "L", str(f), env=env))
    assert proc.returncode == 1
    assert "3 contacts, 1 invalid, 1 chunk, 1 accepted, 0 rejected" in proc.stdout
    assert "row 0: field 'firstname': 'First Name' and 'first_name' both give it" in proc.stderr
    (job,) = simulator.state.jobs["datananas"].values()
    assert job["total"] == 2  # the two rows that say one first name


async def test_a_cp1252_file_needs_encoding_named(simulator: Simulator, tmp_path: Path) -> None:
    """A CSV saved by Excel on Windows: without --encoding, exit 1 naming the line; with it, every row goes."""
    f = tmp_path / "people.csv"
    f.write_bytes("email,first_name\nann@x.io,Ann\nj\u00e9r\u00f4me@x.io,J\u00e9r\u00f4me\n".encode("cp1252"))
    env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": simulator.urls["datananas"]}
    proc = await anyio.to_thread.run_sync(lambda: run_cli("--provider", "datananas", "--list", "L", str(f), env=env))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{f}:3: not UTF-8 text (byte 0xe9: invalid continuation byte); name its encoding: --encoding" in proc.stderr
    assert not simulator.state.jobs.get("datananas")  # nothing sent
    proc = await anyio.to_thread.run_sync(
        lambda: run_cli("--provider", "datananas", "--list", "L", "--encoding", "cp1252", "--json", str(f), env=env)
    )
    assert proc.returncode == 0, proc.stderr
    accepted = [e for e in ev.decode_lines(proc.stdout.encode()) if isinstance(e, ev.JobAccepted)]
    assert [e.total for e in accepted] == [2]


def test_an_unknown_encoding_exits_2() -> None:
    proc = run_cli("--provider", "datananas", "--encoding", "klingon", "x.csv", env={})
    assert proc.returncode == 2
    assert "argument --encoding: unknown encoding: 'klingon' (for example utf-8, cp1252" in proc.stderr


async def test_submit_summary_counts_repeated_ids(simulator: Simulator, tmp_path: Path) -> None:
    """InsideView ids given twice are sent once each; the summary says how many rows that covered."""
    f = tmp_path / "ids.txt"
    f.write_text("101\n102\n101\n103\n102\nnot-an-id\n")
    env = {
        "INSIDEVIEW_CLIENT_ID": "demo",
        "INSIDEVIEW_CLIENT_SECRET": "demo",
        "INSIDEVIEW_BASE_URL": simulator.urls["insideview"],
    }
    proc = await anyio.to_thread.run_sync(lambda: run_cli("--provider", "insideview", str(f), env=env))
    assert "6 contacts, 1 invalid, 2 repeated (each sent once), 1 chunk, 1 accepted, 0 rejected" in proc.stdout
    assert "contacts (chunk 0)" in proc.stdout and ": 3 contacts (chunk 0)" in proc.stdout


async def test_the_summary_lists_twenty_jobs_in_chunk_order_and_counts_the_rest(
    simulator: Simulator, tmp_path: Path
) -> None:
    """1,250 ids to Bulk Contact Fetch are 25 chunks answered at once: chunks 0-19 listed in order, 5 counted."""
    f = tmp_path / "ids.txt"
    f.write_text("".join(f"{1000 + i}\n" for i in range(1250)))
    env = {
        "INSIDEVIEW_CLIENT_ID": "demo",
        "INSIDEVIEW_CLIENT_SECRET": "demo",
        "INSIDEVIEW_BASE_URL": simulator.urls["insideview"],
    }
    args = ["--provider", "insideview", "--endpoint", "fetch", str(f)]
    proc = await anyio.to_thread.run_sync(lambda: run_cli(*args, env=env))
    listed = [line for line in proc.stdout.splitlines() if line.startswith("  job ")]
    assert [line.rsplit("(chunk ", 1)[1] for line in listed] == [f"{i})" for i in range(20)]
    assert proc.stdout.splitlines()[-1] == "  ... and 5 more jobs (each one in --json or --results)"


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--provider", "pronto", "x.csv"], {}, "needs the environment variable(s) PRONTO_API_KEY"),
        (["--provider", "mautic", "x.csv"], {"MAUTIC_CLIENT_ID": "a", "MAUTIC_CLIENT_SECRET": "b"}, "needs a base URL"),
        (["--provider", "datananas", "nope.csv"], {"DATANANAS_TOKEN": "t"}, "nope.csv: no such file"),
    ],
)
def test_submit_errors_are_clear(args: list[str], env: dict[str, str], message: str) -> None:
    """Missing credentials, base URL or file: exit 1 with a message saying what to do, no traceback."""
    proc = run_cli(*args, env=env)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_submit_bad_arguments_exit_2() -> None:
    """An unknown provider is refused by the argument parser (exit 2)."""
    proc = run_cli("--provider", "hubspot", "x.csv", env={})
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


@pytest.mark.parametrize(
    "value", ["nope", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:\u00b9\u00b2", "h:" + "9" * 5000]
)
def test_webhook_listen_needs_host_and_ascii_port(value: str) -> None:
    """--webhook-listen takes HOST:PORT with a port of ASCII digits in range; anything else is a ConfigError."""
    with pytest.raises(ConfigError, match="--webhook-listen must be HOST:PORT"):
        _listen(value)
    assert _listen("[::1]:8000") == ("::1", 8000)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--follow", "--timeout", "nan"], "argument --timeout: expected a finite number greater than 0, not 'nan'"),
        (["--follow", "--timeout", "-1"], "argument --timeout: expected a finite number greater than 0"),
        (["--follow", "--stuck-after", "inf"], "argument --stuck-after: expected a finite number greater than 0"),
        (["--rate-limit", "0"], "argument --rate-limit: expected a finite number greater than 0, not '0'"),
        (["--concurrency", "0"], "argument --concurrency: expected a whole number of at least 1"),
        (["--request-timeout", "0"], "argument --request-timeout: expected a finite number greater than 0"),
        (["--max-attempts", "0"], "argument --max-attempts: expected a whole number of at least 1"),
    ],
    ids=[
        "timeout-nan",
        "timeout-negative",
        "stuck-after-inf",
        "rate-limit-0",
        "concurrency-0",
        "request-timeout-0",
        "max-attempts-0",
    ],
)
async def test_bad_numbers_exit_2_before_anything_is_sent(
    simulator: Simulator, tmp_path: Path, args: list[str], message: str
) -> None:
    """A NaN, infinite, zero or negative duration, rate or count exits 2 naming the option; no job is sent."""
    f = tmp_path / "people.jsonl"
    f.write_text('{"email": "a@x.io"}\n')
    env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": simulator.urls["datananas"]}
    proc = await anyio.to_thread.run_sync(
        lambda: run_cli("--provider", "datananas", "--list", "L", *args, str(f), env=env)
    )
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not simulator.state.jobs.get("datananas")


async def test_unusable_webhook_listen_host_is_refused_before_submitting(simulator: Simulator, tmp_path: Path) -> None:
    """--follow with a --webhook-listen host that cannot be bound exits 1 before any job; a password in it is hidden."""
    f = tmp_path / "people.csv"
    f.write_text("first name,last name,company\nAnn,Lee,Acme\nCid,Roe,Acme\n")
    env = {"PRONTO_API_KEY": "demo-key", "PRONTO_BASE_URL": simulator.urls["pronto"]}
    listen = "admin:TOPSECRET@127.0.0.1:0"
    proc = await anyio.to_thread.run_sync(
        lambda: run_cli("--provider", "pronto", "--follow", "--webhook-listen", listen, str(f), env=env)
    )
    assert proc.returncode == 1 and "error: cannot listen for webhooks on ***@127.0.0.1:0: " in proc.stderr
    assert "TOPSECRET" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert not simulator.state.jobs.get("pronto")


def test_malformed_webhook_listen_does_not_echo_a_password() -> None:
    """The HOST:PORT refusal shows ***@ in place of user:password@."""
    with pytest.raises(ConfigError, match=r"not '\*\*\*@host:port'") as info:
        _listen("user:TOPSECRET@host:port")
    assert "TOPSECRET" not in str(info.value)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--provider", "datananas"], "Datananas needs the list to add contacts to"),
        (["--provider", "datananas", "--follow"], "Datananas needs the list to add contacts to"),
    ],
    ids=["submit", "follow"],
)
def test_config_error_inside_the_bus_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    """A ConfigError raised inside the bus's task group (it came out as an ExceptionGroup traceback) is exit 1."""
    f = tmp_path / "people.csv"
    f.write_text("email\na@x.io\n")
    proc = run_cli(*args, str(f), env={"DATANANAS_TOKEN": "t", "DATANANAS_BASE_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 1 and f"eventbus submit: error: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr


async def interrupted(
    args: list[str], env: dict[str, str], until: Callable[[list[ev.Event]], bool], sig: int = signal.SIGINT
) -> tuple[list[ev.Event], str, int | None]:
    """Run `eventbus submit ARGS --json`, read its events until ``until(events)``, then Ctrl-C it (or ``sig``).

    Returns the events read, its stderr and its exit status.
    """
    seen: list[ev.Event] = []
    command = [sys.executable, "-m", "eventbus", "submit", "--json", *args]
    async with await anyio.open_process(command, env=cli_env(env)) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        lines = BufferedByteReceiveStream(proc.stdout)
        with anyio.fail_after(60):
            while not until(seen):
                seen.append(ev.decode(await lines.receive_until(b"\n", 1 << 20)))
            proc.send_signal(sig)
            stderr = (b"".join([chunk async for chunk in proc.stderr])).decode()
            await proc.wait()
    return seen, stderr, proc.returncode


def thirty_thousand(tmp_path: Path) -> str:
    f = tmp_path / "people.csv"
    f.write_text("email\n" + "".join(f"p{i}@x.io\n" for i in range(30_000)))  # 3 Datananas chunks of 10,000
    return str(f)


@pytest.mark.parametrize(
    "sig, status, why",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped: terminated (SIGTERM)")],
    ids=["ctrl-c", "sigterm"],
)
async def test_interrupted_submit_says_which_chunks_were_taken(tmp_path: Path, sig: int, status: int, why: str) -> None:
    """Ctrl-C (or SIGTERM, as a container is stopped) mid-run: one line naming the accepted jobs, the chunk in
    flight and what was not sent; exit 130 (143)."""
    config = SimulatorConfig(item_time=0.0001, faults=Faults(slow_response=3.0))
    async with checked_simulator(config) as sim:
        env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": sim.urls["datananas"]}
        args = ["--provider", "datananas", "--list", "L", "--concurrency", "1", thirty_thousand(tmp_path)]
        # Chunk 0 answered, chunk 1 sent and waiting for its (slow) answer: then Ctrl-C.
        seen, stderr, exit_status = await interrupted(
            args, env, lambda seen: any(isinstance(e, ev.BatchSubmitted) and e.chunk_index == 1 for e in seen), sig
        )
    (accepted,) = [e for e in seen if isinstance(e, ev.JobAccepted)]
    assert exit_status == status
    assert f"eventbus submit: {why}. 1 of 3 chunks accepted: {accepted.job_id} (chunk 0)" in stderr
    assert "1 sent without an answer yet (chunk 1): may have been taken" in stderr
    assert "1 not sent." in stderr and "Traceback" not in stderr


async def test_interrupted_follow_names_the_jobs_left_running(tmp_path: Path) -> None:
    """Ctrl-C during --follow: exit 130, and the jobs still running at the provider named in full."""
    async with checked_simulator(SimulatorConfig(item_time=0.01)) as sim:  # 100 s a job: still running at Ctrl-C
        env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": sim.urls["datananas"]}
        args = ["--provider", "datananas", "--list", "L", "--follow", thirty_thousand(tmp_path)]
        seen, stderr, status = await interrupted(
            args, env, lambda seen: sum(isinstance(e, ev.JobAccepted) for e in seen) == 3
        )
    jobs = sorted(e.job_id for e in seen if isinstance(e, ev.JobAccepted))
    assert status == 130 and "Traceback" not in stderr
    line = stderr.split("eventbus submit: interrupted. ")[1]
    assert line.startswith("3 jobs still open at the provider: ")
    assert sorted(line.split(": ", 1)[1].rstrip(".\n").split(", ")) == jobs


async def test_interrupted_follow_says_which_rows_to_send_and_writes_their_results(tmp_path: Path) -> None:
    """Ctrl-C during --follow while chunks are still being sent: `--rows SPEC` names the chunks never sent, and the
    results file says `not_sent` for exactly those rows (the chunk in flight is `unknown`, for the user to check)."""
    out = tmp_path / "out.csv"
    config = SimulatorConfig(item_time=0.0001, faults=Faults(slow_response=3.0))
    async with checked_simulator(config) as sim:
        env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": sim.urls["datananas"]}
        args = ["--provider", "datananas", "--list", "L", "--follow", "--concurrency", "1", "--results", str(out)]
        seen, stderr, status = await interrupted(
            [*args, thirty_thousand(tmp_path)],
            env,
            lambda seen: any(isinstance(e, ev.BatchSubmitted) and e.chunk_index == 1 for e in seen),
        )
    assert status == 130 and "Traceback" not in stderr, stderr
    sent = {e.chunk_index for e in seen if isinstance(e, ev.BatchSubmitted)}
    (unsent,) = set(range(3)) - sent
    rows = range(unsent * 10_000, unsent * 10_000 + 10_000)
    assert f"To send the rows not sent: --rows {rows.start}-{rows.stop - 1}" in stderr
    with out.open(newline="") as f:
        written = {int(r["row"]): r["status"] for r in csv.DictReader(f)}
    assert [r for r, s in written.items() if s == "not_sent"] == list(rows)
    assert "unknown" in {written[i * 10_000] for i in sent}  # chunk 1, sent and not yet answered


async def test_interrupted_pronto_follow_plans_its_chunks_without_a_webhook_url(tmp_path: Path) -> None:
    """Pronto needs a webhook URL to build a request; --follow makes its own, so finding the chunks again after
    Ctrl-C must not need one from the user (it failed, and the results file could not be written)."""
    out = tmp_path / "out.csv"
    f = tmp_path / "people.csv"
    f.write_text("first_name,last_name,domain\n" + "".join(f"A{i},B,acme.io\n" for i in range(300)))  # 3 chunks
    config = SimulatorConfig(item_time=0.01, faults=Faults(slow_response=3.0))
    async with checked_simulator(config) as sim:
        env = {"PRONTO_API_KEY": "demo-key", "PRONTO_BASE_URL": sim.urls["pronto"]}
        args = ["--provider", "pronto", "--follow", "--concurrency", "1", "--results", str(out), str(f)]
        seen, stderr, status = await interrupted(
            args, env, lambda seen: any(isinstance(e, ev.BatchSubmitted) and e.chunk_index == 1 for e in seen)
        )
    assert status == 130 and "Traceback" not in stderr, stderr
    (unsent,) = set(range(3)) - {e.chunk_index for e in seen if isinstance(e, ev.BatchSubmitted)}
    assert f"To send the rows not sent: --rows {unsent * 100}-{unsent * 100 + 99}" in stderr
    with out.open(newline="") as results:
        not_sent = [int(r["row"]) for r in csv.DictReader(results) if r["status"] == "not_sent"]
    assert not_sent == list(range(unsent * 100, unsent * 100 + 100))


async def test_a_quota_stop_during_follow_says_which_rows_to_send_later(tmp_path: Path) -> None:
    """--follow stopped by a quota refusal ends with the same `to send them later: --rows SPEC` as a plain submit."""
    config = SimulatorConfig(item_time=0, datananas_connect_quota=15_000)
    f = tmp_path / "people.csv"
    f.write_text("email,source\n" + "".join(f"p{i}@x.io,connect\n" for i in range(30_000)))
    async with checked_simulator(config) as sim:
        env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": sim.urls["datananas"]}
        args = ["--provider", "datananas", "--list", "L", "--follow", "--concurrency", "1", "--timeout", "60", str(f)]
        proc = await anyio.to_thread.run_sync(lambda: run_cli(*args, env=env))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "stopped (1 chunk not sent): contact_connect_quotas" in proc.stderr
    assert "to send them later: --rows 10000-29999" in proc.stderr  # the refused chunk too: nothing of it was created


async def test_request_timeout_bounds_each_answer_and_the_chunk_is_not_sent_again(tmp_path: Path) -> None:
    """--request-timeout 0.5 against answers that take 2 s: the chunk is reported (may have been taken), sent once."""
    f = tmp_path / "people.csv"
    f.write_text("email\na@x.io\nb@x.io\n")
    async with checked_simulator(SimulatorConfig(faults=Faults(slow_response=2.0))) as sim:
        env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": sim.urls["datananas"]}
        args = ["--provider", "datananas", "--list", "L", "--request-timeout", "0.5", "--max-attempts", "3", str(f)]
        proc = await anyio.to_thread.run_sync(lambda: run_cli(*args, env=env))
        requests = sim.state.requests_by_path.get("/datananas/contacts/bulk", 0)
    assert proc.returncode == 1 and "0 accepted, 1 rejected" in proc.stdout
    assert "rejected chunk 0 (2 contacts; do not send again as is): datananas did not answer within 0.5s" in proc.stderr
    assert "not resending it" in proc.stderr
    assert requests == 1  # ambiguous: never sent a second time, whatever --max-attempts allows


@pytest.mark.parametrize("follow", [False, True], ids=["submit", "follow"])
def test_a_closed_stdout_ends_the_run_like_ctrl_c(tmp_path: Path, follow: bool) -> None:
    """`... --json | head -1`: exit 141 with one line on stderr saying what was taken, not an error per event.

    Synchronous: anyio's asyncio process streams do not close the pipe itself, which this test needs.
    """
    with checked_sync_simulator(SimulatorConfig(item_time=0.01, faults=Faults(slow_response=1.0))) as sim:
        env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": sim.urls["datananas"]}
        args = ["--provider", "datananas", "--list", "L", "--json", *(["--follow"] if follow else [])]
        command = [sys.executable, "-m", "eventbus", "submit", *args, thirty_thousand(tmp_path)]
        with subprocess.Popen(command, env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith(b"{")  # one event read...
            proc.stdout.close()  # ...then the reader goes away, as `head -1` does
            _, err = proc.communicate(timeout=60)
    stderr = err.decode()
    assert proc.returncode == 141, stderr[-2000:]
    assert stderr.startswith("eventbus submit: stopped: stdout was closed. ") and stderr.count("\n") == 1
    assert "subscriber_failed" not in stderr and "Traceback" not in stderr


def test_the_interrupt_report_counts_a_chunk_refused_for_quota_as_refused() -> None:
    """A chunk answered with a quota refusal (QuotaExhausted, no SubmitRejected) was not taken: not 'may have been'."""
    record = _Record()
    common = {"provider": "pronto", "source": "submit"}
    for i in range(3):
        record.note(
            ev.BatchSubmitted(
                id=f"s{i}", job_id=f"b#{i}", batch_id="b", chunk_index=i, chunk_count=4, size=100, **common
            )
        )
    record.note(ev.JobAccepted(id="a0", job_id="J0", batch_id="b", chunk_index=0, **common))
    record.note(ev.QuotaExhausted(id="q1", job_id="b#1", status=422, reason="insufficient_credits", **common))
    assert record.summary() == (
        "1 of 4 chunks accepted: J0 (chunk 0); 1 rejected; "
        "1 sent without an answer yet (chunk 2): may have been taken, check the provider before sending again; "
        "1 not sent."
    )


async def test_dry_run_says_what_would_be_sent_and_sends_nothing(simulator: Simulator, tmp_path: Path) -> None:
    """--dry-run: no credentials needed, the chunks and invalid rows printed, exit 1 for invalid rows, nothing sent."""
    f = tmp_path / "people.csv"
    f.write_text("E-mail,first_name,Prénom\n" + "".join(f"p{i}@x.io,P{i},\n" for i in range(12_000)) + "bad,Bad,\n")
    env = {"DATANANAS_BASE_URL": simulator.urls["datananas"]}  # and no DATANANAS_TOKEN
    proc = await anyio.to_thread.run_sync(
        lambda: run_cli("--provider", "datananas", "--list", "L", "--dry-run", str(f), env=env)
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(
        "datananas (dry run, nothing sent): 12001 contacts, 1 invalid, 2 chunks, 12000 contacts in "
    )
    # Where each column goes, so that a column meant as a known field but sent as a custom one is seen first.
    assert lines[1] == "  fields: E-mail -> email, first_name -> firstname, Prénom -> vars.Prénom (custom)"
    assert lines[2].startswith("  chunk 0: POST /contacts/bulk, 10000 contacts (rows 0-9999), ")
    assert lines[3].startswith("  chunk 1: POST /contacts/bulk, 2000 contacts (rows 10000-11999), ")
    assert "invalid: row 12000: field 'email': not an email address: 'bad'" in proc.stderr
    assert simulator.state.requests_by_path == {}


async def test_dry_run_json_prints_the_invalid_rows_as_events(tmp_path: Path) -> None:
    """--dry-run --json: stdout holds only events (the ItemFailed submit would publish); the summary goes to stderr."""
    f = tmp_path / "people.csv"
    f.write_text("first_name,last_name,domain\nAnn,Lee,acme.io\nBob,,\nCy,Roe,x.io\n")
    args = ["--provider", "pronto", "--webhook-url", "https://h.example/hooks/pronto", "--dry-run", "--json", str(f)]
    proc = await anyio.to_thread.run_sync(lambda: run_cli(*args, env={}))
    assert proc.returncode == 1
    (failed,) = ev.decode_lines(proc.stdout.encode())  # one event per contact, however many problems it has
    assert isinstance(failed, ev.ItemFailed) and failed.key == "1"
    assert failed.details == {"field": "lastname", "fields": ["lastname", "domain"]}
    assert failed.message == (
        "row 1: field 'lastname': lastname is required; "
        "row 1: field 'domain': domain or company_name is required for email enrichment"
    )
    assert proc.stderr.startswith("pronto (dry run, nothing sent): 3 contacts, 1 invalid (2 problems), 1 chunk, ")
    assert "chunk 0: POST /contacts/bulk_enrich, 2 contacts (rows 0,2)" in proc.stderr


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--provider", "pronto"], 1, "Pronto reports results only by webhook: give webhook_url (--webhook-url)"),
        (["--provider", "datananas"], 1, "Datananas needs the list to add contacts to"),
        (["--provider", "datananas", "--list", "L", "--follow"], 2, "--dry-run sends nothing, so there is nothing to"),
        (["--provider", "datananas", "--list", "L", "--strict"], 1, "row 1: field 'email'"),
    ],
    ids=["pronto-no-webhook", "datananas-no-list", "with-follow", "strict"],
)
def test_dry_run_refuses_what_submit_would(tmp_path: Path, args: list[str], status: int, message: str) -> None:
    f = tmp_path / "people.csv"
    f.write_text("email,first_name,last_name,domain\na@x.io,A,B,x.io\nnope,C,D,y.io\n")
    proc = run_cli(*args, "--dry-run", str(f), env={})
    assert proc.returncode == status and message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "name, text, args",
    [
        ("ids.txt", "", ["--provider", "insideview"]),
        ("ids.txt", "\n\n", ["--provider", "insideview"]),
        ("people.csv", "email\n", ["--provider", "datananas", "--list", "L"]),
        ("people.jsonl", "", ["--provider", "mautic"]),
    ],
)
def test_a_file_without_contacts_is_an_error_not_a_run_of_nothing(
    tmp_path: Path, name: str, text: str, args: list[str]
) -> None:
    """An empty file (or a header alone) says so and exits 1 (it printed "0 contacts, 0 chunks" and exited 0)."""
    f = tmp_path / name
    f.write_text(text)
    proc = run_cli(*args, "--dry-run", str(f), env={})
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"{f} holds no contacts (no rows after the header, or no lines): nothing to send" in proc.stderr


def test_dry_run_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`--dry-run --json | head -1` on a file of bad rows: exit 141, no traceback (a plain write hit the pipe)."""
    f = tmp_path / "people.csv"
    f.write_text("email\n" + "bad\n" * 50_000)
    args = ["--provider", "datananas", "--list", "L", "--dry-run", "--json", str(f)]
    command = [sys.executable, "-m", "eventbus", "submit", *args]
    with subprocess.Popen(command, env=cli_env({}), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b'{"type":"item_failed"')
        proc.stdout.close()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141 and b"Traceback" not in err and b"BrokenPipe" not in err


@pytest.mark.parametrize(
    "spec, message",
    [
        ("5-x", "argument --rows: expected rows such as 5, 20000-29999 or 100-"),
        ("-5", "argument --rows: expected rows such as"),
        ("9-5", "argument --rows: a range must go up: '9-5'"),
        ("1,,2", "argument --rows: expected rows such as"),
        ("\u00b9", "argument --rows: expected rows such as"),
        ("9" * 5000, "argument --rows: expected rows such as"),
    ],
)
def test_rows_that_cannot_be_read_exit_2(spec: str, message: str) -> None:
    proc = run_cli("--provider", "datananas", "--list", "L", "--dry-run", "--rows", spec, "x.csv", env={})
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_rows_spec_round_trip() -> None:
    assert rows_spec([20000, 5, 6, 7, 9, *range(20001, 30000)]) == "5-7,9,20000-29999"
    assert _selected(_row_spec(" 5-7 , 9,20000- "), 30_000) == [5, 6, 7, 9, *range(20000, 30000)]
    with pytest.raises(ConfigError, match=r"--rows: the file has 30000 contacts \(rows 0-29999\); row 30000"):
        _selected(_row_spec("29999-30000"), 30_000)


async def test_an_interrupted_run_says_which_rows_to_send_and_they_go_once(tmp_path: Path) -> None:
    """Ctrl-C mid-run prints `--rows SPEC` for the chunks never sent; running again with it sends exactly those.

    The chunk in flight at Ctrl-C (it may have been taken) is not in SPEC: that one is for the user to check.
    """
    config = SimulatorConfig(item_time=0.0001, faults=Faults(slow_response=3.0))
    async with checked_simulator(config) as sim:
        env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": sim.urls["datananas"]}
        f = thirty_thousand(tmp_path)
        args = ["--provider", "datananas", "--list", "L", "--concurrency", "1", f]
        seen, stderr, status = await interrupted(
            args, env, lambda seen: any(isinstance(e, ev.BatchSubmitted) and e.chunk_index == 1 for e in seen)
        )
        assert status == 130
        sent = {e.chunk_index for e in seen if isinstance(e, ev.BatchSubmitted)}
        spec = stderr.split("To send the rows not sent: --rows ")[1].split()[0]
        (unsent,) = set(range(3)) - sent
        assert spec == f"{unsent * 10_000}-{unsent * 10_000 + 9_999}"
        proc = await anyio.to_thread.run_sync(lambda: run_cli(*args[:-1], "--json", "--rows", spec, f, env=env))
        assert proc.returncode == 0, proc.stderr
        again = ev.decode_lines(proc.stdout.encode())
        (job,) = [e for e in again if isinstance(e, ev.JobAccepted)]
        landed = sim.state.jobs["datananas"][job.job_id]["total"]
    assert [e.size for e in again if isinstance(e, ev.BatchSubmitted)] == [10_000]  # one chunk: the rows not sent
    assert job.total == landed == 10_000


async def test_a_quota_stop_says_which_rows_to_send_later(tmp_path: Path) -> None:
    """The rows to send later are those of the chunk the quota refused (nothing of it was created) and of the chunk
    never sent; each is in the results file with its status. (The refused chunk's rows were left out.)"""
    config = SimulatorConfig(item_time=0, datananas_connect_quota=15_000)  # counted as each job is accepted
    f = tmp_path / "people.csv"
    f.write_text("email,source\n" + "".join(f"p{i}@x.io,connect\n" for i in range(30_000)))
    async with checked_simulator(config) as sim:
        env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": sim.urls["datananas"]}
        out = tmp_path / "out.csv"
        args = ["--provider", "datananas", "--list", "L", "--concurrency", "1", "--results", str(out)]
        proc = await anyio.to_thread.run_sync(lambda: run_cli(*args, str(f), env=env))
    assert proc.returncode == 1
    spec = proc.stderr.split("to send them later: --rows ")[1].split()[0]
    with out.open(newline="") as f:
        statuses = {int(r["row"]): r["status"] for r in csv.DictReader(f)}
    refused = [row for row, status in statuses.items() if status == "rejected"]
    not_sent = [row for row, status in statuses.items() if status == "not_sent"]
    assert len(refused) == len(not_sent) == 10_000 and len(sim.state.jobs["datananas"]) == 1
    assert spec == rows_spec(sorted(refused + not_sent)) == "10000-29999"
    assert "rejected chunk 1 (10000 contacts; HTTP 402, may be sent again): quota exhausted" in proc.stderr


async def test_json_keeps_stdout_for_events_and_says_on_stderr_what_went_wrong(tmp_path: Path) -> None:
    """--json: stdout is JSON lines only; the summary, the refused chunk and the rows to send later are on stderr
    (a run that failed exited 1 with nothing on stderr)."""
    config = SimulatorConfig(item_time=0, datananas_total_quota=15_000)
    f = tmp_path / "people.csv"
    f.write_text("email\n" + "".join(f"p{i}@x.io\n" for i in range(30_000)))
    async with checked_simulator(config) as sim:
        env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": sim.urls["datananas"]}
        args = ["--provider", "datananas", "--list", "L", "--concurrency", "1", "--json", str(f)]
        proc = await anyio.to_thread.run_sync(lambda: run_cli(*args, env=env))
    assert proc.returncode == 1
    events = ev.decode_lines(proc.stdout.encode())  # every line an event
    assert sum(isinstance(e, ev.JobAccepted) for e in events) == 1
    assert "datananas: 30000 contacts, 0 invalid, 3 chunks, 1 accepted, 2 rejected" in proc.stderr
    assert "rejected chunk 1 (10000 contacts; HTTP 402, may be sent again)" in proc.stderr
    assert "to send them later: --rows 10000-29999" in proc.stderr


async def test_chunks_refused_for_a_passing_reason_are_to_send_later(tmp_path: Path) -> None:
    """InsideView refuses jobs past its queue ("too many jobs", 400, nothing taken): no stop, the other chunks go
    on, and the refused chunks' rows are to send later (no line was printed for them)."""
    config = SimulatorConfig(item_time=0.01, insideview_max_queued_jobs=1)  # the first job is still queued
    f = tmp_path / "ids.txt"
    f.write_text("".join(f"{1000 + i}\n" for i in range(25_001)))
    async with checked_simulator(config) as sim:
        env = {
            "INSIDEVIEW_CLIENT_ID": "demo",
            "INSIDEVIEW_CLIENT_SECRET": "demo",
            "INSIDEVIEW_BASE_URL": sim.urls["insideview"],
            "INSIDEVIEW_LOGIN_URL": sim.urls["insideview_login"],
        }
        proc = await anyio.to_thread.run_sync(
            lambda: run_cli("--provider", "insideview", "--concurrency", "1", str(f), env=env)
        )
    assert proc.returncode == 1 and "stopped" not in proc.stderr
    assert proc.stderr.count("HTTP 400, may be sent again): too many jobs") == 2
    assert "to send them later: --rows 10000-25000" in proc.stderr


async def test_a_chunk_refused_for_credits_is_to_send_later(tmp_path: Path) -> None:
    """Pronto chunks of 100, 99 and 2; 150 credits take the first and refuse the 99 (422, nothing enqueued): those
    99 rows are to send later with the 2 never sent (only the 2 were named: a chunk refused was left out)."""
    config = SimulatorConfig(item_time=0, pronto_credits=150)
    f = tmp_path / "people.csv"
    f.write_text("first_name,last_name,domain\n" + "".join(f"A{i},B,acme.io\n" for i in range(201)))
    async with checked_simulator(config) as sim:
        env = {"PRONTO_API_KEY": "demo-key", "PRONTO_BASE_URL": sim.urls["pronto"]}
        args = ["--provider", "pronto", "--webhook-url", "http://127.0.0.1:9/h", "--concurrency", "1", str(f)]
        proc = await anyio.to_thread.run_sync(lambda: run_cli(*args, env=env))
    assert proc.returncode == 1, proc.stderr
    assert "stopped (1 chunk not sent): insufficient_credits" in proc.stderr
    assert "to send them later: --rows 100-200" in proc.stderr


async def test_refused_credentials_say_which_variable_and_which_rows_to_send_later(tmp_path: Path) -> None:
    """A static token refused (401): the message names DATANANAS_TOKEN, and every row is to send later."""
    f = tmp_path / "people.csv"
    f.write_text("email\n" + "".join(f"p{i}@x.io\n" for i in range(15_000)))
    async with checked_simulator(SimulatorConfig(item_time=0)) as sim:
        env = {"DATANANAS_TOKEN": "not-the-token", "DATANANAS_BASE_URL": sim.urls["datananas"]}
        args = ["--provider", "datananas", "--list", "L", "--concurrency", "1", str(f)]
        proc = await anyio.to_thread.run_sync(lambda: run_cli(*args, env=env))
    assert proc.returncode == 1 and "not-the-token" not in proc.stderr + proc.stdout
    assert "datananas refused our credentials (HTTP 401): check DATANANAS_TOKEN" in proc.stderr
    assert "to send them later: --rows 0-14999" in proc.stderr


async def test_rows_keep_their_numbers_in_events_and_results(simulator: Simulator, tmp_path: Path) -> None:
    """--rows 3,5-6: only those rows go; the invalid one and the results file say row 5, not 1."""
    f = tmp_path / "people.csv"
    f.write_text("email\n" + "".join(f"p{i}@x.io\n" if i != 5 else "bad\n" for i in range(10)))
    out = tmp_path / "out.csv"
    env = {"DATANANAS_TOKEN": "demo-token", "DATANANAS_BASE_URL": simulator.urls["datananas"]}
    args = ["--provider", "datananas", "--list", "L", "--json", "--rows", "3,5-6", "--results", str(out), str(f)]
    proc = await anyio.to_thread.run_sync(lambda: run_cli(*args, env=env))
    assert proc.returncode == 1
    events = ev.decode_lines(proc.stdout.encode())
    assert [e.key for e in events if isinstance(e, ev.ItemFailed)] == ["5"]
    assert [e.total for e in events if isinstance(e, ev.JobAccepted)] == [2]
    with out.open(newline="") as r:
        written = [(row["row"], row["status"], row["email"]) for row in csv.DictReader(r)]
    job = next(e.job_id for e in events if isinstance(e, ev.JobAccepted))
    assert written == [("3", "submitted", "p3@x.io"), ("5", "invalid", "bad"), ("6", "submitted", "p6@x.io")]
    assert job in simulator.state.jobs["datananas"]


async def test_provider_text_reaches_the_terminal_without_its_escapes(tmp_path: Path) -> None:
    """A refusal whose message holds an ESC sequence and a CR/LF is printed with them escaped: raw, they could
    clear or recolour the user's terminal and fake a line of ours ("... completed")."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from adapters.serving import ServedApp

    message = "list L unknown\x1b[2J\x1b[1;1H\r\n00:00:01 datananas all 1 job completed"

    async def bulk(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"message": message}, status_code=400)

    f = tmp_path / "people.csv"
    f.write_text("email\nann@x.io\n")
    async with ServedApp(Starlette(routes=[Route("/contacts/bulk", bulk, methods=["POST"])])) as served:
        env = {"DATANANAS_TOKEN": "tok", "DATANANAS_BASE_URL": served.url}
        proc = await anyio.to_thread.run_sync(
            lambda: run_cli("--provider", "datananas", "--list", "L", str(f), env=env)
        )
    assert proc.returncode == 1
    assert "\x1b" not in proc.stderr + proc.stdout and "\r" not in proc.stderr
    shown = r"list L unknown\x1b[2J\x1b[1;1H\r\n00:00:01 datananas all 1 job completed"
    assert f"do not send again as is): {shown}" in proc.stderr


def test_printable_escapes_only_what_a_terminal_would_act_on() -> None:
    """Printable text (accents, symbols) is kept as it is; controls, line breaks and bidi overrides are escaped."""
    assert ev.printable("Société ✓ 日本") == "Société ✓ 日本"
    assert ev.printable("a\x1b[31mb\tc\nd\u202ee\x7f") == r"a\x1b[31mb\tc\nd\u202ee\x7f"
