"""JobTracker: merging redundant signals per job (sans-I/O core, synchronous tests; async shell on asyncio and trio)."""

from __future__ import annotations

import math

import anyio
import pytest

from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.exceptions import BusClosed, ConfigError
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


def item(key: str, source: str = "webhook", job: str = "j1") -> ev.ItemSucceeded:
    return e(ev.ItemSucceeded, source, job, key=key, outcome="found")


def feed_all(tracker: JobTracker, *events: ev.Event) -> list[ev.Event]:
    out: list[ev.Event] = []
    for event in events:
        out.extend(tracker.feed(event))
    return out


def kinds(events: list[ev.Event]) -> list[type]:
    return [type(x) for x in events]


# --- one JobAccepted, first ---------------------------------------------------------


def test_accepted_once() -> None:
    """A second JobAccepted for the same job is dropped."""
    out = feed_all(JobTracker(), e(ev.JobAccepted, "submit", total=3), e(ev.JobAccepted, "poll", total=3))
    assert kinds(out) == [ev.JobAccepted]


def test_real_accepted_passes_unchanged() -> None:
    """A JobAccepted that comes first is published as is, batch link included."""
    accepted = e(ev.JobAccepted, "submit", total=3, batch_id="B", chunk_index=2)
    assert JobTracker().feed(accepted) == [accepted]


def test_accepted_synthesized_before_first_other_signal() -> None:
    """An item arriving before any JobAccepted gets a synthesized JobAccepted in front of it."""
    tracker = JobTracker()
    out = feed_all(tracker, item("0"))
    assert kinds(out) == [ev.JobAccepted, ev.ItemSucceeded]
    assert out[0].id == "mautic:j1:accepted" and out[0].source == "webhook" and out[0].at == out[1].at
    assert tracker.stats().synthesized == 1


def test_synthesized_accepted_takes_the_signal_total() -> None:
    """A first signal that carries a total gives it to the synthesized JobAccepted."""
    out = JobTracker().feed(e(ev.JobProgress, done=2, total=8))
    assert kinds(out) == [ev.JobAccepted, ev.JobProgress]
    assert out[0].total == 8


def test_first_progress_at_zero_gives_only_acceptance() -> None:
    """A first progress at done=0 adds nothing beyond the synthesized acceptance carrying its total."""
    out = JobTracker().feed(e(ev.JobProgress, done=0, total=4))
    assert kinds(out) == [ev.JobAccepted] and out[0].total == 4


def test_late_acceptance_total_is_kept_as_progress() -> None:
    """The submitter's JobAccepted after a synthesized one is dropped but its total survives as progress."""
    tracker = JobTracker()
    out = feed_all(tracker, item("0"), e(ev.JobAccepted, "submit", total=5))
    assert kinds(out) == [ev.JobAccepted, ev.ItemSucceeded, ev.JobProgress]
    assert (out[-1].done, out[-1].total, out[-1].id) == (0, 5, "mautic:j1:total:5")
    assert tracker.job("mautic", "j1").total == 5


def test_late_acceptance_batch_link_is_lost() -> None:
    """Documented limit: after a synthesized acceptance, the real one's batch_id/chunk_index are not published."""
    out = feed_all(JobTracker(), item("0"), e(ev.JobAccepted, "submit", batch_id="B", chunk_index=1))
    assert kinds(out) == [ev.JobAccepted, ev.ItemSucceeded]
    assert (out[0].batch_id, out[0].chunk_index) == ("", -1)


# --- progress -----------------------------------------------------------------------


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


def test_first_total_wins() -> None:
    """A later progress with a different total is published with the first total."""
    out = feed_all(JobTracker(), e(ev.JobAccepted, total=10), e(ev.JobProgress, done=3, total=50))
    assert (out[-1].done, out[-1].total) == (3, 10)


