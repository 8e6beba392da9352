"""follow_jobs(): InsideView and Mautic jobs submitted earlier, followed to their end by their ids (the simulator)."""

from __future__ import annotations

import collections

import anyio
import pytest

from adapters.follow import JobsResult, check_job_ids, follow_jobs
from adapters.http import Settings
from adapters.simulator import Clock, Faults, Simulator, SimulatorConfig
from adapters.simulator.mautic import JOB_TTL
from adapters.submit import submit
from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.exceptions import ConfigError
from eventbus.testing import capture
from tests.adapters.conftest import checked_simulator, closed_port
from tests.adapters.test_follow import contacts, settings

pytestmark = pytest.mark.anyio


async def submitted(sim: Simulator, provider: str, n: int) -> dict[str, tuple[int, ...]]:
    """Submit ``n`` contacts without following them: each job's id and the input rows it carries."""
    async with Bus() as bus:
        report = await submit(provider, contacts(provider, n), bus, settings=settings(sim, provider))
    assert report.ok and not report.invalid
    return {job.job_id: job.rows for job in report.accepted}


async def followed(sim: Simulator, provider: str, job_ids: list[str], **kwargs: object) -> tuple[JobsResult, list]:
    async with Bus() as bus, capture(bus) as events:
        result = await follow_jobs(provider, job_ids, bus, settings=settings(sim, provider), **kwargs)
    return result, events


@pytest.mark.parametrize("provider", ["insideview", "mautic"])
async def test_jobs_submitted_earlier_are_followed_to_their_end(simulator: Simulator, provider: str) -> None:
    """Two jobs of 12,000 contacts (10,000 + 2,000), submitted by one run and followed by another, by id alone:
    each is announced once, every contact it carried is reported once, and each completes with its total."""
    jobs = await submitted(simulator, provider, 12_000)
    assert sorted(len(rows) for rows in jobs.values()) == [2_000, 10_000]
    result, events = await followed(simulator, provider, list(jobs), timeout=60)
    assert result.ok and not result.timed_out and result.unfinished == [] and result.not_found == []
    sent = contacts(provider, 12_000)
    per_job: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    keys: dict[str, set[str]] = collections.defaultdict(set)
    for e in events:
        per_job[e.job_id][type(e).__name__] += 1
        if isinstance(e, ev.ItemSucceeded | ev.ItemFailed):
            keys[e.job_id].add(e.key)
    for job_id, rows in jobs.items():
        counts = per_job[job_id]
        assert counts["JobAccepted"] == 1 and counts["JobCompleted"] == 1, counts
        assert counts["ItemSucceeded"] + counts["ItemFailed"] == len(rows)
        if provider == "insideview":  # keyed by the contact ids the job carried
            assert keys[job_id] == {sent[r] for r in rows}
        else:  # keyed by the contact's position in its job (the input rows are not known here)
            assert keys[job_id] == {str(i) for i in range(len(rows))}
        row = result.board.rows[(provider, job_id)]
        assert row.state == "completed" and row.total == len(rows) == row.succeeded + row.failed
    accepted = [e for e in events if isinstance(e, ev.JobAccepted)]
    assert all(e.source == "poll" and e.batch_id == "" for e in accepted)


@pytest.mark.parametrize("provider", ["insideview", "mautic"])
async def test_a_job_followed_twice_reports_the_same_results_and_a_repeated_id_once(
    simulator: Simulator, provider: str
) -> None:
    """A finished job can be followed again (its results are read again, the same), and an id given twice is
    followed once."""
    jobs = await submitted(simulator, provider, 300)
    (job_id,) = jobs
    first, events1 = await followed(simulator, provider, [job_id, job_id], timeout=30)
    second, events2 = await followed(simulator, provider, [job_id], timeout=30)
    assert first.ok and second.ok and first.job_ids == [job_id]

    def outcomes(events: list) -> dict[str, str]:
        return {e.key: type(e).__name__ for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)}

    assert len(outcomes(events1)) == 300 and outcomes(events1) == outcomes(events2)
    items = [e for e in events1 if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)]
    assert len(items) == 300  # not 600: followed once


