"""`eventbus demo` and `eventbus submit --follow` as users run them: real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from adapters.simulator import Simulator
from eventbus import events as ev
from tests.adapters.conftest import closed_port

pytestmark = pytest.mark.anyio


def submit_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`eventbus submit ARGS` in a subprocess, with ``env`` on top of this process's environment; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "eventbus", "submit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("proxy", [False, True], ids=["direct", "proxy-in-the-environment"])
def test_demo_runs_end_to_end(tmp_path: Path, proxy: bool) -> None:
    """The demo follows all four providers to the end, prints the summary, logs JSON lines and exits 0.

    Also with HTTP(S)_PROXY naming a proxy that cannot be reached (as on a machine whose proxy
    is for the outside world): the demo's simulator is on loopback, which goes direct.
    """
    log = tmp_path / "demo.jsonl"
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    if proxy:
        dead = f"http://127.0.0.1:{anyio.run(closed_port)}"
        env.update(HTTP_PROXY=dead, HTTPS_PROXY=dead, WS_PROXY=dead, ALL_PROXY=dead)
    proc = subprocess.run(
        [sys.executable, "-m", "eventbus", "demo", "--contacts", "300", "--log", str(log)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "jobs completed" in proc.stdout and "By provider" in proc.stdout
    for provider in ("datananas", "pronto", "mautic", "insideview"):
        assert provider in proc.stdout
    import msgspec

    entries = [msgspec.json.decode(line) for line in log.read_bytes().splitlines()]
    assert entries and all(e["event"] in ev.EVENT_TYPES and e["provider"] for e in entries)
    assert {"job_accepted", "item_succeeded", "job_completed"} <= {e["event"] for e in entries}
    # The same events, in the same order, in the journal it writes by default in the working directory.
    import sqlite3

    conn = sqlite3.connect(tmp_path / "eventbus-demo.db")
    journaled = [row[0] for row in conn.execute("SELECT type FROM events ORDER BY seq")]
    conn.close()
    assert journaled == [e["event"] for e in entries]
    assert f"{len(entries)} events journaled in eventbus-demo.db; read them with: eventbus tail eventbus-demo.db\n" in (
        proc.stdout
    )
    # Every job and contact in the store it keeps beside the journal, as the board of the summary counted them.
    from eventbus.subscribers.store import Store

    async def stored() -> tuple[list, dict]:
        async with Store(tmp_path / "eventbus-demo-store.db", readonly=True) as store:
            return await store.jobs(), await store.counts()

    jobs, counts = anyio.run(stored)
    accepted = {(e["provider"], e["job_id"]) for e in entries if e["event"] == "job_accepted"}
    completed = {(e["provider"], e["job_id"]) for e in entries if e["event"] == "job_completed"}
    assert accepted and completed == accepted
    assert {(j.provider, j.job_id) for j in jobs if j.state == "completed"} == completed
    items = {(e["provider"], e["job_id"], e["key"]) for e in entries if e["event"] in ("item_succeeded", "item_failed")}
    assert sum(c.succeeded + c.failed for c in counts.values()) == len(items)
    assert "eventbus jobs eventbus-demo-store.db" in proc.stdout and "--items --job ID" in proc.stdout
    for _provider, job_id in accepted:  # the whole id in the summary table, to give `eventbus jobs --job`
        assert job_id in proc.stdout


@pytest.mark.parametrize(
    "store, message",
    [
        ("journal.db", "store 'journal.db' is a journal; read it with eventbus tail/jobs"),
        ("adir", "store 'adir' is a directory; give a file path"),
        ("missing/x.db", "store 'missing/x.db' cannot be opened"),
    ],
)
def test_demo_with_a_store_path_it_cannot_use_says_so_and_leaves_the_file_alone(
    tmp_path: Path, store: str, message: str
) -> None:
    """`--store` naming a journal, a directory or a file in no directory: exit 1 with one line naming the file and
    what to do, no traceback, and the journal given as the store unchanged."""
    from eventbus.journal import Journal

    async def make_journal() -> None:
        async with Journal(tmp_path / "journal.db"):
            pass

    anyio.run(make_journal)
    (tmp_path / "adir").mkdir()
    before = (tmp_path / "journal.db").read_bytes()
    command = [sys.executable, "-m", "eventbus", "demo", "--contacts", "10", "--log", "-", "--journal", "-"]
    proc = subprocess.run(
        [*command, "--store", store], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=os.environ
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"eventbus demo: error: {message}" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "journal.db").read_bytes() == before


def test_demo_into_a_closed_pipe_ends_quietly_with_141() -> None:
    """`eventbus demo | head -1`: exit 141, no traceback (rich turned the broken pipe into SystemExit(1), which
    escaped the stdout guard as a 60-line traceback and exit 1)."""
    command = [sys.executable, "-m", "eventbus", "demo", "--contacts", "200", "--log", "-", "--journal", "-"]
    command += ["--store", "-"]  # run in the working directory: no files left there
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline()  # the run has started writing; it goes on for seconds more
        proc.stdout.close()
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err.decode()[-2000:]
    assert b"Traceback" not in err and b"SystemExit" not in err


def test_an_interrupted_demo_says_so() -> None:
    """Ctrl-C during `eventbus demo`: exit 130 with one line saying it was interrupted (it said nothing)."""
    import signal

    command = [sys.executable, "-m", "eventbus", "demo", "--contacts", "2000", "--log", "-", "--journal", "-"]
    command += ["--store", "-"]  # run in the working directory: no files left there
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline()  # running
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert err.decode().strip().endswith("eventbus demo: interrupted") and b"Traceback" not in err


def test_a_console_whose_reader_went_away_raises_broken_pipe_for_the_guard() -> None:
    """stdout_console(): a write to a closed pipe is a BrokenPipeError (which guard_stdout turns into the end of
    the run), not rich's SystemExit(1)."""
    from eventbus.cli import stdout_console

    class Closed:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    console = stdout_console(file=Closed())
    with pytest.raises(BrokenPipeError):
        console.print("a line")
    assert console.quiet  # nothing more is tried


