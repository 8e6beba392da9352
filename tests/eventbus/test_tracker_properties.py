"""Property test: any interleaving of redundant signals from three sources keeps every tracker invariant."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from eventbus import events as ev
from eventbus.tracker import JobTracker

SOURCES = ("websocket", "webhook", "poll")
TERMINALS = (ev.JobCompleted, ev.JobFailed, ev.JobCancelled, ev.JobExpired)


@st.composite
def job_signals(draw: st.DrawFn, job: str) -> list[ev.Event]:
    """Every raw signal the three sources (and the submitter) might send about one job."""
    n_items = draw(st.integers(0, 6))
    base = {"provider": "p", "job_id": job}
    signals: list[ev.Event] = []
    if draw(st.booleans()):
        signals.append(ev.JobAccepted(id=f"{job}-acc", source="submit", total=n_items, **base))
    for key in range(n_items):
        failed = draw(st.booleans())
        for source in draw(st.sets(st.sampled_from(SOURCES), min_size=1)):
            if failed:
                signals.append(
                    ev.ItemFailed(id=f"{job}-{key}", source=source, key=str(key), code="x", message="m", **base)
                )
            else:
                signals.append(
                    ev.ItemSucceeded(id=f"{job}-{key}", source=source, key=str(key), outcome="found", **base)
                )
    for source in draw(st.sets(st.sampled_from(SOURCES))):
        for done in draw(st.lists(st.integers(0, n_items), max_size=4)):
            signals.append(ev.JobProgress(id=f"{job}-p{done}", source=source, done=done, **base))
    terminal = draw(st.sampled_from(TERMINALS))
    for source in draw(st.sets(st.sampled_from(SOURCES), min_size=1)):
        fields = {"reason": "r"} if terminal is ev.JobFailed else {}
        signals.append(terminal(id=f"{job}-end", source=source, **fields, **base))
    return signals


@st.composite
def streams(draw: st.DrawFn) -> list[ev.Event]:
    """Several jobs' signals plus passthrough events, duplicated and shuffled."""
    signals: list[ev.Event] = []
    for job in draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True)):
        signals.extend(draw(job_signals(job)))
    for i in range(draw(st.integers(0, 2))):
        signals.append(ev.SourceState(id=f"s{i}", provider="p", job_id="", source="websocket", state="connected"))
    if signals:
        copies = draw(st.lists(st.sampled_from(signals), max_size=len(signals)))
        signals.extend(copies)
    return draw(st.permutations(signals))


@settings(max_examples=300, deadline=None)
@given(streams())
def test_invariants_hold_for_any_interleaving(raw: list[ev.Event]) -> None:
    """One JobAccepted first, monotonic progress, each item once, one terminal last, passthrough untouched."""
    tracker = JobTracker()
    out: list[ev.Event] = []
    for event in raw:
        out.extend(tracker.feed(event))

    assert [x for x in out if isinstance(x, ev.SourceState)] == [x for x in raw if isinstance(x, ev.SourceState)]

    for job in {x.job_id for x in raw if x.job_id}:
        mine = [x for x in out if x.job_id == job]
        theirs = [x for x in raw if x.job_id == job]
        # exactly one JobAccepted, and it comes first
        assert isinstance(mine[0], ev.JobAccepted)
        assert sum(isinstance(x, ev.JobAccepted) for x in mine) == 1
        # progress never decreases
        dones = [x.done for x in mine if isinstance(x, ev.JobProgress)]
        assert dones == sorted(dones)
        # exactly one terminal event, and it is the job's last event
        assert sum(isinstance(x, TERMINALS) for x in mine) == 1
        assert isinstance(mine[-1], TERMINALS)
        assert type(mine[-1]) is type(next(x for x in theirs if isinstance(x, TERMINALS)))
        # each item once; every item that arrived before the first terminal signal is there
        keys = [x.key for x in mine if isinstance(x, ev.ItemSucceeded | ev.ItemFailed)]
        assert len(keys) == len(set(keys))
        first_end = next(i for i, x in enumerate(theirs) if isinstance(x, TERMINALS))
        expected = {x.key for x in theirs[:first_end] if isinstance(x, ev.ItemSucceeded | ev.ItemFailed)}
        assert set(keys) == expected
        # a job's first item outcome is the one reported
        for key in keys:
            first = next(x for x in theirs if getattr(x, "key", None) == key)
            reported = next(x for x in mine if getattr(x, "key", None) == key)
            assert type(first) is type(reported)
    assert tracker.active_jobs() == []