@pytest.mark.parametrize("provider", ["insideview", "mautic"])
async def test_an_unknown_job_id_is_said_at_once_and_the_others_still_end(simulator: Simulator, provider: str) -> None:
    """A 404 at the first poll is an unknown id (a typo): said in an InvalidSignal, listed in ``not_found``, and
    not waited for until the timeout; the real job beside it completes."""
    (job_id,) = await submitted(simulator, provider, 50)
    with anyio.fail_after(20):  # the timeout below is an hour: the unknown id must not be waited for
        result, events = await followed(simulator, provider, ["nosuchjob123", job_id], timeout=3600)
    assert not result.ok and not result.timed_out
    assert result.not_found == ["nosuchjob123"] and result.unfinished == ["nosuchjob123"]
    assert result.board.rows[(provider, job_id)].state == "completed"
    said = [e for e in events if isinstance(e, ev.InvalidSignal) and e.job_id == "nosuchjob123"]
    assert len(said) == 1 and "check the job id" in said[0].reason and said[0].status == 404
    assert not [e for e in events if isinstance(e, ev.JobExpired)]  # unknown is not "expired"


async def test_a_mautic_job_older_than_48_hours_is_unknown() -> None:
    """Mautic forgets a job 48 hours after it ran: followed by id after that, it is reported not found."""
    clock = Clock()
    async with checked_simulator(SimulatorConfig(item_time=0.0001, tick=0.005), clock=clock) as sim:
        (job_id,) = await submitted(sim, "mautic", 20)
        clock.advance(JOB_TTL + 60)
        result, _ = await followed(sim, "mautic", [job_id], timeout=30)
    assert result.not_found == [job_id] and not result.ok


async def test_jobs_still_running_at_the_timeout_are_listed() -> None:
    """A job that cannot end within the timeout: ``timed_out``, and it is listed unfinished (not completed)."""
    async with checked_simulator(SimulatorConfig(item_time=0.5, tick=0.05)) as sim:
        (job_id,) = await submitted(sim, "insideview", 1_000)  # 500 s of simulated work
        with anyio.fail_after(20):
            result, events = await followed(sim, "insideview", [job_id], timeout=0.5)
    assert result.timed_out and not result.ok and result.unfinished == [job_id] and result.not_found == []
    assert not [e for e in events if isinstance(e, ev.JobCompleted)]
    assert result.board.rows[("insideview", job_id)].state in ("accepted", "running")


@pytest.mark.parametrize(
    ("job_id", "said"),
    [
        ("", "is not a job id"),
        ("../../login", "is not a job id"),
        ("a/b", "is not a job id"),
        ("job?x=1", "is not a job id"),
        ("two words", "is not a job id"),
        ("..", "is not a job id"),
        ("x" * 201, "at most 200"),
        ("é", "is not a job id"),
        ("1f2e3d4c5b6a#3", "is a chunk reference, not a job id"),
    ],
)
async def test_a_malformed_job_id_is_refused_before_any_request(job_id: str, said: str) -> None:
    """Job ids go into the request's path: one that could leave it (or is empty, huge, or a chunk reference) is a
    ConfigError naming it, and nothing is sent (the base URL is a closed port: a request would fail otherwise)."""
    base = f"http://127.0.0.1:{await closed_port()}"
    async with Bus() as bus:
        with pytest.raises(ConfigError) as caught:
            await follow_jobs("insideview", ["goodjob1", job_id], bus, settings=Settings(base, "id", "secret"))
    assert said in str(caught.value)


