"""The store: every job and contact in SQLite, as JobBoard sees them; idempotent on id and order; durable; queryable."""

from __future__ import annotations

import itertools
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.follow import follow
from adapters.http import Settings
from adapters.simulator import SimulatorConfig, run_simulator
from eventbus import Bus
from eventbus import events as ev
from eventbus.exceptions import ConfigError, JournalError
from eventbus.journal import Journal
from eventbus.subscribers.board import JobBoard
from eventbus.subscribers.store import LAYOUT, JobRecord, Store, StoreError, file_kind
from eventbus.testing import EventFactory

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return AT + timedelta(seconds=seconds)


def board_view(board: JobBoard) -> dict[tuple[str, str], tuple[Any, ...]]:
    """Each board row as the store reports it: state, total, done, counts, reason, started, ended."""
    return {
        key: (r.state, r.total, r.progress, r.succeeded, r.failed, r.created, r.updated, r.reason, r.started, r.ended)
        for key, r in board.rows.items()
    }


def store_view(records: list[JobRecord]) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {
        (r.provider, r.job_id): (
            r.state,
            r.total,
            r.done,
            r.succeeded,
            r.failed,
            r.created,
            r.updated,
            r.reason,
            r.started,
            r.ended,
        )
        for r in records
    }


async def snapshot(store: Store) -> tuple[list[JobRecord], dict[tuple[str, str], list[Any]]]:
    """Everything a store holds: its jobs and each job's contacts."""
    jobs = await store.jobs()
    items = {(j.provider, j.job_id): await store.items(j.provider, j.job_id, limit=100_000) for j in jobs}
    return jobs, items


def job_stream(n: int, outcomes: list[str], terminal: str) -> list[ev.Event]:
    """One job's clean stream, as the tracker sends it: chunk, accepted, progress, contacts, maybe stuck, its end."""
    make = EventFactory(provider="acme", job_id="J1", source="webhook")
    ref = ev.chunk_ref("b1", 0)
    events: list[ev.Event] = [
        make(ev.BatchSubmitted, job_id=ref, batch_id="b1", chunk_index=0, chunk_count=1, size=n, at=at(0)),
        make(ev.JobAccepted, total=n, batch_id="b1", chunk_index=0, at=at(1)),
        make(ev.JobStuck, silent_for=60, at=at(2)),  # then it went on
    ]
    t = 3
    for i, outcome in enumerate(outcomes):
        if outcome == "failed":
            events.append(make(ev.ItemFailed, key=str(i), code="bad_email", message=f"row {i}", at=at(t)))
        else:
            events.append(make(ev.ItemSucceeded, key=str(i), outcome=outcome, data={"row": i}, at=at(t)))
        events.append(make(ev.JobProgress, done=i + 1, total=n, at=at(t + 0.5)))
        t += 1
    if terminal == "completed":
        ok = sum(o != "failed" for o in outcomes)
        events.append(make(ev.JobCompleted, succeeded=ok, failed=len(outcomes) - ok, total=n, at=at(t)))
    elif terminal == "failed":
        events.append(make(ev.JobFailed, reason="provider error", at=at(t)))
    elif terminal == "stuck":
        events.append(make(ev.JobStuck, silent_for=120, at=at(t)))
    return events


# --- a realistic stream: the store agrees with the board ------------------------------------------


def people(n: int) -> list[dict[str, str]]:
    return [
        {"First Name": f"Ada{i}", "Last Name": "Lovelace", "email": f"ada{i}@example.com", "domain": "example.com"}
        for i in range(n)
    ]


@pytest.mark.anyio
async def test_a_simulated_run_gives_the_boards_states_and_counts(tmp_path: Path) -> None:
    """Two providers followed to their end through the simulator: every job's row equals JobBoard's, contacts too."""
    board = JobBoard()
    async with run_simulator(SimulatorConfig(item_time=0.001)) as sim, Bus() as bus:
        bus.on(board, name="board")
        async with Store(tmp_path / "s.db").attach(bus) as store:
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    lambda: follow("pronto", people(60), bus, settings=Settings(sim.urls["pronto"], "demo-key"))
                )
                tg.start_soon(
                    lambda: follow(
                        "datananas", people(45), bus, settings=Settings(sim.urls["datananas"], "demo-token"), list="L1"
                    )
                )
            await bus.drain()
            await store.flush()
            records = await store.jobs()
            assert store_view(records) == board_view(board)
            assert {r.provider for r in records} == {"pronto", "datananas"}
            assert all(r.state == "completed" for r in records)
            for r in records:
                items = await store.items(r.provider, r.job_id, limit=10_000)
                assert len(items) == r.succeeded + r.failed == board.rows[(r.provider, r.job_id)].seen
            counts = await store.counts()
            assert sum(c.succeeded + c.failed for c in counts.values()) == 105
        assert store.stats().committed == store.stats().received > 0


