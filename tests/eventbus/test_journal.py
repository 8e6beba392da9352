"""The SQLite journal on its own: append, read with filters, replay, cursors, prune, and every bad file."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import anyio
import pytest

from eventbus import events as ev
from eventbus.exceptions import ConfigError, JournalError
from eventbus.journal import SCHEMA, Journal, type_tags

pytestmark = pytest.mark.anyio


def progress(i: int, job: str = "j1", provider: str = "pronto") -> ev.JobProgress:
    return ev.JobProgress(id=f"{provider}:{job}:{i}", provider=provider, job_id=job, source="poll", done=i)


def completed(job: str = "j1", provider: str = "pronto") -> ev.JobCompleted:
    return ev.JobCompleted(id=f"{provider}:{job}:done", provider=provider, job_id=job, source="poll", succeeded=3)


def mixed() -> list[ev.Event]:
    """Six events: two providers, three jobs, two types."""
    return [
        progress(1, "a"),
        progress(1, "b", "mautic"),
        progress(2, "a"),
        completed("a"),
        progress(1, "c", "mautic"),
        completed("b", "mautic"),
    ]


async def test_append_then_read_gives_the_same_events_in_order(tmp_path: Path) -> None:
    """Events come back equal to what was written, numbered 1, 2, ... in commit order."""
    events = mixed()
    async with Journal(tmp_path / "j.db") as journal:
        assert await journal.append(events[:4]) == 4
        assert await journal.append(events[4:]) == 6
        assert journal.last_seq == 6
        page = await journal.read()
    assert [e.seq for e in page.entries] == [1, 2, 3, 4, 5, 6]
    assert [e.event for e in page.entries] == events
    assert (page.upto, page.more, page.skipped) == (6, False, [])


async def test_a_journal_survives_closing_and_reopening(tmp_path: Path) -> None:
    """What was committed is there for the next process, which numbers on from it."""
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        await journal.append([progress(1), progress(2)])
    async with Journal(path) as journal:
        assert journal.last_seq == 2
        assert await journal.append([progress(3)]) == 3
        assert [e.event.done for e in (await journal.read()).entries] == [1, 2, 3]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"types": "job_completed"}, [4, 6]),
        ({"types": [ev.JobCompleted, "job_progress"]}, [1, 2, 3, 4, 5, 6]),
        ({"providers": "mautic"}, [2, 5, 6]),
        ({"jobs": ["a", "c"]}, [1, 3, 4, 5]),
        ({"providers": "mautic", "types": ev.JobProgress}, [2, 5]),
        ({"providers": "pronto", "jobs": "b"}, []),
    ],
)
async def test_filters_combine_with_and(tmp_path: Path, filters: dict[str, object], expected: list[int]) -> None:
    async with Journal(tmp_path / "j.db") as journal:
        await journal.append(mixed())
        page = await journal.read(**filters)  # type: ignore[arg-type]
    assert [e.seq for e in page.entries] == expected
    assert page.upto == 6  # the rows passed over are covered too: the next read starts after them


async def test_a_limited_read_says_there_is_more_and_where_to_go_on(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db") as journal:
        await journal.append(mixed())
        first = await journal.read(limit=4, providers="pronto")
        second = await journal.read(first.upto, limit=4, providers="pronto")
    assert [e.seq for e in first.entries] == [1, 3, 4]  # fewer than the limit: the limit counts rows read
    assert (first.more, first.upto) == (False, 6)
    assert second.entries == [] and second.upto == 6


async def test_limit_stops_at_that_many_rows_and_the_rest_follows(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db") as journal:
        await journal.append([progress(i) for i in range(1, 8)])
        seen: list[int] = []
        after, pages = 0, 0
        while True:
            page = await journal.read(after, limit=3)
            pages += 1
            seen += [e.seq for e in page.entries]
            after = page.upto
            if not page.more:
                break
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    assert pages == 3


async def test_replay_without_follow_ends_at_the_last_entry(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db") as journal:
        await journal.append(mixed())
        seqs = [entry.seq async for entry in journal.replay(2, types="job_progress", batch=1)]
    assert seqs == [3, 5]


async def test_replay_with_follow_sees_what_this_process_commits_later(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db") as journal:
        await journal.append([progress(1)])
        seen: list[int] = []
        got_two = anyio.Event()

        async def follower() -> None:
            async for entry in journal.replay(follow=True, poll=60):  # no poll: woken by the commit itself
                seen.append(entry.seq)
                if len(seen) == 2:
                    got_two.set()
                    return

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follower)
                await anyio.wait_all_tasks_blocked()
                await journal.append([progress(2)])
                await got_two.wait()
    assert seen == [1, 2]


async def test_replay_with_follow_sees_another_writer_within_the_poll(tmp_path: Path) -> None:
    """Another process's commits are not signalled: the follower finds them by polling."""
    path = tmp_path / "j.db"
    async with Journal(path) as writer, Journal(path, readonly=True) as reader:
        await writer.append([progress(1)])
        seen: list[int] = []
        with anyio.fail_after(10):
            async for entry in reader.replay(follow=True, poll=0.05):
                seen.append(entry.seq)
                if len(seen) == 1:
                    # Written through a separate connection: nothing wakes the reader but its poll.
                    conn = sqlite3.connect(path)
                    with conn:
                        conn.execute(
                            "INSERT INTO events (id, type, provider, job_id, at, body) VALUES (?, ?, ?, ?, ?, ?)",
                            ("x", "job_progress", "pronto", "j1", 0.0, ev.encode(progress(2))),
                        )
                    conn.close()
                else:
                    break
    assert seen == [1, 2]