def test_progress_bringing_the_total_passes_once_without_advancing() -> None:
    """A non-advancing progress is published once if it is the first to bring the total, then dropped."""
    tracker = JobTracker()
    out = feed_all(
        tracker,
        e(ev.JobAccepted),
        e(ev.JobProgress, done=3),
        e(ev.JobProgress, done=3, total=9),
        e(ev.JobProgress, done=3, total=9),
    )
    assert [(x.done, x.total) for x in out if isinstance(x, ev.JobProgress)] == [(3, None), (3, 9)]
    assert tracker.stats().dropped_stale_progress == 1


def test_total_below_done_is_ignored() -> None:
    """A total smaller than the progress already published is ignored, so done <= total is never broken."""
    tracker = JobTracker()
    out = feed_all(tracker, e(ev.JobAccepted), e(ev.JobProgress, done=12), e(ev.JobProgress, done=13, total=10))
    assert [(x.done, x.total) for x in out if isinstance(x, ev.JobProgress)] == [(12, None), (13, None)]
    assert tracker.job("mautic", "j1").total is None


def test_negative_total_is_ignored() -> None:
    """A negative total is not a total: done is not clamped by it."""
    out = feed_all(JobTracker(), e(ev.JobAccepted, total=-1), e(ev.JobProgress, done=2))
    assert (out[-1].done, out[-1].total) == (2, None)


# --- items --------------------------------------------------------------------------


def test_each_item_reported_once() -> None:
    """The first report of a key wins; later ones (any source, any outcome) are dropped."""
    tracker = JobTracker()
    out = feed_all(
        tracker,
        e(ev.JobAccepted),
        item("1"),
        item("1"),
        e(ev.ItemFailed, "poll", key="1", code="x", message="late copy"),
        e(ev.ItemFailed, "poll", key="2", code="404", message="not found"),
    )
    assert [(type(x).__name__, x.key) for x in out if hasattr(x, "key")] == [
        ("ItemSucceeded", "1"),
        ("ItemFailed", "2"),
    ]
    assert tracker.stats().dropped_duplicate == 2


def test_jobs_are_independent() -> None:
    """The same key in two jobs (or two providers) are different items."""
    out = feed_all(
        JobTracker(),
        item("0", job="a"),
        item("0", job="b"),
        ev.ItemSucceeded(id="x", provider="pronto", job_id="a", source="webhook", key="0", outcome="found"),
    )
    assert sum(isinstance(x, ev.ItemSucceeded) for x in out) == 3
    assert sum(isinstance(x, ev.JobAccepted) for x in out) == 3


# --- terminal -----------------------------------------------------------------------


def test_exactly_one_terminal_and_nothing_after() -> None:
    """After the first terminal event, every later event of the job is dropped."""
    tracker = JobTracker()
    out = feed_all(
        tracker,
        e(ev.JobAccepted),
        e(ev.JobCompleted, "webhook", succeeded=1),
        e(ev.JobCompleted, "poll", succeeded=1),
        e(ev.JobFailed, "poll", reason="late"),
        item("9"),
        e(ev.JobProgress, done=5),
        e(ev.JobAccepted, "submit"),
    )
    assert kinds(out) == [ev.JobAccepted, ev.JobCompleted]
    assert tracker.stats().dropped_late == 5
    assert tracker.job("mautic", "j1").terminal == "job_completed"
    assert tracker.active_jobs() == []


def test_terminal_as_first_signal() -> None:
    """A job first heard of through its end gets a synthesized acceptance, then the end, and is over."""
    tracker = JobTracker()
    out = tracker.feed(e(ev.JobExpired, reason="404"))
    assert kinds(out) == [ev.JobAccepted, ev.JobExpired]
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
    out = feed_all(JobTracker(), e(ev.JobAccepted), item("0"), e(ev.JobCompleted, succeeded=7, failed=2))
    assert (out[-1].succeeded, out[-1].failed) == (7, 2)


def test_completion_gets_the_known_total() -> None:
    """A JobCompleted without a total carries the total the tracker knows."""
    out = feed_all(JobTracker(), e(ev.JobAccepted, total=4), e(ev.JobCompleted, succeeded=4))
    assert (out[-1].succeeded, out[-1].total) == (4, 4)