# --- idempotent on id, and on order ---------------------------------------------------------------

outcome_lists = st.lists(st.sampled_from(["created", "updated", "found", "failed"]), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), outcomes=outcome_lists, terminal=st.sampled_from(["completed", "failed", "stuck", "open"]))
def test_any_order_and_duplicates_of_a_jobs_events_give_the_clean_streams_rows(
    tmp_path: Path, data: st.DataObject, outcomes: list[str], terminal: str
) -> None:
    """Permuted and duplicated, a job's events leave the same rows as the clean stream, which agrees with the board."""
    clean = job_stream(len(outcomes), outcomes, terminal)
    shuffled = data.draw(st.permutations(clean))
    again = data.draw(st.lists(st.sampled_from(clean), max_size=10))
    messy = list(shuffled)
    for event in again:
        messy.insert(data.draw(st.integers(0, len(messy))), event)
    board = JobBoard()
    for event in clean:
        board(event)
    case = next(_cases)

    async def run() -> tuple[Any, Any]:
        async with Store(tmp_path / f"clean{case}.db") as first:
            await first.apply(clean)
            expected = await snapshot(first)
        async with Store(tmp_path / f"messy{case}.db", buffer=3) as second:
            for event in messy:  # one batch each: every order of commits is tried too
                await second.apply([event])
            return expected, await snapshot(second)

    expected, got = anyio.run(run)
    assert got == expected
    assert store_view(expected[0]) == board_view(board)


_cases = itertools.count()


@pytest.mark.anyio
async def test_the_same_event_twice_changes_nothing(tmp_path: Path) -> None:
    """Every event of a stream applied a second time (other batches, later) leaves every row as it was."""
    events = job_stream(3, ["created", "failed", "updated"], "completed")
    async with Store(tmp_path / "s.db") as store:
        await store.apply(events)
        before = await snapshot(store)
        await store.apply(events)
        await store.apply(reversed(events))
        assert await snapshot(store) == before
    jobs, items = before
    assert [(j.job_id, j.state, j.total, j.done, j.succeeded, j.failed, j.created, j.updated) for j in jobs] == [
        ("J1", "completed", 3, 3, 2, 1, 1, 1)
    ]
    assert [(i.key, i.status, i.outcome, i.code, i.message, i.data) for i in items[("acme", "J1")]] == [
        ("0", "succeeded", "created", "", "", {"row": 0}),
        ("1", "failed", "", "bad_email", "row 1", {}),
        ("2", "succeeded", "updated", "", "", {"row": 2}),
    ]


@pytest.mark.anyio
async def test_a_contact_reported_under_two_ids_is_counted_once_the_earliest_kept(tmp_path: Path) -> None:
    """Two sources report key 7 differently: one contact, the earliest report by (at, id), counts following it."""
    make = EventFactory(provider="acme", job_id="J1")
    late = make(ev.ItemSucceeded, id="ws-7", key="7", outcome="created", at=at(5))
    early = make(ev.ItemFailed, id="poll-7", key="7", code="timeout", message="no answer", at=at(4))
    async with Store(tmp_path / "s.db") as store:
        await store.apply([late])
        assert ((await store.job("acme", "J1")) or pytest.fail()).succeeded == 1
        await store.apply([early, late])
        job = await store.job("acme", "J1")
        items = await store.items("acme", "J1")
    assert job is not None and (job.succeeded, job.failed, job.created, job.done) == (0, 1, 0, 1)
    assert [(i.key, i.status, i.code, i.event_id) for i in items] == [("7", "failed", "timeout", "poll-7")]


@pytest.mark.anyio
async def test_progress_never_goes_down_and_the_first_terminal_wins(tmp_path: Path) -> None:
    """A stale progress keeps done; of two terminal events the earliest stays, whichever is applied first."""
    make = EventFactory(provider="acme", job_id="J1")
    async with Store(tmp_path / "s.db") as store:
        await store.apply([make(ev.JobProgress, done=8, total=10, at=at(2)), make(ev.JobProgress, done=3, at=at(3))])
        assert ((await store.job("acme", "J1")) or pytest.fail()).done == 8
        await store.apply([make(ev.JobFailed, reason="late one", at=at(9))])
        await store.apply([make(ev.JobCancelled, reason="first", at=at(7))])
        await store.apply([make(ev.JobCompleted, succeeded=10, at=at(8))])
        job = await store.job("acme", "J1")
    assert job is not None
    assert (job.state, job.reason, job.ended, job.done, job.succeeded) == ("cancelled", "first", at(7), 8, 0)