async def test_submit_follow_json(simulator: Simulator, tmp_path: Path) -> None:
    """submit --follow --json streams the merged events and exits 0 when every job completed."""
    f = tmp_path / "people.csv"
    f.write_text("first_name,last_name,domain\n" + "".join(f"A{i},B{i},acme.io\n" for i in range(150)))
    env = {"PRONTO_API_KEY": "demo-key", "PRONTO_BASE_URL": simulator.urls["pronto"]}
    proc = await anyio.to_thread.run_sync(
        lambda: submit_cli("--provider", "pronto", "--follow", "--json", str(f), env=env)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = ev.decode_lines(proc.stdout.encode())
    items = [e for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)]
    assert len({e.key for e in items}) == 150 == len(items)
    assert sum(isinstance(e, ev.JobCompleted) for e in events) == 2
    assert "all 2 jobs completed" in proc.stderr


async def test_submit_follow_reports_failure(simulator: Simulator, tmp_path: Path) -> None:
    """When not every job completes (here: credits run out), --follow exits 1 and says why."""
    simulator.state.extra["pronto"].credits = 100
    f = tmp_path / "people.csv"
    f.write_text("first_name,last_name,domain\n" + "".join(f"A{i},B{i},acme.io\n" for i in range(150)))
    env = {"PRONTO_API_KEY": "demo-key", "PRONTO_BASE_URL": simulator.urls["pronto"]}
    proc = await anyio.to_thread.run_sync(
        lambda: submit_cli("--provider", "pronto", "--follow", "--concurrency", "1", str(f), env=env)
    )
    assert proc.returncode == 1
    assert "not everything completed: 1 chunk rejected" in proc.stderr
    assert "insufficient_credits" in proc.stdout


async def test_the_readmes_public_webhook_url_example_listens_on_webhook_listen(
    simulator: Simulator, tmp_path: Path
) -> None:
    """--follow --webhook-listen HOST:PORT --webhook-url URL (README): Pronto is told URL, the receiver listens on
    HOST:PORT, and every job completes (the receiver was not started when a URL was given: results were lost)."""
    f = tmp_path / "people.csv"
    f.write_text("first_name,last_name,domain\n" + "".join(f"A{i},B{i},acme.io\n" for i in range(3)))
    port = await closed_port()
    env = {"PRONTO_API_KEY": "demo-key", "PRONTO_BASE_URL": simulator.urls["pronto"]}
    listen, url = f"127.0.0.1:{port}", f"http://127.0.0.1:{port}/hooks/pronto"
    args = ["--provider", "pronto", "--follow", "--webhook-listen", listen, "--webhook-url", url, str(f)]
    proc = await anyio.to_thread.run_sync(lambda: submit_cli(*args, env=env))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "all 1 job completed" in proc.stdout


async def test_pronto_elsewhere_without_a_webhook_url_is_refused_before_sending(tmp_path: Path) -> None:
    """A Pronto that is not on this machine cannot call the receiver's loopback URL: exit 1, what to give."""
    f = tmp_path / "people.csv"
    f.write_text("first_name,last_name,domain\nA,B,acme.io\nC,D,acme.io\n")
    env = {"PRONTO_API_KEY": "demo-key", "PRONTO_BASE_URL": "https://app.prontohq.invalid/api/v2"}
    proc = await anyio.to_thread.run_sync(lambda: submit_cli("--provider", "pronto", "--follow", str(f), env=env))
    assert proc.returncode == 1 and proc.stdout == ""
    assert "give webhook_url (--webhook-url), a public URL that forwards to" in proc.stderr
    assert "nothing was submitted" in proc.stderr


def test_webhook_listen_is_validated() -> None:
    """A malformed --webhook-listen is refused with a message saying the expected form."""
    env = {"PRONTO_API_KEY": "k", "PRONTO_BASE_URL": "http://127.0.0.1:9"}
    proc = submit_cli("--provider", "pronto", "--follow", "--webhook-listen", "nope", __file__, env=env, timeout=60)
    assert proc.returncode == 1 and "HOST:PORT" in proc.stderr


