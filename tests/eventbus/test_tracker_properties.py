"""Property tests: any interleaving of redundant signals from three sources keeps every tracker invariant.

Hypothesis draws a *truth* for a few jobs (items with their outcomes, how the
job ends, whether the provider reports totals). Each of three sources
(websocket, webhook, poll) reports that truth the way real ones misbehave:
it may miss items and progress, repeat itself, deliver out of order, and send
copies after the job ended. The submitter sends its BatchSubmitted and
(usually) JobAccepted. The streams are interleaved at random and fed to the
tracker; every invariant of the module docstring is then checked per job.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from eventbus import events as ev
from eventbus.tracker import JobTracker

SOURCES = ("websocket", "webhook", "poll")
TERMINALS = ev.TERMINAL_TYPES
ITEMS = (ev.ItemSucceeded, ev.ItemFailed)
PROVIDER = "p"
AT = datetime(2026, 11, 23, tzinfo=UTC)  # fixed, so that a copy of an item equals the original


@dataclass(frozen=True)
class Truth:
    """What really happened to one job."""

    job_id: str
    outcomes: tuple[str, ...]  # per item key "0".."n-1": "created", "updated", "found" or "failed"
    terminal: type[ev.Event]
    provider_totals: bool  # does the provider's JobCompleted carry totals?
    accepted_by_submitter: bool


truths = st.builds(
    Truth,
    job_id=st.just(""),
    outcomes=st.lists(st.sampled_from(["created", "updated", "found", "failed"]), max_size=8).map(tuple),
    terminal=st.sampled_from(TERMINALS),
    provider_totals=st.booleans(),
    accepted_by_submitter=st.booleans(),
)


def item_event(truth: Truth, key: int, source: str) -> ev.Event:
    base = {
        "id": f"{truth.job_id}:item:{key}",
        "provider": PROVIDER,
        "job_id": truth.job_id,
        "source": source,
        "at": AT,
    }
    outcome = truth.outcomes[key]
    if outcome == "failed":
        return ev.ItemFailed(key=str(key), code="x", message="failed", **base)
    return ev.ItemSucceeded(key=str(key), outcome=outcome, **base)


def terminal_event(truth: Truth, source: str) -> ev.Event:
    base = {"id": f"{truth.job_id}:end", "provider": PROVIDER, "job_id": truth.job_id, "source": source}
    if truth.terminal is ev.JobCompleted:
        if not truth.provider_totals:
            return ev.JobCompleted(**base)
        failed = truth.outcomes.count("failed")
        return ev.JobCompleted(succeeded=len(truth.outcomes) - failed, failed=failed, total=len(truth.outcomes), **base)
    if truth.terminal is ev.JobFailed:
        return ev.JobFailed(reason="provider failed", **base)
    return truth.terminal(**base)


def source_stream(truth: Truth, source: str, rng: random.Random) -> list[ev.Event]:
    """What one source would emit about ``truth``, with its misbehaviours."""
    n = len(truth.outcomes)
    natural: list[ev.Event] = []
    for key in range(n):
        if rng.random() < 0.8:  # a source may miss an item
            natural.append(item_event(truth, key, source))
        if rng.random() < 0.5:  # and most progress reports
            # totals: often absent, sometimes wrong (a stale or buggy count)
            total = rng.choice([n, n, None, None, max(0, n - 2), n + 3])
            natural.append(
                ev.JobProgress(
                    id=f"{truth.job_id}:progress:{key + 1}",
                    provider=PROVIDER,
                    job_id=truth.job_id,
                    source=source,
                    done=key + 1,
                    total=total,
                )
            )
    if rng.random() < 0.3:  # out of order
        rng.shuffle(natural)
    for _ in range(rng.randrange(3)):  # repeats
        if natural:
            natural.insert(rng.randrange(len(natural) + 1), rng.choice(natural))
    natural.append(terminal_event(truth, source))
    for _ in range(rng.randrange(3)):  # copies after the end
        natural.append(rng.choice(natural))
    return natural


def submitter_stream(truth: Truth, index: int) -> list[ev.Event]:
    ref = ev.chunk_ref("B", index)
    out: list[ev.Event] = [
        ev.BatchSubmitted(
            id=f"B:{index}:sent",
            provider=PROVIDER,
            job_id=ref,
            source="submit",
            batch_id="B",
            chunk_index=index,
            chunk_count=3,
            size=len(truth.outcomes),
        )
    ]
    if truth.accepted_by_submitter:
        out.append(
            ev.JobAccepted(
                id=f"{truth.job_id}:accepted",
                provider=PROVIDER,
                job_id=truth.job_id,
                source="submit",
                total=len(truth.outcomes),
                batch_id="B",
                chunk_index=index,
            )
        )
    return out


def noise(rng: random.Random) -> list[ev.Event]:
    """Events about no job: they must come out untouched and in order."""
    out: list[ev.Event] = []
    for i in range(rng.randrange(4)):
        if rng.random() < 0.5:
            out.append(ev.SourceState(id=f"s{i}", provider=PROVIDER, job_id="", source="websocket", state="connected"))
        else:
            out.append(ev.InvalidSignal(id=f"i{i}", provider=PROVIDER, job_id="", source="webhook", reason="bad"))
    out.append(ev.Throttled(id="t", provider=PROVIDER, job_id=ev.chunk_ref("B", 9), source="submit", retry_after=1))
    return out


def interleave(streams: list[list[ev.Event]], rng: random.Random) -> list[ev.Event]:
    """A random merge keeping each stream's own order (the sources run concurrently)."""
    queues = [list(reversed(s)) for s in streams if s]
    out: list[ev.Event] = []
    while queues:
        q = rng.choice(queues)
        out.append(q.pop())
        if not q:
            queues.remove(q)
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Truth], list[ev.Event]]:
    jobs = [
        Truth(f"job{i}", t.outcomes, t.terminal, t.provider_totals, t.accepted_by_submitter)
        for i, t in enumerate(draw(st.lists(truths, min_size=1, max_size=3)))
    ]
    rng = draw(st.randoms(use_true_random=False))
    streams: list[list[ev.Event]] = [noise(rng)]
    for index, truth in enumerate(jobs):
        streams.append(submitter_stream(truth, index))
        # At least one source reports each job's end, so every job must end.
        reporting = rng.sample(SOURCES, rng.randint(1, 3))
        streams.extend(source_stream(truth, source, rng) for source in reporting)
    return jobs, interleave(streams, rng)