@pytest.mark.anyio
async def test_a_chunk_and_its_job_are_one_row_in_either_order(tmp_path: Path) -> None:
    """BatchSubmitted before or after its JobAccepted: one row, the chunk's size and start, its reference kept."""
    make = EventFactory(provider="pronto")
    ref = ev.chunk_ref("b9", 2)
    sent = make(ev.BatchSubmitted, job_id=ref, batch_id="b9", chunk_index=2, chunk_count=3, size=25, at=at(0))
    taken = make(ev.JobAccepted, job_id="enr_1", batch_id="b9", chunk_index=2, at=at(1))
    for name, order in (("a", [sent, taken]), ("b", [taken, sent])):
        async with Store(tmp_path / f"{name}.db") as store:
            for event in order:
                await store.apply([event])
            jobs = await store.jobs()
        assert [(j.job_id, j.state, j.total, j.started, j.chunk) for j in jobs] == [
            ("enr_1", "accepted", 25, at(0), ref)
        ]


# --- the subscriber -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_full_buffer_holds_the_bus_back_and_loses_nothing(tmp_path: Path) -> None:
    """With room for 2 events, 300 published through the bus are all committed, in batches."""
    make = EventFactory(provider="acme", job_id="J1")
    events = [make(ev.ItemSucceeded, key=str(i), outcome="found") for i in range(300)]
    async with Bus() as bus, Store(tmp_path / "s.db", buffer=2).attach(bus, buffer=4) as store:
        for event in events:
            await bus.publish(event)
        await bus.drain()
        await store.flush()
        job = await store.job("acme", "J1")
        assert store.stats() == type(store.stats())(300, 300, 0, 0)
    assert job is not None and (job.state, job.succeeded, job.done) == ("running", 300, 300)


@pytest.mark.anyio
async def test_leaving_the_block_commits_what_was_taken(tmp_path: Path) -> None:
    """No flush: events the handler took are committed when the store's block is left."""
    make = EventFactory(provider="acme", job_id="J1")
    async with Bus() as bus:
        async with Store(tmp_path / "s.db").attach(bus):
            for i in range(5):
                await bus.publish(make(ev.ItemSucceeded, key=str(i), outcome="created"))
    async with Store(tmp_path / "s.db", readonly=True) as store:
        assert [i.key for i in await store.items("acme", "J1")] == ["0", "1", "2", "3", "4"]


@pytest.mark.anyio
async def test_reopened_the_store_answers_the_same_and_goes_on(tmp_path: Path) -> None:
    """After a restart, queries give what was committed; new events merge into the same rows."""
    events = job_stream(4, ["created"] * 4, "open")
    async with Store(tmp_path / "s.db") as store:
        await store.apply(events)
        before = await snapshot(store)
    async with Store(tmp_path / "s.db", readonly=True) as store:
        assert await snapshot(store) == before
    async with Store(tmp_path / "s.db") as store:
        assert await snapshot(store) == before
        await store.apply([EventFactory(provider="acme", job_id="J1")(ev.JobCompleted, succeeded=4, at=at(99))])
        job = await store.job("acme", "J1")
    assert job is not None and (job.state, job.succeeded, job.ended, job.seconds) == ("completed", 4, at(99), 99.0)


@pytest.mark.anyio
async def test_a_durable_store_given_everything_again_after_a_restart_changes_nothing(tmp_path: Path) -> None:
    """On a journaled bus: acknowledged once committed; a lost cursor redelivers the lot, and the rows stay the same."""
    journal, path = tmp_path / "events.db", tmp_path / "s.db"
    events = job_stream(5, ["created", "failed", "found", "updated", "created"], "completed")
    async with Bus(journal=journal) as bus, Store(path).attach(bus, durable=True) as store:
        for event in events:
            await bus.publish(event)
        await bus.drain()
        await store.flush()
        before = await snapshot(store)
    async with Journal(journal, readonly=True) as j:
        assert await j.cursors() == {"store": len(events)}
    conn = sqlite3.connect(journal)  # as if the process had died before saving its cursor
    with conn:
        conn.execute("DELETE FROM cursors")
    conn.close()
    extra = EventFactory(provider="acme", job_id="J2")(ev.JobAccepted, total=1, at=at(50))
    async with Bus(journal=journal) as bus, Store(path).attach(bus, durable=True) as store:
        await bus.publish(extra)
        await bus.drain()
        await store.flush()
        assert store.stats().received == len(events) + 1  # given everything again
        jobs, items = await snapshot(store)
    assert jobs == [*before[0], JobRecord(**{**_fields(jobs[-1]), "job_id": "J2"})]
    assert (jobs[-1].job_id, jobs[-1].state, jobs[-1].total) == ("J2", "accepted", 1)
    assert {k: v for k, v in items.items() if k[1] == "J1"} == before[1]


