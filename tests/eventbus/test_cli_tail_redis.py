"""`eventbus tail redis://...`: a RedisBus's stream printed as a journal is, filtered, followed live; clear errors.

Against the session's own ``redis-server`` (``redis_server`` in conftest.py):
skipped without one on PATH, unless ``EVENTBUS_REQUIRE_REDIS=1``. Each test
uses a stream of its own.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import redis
from anyio.streams.buffered import BufferedByteReceiveStream

from eventbus import events as ev
from eventbus.backends.redis import RedisBus
from eventbus.testing import EventFactory
from tests.eventbus.conftest import RedisServer, free_port, need_redis_server, new_stream
from tests.eventbus.test_cli_tail import AT, journal_of, sample, tail, usage_error


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: redis-py's asyncio client has no trio support."""
    return "asyncio"


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    return redis_server.url


def entry_ids(url: str, stream: str) -> list[str]:
    """The ids of the stream's entries, in order."""
    with redis.Redis.from_url(url) as client:
        return [entry_id.decode() for entry_id, _ in client.xrange(stream)]


async def publish(url: str, stream: str, events: list[ev.Event]) -> None:
    """Publish ``events`` to ``stream`` through a RedisBus, as a bus in another process would."""
    async with RedisBus(url, stream=stream) as bus:
        for event in events:
            bus.publish_nowait(event)
        await bus.flush()


def stream_of(url: str, events: list[ev.Event]) -> tuple[str, list[str]]:
    """A new stream holding ``events``, published through a RedisBus; its name and the entries' ids."""
    stream = new_stream()
    anyio.run(publish, url, stream, events)
    return stream, entry_ids(url, stream)


def positions(out: str) -> list[str]:
    """The entry id each printed line starts with."""
    return [line.split()[0] for line in out.splitlines()]