FAULTS = {
    # a 5xx burst every 7th API request, and one dropped socket mid-job (the job outlives the reconnect)
    "datananas": ["error_every=7", "ws_drop_after=15000"],
    # every webhook may come twice, and in shuffled order
    "pronto": ["error_every=7", "duplicate_webhooks=0.3", "reorder_webhooks=5"],
    "mautic": ["error_every=7"],
    "insideview": ["error_every=7", "duplicate_webhooks=0.5"],
}


def _file(tmp_path: Path, provider: str) -> tuple[Path, list[str]]:
    if provider == "insideview":
        f = tmp_path / "ids.txt"
        f.write_text("".join(f"{2_000_000 + i}\n" for i in range(10_000)))
        return f, []
    if provider == "pronto":
        f = tmp_path / "people.csv"
        f.write_text("first_name,last_name,company\n" + "".join(f"A{i},B{i},Acme\n" for i in range(10_000)))
        return f, []
    f = tmp_path / "people.jsonl"
    f.write_text("".join(f'{{"email": "p{i}@x.io"}}\n' for i in range(10_000)))
    return f, ["--list", "L1"] if provider == "datananas" else []


@pytest.mark.slow
@pytest.mark.parametrize("provider", list(FAULTS))
def test_submit_follow_10000_with_faults(tmp_path: Path, provider: str) -> None:
    """10,000 contacts per provider reach completion through `submit --follow` with the simulator's faults on."""
    faults = [arg for fault in FAULTS[provider] for arg in ("--fault", fault)]
    with subprocess.Popen(
        [sys.executable, "-m", "eventbus", "simulate", "--port", "0", "--item-time", "0.001", *faults],
        stdout=subprocess.PIPE,
        text=True,
    ) as sim:
        try:
            base = sim.stdout.readline().split()[-1]
            urls = {
                "insideview": f"{base}/insideview/api/v1",
                "mautic": f"{base}/mautic",
                "datananas": f"{base}/datananas",
                "pronto": f"{base}/pronto/api/v2",
            }
            env = {
                "INSIDEVIEW_CLIENT_ID": "demo",
                "INSIDEVIEW_CLIENT_SECRET": "demo",
                "MAUTIC_CLIENT_ID": "demo",
                "MAUTIC_CLIENT_SECRET": "demo",
                "DATANANAS_TOKEN": "demo-token",
                "PRONTO_API_KEY": "demo-key",
                f"{provider.upper()}_BASE_URL": urls[provider],
            }
            f, extra = _file(tmp_path, provider)
            proc = submit_cli(
                "--provider", provider, "--follow", "--json", "--timeout", "240", *extra, str(f), env=env, timeout=300
            )
        finally:
            sim.terminate()
            sim.wait(30)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = ev.decode_lines(proc.stdout.encode())
    completed = [e for e in events if isinstance(e, ev.JobCompleted)]
    assert sum(e.succeeded + e.failed for e in completed) == 10_000
    items = [e for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)]
    assert len(items) == len({(e.job_id, e.key) for e in items})  # each reported at most once
    if provider != "datananas":  # Datananas replays nothing: what the dropped socket missed is only in _ending's counts
        assert len(items) == 10_000


def test_a_run_that_timed_out_names_its_open_jobs_and_the_websocket_drops() -> None:
    """Timed out with jobs open: the line names each in full and, when the WebSocket dropped, why they may be."""
    from adapters.follow import FollowResult
    from adapters.submit import AcceptedJob, SubmitReport
    from eventbus import events as ev
    from eventbus.cli.submit import _not_completed
    from eventbus.subscribers.board import JobBoard

    jobs = ["867e4f0c-aff0-4c55-9d0b-0c6a4b1f0f0e", "d3c55d81-a980-4e55-8a51-7b1d8b0e1c2f"]
    report = SubmitReport("datananas", "b", contacts=4, chunks=2)
    report.accepted = [AcceptedJob("datananas", j, "b", i, (2 * i, 2 * i + 1), 2) for i, j in enumerate(jobs)]
    board = JobBoard()
    common = {"provider": "datananas", "source": "websocket"}
    for i, job in enumerate(jobs):
        board(ev.JobAccepted(id=f"a{i}", job_id=job, total=2, **common))
    result = FollowResult(report, board, timed_out=True, unfinished=list(jobs))
    # (not also "jobs ended accepted": those jobs did not end, they are the ones named as still open)
    assert _not_completed(result, "datananas", 20) == [f"2 jobs still open after 20s ({', '.join(jobs)})"]
    for n in range(2):
        board(ev.SourceState(id=f"d{n}", job_id="", state="disconnected", detail="1011", **common))
        board(ev.SourceState(id=f"c{n}", job_id="", state="connected", **common))
    said = _not_completed(result, "datananas", 20)
    given_up = _not_completed(FollowResult(report, board, unfinished=jobs[:1]), "datananas", 20)
    assert given_up[0] == f"1 job no longer followed, their end not seen ({jobs[0]})" and given_up[1] == said[1]
    assert given_up[2:] == ["jobs ended accepted"]  # the other job, not named before
    assert said[1] == (
        "the WebSocket was disconnected 2 times and datananas replays nothing: a job's last events may have been "
        "sent while it was down, so check the jobs still open at the provider"
    )