def _fields(record: JobRecord) -> dict[str, Any]:
    return {f: getattr(record, f) for f in record.__struct_fields__}


@pytest.mark.anyio
async def test_events_of_no_job_make_no_row(tmp_path: Path) -> None:
    """SourceState, InvalidSignal and Throttled are not about a job's state: no row, as on the board."""
    make = EventFactory(provider="acme", job_id="")
    async with Store(tmp_path / "s.db") as store:
        await store.apply(
            [
                make(ev.SourceState, state="connected"),
                make(ev.InvalidSignal, reason="not JSON"),
                make(ev.Throttled, job_id="b#0", retry_after=1.0),
            ]
        )
        assert await store.jobs() == []


# --- queries --------------------------------------------------------------------------------------


async def sample_store(path: Path) -> Store:
    """acme: J1 completed (12 contacts, 3 failed), J2 failed; beta: K1 running; pronto: a refused chunk."""
    acme, beta = EventFactory(provider="acme"), EventFactory(provider="beta")
    events: list[ev.Event] = [acme(ev.JobAccepted, job_id="J1", total=12, at=at(0))]
    for i in range(12):
        if i % 4 == 3:
            events.append(acme(ev.ItemFailed, job_id="J1", key=str(i), code="bad", message="no", at=at(1)))
        else:
            events.append(acme(ev.ItemSucceeded, job_id="J1", key=str(i), outcome="created", at=at(1)))
    events += [
        acme(ev.JobCompleted, job_id="J1", at=at(2)),
        acme(ev.JobAccepted, job_id="J2", at=at(3)),
        acme(ev.JobFailed, job_id="J2", reason="quota", at=at(4)),
        beta(ev.JobProgress, job_id="K1", done=2, total=9, at=at(5)),
        beta(ev.QuotaExhausted, provider="pronto", job_id="b#0", status=422, reason="insufficient_credits", at=at(6)),
    ]
    store = Store(path)
    await store.__aenter__()
    await store.apply(events)
    return store


@pytest.mark.anyio
async def test_jobs_filter_by_provider_and_state(tmp_path: Path) -> None:
    """provider= and state= take one name or several and combine; job() finds one or None."""
    store = await sample_store(tmp_path / "s.db")
    try:
        assert [(j.provider, j.job_id, j.state) for j in await store.jobs()] == [
            ("acme", "J1", "completed"),
            ("acme", "J2", "failed"),
            ("beta", "K1", "running"),
            ("pronto", "b#0", "rejected"),
        ]
        assert [j.job_id for j in await store.jobs(provider="acme")] == ["J1", "J2"]
        assert [j.job_id for j in await store.jobs(state=["failed", "rejected"])] == ["J2", "b#0"]
        assert [j.job_id for j in await store.jobs(provider="acme", state="running")] == []
        j1 = await store.job("acme", "J1")
        assert j1 is not None and (j1.total, j1.done, j1.succeeded, j1.failed, j1.created) == (12, 12, 9, 3, 9)
        refused = await store.job("pronto", "b#0")
        assert refused is not None and (refused.reason, refused.ended) == ("insufficient_credits (422)", at(6))
        assert await store.job("acme", "nope") is None
    finally:
        await store.__aexit__(None, None, None)


