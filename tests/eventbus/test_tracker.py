"""JobTracker: merging redundant signals per job (sans-I/O core and async shell)."""

from __future__ import annotations

import anyio
import pytest

from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.testing import capture
from eventbus.tracker import JobTracker


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def e(cls: type[ev.Event], source: str = "poll", job: str = "j1", **fields) -> ev.Event:
    fields.setdefault("id", f"{cls.__name__}-{source}-{sorted(fields.items())}")
    return cls(provider="mautic", job_id=job, source=source, **fields)


def feed_all(tracker: JobTracker, *events: ev.Event) -> list[ev.Event]:
    out: list[ev.Event] = []
    for event in events:
        out.extend(tracker.feed(event))
    return out


def test_accepted_once() -> None:
    """A second JobAccepted for the same job is dropped."""
    out = feed_all(JobTracker(), e(ev.JobAccepted, "submit", total=3), e(ev.JobAccepted, "poll", total=3))
    assert [type(x) for x in out] == [ev.JobAccepted]


def test_accepted_synthesized_before_first_other_signal() -> None:
    """An item arriving before any JobAccepted gets a synthesized JobAccepted in front of it."""
    tracker = JobTracker()
    out = feed_all(tracker, e(ev.ItemSucceeded, "webhook", key="0", outcome="found"))
    assert [type(x) for x in out] == [ev.JobAccepted, ev.ItemSucceeded]
    assert out[0].id == "mautic:j1:accepted" and out[0].source == "webhook"
    assert tracker.stats().synthesized == 1


def test_late_acceptance_total_is_kept_as_progress() -> None:
    """The submitter's JobAccepted after a synthesized one is dropped but its total survives."""
    tracker = JobTracker()
    out = feed_all(
        tracker,
        e(ev.ItemSucceeded, "webhook", key="0", outcome="found"),
        e(ev.JobAccepted, "submit", total=5),
    )
    assert [type(x) for x in out] == [ev.JobAccepted, ev.ItemSucceeded, ev.JobProgress]
    assert out[-1].total == 5 and out[-1].done == 0
    assert tracker.job("mautic", "j1").total == 5


def test_progress_never_decreases() -> None:
    """Stale or repeated progress is dropped; only advances pass."""
    tracker = JobTracker()
    out = feed_all(
        tracker,
        e(ev.JobAccepted, total=10),
        e(ev.JobProgress, "websocket", done=4),
        e(ev.JobProgress, "poll", done=2),
        e(ev.JobProgress, "poll", done=4),
        e(ev.JobProgress, "websocket", done=7),
    )
    assert [x.done for x in out if isinstance(x, ev.JobProgress)] == [4, 7]
    assert tracker.stats().dropped_stale_progress == 2


def test_progress_carries_known_total_and_is_clamped() -> None:
    """Progress without a total gets the known one; done beyond total is clamped to it."""
    out = feed_all(JobTracker(), e(ev.JobAccepted, total=10), e(ev.JobProgress, done=3), e(ev.JobProgress, done=12))
    progress = [x for x in out if isinstance(x, ev.JobProgress)]
    assert [(p.done, p.total) for p in progress] == [(3, 10), (10, 10)]


def test_each_item_reported_once() -> None:
    """The first report of a key wins; later ones (any source, any outcome) are dropped."""
    tracker = JobTracker()
    out = feed_all(
        tracker,
        e(ev.JobAccepted),
        e(ev.ItemSucceeded, "webhook", key="1", outcome="found"),
        e(ev.ItemSucceeded, "webhook", key="1", outcome="found"),
        e(ev.ItemFailed, "poll", key="1", code="x", message="late copy"),
        e(ev.ItemFailed, "poll", key="2", code="404", message="not found"),
    )
    assert [(type(x).__name__, x.key) for x in out if hasattr(x, "key")] == [
        ("ItemSucceeded", "1"),
        ("ItemFailed", "2"),
    ]
    assert tracker.stats().dropped_duplicate == 2