async def test_cursors_are_saved_and_never_move_back(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        await journal.append(mixed())
        assert await journal.cursor("store") == 0
        await journal.ack("store", 4)
        await journal.ack("store", 2)  # a late, older ack does not undo a newer one
        await journal.ack("alerts", 6)
    async with Journal(path, readonly=True) as journal:
        assert await journal.cursor("store") == 4
        assert await journal.cursors() == {"alerts": 6, "store": 4}


async def test_prune_deletes_below_and_positions_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        await journal.append([progress(i) for i in range(1, 6)])
        assert await journal.prune(before=4) == 3
        assert [e.seq for e in (await journal.read()).entries] == [4, 5]
        assert await journal.prune(before=100) == 2
    async with Journal(path) as journal:  # emptied, then reopened: numbering goes on after 5
        assert await journal.append([progress(6)]) == 6


async def test_an_undecodable_row_is_reported_with_its_position_and_the_rest_still_read(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        await journal.append([progress(1)])
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(
                "INSERT INTO events (id, type, provider, job_id, at, body)"
                " VALUES ('x', 'job_teleported', 'p', 'j', 0, ?)",
                (b'{"type":"job_teleported","id":"x"}',),
            )
        conn.close()
        await journal.append([progress(3)])
        page = await journal.read()
        replayed = [entry.seq async for entry in journal.replay()]
    assert [e.seq for e in page.entries] == [1, 3]
    assert len(page.skipped) == 1
    seq, why = page.skipped[0]
    assert seq == 2
    assert "row 2 cannot be decoded" in why and "job_teleported" in why
    assert replayed == [1, 3]


# --- files that are not (this version's) journals -------------------------------


async def test_read_only_on_a_missing_file_says_so_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    with pytest.raises(ConfigError, match=r"none\.db' does not exist"):
        async with Journal(path, readonly=True):
            pass
    assert not path.exists()


async def test_read_only_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        await journal.append([progress(1)])
    async with Journal(path, readonly=True) as journal:
        with pytest.raises(JournalError, match="opened read-only"):
            await journal.append([progress(2)])
        with pytest.raises(JournalError, match="opened read-only"):
            await journal.ack("x", 1)


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        async with Journal(tmp_path):
            pass


async def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the events you are looking for\n" * 100)
    before = path.read_bytes()
    with pytest.raises(JournalError, match=r"notes\.txt' cannot be opened: file is not a database"):
        async with Journal(path):
            pass
    assert path.read_bytes() == before


async def test_another_sqlite_database_is_refused_naming_its_tables(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match=r"an SQLite file but not an eventbus journal \(tables: \['users'\]\)"):
        async with Journal(path):
            pass
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["users"]  # nothing added to it
    conn.close()


async def test_a_store_file_is_refused_saying_what_reads_it(tmp_path: Path) -> None:
    from eventbus.subscribers.store import Store

    path = tmp_path / "jobs.db"
    async with Store(path):
        pass
    with pytest.raises(ConfigError, match=r"jobs\.db' is an eventbus store, not a journal: read it with eventbus jobs"):
        async with Journal(path, readonly=True):
            pass


async def test_a_journal_of_a_newer_layout_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path):
        pass
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    conn.close()
    with pytest.raises(
        ConfigError, match=rf"layout '99'; this version reads layout '{SCHEMA}' \(a newer eventbus wrote it: upgrade"
    ):
        async with Journal(path, readonly=True):
            pass


async def test_a_write_that_cannot_get_the_lock_fails_whole_and_says_why(tmp_path: Path) -> None:
    """Another process holding the write lock past ``timeout``: nothing half-written, a message, then it works."""
    path = tmp_path / "j.db"
    async with Journal(path, timeout=0.2) as journal:
        await journal.append([progress(1)])
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(JournalError, match=r"2 events not written: database is locked"):
                await journal.append([progress(2), progress(3)])
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert journal.last_seq == 1
        assert await journal.append([progress(4)]) == 2
        assert [e.event.done for e in (await journal.read()).entries] == [1, 4]  # type: ignore[attr-defined]


async def test_a_closed_journal_says_how_to_open_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    with pytest.raises(JournalError, match="is not open; use 'async with Journal"):
        await journal.append([progress(1)])
    with pytest.raises(JournalError, match="is not open"):
        await journal.read()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda j: j.read(-1), "after must be a position"),
        (lambda j: j.read(True), "after must be a position"),
        (lambda j: j.read(limit=0), "limit must be a whole number, 1 or more"),
        (lambda j: j.read(types="job_teleported"), "unknown event type 'job_teleported'; known types: batch_submitted"),
        (lambda j: j.read(types=[]), "types is empty"),
        (lambda j: j.read(providers=[]), "providers is empty"),
        (lambda j: j.read(jobs=[1]), "jobs must be strings"),
        (lambda j: j.ack("", 1), "a cursor needs a non-empty name"),
        (lambda j: j.ack("x", -1), "seq must be a position"),
        (lambda j: j.prune(-1), "before must be a position"),
    ],
)
async def test_bad_arguments_are_named(tmp_path: Path, call: object, message: str) -> None:
    async with Journal(tmp_path / "j.db") as journal:
        with pytest.raises(ConfigError, match=message):
            await call(journal)  # type: ignore[operator]