def test_item_keys_are_freed_when_a_job_ends() -> None:
    """A finished job keeps no item state, only its terminal type."""
    tracker = JobTracker()
    feed_all(tracker, e(ev.JobAccepted), item("0"), item("1"), e(ev.JobCancelled))
    assert tracker._jobs == {}
    view = tracker.job("mautic", "j1")
    assert (view.items, view.terminal) == (0, "job_cancelled")


# --- passthrough --------------------------------------------------------------------


def test_passthrough_events_untouched() -> None:
    """Submit-side and source events pass through unchanged and create no job."""
    tracker = JobTracker()
    events = [
        ev.BatchSubmitted(
            id="b", provider="pronto", job_id="B#0", source="submit", batch_id="B", chunk_index=0, chunk_count=1, size=2
        ),
        ev.Throttled(id="t", provider="pronto", job_id="B#0", source="submit", retry_after=1),
        ev.SubmitRejected(
            id="r", provider="pronto", job_id="B#1", source="submit", status=400, reason="x", retriable=False
        ),
        ev.QuotaExhausted(id="q", provider="pronto", job_id="B#2", source="submit", status=422, reason="credits"),
        ev.SourceState(id="s", provider="datananas", job_id="", source="websocket", state="connected"),
        ev.InvalidSignal(id="i", provider="pronto", job_id="", source="webhook", reason="bad json"),
    ]
    out = feed_all(tracker, *events, *events)
    assert out == events + events and all(a is b for a, b in zip(out, events + events, strict=True))
    assert tracker.active_jobs() == [] and tracker.stats().passed == 2 * len(events)


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


# --- stuck --------------------------------------------------------------------------


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
    assert tracker.stats().stuck == 2


def test_dropped_duplicates_still_rearm_stuck() -> None:
    """A duplicate signal is still a sign of life: the job is not stuck."""
    clock = FakeClock()
    tracker = JobTracker(stuck_after=60, clock=clock)
    feed_all(tracker, item("0"))
    clock.now += 50
    feed_all(tracker, item("0"))
    clock.now += 50
    assert tracker.check_stuck() == []


def test_check_stuck_accepts_an_explicit_time() -> None:
    """check_stuck(now=...) judges silence at that time rather than the clock's."""
    clock = FakeClock()
    tracker = JobTracker(stuck_after=60, clock=clock)
    feed_all(tracker, e(ev.JobAccepted))
    assert tracker.check_stuck(now=clock.now + 30) == []
    assert [s.job_id for s in tracker.check_stuck(now=clock.now + 61)] == ["j1"]


def test_fed_back_stuck_does_not_rearm() -> None:
    """A JobStuck fed into the tracker (a replayed stream) is passed on but is no sign of life."""
    clock = FakeClock()
    tracker = JobTracker(stuck_after=60, clock=clock)
    feed_all(tracker, e(ev.JobAccepted))
    clock.now += 30
    replayed = e(ev.JobStuck, silent_for=99.0)
    assert tracker.feed(replayed) == [replayed]
    clock.now += 30
    assert len(tracker.check_stuck()) == 1


def test_finished_jobs_are_never_stuck() -> None:
    """A job that ended is not reported stuck."""
    clock = FakeClock()
    tracker = JobTracker(stuck_after=1, clock=clock)
    feed_all(tracker, e(ev.JobAccepted), e(ev.JobCancelled))
    clock.now += 10
    assert tracker.check_stuck() == []


def test_stuck_after_none_never_reports() -> None:
    """With stuck_after=None no job is ever stuck."""
    clock = FakeClock()
    tracker = JobTracker(stuck_after=None, clock=clock)
    feed_all(tracker, e(ev.JobAccepted))
    clock.now += 1e9
    assert tracker.check_stuck() == []


# --- bounded memory, forget, introspection -----------------------------------------------


def test_finished_lru_is_bounded() -> None:
    """Only max_finished finished jobs are remembered; the oldest are forgotten."""
    tracker = JobTracker(max_finished=2)
    for job in "abc":
        feed_all(tracker, e(ev.JobAccepted, job=job), e(ev.JobExpired, job=job))
    assert tracker.job("mautic", "a") is None
    assert tracker.job("mautic", "c").terminal == "job_expired"