@pytest.mark.anyio
async def test_items_page_in_key_order_and_filter_by_status(tmp_path: Path) -> None:
    """Keys come "2" before "10"; after_key= continues a page; status= keeps one kind."""
    store = await sample_store(tmp_path / "s.db")
    try:
        first = await store.items("acme", "J1", limit=5)
        assert [i.key for i in first] == ["0", "1", "2", "3", "4"]
        rest = await store.items("acme", "J1", limit=5, after_key=first[-1].key)
        assert [i.key for i in rest] == ["5", "6", "7", "8", "9"]
        assert [i.key for i in await store.items("acme", "J1", after_key="9")] == ["10", "11"]
        failed = await store.items("acme", "J1", status="failed")
        assert [(i.key, i.code, i.message) for i in failed] == [
            ("3", "bad", "no"),
            ("7", "bad", "no"),
            ("11", "bad", "no"),
        ]
        assert await store.items("acme", "J2") == []
        with pytest.raises(ConfigError, match="status must be 'succeeded', 'failed' or None, not 'ok'"):
            await store.items("acme", "J1", status="ok")  # type: ignore[arg-type]
    finally:
        await store.__aexit__(None, None, None)


@pytest.mark.anyio
async def test_counts_sum_each_providers_jobs(tmp_path: Path) -> None:
    """counts(): per provider, jobs by state and contacts summed."""
    store = await sample_store(tmp_path / "s.db")
    try:
        counts = await store.counts()
    finally:
        await store.__aexit__(None, None, None)
    assert {p: (c.jobs, c.states, c.succeeded, c.failed, c.created) for p, c in counts.items()} == {
        "acme": (2, {"completed": 1, "failed": 1}, 9, 3, 9),
        "beta": (1, {"running": 1}, 0, 0, 0),
        "pronto": (1, {"rejected": 1}, 0, 0, 0),
    }


# --- files that are not a store -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_journal_is_refused_saying_how_to_read_it(tmp_path: Path) -> None:
    """A journal given as a store: refused, pointing at eventbus tail/jobs; nothing written to it."""
    path = tmp_path / "events.db"
    async with Journal(path) as journal:
        await journal.append([EventFactory()(ev.JobAccepted)])
    for readonly in (False, True):
        with pytest.raises(ConfigError) as info:
            async with Store(path, readonly=readonly):
                pass
        assert str(info.value) == f"store '{path}' is a journal; read it with eventbus tail/jobs"
    assert file_kind(path) == "journal"
    async with Journal(path, readonly=True) as journal:
        assert (await journal.read()).upto == 1


@pytest.mark.anyio
async def test_files_that_are_not_a_store_are_refused_with_why(tmp_path: Path) -> None:
    """Not SQLite, another application's database, a newer layout, a directory, a missing file: each said."""
    garbage = tmp_path / "notes.db"
    garbage.write_bytes(b"hello, this is not a database at all" * 100)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE contacts (id INTEGER)")
    conn.close()
    newer = tmp_path / "newer.db"
    async with Store(newer):
        pass
    conn = sqlite3.connect(newer)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'store_layout'", (str(LAYOUT + 1),))
    conn.close()
    cases = [
        (garbage, StoreError, f"store '{garbage}' cannot be opened: file is not a database"),
        (other, ConfigError, f"store '{other}' is an SQLite file but not an eventbus store (tables: ['contacts'])"),
        (
            newer,
            ConfigError,
            f"store '{newer}' has layout '{LAYOUT + 1}'; this version reads layout '{LAYOUT}'"
            " (a newer eventbus wrote it: upgrade to read it)",
        ),
        (tmp_path, ConfigError, f"store '{tmp_path}' is a directory; give a file path"),
    ]
    for path, error, message in cases:
        with pytest.raises(error) as info:
            async with Store(path):
                pass
        assert str(info.value) == message
    missing = tmp_path / "missing.db"
    with pytest.raises(ConfigError) as info:
        async with Store(missing, readonly=True):
            pass
    assert str(info.value) == f"store '{missing}' does not exist; give the path of a store (Store(path))"
    assert not missing.exists()
    assert issubclass(StoreError, JournalError)
    assert [file_kind(p) for p in (garbage, other, newer, missing)] == [None, None, "store", None]


@pytest.mark.anyio
async def test_a_read_only_store_takes_no_events(tmp_path: Path) -> None:
    """Opened read-only, it answers queries and refuses events, saying why."""
    async with Store(tmp_path / "s.db"):
        pass
    async with Store(tmp_path / "s.db", readonly=True) as store:
        assert await store.jobs() == []
        with pytest.raises(StoreError, match="is not open for writing"):
            store(EventFactory()(ev.JobAccepted))


def test_settings_are_checked() -> None:
    """A bad timeout or buffer is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="buffer"):
        Store("s.db", buffer=0)
    with pytest.raises(ConfigError, match="timeout"):
        Store("s.db", timeout=float("nan"))
