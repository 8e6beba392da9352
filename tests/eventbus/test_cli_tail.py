"""`eventbus tail`: a journal's events printed in order, filtered, followed live from another process; clear errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from eventbus import events as ev
from eventbus.cli import commands, main
from eventbus.journal import Journal
from eventbus.testing import EventFactory

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def sample() -> list[ev.Event]:
    """Two providers, three jobs: seq 1..8 in this order."""
    acme, beta = EventFactory(provider="acme", source="poll"), EventFactory(provider="beta", source="webhook")
    at = [AT + timedelta(seconds=i) for i in range(8)]
    return [
        acme(ev.JobAccepted, job_id="j1", total=4, at=at[0]),
        acme(ev.JobProgress, job_id="j1", done=1, total=4, at=at[1]),
        beta(ev.JobAccepted, job_id="j2", at=at[2]),
        beta(ev.JobProgress, job_id="j2", done=2, at=at[3]),
        acme(ev.JobCompleted, job_id="j1", succeeded=4, at=at[4]),
        beta(ev.JobFailed, job_id="j2", reason="quota", at=at[5]),
        acme(ev.JobAccepted, job_id="j3", at=at[6]),
        acme(ev.JobCompleted, job_id="j3", succeeded=1, failed=1, at=at[7]),
    ]


def journal_of(path: Path, events: list[ev.Event], cursors: dict[str, int] | None = None) -> str:
    """A journal file at ``path`` holding ``events`` (seq 1, 2, ...) and the given cursors."""

    async def write() -> None:
        async with Journal(path) as journal:
            await journal.append(events)
            for name, seq in (cursors or {}).items():
                await journal.ack(name, seq)

    anyio.run(write)
    return str(path)


def tail(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`eventbus tail ARGS` in this process: its exit status, stdout and stderr."""
    status = main(["tail", *args])
    out, err = capsys.readouterr()
    return status, out, err


def seqs(out: str) -> list[int]:
    """The position each printed line starts with."""
    return [int(line.split()[0]) for line in out.splitlines()]


def usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run `eventbus tail ARGS`, expecting argparse to refuse them (exit 2); its stderr."""
    with pytest.raises(SystemExit) as info:
        main(["tail", *args])
    assert info.value.code == 2
    return capsys.readouterr().err


def test_tail_is_listed_after_serve() -> None:
    """`eventbus --help` lists tail right after serve, which writes what tail reads."""
    names = [m.NAME for m in commands()]
    assert names.index("tail") == names.index("serve") + 1


def test_prints_every_event_in_order_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each event is one line: its seq, then the event as serve logs it on a terminal."""
    path = journal_of(tmp_path / "events.db", sample())
    status, out, err = tail(capsys, path)
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert seqs(out) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [line.split()[3] for line in lines] == [ev.tag_of(type(e)) for e in sample()]
    assert lines[1] == (
        "     2 [info     ] job_progress                   [eventbus] at=2024-05-01T12:00:01+00:00 done=1 "
        "id=acme:j1:2 job_id=j1 provider=acme source=poll total=4"
    )
    assert lines[5].startswith("     6 [warning  ] job_failed ") and "reason=quota" in lines[5]