def feed(tracker: JobTracker, raw: list[ev.Event]) -> list[ev.Event]:
    out: list[ev.Event] = []
    for event in raw:
        out.extend(tracker.feed(event))
    return out


def is_passthrough(event: ev.Event) -> bool:
    return not event.job_id or ev.is_chunk_ref(event.job_id)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_invariants_hold_for_any_interleaving(scenario: tuple[list[Truth], list[ev.Event]]) -> None:
    """One JobAccepted first, monotonic progress, each delivered item once, one terminal last, passthrough untouched."""
    jobs, raw = scenario
    tracker = JobTracker()
    out = feed(tracker, raw)

    # Passthrough events: the very same objects, in the same order.
    passed = [x for x in out if is_passthrough(x)]
    expected = [x for x in raw if is_passthrough(x)]
    assert len(passed) == len(expected) and all(a is b for a, b in zip(passed, expected, strict=True))

    for truth in jobs:
        mine = [x for x in out if x.job_id == truth.job_id]
        theirs = [x for x in raw if x.job_id == truth.job_id]

        # exactly one JobAccepted, first; the submitter's own when it came first
        assert isinstance(mine[0], ev.JobAccepted)
        assert sum(isinstance(x, ev.JobAccepted) for x in mine) == 1
        if isinstance(theirs[0], ev.JobAccepted):
            assert mine[0] is theirs[0]

        # exactly one terminal event, of the true kind, and it is the job's last event
        assert sum(isinstance(x, TERMINALS) for x in mine) == 1
        assert type(mine[-1]) is truth.terminal

        # progress: done only grows (a progress that does not advance is there only to bring the total),
        # never exceeds the total, and the total never changes once known
        done, total = 0, mine[0].total
        for x in mine:
            if isinstance(x, ev.JobProgress):
                assert x.done > done or (total is None and x.total is not None)
                done, total = x.done, x.total
        totals = [x.total for x in mine if isinstance(x, ev.JobAccepted | ev.JobProgress) and x.total is not None]
        assert len(set(totals)) <= 1
        for x in mine:
            if isinstance(x, ev.JobProgress) and x.total is not None:
                assert x.done <= x.total

        # items: each key at most once, with its true outcome; every key delivered before the end is there
        reported = [x for x in mine if isinstance(x, ITEMS)]
        keys = [x.key for x in reported]
        assert len(keys) == len(set(keys))
        first_end = next(i for i, x in enumerate(theirs) if isinstance(x, TERMINALS))
        assert set(keys) == {x.key for x in theirs[:first_end] if isinstance(x, ITEMS)}
        for x in reported:
            assert x == item_event(truth, int(x.key), x.source)

        # a completion without provider totals reports exactly what was published
        end = mine[-1]
        if isinstance(end, ev.JobCompleted):
            counts = Counter(type(x) for x in reported)
            if truth.provider_totals:
                assert (end.succeeded, end.failed) == (
                    len(truth.outcomes) - truth.outcomes.count("failed"),
                    truth.outcomes.count("failed"),
                )
            else:
                assert (end.succeeded, end.failed) == (counts[ev.ItemSucceeded], counts[ev.ItemFailed])

    # every fed event is accounted for once; every published one is passed or synthesized
    s = tracker.stats()
    assert s.passed + s.dropped_duplicate + s.dropped_stale_progress + s.dropped_late == len(raw)
    assert len(out) == s.passed + s.synthesized
    assert tracker.active_jobs() == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "tick", "end_a"]), st.floats(0, 40, allow_nan=False)),
        max_size=40,
    )
)
def test_stuck_once_per_silence(steps: list[tuple[str, float]]) -> None:
    """With a fake clock: JobStuck only after stuck_after of silence, at most once per silence, never after the end."""
    now = [0.0]
    tracker = JobTracker(stuck_after=30, clock=lambda: now[0])
    last_signal: dict[str, float] = {}
    reported_since_signal: set[str] = set()
    ended: set[str] = set()
    for action, gap in steps:
        now[0] += gap
        if action in ("a", "b") and action not in ended:
            tracker.feed(ev.JobProgress(id="x", provider=PROVIDER, job_id=action, source="poll", done=1))
            last_signal[action] = now[0]
            reported_since_signal.discard(action)
        elif action == "end_a":
            tracker.feed(ev.JobCancelled(id="x", provider=PROVIDER, job_id="a", source="poll"))
            ended.add("a")
        for stuck in tracker.check_stuck():
            job = stuck.job_id
            assert job not in ended
            assert job not in reported_since_signal
            assert now[0] - last_signal[job] >= 30 and stuck.silent_for >= 30
            reported_since_signal.add(job)
        # and nothing silent long enough was missed
        for job, at in last_signal.items():
            if job not in ended and now[0] - at >= 30:
                assert job in reported_since_signal