def test_bad_settings_are_named_before_anything_is_opened(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timeout must be a finite number of seconds above 0, not 0"):
        Journal(tmp_path / "j.db", timeout=0)
    with pytest.raises(ConfigError, match="max_entries must be a whole number, 1 or more, or None, not 0"):
        Journal(tmp_path / "j.db", max_entries=0)
    with pytest.raises(ConfigError, match=r"max_entries must be a whole number, 1 or more, or None, not 1\.5"):
        Journal(tmp_path / "j.db", max_entries=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_age must be a finite number of seconds above 0, or None, not nan"):
        Journal(tmp_path / "j.db", max_age=float("nan"))
    with pytest.raises(ConfigError, match="a read-only journal deletes nothing"):
        Journal(tmp_path / "j.db", readonly=True, max_age=60)
    with pytest.raises(ConfigError, match="needs a file path"):
        Journal("")
    with pytest.raises(ConfigError, match="needs a file path"):
        Journal(3)  # type: ignore[arg-type]


async def test_start_of_last_finds_where_the_last_n_matching_entries_begin(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db") as journal:
        await journal.append(mixed())
        assert await journal.start_of_last(2) == 4
        assert await journal.start_of_last(2, providers="mautic") == 4  # seqs 5 and 6
        assert await journal.start_of_last(1, types="job_completed", providers="pronto") == 3
        assert await journal.start_of_last(100) == 0  # fewer than that: all of them
        assert await journal.start_of_last(1, jobs="nope") == 0


async def test_an_empty_file_is_refused_for_reading(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"empty\.db' is empty: no bus has written to it"):
        async with Journal(path, readonly=True):
            pass


def test_type_tags_accepts_classes_and_tags_and_the_base_class_means_all() -> None:
    assert type_tags([ev.JobProgress, "job_completed"]) == {"job_progress", "job_completed"}
    assert type_tags(ev.Event) is None
    assert type_tags(None) is None
    with pytest.raises(ConfigError, match="must hold event classes or type tags"):
        type_tags([3])  # type: ignore[list-item]


# --- retention ---------------------------------------------------------------------------------------------------


def rows(path: Path) -> list[int]:
    """The positions in the file, read by SQLite itself."""
    conn = sqlite3.connect(path)
    try:
        return [seq for (seq,) in conn.execute("SELECT seq FROM events ORDER BY seq")]
    finally:
        conn.close()


async def test_max_entries_keeps_the_newest_as_it_appends(tmp_path: Path) -> None:
    """Appending applies the limit by itself (every 1,000 events): the file never holds much more than
    max_entries + 1,000 rows, and retain() cuts to exactly the last max_entries; positions go on."""
    path = tmp_path / "j.db"
    async with Journal(path, max_entries=50) as journal:
        for start in range(0, 3000, 100):
            await journal.append([progress(i) for i in range(start, start + 100)])
            assert len(rows(path)) <= 50 + 1000
        assert len(rows(path)) < 3000  # it ran without being asked
        done = await journal.retain()
        assert rows(path) == list(range(2951, 3001)) and done.first == 2951 and done.held_by == {}
        assert await journal.append([progress(0)]) == 3001
        assert [e.seq for e in (await journal.read(after=0, limit=5)).entries] == [2951, 2952, 2953, 2954, 2955]


async def test_max_age_deletes_what_is_older_by_the_events_time(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    old = [
        ev.JobProgress(id=f"o{i}", provider="pronto", job_id="j", source="poll", done=i, at=now - timedelta(hours=3))
        for i in range(5)
    ]
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        await journal.append([*old, progress(1)])
    async with Journal(path, max_age=3600) as journal:
        done = await journal.retain()
        assert done.deleted == 5 and rows(path) == [6]
        # Positions 7-11 are old by their at, but behind a recent one: retention deletes the oldest positions up to
        # the first recent entry, never a hole in the middle (a reader's "after SEQ" stays whole).
        await journal.append([*old, progress(2)])
        assert (await journal.retain()).deleted == 0 and rows(path) == list(range(6, 13))


async def test_retention_keeps_what_a_cursor_has_not_acknowledged_and_says_which(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A durable subscriber that is down keeps its entries, whatever the limits; the log names it once while it holds
    them back (not at every pass, nor as it moves) and once when it stops; once it is forgotten, the limits apply."""
    caplog.set_level(logging.INFO, logger="eventbus.journal")
    path = tmp_path / "j.db"
    async with Journal(path) as journal:
        await journal.append([progress(i) for i in range(1, 101)])
        await journal.ack("store", 30)
        await journal.ack("alerts", 95)
    async with Journal(path, max_entries=10) as journal:
        done = await journal.retain()
        assert done.held_by == {"store": 30} and done.deleted == 30 and rows(path)[0] == 31
        await journal.retain()
        held = [r for r in caplog.records if getattr(r, "event", None) == "journal_retention_held"]
        assert len(held) == 1 and held[0].cursor == "store" and held[0].position == 30  # type: ignore[attr-defined]
        assert "Journal.forget(name)" in held[0].getMessage()
        await journal.ack("store", 60)
        assert (await journal.retain()).held_by == {"store": 60} and rows(path)[0] == 61
        await journal.ack("store", 92)  # caught up: the limit applies
        done = await journal.retain()
        assert done.held_by == {} and rows(path) == list(range(91, 101))
        await journal.append([progress(i) for i in range(101, 121)])
        await journal.ack("store", 120)
        await journal.ack("alerts", 120)
        await journal.ack("gone", 0)  # a subscriber that will never come back
        assert (await journal.retain()).held_by == {"gone": 0} and rows(path)[0] == 91
        assert await journal.forget("gone") is True and await journal.forget("gone") is False
        done = await journal.retain()
        assert done.held_by == {} and rows(path) == list(range(111, 121))
        assert await journal.cursors() == {"alerts": 120, "store": 120}
    logged = [
        (getattr(r, "event", None), getattr(r, "cursor", None)) for r in caplog.records if r.name == "eventbus.journal"
    ]
    assert logged == [  # once when a cursor starts holding entries back, once when it stops: not at every pass
        ("journal_retention_held", "store"),
        ("journal_retention_released", "store"),
        ("journal_retention_held", "gone"),
    ]


async def test_a_durable_subscriber_holds_the_entries_it_has_not_acknowledged_from_the_moment_it_subscribes(
    tmp_path: Path,
) -> None:
    """Its cursor is saved when it subscribes (a new name at 0): a bus with max_entries=10 keeps every entry it has
    not acknowledged, and the file shrinks once it has."""
    from eventbus.bus import Bus

    path = tmp_path / "j.db"
    journal = Journal(path, max_entries=10)
    async with Bus(journal=journal) as bus:
        async with bus.subscribe("slow", durable=True, buffer=10) as sub:
            for i in range(1, 1501):
                bus.publish_nowait(progress(i))
                if i % 500 == 0:
                    await bus.flush()
            assert len(rows(path)) == 1500  # all of it kept: "slow" acknowledged none
            received = []
            with anyio.fail_after(10):
                async for event in sub:
                    received.append(event.done)  # type: ignore[attr-defined]
                    if len(received) == 1500:
                        break
            assert await journal.cursors() == {"slow": 0}  # saved when it started reading: before any event
            await sub.ack()
        assert received == list(range(1, 1501))
        assert (await journal.retain()).deleted == 1490 and rows(path) == list(range(1491, 1501))