def test_json_lines_are_the_events_encoded_and_decode_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json: each line is exactly eventbus.events.encode(event), and decodes to an equal event."""
    events = sample()
    status, out, err = tail(capsys, journal_of(tmp_path / "events.db", events), "--json")
    assert status == 0 and err == ""
    assert out.encode() == b"".join(ev.encode(e) + b"\n" for e in events)
    assert [ev.decode(line) for line in out.splitlines()] == events


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--type", "job_completed"], [5, 8]),
        (["--type", "job_accepted,job_failed"], [1, 3, 6, 7]),
        (["--type", "job_accepted", "--type", "job_failed, job_completed"], [1, 3, 5, 6, 7, 8]),
        (["--provider", "beta"], [3, 4, 6]),
        (["--provider", "beta,acme"], [1, 2, 3, 4, 5, 6, 7, 8]),
        (["--job", "j1", "--job", "j3"], [1, 2, 5, 7, 8]),
        (["--provider", "acme", "--type", "job_accepted"], [1, 7]),
        (["--provider", "acme", "--type", "job_completed,job_progress", "--job", "j1"], [2, 5]),
        (["--provider", "nobody"], []),
    ],
)
def test_filters_combine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: list[int]
) -> None:
    """--type, --provider and --job each keep what they name (repeated or comma-separated); together, all must match."""
    status, out, err = tail(capsys, journal_of(tmp_path / "events.db", sample()), *args)
    assert status == 0 and err == ""
    assert seqs(out) == expected


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--after", "0"], [1, 2, 3, 4, 5, 6, 7, 8]),
        (["--after", "5"], [6, 7, 8]),
        (["--after", "5", "--provider", "acme"], [7, 8]),
        (["--after", "8"], []),
    ],
)
def test_after_starts_past_a_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: list[int]
) -> None:
    """--after SEQ prints only what follows that position."""
    status, out, err = tail(capsys, journal_of(tmp_path / "events.db", sample()), *args)
    assert status == 0 and err == "" and seqs(out) == expected


def test_after_past_the_end_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A position the journal has not reached (a typo, another file's) is named on stderr; nothing is printed."""
    status, out, err = tail(capsys, journal_of(tmp_path / "events.db", sample()), "--after", "80")
    assert (status, out) == (0, "")
    assert err == "eventbus tail: --after 80 is past the journal's last position (8)\n"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--last", "3"], [6, 7, 8]),
        (["--last", "1"], [8]),
        (["--last", "50"], [1, 2, 3, 4, 5, 6, 7, 8]),
        (["--last", "2", "--provider", "beta"], [4, 6]),
        (["--last", "3", "--type", "job_accepted"], [1, 3, 7]),
        (["--last", "1", "--type", "job_progress", "--job", "j1"], [2]),
    ],
)
def test_last_shows_the_last_matching_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: list[int]
) -> None:
    """--last N: the last N events that pass the filters, in order."""
    status, out, err = tail(capsys, journal_of(tmp_path / "events.db", sample()), *args)
    assert status == 0 and err == "" and seqs(out) == expected


def test_last_0_prints_nothing_that_is_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--last 0 starts at the end (with -f: only what comes next), also when the newest rows were pruned."""
    assert tail(capsys, journal_of(tmp_path / "events.db", sample()), "--last", "0") == (0, "", "")

    async def pruned() -> int:
        async with Journal(tmp_path / "events.db") as journal:
            await journal.prune(before=100)
            return await journal.start_of_last(0)

    assert anyio.run(pruned) == 8  # the last position given, not that of the last row left


def test_last_across_many_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--last reads past the first page of the journal (a thousand rows at a time)."""
    make = EventFactory(provider="acme")
    events = [make(ev.JobProgress, done=i, at=AT) for i in range(2500)]
    status, out, err = tail(capsys, journal_of(tmp_path / "events.db", events), "--last", "1001", "--json")
    assert status == 0 and err == ""
    assert [e.done for e in map(ev.decode, out.splitlines())] == list(range(1499, 2500))