def test_exactly_one_terminal_and_nothing_after() -> None:
    """After the first terminal event, every later event of the job is dropped."""
    tracker = JobTracker()
    out = feed_all(
        tracker,
        e(ev.JobAccepted),
        e(ev.JobCompleted, "webhook", succeeded=1),
        e(ev.JobCompleted, "poll", succeeded=1),
        e(ev.JobFailed, "poll", reason="late"),
        e(ev.ItemSucceeded, "webhook", key="9", outcome="found"),
        e(ev.JobProgress, done=5),
    )
    assert [type(x) for x in out] == [ev.JobAccepted, ev.JobCompleted]
    assert tracker.stats().dropped_late == 4
    assert tracker.job("mautic", "j1").terminal == "job_completed"
    assert tracker.active_jobs() == []


def test_completion_without_totals_is_filled_from_items() -> None:
    """A JobCompleted with no totals reports the items the tracker counted."""
    out = feed_all(
        JobTracker(),
        e(ev.JobAccepted, total=3),
        e(ev.ItemSucceeded, key="0", outcome="created"),
        e(ev.ItemSucceeded, key="1", outcome="updated"),
        e(ev.ItemFailed, key="2", code="400", message="bad"),
        e(ev.JobCompleted),
    )
    done = out[-1]
    assert isinstance(done, ev.JobCompleted)
    assert (done.succeeded, done.failed, done.created, done.updated, done.total) == (2, 1, 1, 1, 3)


def test_provider_totals_win() -> None:
    """Totals the provider gives are passed unchanged."""
    out = feed_all(
        JobTracker(),
        e(ev.JobAccepted),
        e(ev.ItemSucceeded, key="0", outcome="created"),
        e(ev.JobCompleted, succeeded=7, failed=2),
    )
    assert (out[-1].succeeded, out[-1].failed) == (7, 2)


def test_jobs_are_independent() -> None:
    """The same key in two jobs (or two providers) are different items."""
    out = feed_all(
        JobTracker(),
        e(ev.ItemSucceeded, job="a", key="0", outcome="found"),
        e(ev.ItemSucceeded, job="b", key="0", outcome="found"),
        ev.ItemSucceeded(id="x", provider="pronto", job_id="a", source="webhook", key="0", outcome="found"),
    )
    assert sum(isinstance(x, ev.ItemSucceeded) for x in out) == 3


def test_passthrough_events_untouched() -> None:
    """Submit-side and source events pass through unchanged and create no job."""
    tracker = JobTracker()
    events = [
        ev.BatchSubmitted(
            id="b", provider="pronto", job_id="B#0", source="submit", batch_id="B", chunk_index=0, chunk_count=1, size=2
        ),
        ev.Throttled(id="t", provider="pronto", job_id="B#0", source="submit", retry_after=1),
        ev.SourceState(id="s", provider="datananas", job_id="", source="websocket", state="connected"),
        ev.InvalidSignal(id="i", provider="pronto", job_id="", source="webhook", reason="bad json"),
    ]
    assert feed_all(tracker, *events) == events
    assert tracker.active_jobs() == []


def test_stuck_reported_once_per_silence() -> None:
    """A silent job gets one JobStuck; a new signal re-arms the check."""
    clock = FakeClock()
    tracker = JobTracker(stuck_after=60, clock=clock)
    feed_all(tracker, e(ev.JobAccepted, "submit"), e(ev.JobProgress, "poll", done=1))
    clock.now += 59
    assert tracker.check_stuck() == []
    clock.now += 1
    stuck = tracker.check_stuck()
    assert len(stuck) == 1 and stuck[0].silent_for == 60 and stuck[0].last_type == "job_progress"
    assert stuck[0].source == "poll"
    clock.now += 100
    assert tracker.check_stuck() == []
    feed_all(tracker, e(ev.JobProgress, done=2))
    clock.now += 60
    assert len(tracker.check_stuck()) == 1


