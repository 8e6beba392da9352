"""`eventbus jobs redis://...`: a RedisBus's stream replayed into the same per-job rows as a journal; clear errors.

Against the session's own ``redis-server`` (``redis_server`` in conftest.py):
skipped without one on PATH, unless ``EVENTBUS_REQUIRE_REDIS=1``. Each test
uses a stream of its own. The same events go to a journal and to a stream, and
the two outputs are compared.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import redis

from eventbus import events as ev
from eventbus.testing import EventFactory
from tests.eventbus.conftest import RedisServer, free_port, new_stream
from tests.eventbus.test_cli_jobs import contacts, jobs, records, store_of
from tests.eventbus.test_cli_tail import AT, journal_of, sample
from tests.eventbus.test_cli_tail_redis import entry_ids, publish, stream_of


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: redis-py's asyncio client has no trio support."""
    return "asyncio"


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    return redis_server.url


def split_title(out: str) -> tuple[str, list[str]]:
    """The first table's title, its spaces left out (no wider than the table, it may fold), and the lines after it."""
    lines = out.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    return "".join("".join(lines[:top]).split()), lines[top:]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--provider", "acme"],
        ["--state", "failed"],
        ["--state", "completed,failed", "--provider", "beta"],
        ["--job", "j3", "--job", "j2"],
        ["--provider", "nobody"],
    ],
)
def test_json_is_the_journals_for_the_same_events(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """--json, with and without the filters: byte for byte what the journal holding the same events gives."""
    stream, _ = stream_of(url, sample())
    path = journal_of(tmp_path / "j.db", sample())
    status, out, err = jobs(capsys, url, "--stream", stream, "--json", *args)
    assert (status, err) == (0, "")
    expected = jobs(capsys, path, "--json", *args)
    assert expected[0] == 0 and out == expected[1]
    if not args:
        assert [(r["job_id"], r["state"]) for r in records(out)] == [
            ("j1", "completed"),
            ("j2", "failed"),
            ("j3", "completed"),
        ]


@pytest.mark.parametrize("args", [[], ["--provider", "beta"], ["--state", "completed"]])
def test_tables_are_the_journals_titled_with_the_stream(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """The tables: the journal's, line for line, under a title naming the stream and the URL (password hidden)."""
    stream, _ = stream_of(redis_server.url, sample())
    path = journal_of(tmp_path / "j.db", sample())
    secret_url = f"redis://default:s3cret@127.0.0.1:{redis_server.port}/0"  # (the default user takes any password)
    status, out, err = jobs(capsys, secret_url, "--stream", stream, *args)
    assert (status, err) == (0, "")
    title, tables = split_title(out)
    journal_title, journal_tables = split_title(jobs(capsys, path, *args)[1])
    assert tables == journal_tables and "By provider" in out
    count = len(records(jobs(capsys, path, "--json", *args)[1]))
    jobs_in = f"{count}job{'s' if count != 1 else ''}in"
    assert journal_title == f"{jobs_in}{path}"
    assert title == f"{jobs_in}thestream{stream!r}atredis://***@127.0.0.1:{redis_server.port}/0"
    assert "s3cret" not in out


def test_items_are_the_journals(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--items --job J9 (lines and --json): the journal's contacts, the earliest report of a key kept."""
    stream, _ = stream_of(url, contacts())
    path = journal_of(tmp_path / "j.db", contacts())
    for extra in ([], ["--json"]):
        status, out, err = jobs(capsys, url, "--stream", stream, "--items", "--job", "J9", *extra)
        assert (status, err) == (0, "")
        assert out == jobs(capsys, path, "--items", "--job", "J9", *extra)[1]
    lines = jobs(capsys, url, "--stream", stream, "--items", "--job", "J9")[1].splitlines()
    assert len(lines) == 11 and lines[4] == "4   succeeded  created" and lines[2].startswith("2   failed     bad_email")
    assert jobs(capsys, url, "--stream", stream, "--items", "--job", "nope") == (0, "no contacts of this job\n", "")


def test_every_page_of_a_long_stream_is_read(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """More entries than one read takes (1,000): every page is replayed, in order."""
    make = EventFactory(provider="acme", job_id="big", source="webhook")
    events: list[ev.Event] = [make(ev.JobAccepted, total=2500, at=AT)]
    events += [make(ev.ItemSucceeded, key=str(i), outcome="created", at=AT) for i in range(2500)]
    events.append(make(ev.JobCompleted, succeeded=2500, at=AT))
    stream, _ = stream_of(url, events)
    status, out, err = jobs(capsys, url, "--stream", stream, "--items", "--job", "big", "--json")
    assert (status, err) == (0, "")
    assert [r["key"] for r in records(out)] == [str(i) for i in range(2500)]
    status, out, err = jobs(capsys, url, "--stream", stream, "--json")
    assert (status, err) == (0, "")
    assert [(r["state"], r["succeeded"]) for r in records(out)] == [("completed", 2500)]


def test_an_undecodable_entry_is_named_and_the_rest_replayed(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Entries another program added: one stderr line each naming its id, then a count; the rows are the journal's."""
    events = sample()
    stream = new_stream()
    anyio.run(publish, url, stream, events[:4])
    with redis.Redis.from_url(url) as client:
        junk = client.xadd(stream, {"e": b"not json", "t": b"job_progress"}).decode()
        bare = client.xadd(stream, {"note": b"hello"}).decode()
    anyio.run(publish, url, stream, events[4:])
    assert len(entry_ids(url, stream)) == 10
    status, out, err = jobs(capsys, url, "--stream", stream, "--json")
    assert status == 0
    assert out == jobs(capsys, journal_of(tmp_path / "j.db", events), "--json")[1]
    first, second, count = err.splitlines()
    assert first.startswith(f"eventbus jobs: skipped: entry {junk} cannot be decoded: ")
    assert first.endswith("excerpt: not json")
    assert second == f"eventbus jobs: skipped: entry {bare} cannot be decoded: it has no 'e' field (its fields: note)"
    assert count == "eventbus jobs: 2 entries of the stream could not be decoded and were passed over"


def test_a_stream_nothing_was_added_to_has_no_jobs_and_is_named(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A stream that does not exist (a typo in --stream): no jobs, and one stderr line saying so; exit 0."""
    stream = new_stream()
    never = f"eventbus jobs: no entry was ever added to the stream {stream!r} at {url} (is --stream right?)\n"
    assert jobs(capsys, url, "--stream", stream) == (0, "no jobs in this stream\n", never)
    assert jobs(capsys, url, "--stream", stream, "--json") == (0, "", never)
    assert not redis.Redis.from_url(url).exists(stream)  # only read: nothing was created


def test_an_emptied_stream_has_no_jobs(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A stream whose entries were all trimmed away: no jobs, nothing on stderr."""
    stream, _ = stream_of(url, sample())
    with redis.Redis.from_url(url) as client:
        client.xtrim(stream, maxlen=0)
    assert jobs(capsys, url, "--stream", stream) == (0, "no jobs in this stream\n", "")
    assert jobs(capsys, url, "--stream", stream, "--state", "failed") == (0, "no jobs match\n", "")


@pytest.mark.parametrize("kind", ["journal", "store", "missing"])
def test_stream_with_a_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    """--stream names a stream of a Redis URL: given with a file (or a path that is none), exit 2 saying so."""
    if kind == "journal":
        path = journal_of(tmp_path / "j.db", sample())
    elif kind == "store":
        path = store_of(tmp_path / "s.db", sample())
    else:
        path = str(tmp_path / "none.db")
    with pytest.raises(SystemExit) as info:
        jobs(capsys, path, "--stream", "eventbus")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert (
        "eventbus jobs: error: argument --stream: is for Redis URLs (redis://, rediss://, unix://) only; "
        f"{path!r} is read as a journal or store file"
    ) in err


@pytest.mark.parametrize("args", [[], ["--json"], ["--items", "--job", "j1"]])
def test_redis_unreachable_exits_2_in_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """Nothing listening at the URL: exit 2, one stderr line naming the URL with its password hidden, no traceback."""
    port = free_port()  # closed
    status, out, err = jobs(capsys, f"redis://user:s3cret@127.0.0.1:{port}/0", "--stream", "x", *args)
    assert (status, out) == (2, "")
    assert err.startswith(f"eventbus jobs: error: cannot reach Redis at redis://***@127.0.0.1:{port}/0: ")
    assert err.count("\n") == 1 and "s3cret" not in err and "Traceback" not in err


def test_a_key_that_is_not_a_stream_exits_2(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A --stream naming another kind of key: exit 2 with one line, as a file that is no journal."""
    key = new_stream()
    with redis.Redis.from_url(url) as client:
        client.set(key, "not a stream")
    why = f"the key {key!r} at {url} is not a stream; give the stream a RedisBus writes"
    assert jobs(capsys, url, "--stream", key) == (2, "", f"eventbus jobs: error: {why}\n")