def test_cursors_and_the_last_position(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--cursors: the journal's last position, then each durable subscriber's cursor and how far behind it is."""
    path = journal_of(tmp_path / "events.db", sample(), {"store": 5, "alerts": 8})
    status, out, err = tail(capsys, path, "--cursors")
    assert status == 0 and err == ""
    assert out == f"journal {path}: last position 8, 2 cursors\n  alerts: 8 (up to date)\n  store: 5 (3 behind)\n"
    status, out, err = tail(capsys, path, "--cursors", "--json")
    assert status == 0 and err == ""
    assert out == '{"last":8,"cursors":{"alerts":8,"store":5}}\n'


def test_cursors_of_a_journal_without_any(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No durable subscriber yet: the count says so."""
    path = journal_of(tmp_path / "events.db", [])
    assert tail(capsys, path, "--cursors") == (0, f"journal {path}: last position 0, 0 cursors\n", "")


def test_cursors_refuse_event_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--cursors prints no events, so an event option with it is a mistake, said before reading anything."""
    path = journal_of(tmp_path / "events.db", sample())
    err = usage_error(capsys, path, "--cursors", "--after", "0")
    assert "eventbus tail: error: --cursors prints the cursors, not events: give it alone (or with --json)" in err


def damaged(tmp_path: Path, body: bytes, tag: str = "job_progress") -> str:
    """The sample journal with a row that cannot be decoded inserted as seq 9, then two good events (10, 11)."""
    path = tmp_path / "events.db"
    journal_of(path, sample())
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO events (id, type, provider, job_id, at, body) VALUES ('x', ?, 'acme', 'j4', 0, ?)",
            (tag, body),
        )
    conn.close()
    make = EventFactory(provider="acme", job_id="j4")
    journal_of(path, [make(ev.JobAccepted, at=AT), make(ev.JobCompleted, at=AT)])
    return str(path)


@pytest.mark.parametrize(
    "body, tag, why",
    [
        (b'{"type":"job_progress","id":', "job_progress", "row 9 cannot be decoded: "),
        (b'{"type":"job_paused","id":"x"}', "job_paused", "row 9 cannot be decoded: "),
    ],
    ids=["damaged", "newer-type"],
)
def test_an_undecodable_row_is_named_on_stderr_and_the_rest_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: bytes, tag: str, why: str
) -> None:
    """A row this version cannot decode: one stderr line with its seq and an excerpt; every other event printed."""
    status, out, err = tail(capsys, damaged(tmp_path, body, tag))
    assert status == 0
    assert seqs(out) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11]
    (line,) = err.splitlines()
    assert line.startswith(f"eventbus tail: skipped: {why}") and line.endswith(f"excerpt: {body.decode()}")


def test_last_reports_an_undecodable_row_only_inside_its_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--last N counts the journal's last N matching rows: a bad row among them is named, one before them is not."""
    path = damaged(tmp_path, b"not json")
    status, out, err = tail(capsys, path, "--last", "2")
    assert (status, seqs(out), err) == (0, [10, 11], "")
    status, out, err = tail(capsys, path, "--last", "3", "--json")
    assert status == 0 and [e.job_id for e in map(ev.decode, out.splitlines())] == ["j4", "j4"]
    assert err.startswith("eventbus tail: skipped: row 9 cannot be decoded: ") and err.count("\n") == 1


def junk(tmp_path: Path) -> str:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    return str(path)


def other_tables(tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    conn.close()
    return str(path)


def newer_layout(tmp_path: Path) -> str:
    path = journal_of(tmp_path / "events.db", sample())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    conn.close()
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: str(p / "missing.db"), "journal '{path}' does not exist"),
        (lambda p: str(p), "journal '{path}' is a directory; give a file path"),
        (junk, "journal '{path}' cannot be opened: file is not a database"),
        (other_tables, "journal '{path}' is an SQLite file but not an eventbus journal (tables: ['users'])"),
        (newer_layout, "journal '{path}' has layout '99'; this version reads layout '1' (a newer eventbus wrote it"),
    ],
    ids=["missing", "directory", "not-sqlite", "other-tables", "newer-layout"],
)
def test_a_file_that_is_no_journal_exits_2_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, message: str
) -> None:
    """Missing, a directory, not SQLite, another app's database, a newer layout: one line, exit 2, file untouched."""
    path = make(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    status, out, err = tail(capsys, path)
    assert status == 2 and out == ""
    assert err.startswith(f"eventbus tail: error: {message.format(path=path)}") and err.count("\n") == 1
    # Read only: no file changed, none created but SQLite's own companions of a WAL journal (-wal, -shm).
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))}
    assert after == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--type", "job_done"], "argument --type: unknown event type 'job_done'; known types: batch_submitted, "),
        (["--type", "job_completed,nope"], "argument --type: unknown event type 'nope'; known types: "),
        (["--type", ","], "argument --type: expected event types, one or comma-separated, not ','"),
        (["--provider", ""], "argument --provider: expected provider names, one or comma-separated, not ''"),
        (["--after", "-1"], "argument --after: expected a whole number of at least 0, not '-1'"),
        (["--after", "2.5"], "argument --after: expected a whole number of at least 0, not '2.5'"),
        (["--last", "-1"], "argument --last: expected a whole number of at least 0, not '-1'"),
        (["--last", "2", "--after", "1"], "argument --after: not allowed with argument --last"),
        (["--poll", "0"], "argument --poll: expected a finite number greater than 0, not '0'"),
        (["--poll", "nan"], "argument --poll: expected a finite number greater than 0, not 'nan'"),
    ],
)
def test_bad_options_exit_2_naming_what_is_expected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Unknown types (the known ones listed), negative or fractional positions or counts, a zero poll: exit 2."""
    err = usage_error(capsys, journal_of(tmp_path / "events.db", sample()), *args)
    assert f"eventbus tail: error: {message}" in err and "Traceback" not in err


def test_unknown_type_lists_every_known_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The refusal of an unknown --type names every type there is."""
    err = usage_error(capsys, journal_of(tmp_path / "events.db", sample()), "--type", "job_done")
    assert err.rstrip().endswith("known types: " + ", ".join(sorted(ev.EVENT_TYPES)))