def test_finished_jobs_are_never_stuck() -> None:
    """A job that ended is not reported stuck."""
    clock = FakeClock()
    tracker = JobTracker(stuck_after=1, clock=clock)
    feed_all(tracker, e(ev.JobAccepted), e(ev.JobCancelled))
    clock.now += 10
    assert tracker.check_stuck() == []


def test_finished_lru_is_bounded() -> None:
    """Only max_finished finished jobs are remembered; the oldest are forgotten."""
    tracker = JobTracker(max_finished=2)
    for job in "abc":
        feed_all(tracker, e(ev.JobAccepted, job=job), e(ev.JobExpired, job=job))
    assert tracker.job("mautic", "a") is None
    assert tracker.job("mautic", "c").terminal == "job_expired"


def test_invalid_settings() -> None:
    """Nonsensical settings are refused."""
    with pytest.raises(ValueError, match="stuck_after"):
        JobTracker(stuck_after=0)
    with pytest.raises(ValueError, match="max_finished"):
        JobTracker(max_finished=0)


@pytest.mark.anyio
async def test_attach_publishes_merged_stream_to_bus() -> None:
    """Sources publishing through attach() reach the bus merged, duplicates removed."""
    tracker = JobTracker()
    async with Bus() as bus, capture(bus) as seen:
        async with tracker.attach(bus) as publisher:
            await publisher.publish(e(ev.ItemSucceeded, "webhook", key="0", outcome="found"))
            publisher.publish_nowait(e(ev.ItemSucceeded, "poll", key="0", outcome="found"))
            await publisher.publish(e(ev.JobCompleted))
            await publisher.publish(e(ev.JobCompleted, "webhook"))
        await bus.drain()
    assert [type(x) for x in seen] == [ev.JobAccepted, ev.ItemSucceeded, ev.JobCompleted]


@pytest.mark.anyio
async def test_attach_publish_nowait_keeps_overflow_in_order() -> None:
    """When the bus is full, publish_nowait keeps merged events pending and flush sends them in order."""
    tracker = JobTracker()
    async with Bus() as bus, bus.subscribe("tiny", buffer=1) as sub:
        async with tracker.attach(bus) as publisher:
            publisher.publish_nowait(e(ev.JobProgress, done=1))  # synthesized accept + progress: one is pending
            assert publisher.pending == 1
            got = [sub.receive_nowait()]
            async with anyio.create_task_group() as tg:
                tg.start_soon(publisher.flush)
                with anyio.fail_after(5):
                    got.append(await sub.receive())
    assert [type(x) for x in got] == [ev.JobAccepted, ev.JobProgress]


@pytest.mark.anyio
async def test_attach_reports_stuck_jobs() -> None:
    """The attached watcher publishes JobStuck for a silent job."""
    clock = FakeClock()
    tracker = JobTracker(stuck_after=5, clock=clock)
    async with Bus() as bus, bus.subscribe("s", types={ev.JobStuck}) as sub:
        async with tracker.attach(bus, check_every=0.01) as publisher:
            await publisher.publish(e(ev.JobAccepted))
            clock.now += 5
            with anyio.fail_after(5):
                stuck = await sub.receive()
    assert isinstance(stuck, ev.JobStuck) and stuck.job_id == "j1"


def test_chunk_keyed_events_pass_through() -> None:
    """Events keyed by a chunk reference (validation failures, synchronous answers) are not merged."""
    invalid = ev.ItemFailed(
        id="i",
        provider="pronto",
        job_id="B#-1",
        source="submit",
        key="3",
        code="invalid",
        message="row 3: field 'lastname': lastname is required",
    )
    tracker = JobTracker()
    assert feed_all(tracker, invalid, invalid) == [invalid, invalid]
    assert tracker.active_jobs() == []