def test_prints_every_entry_in_order_as_the_journal_mode_does(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each event is one line: its entry id, then the same text `eventbus tail JOURNAL` prints for it."""
    events = sample()
    stream, ids = stream_of(url, events)
    status, out, err = tail(capsys, url, "--stream", stream)
    assert status == 0 and err == ""
    assert positions(out) == ids
    _, from_journal, _ = tail(capsys, journal_of(tmp_path / "events.db", events))
    assert [line.split(maxsplit=1)[1] for line in out.splitlines()] == [
        line.split(maxsplit=1)[1] for line in from_journal.splitlines()
    ]
    assert out.splitlines()[1].startswith(f"{ids[1]} [info     ] job_progress ")


def test_the_stream_is_eventbus_by_default(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --stream, the stream RedisBus writes by default ("eventbus") is read."""
    with redis.Redis.from_url(url) as client:
        client.delete("eventbus")
    try:
        anyio.run(publish, url, "eventbus", sample()[:2])
        status, out, err = tail(capsys, url)
        assert (status, err) == (0, "") and positions(out) == entry_ids(url, "eventbus")
    finally:
        with redis.Redis.from_url(url) as client:
            client.delete("eventbus")


def test_json_lines_are_the_events_encoded_and_decode_back(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--json: each line is exactly eventbus.events.encode(event), and decodes to an equal event."""
    events = sample()
    stream, _ = stream_of(url, events)
    status, out, err = tail(capsys, url, "--stream", stream, "--json")
    assert status == 0 and err == ""
    assert out.encode() == b"".join(ev.encode(e) + b"\n" for e in events)
    assert [ev.decode(line) for line in out.splitlines()] == events


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--type", "job_completed"], [5, 8]),
        (["--type", "job_accepted", "--type", "job_failed, job_completed"], [1, 3, 5, 6, 7, 8]),
        (["--provider", "beta"], [3, 4, 6]),
        (["--job", "j1", "--job", "j3"], [1, 2, 5, 7, 8]),
        (["--provider", "acme", "--type", "job_completed,job_progress", "--job", "j1"], [2, 5]),
        (["--provider", "nobody"], []),
    ],
)
def test_filters_combine(url: str, capsys: pytest.CaptureFixture[str], args: list[str], expected: list[int]) -> None:
    """--type, --provider and --job select as on a journal (the sample's events 1..8 here)."""
    stream, ids = stream_of(url, sample())
    status, out, err = tail(capsys, url, "--stream", stream, *args)
    assert status == 0 and err == ""
    assert positions(out) == [ids[i - 1] for i in expected]


@pytest.mark.parametrize(
    "after, args, expected",
    [
        ("0", [], [1, 2, 3, 4, 5, 6, 7, 8]),
        (5, [], [6, 7, 8]),
        (5, ["--provider", "acme"], [7, 8]),
        (8, [], []),
    ],
)
def test_after_an_entry_id_starts_past_it(
    url: str, capsys: pytest.CaptureFixture[str], after: str | int, args: list[str], expected: list[int]
) -> None:
    """--after ID prints only what follows that entry (an int here: the id of the sample's event of that number)."""
    stream, ids = stream_of(url, sample())
    start = after if isinstance(after, str) else ids[after - 1]
    status, out, err = tail(capsys, url, "--stream", stream, "--after", start, *args)
    assert status == 0 and err == ""
    assert positions(out) == [ids[i - 1] for i in expected]


def test_after_past_the_end_says_so(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An id the stream has not reached (another stream's, a typo) is named on stderr; nothing is printed."""
    stream, ids = stream_of(url, sample())
    status, out, err = tail(capsys, url, "--stream", stream, "--after", "99999999999999-0")
    assert (status, out) == (0, "")
    assert err == f"eventbus tail: --after 99999999999999-0 is past the stream's last entry ({ids[-1]})\n"


def test_a_stream_nothing_was_added_to_is_named(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A stream name with no entry ever (a typo in --stream): one stderr line saying so, exit 0."""
    stream = new_stream()
    status, out, err = tail(capsys, url, "--stream", stream)
    assert (status, out) == (0, "")
    assert err == f"eventbus tail: no entry was ever added to the stream {stream!r} at {url} (is --stream right?)\n"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--last", "3"], [6, 7, 8]),
        (["--last", "50"], [1, 2, 3, 4, 5, 6, 7, 8]),
        (["--last", "2", "--provider", "beta"], [4, 6]),
        (["--last", "3", "--type", "job_accepted"], [1, 3, 7]),
        (["--last", "1", "--type", "job_progress", "--job", "j1"], [2]),
        (["--last", "0"], []),
    ],
)
def test_last_shows_the_last_matching_events(
    url: str, capsys: pytest.CaptureFixture[str], args: list[str], expected: list[int]
) -> None:
    """--last N: the last N events that pass the filters, in order; --last 0: none of those already there."""
    stream, ids = stream_of(url, sample())
    status, out, err = tail(capsys, url, "--stream", stream, *args)
    assert status == 0 and err == ""
    assert positions(out) == [ids[i - 1] for i in expected]


def test_last_across_many_pages(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--last scans back past the first thousand entries, and the read goes on over several pages."""
    make = EventFactory(provider="acme")
    stream, _ = stream_of(url, [make(ev.JobProgress, done=i, at=AT) for i in range(2500)])
    status, out, err = tail(capsys, url, "--stream", stream, "--last", "2001", "--json")
    assert status == 0 and err == ""
    assert [e.done for e in map(ev.decode, out.splitlines())] == list(range(499, 2500))


def test_an_undecodable_entry_is_named_on_stderr_and_the_rest_printed(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Entries another program added (not our JSON, no 'e' field): one stderr line each with its id; the events around
    them are printed, in order."""
    events = sample()
    stream = new_stream()
    anyio.run(publish, url, stream, events[:4])
    with redis.Redis.from_url(url) as client:
        junk = client.xadd(stream, {"e": b"not json", "t": b"job_progress"}).decode()
        bare = client.xadd(stream, {"note": b"hello"}).decode()
    anyio.run(publish, url, stream, events[4:])
    ids = entry_ids(url, stream)
    status, out, err = tail(capsys, url, "--stream", stream)
    assert status == 0
    assert positions(out) == [i for i in ids if i not in (junk, bare)] and len(positions(out)) == 8
    first, second = err.splitlines()
    assert first.startswith(f"eventbus tail: skipped: entry {junk} cannot be decoded: ")
    assert first.endswith("excerpt: not json")
    assert second == f"eventbus tail: skipped: entry {bare} cannot be decoded: it has no 'e' field (its fields: note)"
    status, out, err = tail(capsys, url, "--stream", stream, "--type", "job_completed")
    assert positions(out) == [ids[6], ids[9]]  # the junk entry's tag refused it unread; the bare one has none
    assert err.splitlines() == [second]


def test_an_undecodable_entry_is_reported_where_it_is_in_the_stream(url: str) -> None:
    """On one terminal (stdout and stderr together), the skipped line comes between the events around the entry."""
    events = sample()
    stream = new_stream()
    anyio.run(publish, url, stream, events[:2])
    with redis.Redis.from_url(url) as client:
        junk = client.xadd(stream, {"e": b"{}"}).decode()
    anyio.run(publish, url, stream, events[2:])
    command = [sys.executable, "-m", "eventbus", "tail", url, "--stream", stream]
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, check=False)
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 0 and len(lines) == 9
    assert lines[2].startswith(f"eventbus tail: skipped: entry {junk} cannot be decoded: ")
    assert [line.split()[0] for line in lines[:2] + lines[3:]] == [i for i in entry_ids(url, stream) if i != junk]


def test_cursors_are_the_consumer_groups(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--cursors: the stream's last entry, then each consumer group: last delivered id, lag, pending, consumers."""
    stream, ids = stream_of(url, sample())
    with redis.Redis.from_url(url) as client:
        client.xgroup_create(stream, "store", id="0")
        client.xreadgroup("store", "worker-1", {stream: ">"}, count=3)  # read, not acknowledged
        client.xgroup_create(stream, "alerts", id="$")
    status, out, err = tail(capsys, url, "--stream", stream, "--cursors")
    assert status == 0 and err == ""
    assert out == (
        f"stream {stream!r} at {url}: last entry {ids[-1]}, 2 groups\n"
        f"  alerts: {ids[-1]} (up to date, 0 pending, 0 consumers)\n"
        f"  store: {ids[2]} (5 behind, 3 pending, 1 consumer)\n"
    )
    status, out, err = tail(capsys, url, "--stream", stream, "--cursors", "--json")
    assert status == 0 and err == ""
    assert out == (
        f'{{"stream":"{stream}","last":"{ids[-1]}","groups":{{'
        f'"alerts":{{"last_delivered":"{ids[-1]}","pending":0,"lag":0,"consumers":0}},'
        f'"store":{{"last_delivered":"{ids[2]}","pending":3,"lag":5,"consumers":1}}}}}}\n'
    )


@pytest.mark.parametrize(
    "after",
    ["-1", "x", "1700000000000-", "1-2-3", "18446744073709551616-0", "1700000000000-0 "],
)
def test_a_bad_after_with_a_url_exits_2_naming_an_entry_id(capsys: pytest.CaptureFixture[str], after: str) -> None:
    """--after with a Redis URL takes an entry id; anything else exits 2 with an example of one, before connecting."""
    err = usage_error(capsys, "redis://127.0.0.1:1/0", "--after", after)  # (nothing listens on port 1)
    expected = (
        f"argument --after: expected a stream entry id like 1700000000000-0 (or 0: from the start), not {after!r}"
    )
    assert f"eventbus tail: error: {expected}" in err and "Traceback" not in err


def test_an_entry_id_with_a_journal_is_still_refused_as_a_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a journal file, --after keeps its journal meaning: an entry id is not a position there."""
    path = journal_of(tmp_path / "events.db", sample())
    err = usage_error(capsys, path, "--after", "1700000000000-0")
    assert "eventbus tail: error: argument --after: expected a whole number of at least 0, not '1700000000000-0'" in err


def test_stream_with_a_journal_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--stream names a stream of a Redis URL: given with a file, it is a mistake, said before reading anything."""
    path = journal_of(tmp_path / "events.db", sample())
    err = usage_error(capsys, path, "--stream", "eventbus")
    assert (
        "eventbus tail: error: argument --stream: is for Redis URLs (redis://, rediss://, unix://) only; "
        f"{path!r} is read as a journal file"
    ) in err


@pytest.mark.parametrize("cursors", [False, True], ids=["events", "cursors"])
def test_redis_unreachable_exits_2_in_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str], cursors: bool
) -> None:
    """Nothing listening at the URL: exit 2, one stderr line naming the URL with its password hidden, no traceback."""
    port = free_port()  # closed
    status, out, err = tail(capsys, f"redis://user:s3cret@127.0.0.1:{port}/0", *(["--cursors"] if cursors else []))
    assert (status, out) == (2, "")
    assert err.startswith(f"eventbus tail: error: cannot reach Redis at redis://***@127.0.0.1:{port}/0: ")
    assert err.count("\n") == 1 and "s3cret" not in err and "Traceback" not in err


def test_a_key_that_is_not_a_stream_exits_2(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A --stream naming another kind of key, or an empty name: exit 2 with one line, as a file that is no journal."""
    key = new_stream()
    with redis.Redis.from_url(url) as client:
        client.set(key, "not a stream")
    for cursors in ([], ["--cursors"]):
        status, out, err = tail(capsys, url, "--stream", key, *cursors)
        assert (status, out) == (2, "")
        why = f"the key {key!r} at {url} is not a stream; give the stream a RedisBus writes"
        assert err == f"eventbus tail: error: {why}\n"
    status, out, err = tail(capsys, url, "--stream", "")
    assert (status, out, err) == (2, "", "eventbus tail: error: RedisBus needs a non-empty stream name, not ''\n")


# --- as users run it: a separate process -----------------------------------------------------------------------


async def receive_line(lines: BufferedByteReceiveStream) -> bytes:
    return await lines.receive_until(b"\n", 1 << 20)


@pytest.mark.anyio
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
async def test_follow_prints_what_another_process_publishes_until_stopped(url: str, sig: int) -> None:
    """-f: the entries already there, then those another process publishes (RedisBus.publish); Ctrl-C or SIGTERM end
    it with exit 0 and one stderr line naming the --after ID to go on from."""
    stream = new_stream()
    events = sample()
    await publish(url, stream, events[:3])
    command = [sys.executable, "-m", "eventbus", "tail", url, "--stream", stream, "-f", "--json", "--poll", "0.05"]
    got: list[bytes] = []
    async with RedisBus(url, stream=stream) as bus, await anyio.open_process(command) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        lines = BufferedByteReceiveStream(proc.stdout)
        with anyio.fail_after(30):
            got += [await receive_line(lines) for _ in range(3)]
            for event in events[3:]:
                await bus.publish(event)
            got += [await receive_line(lines) for _ in range(5)]
            proc.send_signal(sig)
            stderr = (b"".join([chunk async for chunk in proc.stderr])).decode()
            rest = b"".join([chunk async for chunk in lines])
            await proc.wait()
    last = entry_ids(url, stream)[-1]
    assert [ev.decode(line) for line in got] == events
    assert (proc.returncode, rest) == (0, b"")
    assert stderr == f"eventbus tail: stopped after position {last} (--after {last} goes on from there)\n"


@pytest.mark.anyio
async def test_follow_from_last_0_prints_only_what_comes_next(url: str) -> None:
    """-f --last 0 --type job_completed: nothing already there; the first line is a completion published after it
    started, and the progress published with it is filtered out."""
    stream = new_stream()
    await publish(url, stream, sample())
    before = entry_ids(url, stream)
    make = EventFactory(provider="gamma", job_id="j9")
    args = ["--stream", stream, "-f", "--last", "0", "--type", "job_completed", "--poll", "0.05"]
    command = [sys.executable, "-m", "eventbus", "tail", url, *args]
    async with RedisBus(url, stream=stream) as bus, await anyio.open_process(command) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        lines = BufferedByteReceiveStream(proc.stdout)
        first = b""
        with anyio.fail_after(30):
            while not first:  # tail has no "started" signal: publish until a line comes
                await bus.publish(make(ev.JobProgress, done=1, at=AT))
                await bus.publish(make(ev.JobCompleted, at=AT))
                with anyio.move_on_after(0.5):
                    first = await receive_line(lines)
            proc.send_signal(signal.SIGINT)
            [chunk async for chunk in proc.stderr]
            await proc.wait()
    position, text = first.decode().split(maxsplit=1)
    assert position in entry_ids(url, stream) and position not in before
    assert text.startswith("[info     ] job_completed ") and "job_id=j9" in text
    assert proc.returncode == 0


@pytest.mark.anyio
async def test_redis_lost_while_following_exits_1_naming_where_to_go_on(tmp_path: Path) -> None:
    """The server goes away under -f: exit 1 and one stderr line, password hidden, naming the --after to go on from."""
    need_redis_server()
    srv = RedisServer(free_port(), tmp_path)
    srv.start()
    try:
        stream = "events"
        await publish(srv.url, stream, sample()[:2])
        ids = entry_ids(srv.url, stream)
        secret_url = f"redis://default:s3cret@127.0.0.1:{srv.port}/0"  # (the default user takes any password)
        command = [sys.executable, "-m", "eventbus", "tail", secret_url, "--stream", stream, "-f", "--poll", "0.05"]
        async with await anyio.open_process(command) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            lines = BufferedByteReceiveStream(proc.stdout)
            with anyio.fail_after(30):
                got = [await receive_line(lines) for _ in range(2)]
                srv.stop()
                stderr = (b"".join([chunk async for chunk in proc.stderr])).decode()
                await proc.wait()
    finally:
        srv.stop()
    assert [line.split()[0].decode() for line in got] == ids
    assert proc.returncode == 1
    (line,) = stderr.splitlines()
    assert line.startswith(
        f"eventbus tail: error: could not read the stream 'events' at redis://***@127.0.0.1:{srv.port}/0"
    )
    assert line.endswith(f"(stopped after position {ids[-1]}; --after {ids[-1]} goes on from there)")
    assert "s3cret" not in stderr