# --- as users run it: a separate process -----------------------------------------------------------------------


async def append(path: Path, events: list[ev.Event]) -> None:
    """Commit ``events`` to the journal from this process, as a bus in another process would."""
    async with Journal(path) as journal:
        await journal.append(events)


async def run_tail(args: list[str], path: Path, add: list[ev.Event], lines_before: int, sig: int) -> tuple:
    """Start `eventbus tail ARGS`, read ``lines_before`` lines, commit ``add``, read one line per event of it
    expected (``args`` filters them as the test says), then send ``sig``. Returns the lines, stderr, exit status."""
    command = [sys.executable, "-m", "eventbus", "tail", *args]
    got: list[bytes] = []
    async with await anyio.open_process(command) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        lines = BufferedByteReceiveStream(proc.stdout)
        with anyio.fail_after(30):
            for _ in range(lines_before):
                got.append(await lines.receive_until(b"\n", 1 << 20))
            await append(path, add)
            for _ in range(len(add)):
                got.append(await lines.receive_until(b"\n", 1 << 20))
            proc.send_signal(sig)
            stderr = (b"".join([chunk async for chunk in proc.stderr])).decode()
            rest = b"".join([chunk async for chunk in lines])
            await proc.wait()
    assert rest == b""  # nothing more than what was read
    return got, stderr, proc.returncode


@pytest.mark.anyio
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
async def test_follow_prints_events_committed_by_another_process_until_stopped(tmp_path: Path, sig: int) -> None:
    """-f: the events already there, then those another process commits; Ctrl-C or SIGTERM end it with exit 0 and
    one stderr line naming the position to go on from."""
    path = tmp_path / "events.db"
    events = sample()
    await append(path, events[:3])
    args = ["-f", "--json", "--poll", "0.05", str(path)]
    got, stderr, status = await run_tail(args, path, events[3:], 3, sig)
    assert [ev.decode(line) for line in got] == events
    assert status == 0
    assert stderr == "eventbus tail: stopped after position 8 (--after 8 goes on from there)\n"


@pytest.mark.anyio
async def test_follow_with_last_and_filters(tmp_path: Path) -> None:
    """-f --last 1 --type job_completed: the last completion already there, then only new completions."""
    path = tmp_path / "events.db"
    await append(path, sample())
    make = EventFactory(provider="gamma", job_id="j9")
    later = [make(ev.JobAccepted, at=AT), make(ev.JobProgress, done=1, at=AT), make(ev.JobCompleted, at=AT)]
    args = ["-f", "--last", "1", "--type", "job_completed", "--poll", "0.05", str(path)]
    command = [sys.executable, "-m", "eventbus", "tail", *args]
    async with await anyio.open_process(command) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        lines = BufferedByteReceiveStream(proc.stdout)
        with anyio.fail_after(30):
            first = await lines.receive_until(b"\n", 1 << 20)
            await append(path, later)
            second = await lines.receive_until(b"\n", 1 << 20)
            proc.send_signal(signal.SIGINT)
            stderr = (b"".join([chunk async for chunk in proc.stderr])).decode()
            rest = b"".join([chunk async for chunk in lines])
            await proc.wait()
    assert first.decode().startswith("     8 [info     ] job_completed ") and "job_id=j3" in first.decode()
    assert second.decode().startswith("    11 [info     ] job_completed ") and "job_id=j9" in second.decode()
    assert (proc.returncode, rest) == (0, b"")
    assert stderr == "eventbus tail: stopped after position 11 (--after 11 goes on from there)\n"