def test_late_arrival_refreshes_lru_entry() -> None:
    """A job still receiving stragglers stays remembered longer than quieter ones."""
    tracker = JobTracker(max_finished=2)
    for job in "ab":
        feed_all(tracker, e(ev.JobAccepted, job=job), e(ev.JobExpired, job=job))
    feed_all(tracker, item("0", job="a"))  # straggler: "a" becomes the most recent
    feed_all(tracker, e(ev.JobAccepted, job="c"), e(ev.JobExpired, job="c"))
    assert tracker.job("mautic", "a") is not None and tracker.job("mautic", "b") is None


def test_straggler_beyond_the_lru_starts_the_job_afresh() -> None:
    """Documented limit: a late signal for a job evicted from the LRU is seen as a new job."""
    tracker = JobTracker(max_finished=1)
    feed_all(tracker, e(ev.JobAccepted, job="a"), e(ev.JobExpired, job="a"))
    feed_all(tracker, e(ev.JobAccepted, job="b"), e(ev.JobExpired, job="b"))
    assert kinds(tracker.feed(item("0", job="a"))) == [ev.JobAccepted, ev.ItemSucceeded]
    assert tracker.active_jobs() == [("mautic", "a")]


def test_forget_ends_tracking_and_drops_later_signals() -> None:
    """forget() drops an active job's state; its later signals are dropped as late."""
    tracker = JobTracker()
    feed_all(tracker, e(ev.JobAccepted), item("0"))
    assert tracker.forget("mautic", "j1", reason="gave_up") is True
    assert tracker.feed(item("1")) == []
    assert tracker.job("mautic", "j1").terminal == "gave_up" and tracker.active_jobs() == []
    assert tracker.forget("mautic", "j1") is False


def test_job_view_snapshot() -> None:
    """job() reports the merged state of an active job, and None for an unknown one."""
    clock = FakeClock()
    tracker = JobTracker(clock=clock)
    feed_all(
        tracker,
        e(ev.JobAccepted, "submit", total=5),
        e(ev.JobProgress, "poll", done=2),
        item("0"),
        e(ev.ItemFailed, "websocket", key="1", code="x", message="m"),
    )
    view = tracker.job("mautic", "j1")
    assert (view.done, view.total, view.items, view.succeeded, view.failed) == (2, 5, 2, 1, 1)
    assert view.sources == {"submit", "poll", "webhook", "websocket"}
    assert (view.last_signal, view.last_type, view.terminal) == (1000.0, "item_failed", None)
    assert tracker.job("mautic", "nope") is None


def test_stats_account_for_every_event() -> None:
    """Every fed event is counted once as passed or dropped; published = passed + synthesized."""
    tracker = JobTracker()
    raw = [item("0"), item("0"), e(ev.JobProgress, done=0), e(ev.JobCompleted), item("1")]
    out = feed_all(tracker, *raw)
    s = tracker.stats()
    assert (s.passed, s.synthesized, s.dropped_duplicate, s.dropped_stale_progress, s.dropped_late) == (2, 1, 1, 1, 1)
    assert s.passed + s.dropped_duplicate + s.dropped_stale_progress + s.dropped_late == len(raw)
    assert len(out) == s.passed + s.synthesized


def test_stats_is_a_copy() -> None:
    """The stats object returned does not change behind the caller's back."""
    tracker = JobTracker()
    before = tracker.stats()
    tracker.feed(item("0"))
    assert before.passed == 0 and tracker.stats().passed == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stuck_after": 0}, "stuck_after"),
        ({"stuck_after": -5}, "stuck_after"),
        ({"stuck_after": math.inf}, "stuck_after"),
        ({"stuck_after": math.nan}, "stuck_after"),
        ({"max_finished": 0}, "max_finished"),
    ],
)
def test_invalid_settings(kwargs: dict, match: str) -> None:
    """Nonsensical settings are refused with a ConfigError naming the setting."""
    with pytest.raises(ConfigError, match=match):
        JobTracker(**kwargs)