def test_job_ids_are_kept_in_order_each_once() -> None:
    assert check_job_ids("mautic", ["b", "a", "b", "c-1_2.3~"]) == ["b", "a", "c-1_2.3~"]
    with pytest.raises(ConfigError, match="no job id given"):
        check_job_ids("mautic", [])
    with pytest.raises(ConfigError, match="a job id is text"):
        check_job_ids("mautic", [12345])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("provider", "said"),
    [
        ("datananas", "replayed"),
        ("pronto", "webhook"),
        ("hubspot", "unknown provider 'hubspot'"),
    ],
)
async def test_providers_whose_jobs_cannot_be_followed_by_id_are_refused_saying_why(provider: str, said: str) -> None:
    async with Bus() as bus:
        with pytest.raises(ConfigError, match=said):
            await follow_jobs(provider, ["j1"], bus, settings=Settings("http://127.0.0.1:9", "x"))


async def test_durations_are_checked_before_any_request() -> None:
    async with Bus() as bus:
        with pytest.raises(ConfigError, match="timeout"):
            await follow_jobs("mautic", ["j1"], bus, settings=Settings("http://127.0.0.1:9", "x", "y"), timeout=0)


@pytest.mark.parametrize("provider", ["insideview", "mautic"])
async def test_jobs_followed_by_id_end_exactly_through_503_bursts(provider: str) -> None:
    """Every third request starts two 503s (status polls, results and details pages alike): each job still
    completes with each contact reported once, and the failed polls are said (``SourceState``)."""
    async with checked_simulator(SimulatorConfig(item_time=0.0001, tick=0.005)) as sim:
        jobs = await submitted(sim, provider, 1_200)
        sim.state.config.faults.error_every, sim.state.config.faults.error_burst = 3, 2
        result, events = await followed(sim, provider, list(jobs), timeout=60)
    assert result.ok, (result.unfinished, result.not_found)
    items = [e for e in events if isinstance(e, ev.ItemSucceeded | ev.ItemFailed)]
    assert len(items) == len({(e.job_id, e.key) for e in items}) == 1_200
    assert any(isinstance(e, ev.SourceState) and e.state == "reconnecting" for e in events)


async def test_a_mautic_job_that_expires_while_followed_ends_expired() -> None:
    """Known from a first good poll, a Mautic job that then answers 404 expired: one ``JobExpired`` ends it (not
    ``not_found``, and ``ok`` is False)."""
    config = SimulatorConfig(item_time=0.02, tick=0.01, faults=Faults(mautic_expire_after=3.0))
    async with checked_simulator(config) as sim:
        (job_id,) = await submitted(sim, "mautic", 500)  # 10 s of work: it expires 3 s after it was created
        result, events = await followed(sim, "mautic", [job_id], timeout=30)
    assert not result.ok and result.not_found == [] and result.unfinished == []
    assert result.board.rows[("mautic", job_id)].state == "expired"
    assert sum(isinstance(e, ev.JobExpired) for e in events) == 1


async def test_at_most_concurrency_jobs_are_watched_at_once(simulator: Simulator) -> None:
    """``concurrency=1``: the second job is not polled before the first has ended (its first event comes after
    the first job's end), and both complete; ``concurrency=0`` is refused before any request."""
    first = await submitted(simulator, "mautic", 400)
    second = await submitted(simulator, "mautic", 400)
    order = [*first, *second]
    result, events = await followed(simulator, "mautic", order, timeout=30, concurrency=1)
    assert result.ok
    of_jobs = [e for e in events if e.job_id in order]
    first_end = next(i for i, e in enumerate(of_jobs) if isinstance(e, ev.JobCompleted))
    assert of_jobs[first_end].job_id == order[0]
    assert {e.job_id for e in of_jobs[: first_end + 1]} == {order[0]}
    assert {e.job_id for e in of_jobs[first_end + 1 :]} == {order[1]}
    async with Bus() as bus:
        with pytest.raises(ConfigError, match="concurrency must be a whole number, 1 or more, not 0"):
            await follow_jobs("mautic", order, bus, settings=settings(simulator, "mautic"), concurrency=0)