@pytest.mark.anyio
async def test_follow_from_last_0_prints_only_what_comes_next(tmp_path: Path) -> None:
    """-f --last 0: nothing already there is printed; the first line is an event committed after it started (it
    printed every event from position 1 when --last 0 was read as "no --last")."""
    path = tmp_path / "events.db"
    await append(path, sample())  # positions 1-8
    make = EventFactory(provider="gamma", job_id="j9")
    command = [sys.executable, "-m", "eventbus", "tail", "-f", "--last", "0", "--poll", "0.05", str(path)]
    async with await anyio.open_process(command) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        lines = BufferedByteReceiveStream(proc.stdout)
        first = b""
        with anyio.fail_after(30):
            while not first:  # tail has no "started" signal: commit one event at a time until a line comes
                await append(path, [make(ev.JobProgress, done=1, at=AT)])
                with anyio.move_on_after(0.5):
                    first = await lines.receive_until(b"\n", 1 << 20)
            proc.send_signal(signal.SIGINT)
            [chunk async for chunk in proc.stderr]
            await proc.wait()
    assert int(first.split()[0]) > 8 and b"job_id=j9" in first
    assert proc.returncode == 0


@pytest.mark.parametrize("as_json", [False, True], ids=["lines", "json"])
@pytest.mark.parametrize("follow", [False, True], ids=["once", "follow"])
def test_a_closed_stdout_ends_quietly_with_141(tmp_path: Path, as_json: bool, follow: bool) -> None:
    """`eventbus tail ... | head -1`: exit 141, nothing on stderr (no traceback, no error per line).

    Synchronous: anyio's asyncio process streams do not close the pipe itself, which this test needs.
    """
    make = EventFactory(provider="acme")
    path = journal_of(tmp_path / "events.db", [make(ev.JobProgress, done=i, at=AT) for i in range(5000)])
    command = [sys.executable, "-m", "eventbus", "tail", path, *(["--json"] if as_json else [])]
    command += ["-f"] if follow else []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # one line read...
        proc.stdout.close()  # ...then the reader goes away, as `head -1` does
        _, err = proc.communicate(timeout=60)
    assert first.startswith(b'{"type":"job_progress"' if as_json else b"     1 [info     ] job_progress ")
    assert proc.returncode == 141, err.decode()[-2000:]
    assert err == b""


@pytest.mark.parametrize("as_json", [False, True], ids=["lines", "json"])
@pytest.mark.parametrize(
    "sig, status, why",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped: terminated (SIGTERM)")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_stopped_dump_says_how_far_it_got(tmp_path: Path, sig: int, status: int, why: str, as_json: bool) -> None:
    """Without -f, Ctrl-C (SIGTERM) mid-way is not a normal end: exit 130 (143), and one stderr line naming the
    position reached, every event up to which was printed whole (also by an unbuffered stdout, `python -u`).

    Synchronous: the signal comes while the command is blocked writing to a pipe no one reads yet.
    """
    make = EventFactory(provider="acme")
    path = journal_of(tmp_path / "events.db", [make(ev.JobProgress, done=i, at=AT) for i in range(20_000)])
    command = [sys.executable, "-m", "eventbus", "tail", path, *(["--json"] if as_json else [])]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # a raw stdout: the case where a signal cuts a write short
    # bufsize=0: communicate() reads the pipe itself, past what a buffered readline() would have taken.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, env=env) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printing, and blocked: the pipe is full
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    lines = (first + out).decode().splitlines()
    stderr = err.decode()
    assert proc.returncode == status, stderr[-2000:]
    reached = len(lines)
    assert 0 < reached < 20_000
    if as_json:
        assert [ev.decode(line).done for line in lines] == list(range(reached))
    else:
        assert seqs("\n".join(lines)) == list(range(1, reached + 1))
        assert all(line.endswith(" total=None") for line in lines)
    assert stderr == f"eventbus tail: {why} after position {reached} (--after {reached} goes on from there)\n"