# --- the async shell (asyncio and trio) --------------------------------------------------


class Collector:
    """A tiny bus stand-in with the two publish methods: keeps events, holds at most ``room`` until given more."""

    def __init__(self, room: float = math.inf) -> None:
        self.events: list[ev.Event] = []
        self.room = room
        self._space = anyio.Event()

    def publish_nowait(self, event: ev.Event) -> None:
        if self.room <= 0:
            raise anyio.WouldBlock
        self.room -= 1
        self.events.append(event)

    async def publish(self, event: ev.Event) -> None:
        while self.room <= 0:
            await self._space.wait()
        self.publish_nowait(event)

    def make_room(self, n: float) -> None:
        self.room += n
        self._space.set()
        self._space = anyio.Event()


def described(events: list[ev.Event]) -> list[tuple[str, str | None]]:
    return [(type(x).__name__, getattr(x, "key", None)) for x in events]


@pytest.mark.anyio
async def test_attach_publishes_merged_stream_to_bus() -> None:
    """Sources publishing through attach() reach a real Bus merged, duplicates removed."""
    tracker = JobTracker()
    async with Bus() as bus, capture(bus) as seen:
        async with tracker.attach(bus) as publisher:
            await publisher.publish(item("0"))
            publisher.publish_nowait(item("0", "poll"))
            await publisher.publish(e(ev.JobCompleted))
            await publisher.publish(e(ev.JobCompleted, "webhook"))
        await bus.drain()
    assert kinds(seen) == [ev.JobAccepted, ev.ItemSucceeded, ev.JobCompleted]


@pytest.mark.anyio
async def test_publish_nowait_refuses_without_feeding_when_behind() -> None:
    """While merged events wait for room, publish_nowait raises WouldBlock and the tracker is not fed."""
    collector = Collector(room=1)
    tracker = JobTracker(stuck_after=None)
    async with tracker.attach(collector) as publisher:
        publisher.publish_nowait(item("0"))  # acceptance fits, the item waits
        assert publisher.pending == 1
        with pytest.raises(anyio.WouldBlock):
            publisher.publish_nowait(item("1"))
        assert tracker.job("mautic", "j1").items == 1
        collector.make_room(math.inf)
    assert described(collector.events) == [("JobAccepted", None), ("ItemSucceeded", "0")]


@pytest.mark.anyio
async def test_background_sender_delivers_leftovers_without_another_call() -> None:
    """Merged events left pending by publish_nowait are sent in order once the bus has room."""
    collector = Collector(room=0)
    async with JobTracker(stuck_after=None).attach(collector) as publisher:
        publisher.publish_nowait(item("0"))
        assert publisher.pending == 2
        collector.make_room(math.inf)
        with anyio.fail_after(5):
            await anyio.wait_all_tasks_blocked()
        assert publisher.pending == 0
        assert described(collector.events) == [("JobAccepted", None), ("ItemSucceeded", "0")]


@pytest.mark.anyio
async def test_concurrent_publishers_never_duplicate_or_reorder() -> None:
    """Several sources waiting on a full bus get each merged event published exactly once, in feed order."""
    collector = Collector(room=0)
    async with JobTracker(stuck_after=None).attach(collector) as publisher:
        async with anyio.create_task_group() as tg:
            for key in "abcd":
                tg.start_soon(publisher.publish, item(key))
                await anyio.wait_all_tasks_blocked()
            collector.make_room(math.inf)
    assert described(collector.events) == [("JobAccepted", None)] + [("ItemSucceeded", k) for k in "abcd"]


@pytest.mark.anyio
async def test_cancelled_publish_loses_nothing() -> None:
    """A publish cancelled while waiting for room leaves its merged events to the background sender."""
    collector = Collector(room=0)
    async with JobTracker(stuck_after=None).attach(collector) as publisher:
        with anyio.move_on_after(0):
            await publisher.publish(item("0"))
        assert publisher.pending == 2
        collector.make_room(math.inf)
    assert described(collector.events) == [("JobAccepted", None), ("ItemSucceeded", "0")]


@pytest.mark.anyio
async def test_leaving_attach_flushes_pending_events() -> None:
    """Events still pending when the block ends are published before attach() returns."""
    collector = Collector(room=0)
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            async with JobTracker(stuck_after=None).attach(collector) as publisher:
                publisher.publish_nowait(item("0"))
            done.set()

        done = anyio.Event()
        tg.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        assert not done.is_set() and collector.events == []
        collector.make_room(math.inf)
        with anyio.fail_after(5):
            await done.wait()
    assert len(collector.events) == 2


@pytest.mark.anyio
async def test_flush_timeout_raises_with_the_count() -> None:
    """If the bus never makes room, leaving attach() raises TimeoutError saying how many events are stuck."""
    collector = Collector(room=0)
    with pytest.raises(TimeoutError, match="2 merged events"):
        async with JobTracker(stuck_after=None).attach(collector, flush_timeout=0.01) as publisher:
            publisher.publish_nowait(item("0"))


@pytest.mark.anyio
async def test_publisher_refuses_use_after_attach() -> None:
    """The publisher is closed once its attach() block ends."""
    async with JobTracker().attach(Collector()) as publisher:
        pass
    with pytest.raises(BusClosed, match="attach"):
        publisher.publish_nowait(item("0"))
    with pytest.raises(BusClosed):
        await publisher.publish(item("0"))


@pytest.mark.anyio
async def test_errors_in_the_block_propagate_unwrapped() -> None:
    """An exception raised inside attach() comes out as itself, not as an ExceptionGroup."""
    with pytest.raises(KeyError, match="boom"):
        async with JobTracker().attach(Collector()):
            raise KeyError("boom")


@pytest.mark.anyio
async def test_timeout_in_the_block_is_not_mistaken_for_a_flush_timeout() -> None:
    """A TimeoutError raised by the caller's own code inside attach() comes out unchanged."""
    mine = TimeoutError("the caller's own deadline")
    with pytest.raises(TimeoutError) as caught:
        async with JobTracker().attach(Collector()):
            raise mine
    assert caught.value is mine


@pytest.mark.anyio
async def test_attach_refuses_bad_intervals() -> None:
    """check_every and flush_timeout must be positive."""
    with pytest.raises(ConfigError, match="check_every"):
        async with JobTracker().attach(Collector(), check_every=0):
            pass


@pytest.mark.anyio
async def test_attach_reports_stuck_jobs() -> None:
    """The attached watcher publishes JobStuck for a silent job to a real Bus."""
    clock = FakeClock()
    tracker = JobTracker(stuck_after=5, clock=clock)
    async with Bus() as bus, bus.subscribe("s", types={ev.JobStuck}) as sub:
        async with tracker.attach(bus, check_every=0.01) as publisher:
            await publisher.publish(e(ev.JobAccepted))
            clock.now += 5
            with anyio.fail_after(5):
                stuck = await sub.receive()
    assert isinstance(stuck, ev.JobStuck) and stuck.job_id == "j1"


@pytest.mark.anyio
async def test_attach_with_a_full_real_bus_keeps_order() -> None:
    """Against a real Bus with a tiny block subscriber, merged events arrive complete and in order."""
    tracker = JobTracker(stuck_after=None)
    async with Bus() as bus, bus.subscribe("tiny", buffer=1) as sub:
        got: list[ev.Event] = []

        async def consume() -> None:
            async for event in sub:
                got.append(event)
                if isinstance(event, ev.JobCompleted):
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            async with tracker.attach(bus) as publisher:
                for key in "abc":
                    try:
                        publisher.publish_nowait(item(key))
                    except anyio.WouldBlock:
                        await publisher.publish(item(key))
                await publisher.publish(e(ev.JobCompleted))
    assert described(got) == [("JobAccepted", None), *[("ItemSucceeded", k) for k in "abc"], ("JobCompleted", None)]
