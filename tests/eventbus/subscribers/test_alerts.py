"""Alerts: rules fire once per condition (synchronous core tests), hooks deliver (asyncio and trio, real HTTP)."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.abc
import msgspec
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.serving import ServedApp
from adapters.signing import verify
from eventbus import events as ev
from eventbus.bus import Bus
from eventbus.exceptions import ConfigError, SubscriptionClosed
from eventbus.subscribers.alerts import (
    Alert,
    Alerts,
    FailedJob,
    FailureRate,
    OutOfQuota,
    StuckJob,
    ThrottledTooLong,
    call,
    log_to,
    post_to,
)
from eventbus.subscribers.log import EventLogger

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"alerts-test-secret-key").decode()


def e(cls: type[ev.Event], id: str, job: str = "J1", provider: str = "mautic", **fields: Any) -> Any:
    return cls(id=id, provider=provider, job_id=job, source="poll", at=T0, **fields)


def failed(job: str, id: str | None = None) -> ev.JobFailed:
    return e(ev.JobFailed, id or f"failed-{job}", job, reason="import error")


def items(job: str, ok: int, bad: int, start: int = 0) -> list[ev.Event]:
    """``ok`` successes then ``bad`` failures, keys numbered from ``start``."""
    out: list[ev.Event] = []
    for n in range(start, start + ok + bad):
        if n < start + ok:
            out.append(e(ev.ItemSucceeded, f"{job}-i{n}", job, key=str(n), outcome="found"))
        else:
            out.append(e(ev.ItemFailed, f"{job}-i{n}", job, key=str(n), code="400", message="bad email"))
    return out


def feed(alerts: Alerts, *events: ev.Event) -> None:
    for event in events:
        alerts(event)


def collecting(*rules: Any, **options: Any) -> tuple[Alerts, list[Alert]]:
    got: list[Alert] = []
    return Alerts(rules=rules, hooks=[got.append], **options), got


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


# --- FailedJob ---------------------------------------------------------------------------------


def test_a_failed_job_fires_once_whatever_the_copies() -> None:
    """The same FailedJob twice, another source's FailedJob, then a late JobCompleted: one alert."""
    alerts, got = collecting(FailedJob())
    first = failed("J1", "f1")
    feed(alerts, first, first, failed("J1", "f2"), e(ev.JobCompleted, "c1"))
    (alert,) = got
    assert (alert.rule, alert.provider, alert.job_id, alert.event_ids, alert.at) == (
        "job_failed",
        "mautic",
        "J1",
        ("f1",),
        T0,
    )
    assert alert.message == (
        "job J1 at mautic failed: import error. The contacts it did not process must be sent again "
        "(check the job at mautic first)"
    )
    assert alert.details == {"state": "failed", "reason": "import error"}
    assert alert.id.startswith("alert_") and len(alert.id) == 6 + 32
    stats = alerts.stats()
    assert (stats.fired, stats.duplicates, stats.jobs) == ({"job_failed": 1}, 1, 0)


def test_the_first_terminal_event_decides() -> None:
    """A job that completed and is then reported failed (out of order) fires nothing."""
    alerts, got = collecting(FailedJob())
    feed(alerts, e(ev.JobCompleted, "c1"), failed("J1"))
    assert got == []


@pytest.mark.parametrize(
    "rule, fired",
    [
        (FailedJob(), ["failed", "expired"]),
        (FailedJob(expired=False), ["failed"]),
        (FailedJob(cancelled=True), ["failed", "expired", "cancelled"]),
    ],
    ids=["default", "not-expired", "cancelled-too"],
)
def test_expired_fires_by_default_cancelled_only_when_asked(rule: FailedJob, fired: list[str]) -> None:
    """JobExpired is a failure unless expired=False; JobCancelled only with cancelled=True."""
    alerts, got = collecting(rule)
    feed(alerts, failed("J1"), e(ev.JobExpired, "x", "J2", reason="404"), e(ev.JobCancelled, "k", "J3"))
    assert [a.details["state"] for a in got] == fired


def test_evaluate_is_the_pure_core_it_calls_no_hook() -> None:
    """evaluate() returns the alerts and updates the state; only calling the Alerts hands them to hooks."""
    alerts, got = collecting(FailedJob())
    (alert,) = alerts.evaluate(failed("J1"))
    assert alert.job_id == "J1" and got == [] and alerts.evaluate(failed("J1", "other")) == []


def test_one_rule_and_one_hook_may_be_given_alone() -> None:
    """rules= and hooks= take a single rule or hook as well as a list."""
    got: list[Alert] = []
    alerts = Alerts(rules=StuckJob(), hooks=got.append)
    feed(alerts, stuck("s1"), failed("J2"))
    assert [a.rule for a in got] == ["job_stuck"]


def test_the_alert_id_depends_on_the_condition_and_its_event_only() -> None:
    """Two Alerts fed the same event give the same id (receivers dedupe on it); another job, another id."""
    one, got_one = collecting(FailedJob())
    two, got_two = collecting(FailedJob())
    feed(one, failed("J1"), failed("J2"))
    feed(two, failed("J1"))
    assert got_one[0].id == got_two[0].id != got_one[1].id


# --- FailureRate ---------------------------------------------------------------------------------


def test_failure_rate_never_fires_below_min_items() -> None:
    """49 failures out of 49 contacts: not enough items to judge with min_items=50."""
    alerts, got = collecting(FailureRate(threshold=0.2, min_items=50))
    feed(alerts, *items("J1", 0, 49))
    assert got == []


def test_failure_rate_exactly_at_the_threshold_does_not_fire_just_above_does_once() -> None:
    """10 of 50 (0.2) is not above 0.2; the 51st contact failing (11 of 51) fires, and nothing after."""
    alerts, got = collecting(FailureRate(threshold=0.2, min_items=50))
    feed(alerts, *items("J1", 40, 10))
    assert got == []
    feed(alerts, *items("J1", 0, 30, start=50))
    (alert,) = got
    assert alert.event_ids == ("J1-i50",)
    assert alert.details == {
        "failed": 11,
        "succeeded": 40,
        "rate": 0.2157,
        "threshold": 0.2,
        "min_items": 50,
        "counted_from": "items",
    }
    assert alert.message == (
        "11 of 51 contacts failed in job J1 at mautic (21.6%, above the 20.0% limit): look at the item_failed codes "
        "and messages before sending more; the contacts or the field mapping may be wrong"
    )


def test_failure_rate_counts_an_event_delivered_twice_once() -> None:
    """The same 10 failures delivered twice (50 contacts, 10 failed) stay at 0.2: no alert."""
    alerts, got = collecting(FailureRate(threshold=0.2, min_items=50))
    batch = items("J1", 40, 10)
    feed(alerts, *batch, *batch[40:])
    assert got == [] and alerts.stats().duplicates == 10


def test_failure_rate_is_per_job() -> None:
    """Failures spread over two jobs do not add up."""
    alerts, got = collecting(FailureRate(threshold=0.5, min_items=4))
    feed(alerts, *items("J1", 2, 1), *items("J2", 2, 1))
    assert got == []
    feed(alerts, *items("J2", 0, 2, start=3))
    assert [a.job_id for a in got] == ["J2"]


def test_failure_rate_is_judged_on_the_providers_totals_at_the_end() -> None:
    """Items not reported one by one: the JobCompleted totals (60 failed of 100) decide, once."""
    alerts, got = collecting(FailureRate())
    feed(alerts, *items("J1", 1, 1), e(ev.JobCompleted, "c1", succeeded=40, failed=60))
    (alert,) = got
    assert alert.event_ids == ("c1",)
    assert (alert.details["failed"], alert.details["succeeded"], alert.details["counted_from"]) == (
        60,
        40,
        "job_completed",
    )


def test_failure_rate_ignores_rows_refused_before_sending() -> None:
    """ItemFailed of chunk #-1 (validation) is no job's failure rate, and holds no state."""
    alerts, got = collecting(FailureRate(threshold=0.2, min_items=50))
    feed(alerts, *items("B1#-1", 0, 60))
    assert got == [] and alerts.stats().jobs == 0


# --- OutOfQuota -----------------------------------------------------------------------------


def quota(chunk: str, provider: str = "pronto", id: str | None = None) -> ev.QuotaExhausted:
    return e(
        ev.QuotaExhausted,
        id or f"quota-{provider}-{chunk}",
        chunk,
        provider,
        status=422,
        reason="insufficient_credits",
        message="100 contacts need 100 credits, 50 left",
    )


def submitted(index: int, provider: str = "pronto") -> ev.BatchSubmitted:
    fields = {"batch_id": "B", "chunk_index": index, "chunk_count": 9, "size": 100}
    return e(ev.BatchSubmitted, f"sub-{index}", f"B#{index}", provider, **fields)


def accepted(index: int, provider: str = "pronto") -> ev.JobAccepted:
    return e(ev.JobAccepted, f"acc-{index}", f"J{index}", provider, batch_id="B", chunk_index=index)


def test_quota_fires_once_per_provider_until_work_sent_after_it_is_accepted() -> None:
    """Other chunks and copies fire nothing; a chunk in flight accepted later does not re-arm; one sent after does."""
    alerts, got = collecting(OutOfQuota())
    feed(
        alerts,
        submitted(0),
        submitted(1),
        quota("B#1"),  # fires
        quota("B#1"),  # the same event again
        quota("B#2"),  # another chunk, same account
        quota("D#0", provider="datananas"),  # another provider: fires
        accepted(0),  # sent before the alert: says nothing of the quota now
        quota("B#3"),
        submitted(4),
        accepted(4),  # sent after the alert and taken: there is quota again
        quota("B#5"),  # fires again
    )
    assert [(a.provider, a.job_id) for a in got] == [("pronto", "B#1"), ("datananas", "D#0"), ("pronto", "B#5")]
    assert got[0].message == (
        "out of quota (HTTP 422): insufficient_credits — 100 contacts need 100 credits, 50 left. pronto refuses "
        "every chunk until the account has quota, credits or consent again; chunks refused meanwhile must be sent "
        "again then"
    )
    assert got[0].details == {
        "status": 422,
        "reason": "insufficient_credits",
        "provider_message": "100 contacts need 100 credits, 50 left",
    }


# --- ThrottledTooLong ---------------------------------------------------------------------------


def throttled(id: str, wait: float, job: str = "J1") -> ev.Throttled:
    return e(ev.Throttled, id, job, retry_after=wait)


def test_throttled_fires_once_when_429s_in_a_row_add_up_to_the_limit() -> None:
    """Progress starts the sum again; a copy is not added twice; reaching the limit fires once, then nothing."""
    alerts, got = collecting(ThrottledTooLong(seconds=10))
    feed(alerts, throttled("t1", 4), throttled("t2", 4), e(ev.JobProgress, "p1", done=5))  # 8s, then progress
    feed(alerts, throttled("t3", 4), throttled("t3", 4), throttled("t4", 4))  # 8s (t3 counted once)
    assert got == []
    feed(alerts, throttled("t5", 2), throttled("t6", 30))  # 10s: fires; then nothing more for this job
    (alert,) = got
    assert alert.event_ids == ("t3", "t5")
    assert alert.details == {"waited": 10.0, "throttles": 3, "seconds": 10}
    assert alert.message == (
        "job J1 at mautic has waited 10s on rate limits (3 throttled answers in a row), more than 10s: lower the "
        "concurrency or the client rate limit, or ask mautic for a higher limit"
    )


def test_a_chunks_throttle_state_ends_when_the_chunk_is_accepted_or_refused() -> None:
    """A throttled chunk holds state until its acceptance (by chunk reference) or its refusal."""
    alerts, got = collecting(ThrottledTooLong(seconds=100))
    feed(alerts, throttled("t1", 5, job="B#0"), throttled("t2", 5, job="B#1"))
    assert alerts.stats().jobs == 2
    feed(alerts, e(ev.JobAccepted, "a0", "J0", batch_id="B", chunk_index=0))
    assert alerts.stats().jobs == 1
    feed(alerts, e(ev.SubmitRejected, "r1", "B#1", status=400, reason="bad", retriable=False))
    assert alerts.stats().jobs == 0 and got == []


# --- StuckJob -----------------------------------------------------------------------------------


def stuck(id: str, job: str = "J1") -> ev.JobStuck:
    return e(ev.JobStuck, id, job, silent_for=300.0, last_type="job_progress")


def test_stuck_fires_once_per_silence() -> None:
    """Two reports of one silence fire once; progress re-arms; after the job's end nothing fires."""
    alerts, got = collecting(StuckJob())
    feed(alerts, stuck("s1"), stuck("s2"), e(ev.JobProgress, "p1", done=3), stuck("s3"), stuck("s3"))
    feed(alerts, e(ev.JobCompleted, "c1"), stuck("s4"))
    assert [a.event_ids for a in got] == [("s1",), ("s3",)]
    assert got[0].message == (
        "job J1 at mautic has said nothing for 300s (last: job_progress): check its status at mautic, and that what "
        "watches it (webhooks, the WebSocket or polls) still receives"
    )
    assert alerts.stats().jobs == 0


# --- bounded memory ----------------------------------------------------------------------------


def test_a_jobs_state_is_freed_when_it_ends_and_stragglers_make_none() -> None:
    """Each terminal type frees its job; an item arriving after the end holds nothing and fires nothing."""
    alerts, got = collecting(FailureRate(threshold=0.1, min_items=2), ThrottledTooLong(), StuckJob())
    for job in ("J1", "J2", "J3", "J4"):
        feed(alerts, *items(job, 1, 0))
    assert alerts.stats().jobs == 4
    feed(alerts, e(ev.JobCompleted, "c1", "J1"), failed("J2"), e(ev.JobCancelled, "k", "J3"))
    assert alerts.stats().jobs == 1
    feed(alerts, e(ev.JobExpired, "x", "J4"), *items("J1", 0, 5, start=1), throttled("t", 500, "J2"), stuck("s", "J3"))
    assert alerts.stats().jobs == 0 and got == []


def test_jobs_beyond_max_jobs_are_forgotten_least_recent_first(caplog: pytest.LogCaptureFixture) -> None:
    """max_jobs=2: a third job evicts the least recently active one, counted and logged once."""
    caplog.set_level(logging.WARNING, "eventbus.alerts")
    alerts, got = collecting(FailureRate(threshold=0.5, min_items=2), max_jobs=2)
    feed(alerts, *items("J1", 0, 1), *items("J2", 0, 1), *items("J1", 1, 0, start=1), *items("J3", 0, 1))
    assert (alerts.stats().jobs, alerts.stats().evicted) == (2, 1)
    feed(alerts, *items("J1", 0, 1, start=2))  # J1 was kept (touched after J2): 2 failed of 3 fires
    feed(alerts, *items("J2", 0, 1, start=1))  # J2's first failure was forgotten: 1 of 1, below min_items; J3 goes
    assert [a.job_id for a in got] == ["J1"]
    assert alerts.stats().evicted == 2 and len(records(caplog, "alerts_jobs_evicted")) == 1


def test_ended_jobs_are_remembered_up_to_max_jobs() -> None:
    """With max_jobs=2, the third job to end pushes the first out: a new FailedJob for it fires again."""
    alerts, got = collecting(FailedJob(), max_jobs=2)
    feed(alerts, failed("J1"), failed("J1", "again"), failed("J2"), failed("J3"), failed("J1", "later"))
    assert [a.event_ids for a in got] == [("failed-J1",), ("failed-J2",), ("failed-J3",), ("later",)]


def test_event_ids_are_remembered_up_to_dedupe_window() -> None:
    """A copy arriving after dedupe_window newer events is not recognised (and counted again)."""
    alerts, got = collecting(FailureRate(threshold=0.5, min_items=3), dedupe_window=2)
    first, *rest = items("J1", 0, 3)
    feed(alerts, first, *rest[:1], first)  # within the window: ignored
    assert got == []
    feed(alerts, rest[1], first)  # pushed out by two newer ids: counted again, 3 of 3 failed
    assert len(got) == 1 and alerts.stats().duplicates == 1


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: FailureRate(threshold=1.0),
            "FailureRate: threshold must be a fraction from 0 up to, not including, 1, not 1.0",
        ),
        (
            lambda: FailureRate(threshold=float("nan"), min_items=2.5),
            "FailureRate: threshold must be a fraction from 0 up to, not including, 1, not nan; "
            "min_items must be a whole number, 1 or more, not 2.5",
        ),
        (
            lambda: FailureRate(threshold=-0.1, min_items=0),
            "FailureRate: threshold must be a fraction from 0 up to, not including, 1, not -0.1; "
            "min_items must be a whole number, 1 or more, not 0",
        ),
        (
            lambda: ThrottledTooLong(seconds=0),
            "ThrottledTooLong: seconds must be a finite number of seconds above 0, not 0",
        ),
        (lambda: FailedJob(expired="yes"), "FailedJob: expired must be True or False, not 'yes'"),
        (
            lambda: Alerts(hooks=[print], max_jobs=0, dedupe_window=True, close_timeout=float("inf")),
            "Alerts: max_jobs must be a whole number, 1 or more, not 0; dedupe_window must be a whole number, "
            "1 or more, not True; close_timeout must be a finite number of seconds above 0, not inf",
        ),
        (lambda: Alerts(hooks=[]), "Alerts: no hooks: alerts would go nowhere; give post_to(), log_to() or a callable"),
        (lambda: Alerts(hooks=[print], rules=[]), "Alerts: rules is empty: nothing would ever fire"),
        (
            lambda: Alerts(hooks=[print], rules=[FailureRate(), FailureRate(0.5)]),
            "Alerts: two FailureRate rules; give one (for two thresholds, use two Alerts)",
        ),
        (
            lambda: Alerts(hooks=[print], rules=["job_failed"]),
            "Alerts: 'job_failed' is not a rule; use FailedJob, FailureRate, OutOfQuota, ThrottledTooLong or "
            "StuckJob from eventbus.subscribers.alerts",
        ),
        (
            lambda: Alerts(hooks=[42]),
            "a hook must be callable, or made by post_to()/log_to(), not 42",
        ),
        (
            lambda: post_to("ftp://example.com/x"),
            "post_to: the URL must be http:// or https:// with a host, not 'ftp://example.com/x'",
        ),
        (
            lambda: post_to("http://u:pw@example.com/x?token=abc", timeout=0, attempts=0, backoff=-1, queue=1.5),
            "post_to: timeout must be a finite number of seconds above 0, not 0; attempts must be a whole number, "
            "1 or more, not 0; backoff must be a finite number, 0 or more, not -1; queue must be a whole number, "
            "1 or more, not 1.5",
        ),
        (
            lambda: post_to("https://example.com/x", secret="s3cret-value\n"),
            "post_to: secret: webhook secret begins or ends with a space or line break (often a trailing newline "
            "from the file it was read from); remove it",
        ),
        (
            lambda: log_to(level="loud"),
            "log_to: level must be one of debug, info, warning, error, critical, not 'loud'",
        ),
        (
            lambda: log_to(42),
            "log_to: give a logging.Logger, an EventLogger, a structlog logger or a text stream, not 42",
        ),
        (
            lambda: call(print, timeout=1),
            "call: timeout= and queue= are for async hooks; print is called in the handler, at once",
        ),
    ],
)
def test_bad_configuration_is_refused_naming_the_value(make: Any, message: str) -> None:
    """Each wrong setting is a ConfigError naming it, its value and what it must be (never a secret)."""
    with pytest.raises(ConfigError) as info:
        make()
    assert str(info.value) == message


def test_a_hook_belongs_to_one_alerts() -> None:
    """The same post_to hook given to two Alerts is refused (its queue and task are its own)."""
    hook = post_to("https://example.com/x")
    Alerts(hooks=[hook])
    with pytest.raises(ConfigError, match="already belongs to another Alerts"):
        Alerts(hooks=[hook])


# --- hooks: callables and logs -------------------------------------------------------------------


def test_a_raising_hook_is_logged_and_counted_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    """The hook after a raising one gets the alert; the failure is logged without the token in its text."""

    def pager(alert: Alert) -> None:
        raise RuntimeError("pager refused token=tok-abcdef123")

    got: list[Alert] = []
    stream = io.StringIO()
    alerts = Alerts(rules=[FailedJob()], hooks=[pager, got.append, log_to(stream)])
    feed(alerts, failed("J1"), failed("J2"))
    assert [a.job_id for a in got] == ["J1", "J2"] and len(stream.getvalue().splitlines()) == 2
    assert [(h.name, h.delivered, h.failed) for h in alerts.stats().hooks] == [
        (pager.__qualname__, 0, 2),
        ("list.append", 2, 0),
        ("log:StringIO", 2, 0),
    ]
    failures = records(caplog, "alert_hook_failed")
    assert len(failures) == 2 and failures[0].hook == pager.__qualname__
    assert "tok-abcdef123" not in caplog.text and "tok-abcdef123" not in failures[0].error


def test_a_plain_function_returning_an_awaitable_is_a_failure_not_a_silent_loss() -> None:
    """A lambda returning a coroutine is refused (and the coroutine closed), counted as failed."""

    async def later(alert: Alert) -> None:  # pragma: no cover - never awaited, on purpose
        pass

    alerts = Alerts(rules=[FailedJob()], hooks=[lambda alert: later(alert)])
    feed(alerts, failed("J1"))
    assert alerts.stats().hooks[0].failed == 1


def test_log_to_a_stream_writes_one_json_line_per_alert_secrets_redacted() -> None:
    """A text stream gets one JSON line per alert, at the level asked, with secrets in the text redacted."""
    stream = io.StringIO()
    alerts = Alerts(rules=[FailedJob()], hooks=[log_to(stream, level="error")])
    feed(alerts, e(ev.JobFailed, "f", reason="login refused api_key=k-0123456789"))
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert "k-0123456789" not in line and entry["details"]["reason"] == "login refused api_key=[redacted]"
    assert (entry["event"], entry["level"], entry["rule"], entry["job_id"], entry["at"]) == (
        "alert",
        "error",
        "job_failed",
        "J1",
        "2025-01-02T03:04:05Z",
    )
    assert entry["alert_id"].startswith("alert_") and entry["event_ids"] == ["f"]


def test_log_to_an_event_logger_joins_the_events_log() -> None:
    """The alert is one more JSON line in the EventLogger's stream, beside the events."""
    stream = io.StringIO()
    log = EventLogger(stream, json=True)
    alerts = Alerts(rules=[FailedJob()], hooks=[log_to(log)])
    event = failed("J1")
    log(event)
    alerts(event)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["event"], second["event"], second["level"], second["details"]) == (
        "job_failed",
        "alert",
        "warning",
        {"state": "failed", "reason": "import error"},
    )


def test_log_to_a_logging_logger(caplog: pytest.LogCaptureFixture) -> None:
    """A logging.Logger gets one record per alert, its fields on record.alert."""
    alerts = Alerts(rules=[FailedJob()], hooks=[log_to(logging.getLogger("my.alerts"))])
    with caplog.at_level(logging.WARNING, "my.alerts"):
        feed(alerts, failed("J1"))
    (record,) = [r for r in caplog.records if r.name == "my.alerts"]
    assert record.levelname == "WARNING" and record.getMessage().startswith("alert job_failed: job J1 at mautic failed")
    assert record.alert["job_id"] == "J1"  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_async_hooks_are_awaited_from_their_own_task_in_order() -> None:
    """Firing does not wait for an async hook; drain() does, and the alerts come in firing order."""
    got: list[str] = []

    async def hook(alert: Alert) -> None:
        await anyio.lowlevel.checkpoint()
        got.append(alert.job_id)

    alerts = Alerts(rules=[FailedJob()], hooks=[hook])
    with anyio.fail_after(5):
        async with alerts:
            feed(alerts, failed("J1"), failed("J2"))
            assert got == [] and alerts.stats().hooks[0].queued == 2
            await alerts.drain()
            assert got == ["J1", "J2"]
    assert alerts.stats().hooks[0].delivered == 2


@pytest.mark.anyio
async def test_an_async_hook_that_does_not_finish_in_time_fails(caplog: pytest.LogCaptureFixture) -> None:
    """An async hook still running after its timeout is cancelled and counted as failed, saying so."""
    never = anyio.Event()

    async def hangs(alert: Alert) -> None:
        await never.wait()

    alerts = Alerts(rules=[FailedJob()], hooks=[call(hangs, timeout=0.05, name="hangs")])
    with anyio.fail_after(5):
        async with alerts:
            feed(alerts, failed("J1"))
            await alerts.drain()
    assert (alerts.stats().hooks[0].failed, records(caplog, "alert_hook_failed")[0].error) == (
        1,
        "did not finish within 0.05s",
    )


def test_a_queued_hook_not_running_drops_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    """An async hook on an Alerts that was never entered: the alert is dropped, counted and logged."""

    async def hook(alert: Alert) -> None:  # pragma: no cover - never runs
        pass

    alerts = Alerts(rules=[FailedJob()], hooks=[hook])
    feed(alerts, failed("J1"))
    assert alerts.stats().hooks[0].dropped == 1
    assert "enter the Alerts" in records(caplog, "alert_dropped")[0].reason


@pytest.mark.anyio
async def test_leaving_on_an_error_drops_what_was_not_delivered() -> None:
    """An error in the block stops the hooks at once: the alert being sent and the queued one count as dropped."""
    entered, never = anyio.Event(), anyio.Event()

    async def hangs(alert: Alert) -> None:
        entered.set()
        await never.wait()

    alerts = Alerts(rules=[FailedJob()], hooks=[hangs])
    with anyio.fail_after(5), pytest.raises(KeyError):
        async with alerts:
            feed(alerts, failed("J1"), failed("J2"))
            await entered.wait()
            raise KeyError("boom")
    hook = alerts.stats().hooks[0]
    assert (hook.delivered, hook.failed, hook.dropped, hook.queued) == (0, 0, 2, 0)


@pytest.mark.anyio
async def test_leaving_waits_for_queued_alerts_at_most_close_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """A hook that never finishes holds the exit close_timeout seconds, then its alert counts as dropped."""
    never = anyio.Event()

    async def hangs(alert: Alert) -> None:
        await never.wait()

    alerts = Alerts(rules=[FailedJob()], hooks=[hangs], close_timeout=0.1)
    with anyio.fail_after(5):
        async with alerts:
            feed(alerts, failed("J1"))
    assert alerts.stats().hooks[0].dropped == 1
    assert records(caplog, "alerts_close_timeout")[0].undelivered == 1


@pytest.mark.anyio
async def test_an_alerts_is_entered_once() -> None:
    """Entering an Alerts again after it exited is refused."""
    alerts = Alerts(hooks=[print])
    async with alerts:
        pass
    with pytest.raises(SubscriptionClosed, match="entered once"):
        async with alerts:
            pass  # pragma: no cover


@pytest.mark.anyio
async def test_attached_to_a_bus_it_reads_only_what_its_rules_need() -> None:
    """attach() subscribes for its rules' types; copies published twice fire once; leaving delivers the queue."""
    got: list[str] = []

    async def hook(alert: Alert) -> None:
        got.append(f"{alert.rule} {alert.job_id}")

    alerts = Alerts(rules=[FailedJob(), OutOfQuota()], hooks=[hook])
    with anyio.fail_after(5):
        async with Bus() as bus:
            async with alerts.attach(bus):
                for event in [failed("J1"), failed("J1"), e(ev.JobProgress, "p", done=1), quota("B#0"), quota("B#1")]:
                    await bus.publish(event)
                await bus.drain()
                assert bus.stats()["alerts"].received == 4  # the JobProgress was not routed to it
            assert "alerts" not in bus.stats()
    assert got == ["job_failed J1", "quota_exhausted B#0"]


# --- post_to: a real receiver over loopback --------------------------------------------------------


class Receiver:
    """A Starlette app recording each POST; it answers the statuses given, then 200."""

    def __init__(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()  # the app runs on the server's thread
        self.app = Starlette(routes=[Route("/alerts", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self.requests.append((dict(request.headers), body))
            status = self.statuses.pop(0) if self.statuses else 200
        return Response(status_code=status, headers=self.headers if status != 200 else None)


@pytest.mark.anyio
async def test_post_to_sends_the_alert_as_signed_json_that_verifies() -> None:
    """The receiver checks the Standard Webhooks signature with adapters.signing.verify and decodes the Alert."""
    receiver = Receiver()
    got: list[Alert] = []
    with anyio.fail_after(10):
        async with ServedApp(receiver.app) as served:
            alerts = Alerts(rules=[FailedJob()], hooks=[got.append, post_to(served.url + "/alerts", secret=SECRET)])
            async with alerts:
                feed(alerts, failed("J1"))
                await alerts.drain()
    ((headers, body),) = receiver.requests
    assert verify(SECRET, headers, body) == got[0].id == headers["webhook-id"]
    assert headers["content-type"] == "application/json" and headers["user-agent"] == "eventbus-alerts"
    assert msgspec.json.decode(body, type=Alert) == got[0]
    hook = alerts.stats().hooks[1]
    assert (hook.kind, hook.delivered, hook.failed, hook.retried) == ("post", 1, 0, 0)


@pytest.mark.anyio
async def test_post_to_without_a_secret_sends_no_signature() -> None:
    """Unsigned: webhook-id and webhook-timestamp are sent, no signature; extra headers ride along."""
    receiver = Receiver()
    with anyio.fail_after(10):
        async with ServedApp(receiver.app) as served:
            alerts = Alerts(rules=[FailedJob()], hooks=[post_to(served.url + "/alerts", headers={"x-team": "crm"})])
            async with alerts:
                feed(alerts, failed("J1"))
    ((headers, _),) = receiver.requests  # delivered on leaving the block
    assert "webhook-signature" not in headers and headers["webhook-id"].startswith("alert_")
    assert headers["webhook-timestamp"].isdigit() and headers["x-team"] == "crm"


@pytest.mark.anyio
async def test_post_to_retries_5xx_with_the_same_webhook_id(caplog: pytest.LogCaptureFixture) -> None:
    """500, 503, then 200: delivered on the third attempt, each attempt signed, the id unchanged."""
    caplog.set_level(logging.INFO, "eventbus.alerts")
    receiver = Receiver(500, 503)
    with anyio.fail_after(10):
        async with ServedApp(receiver.app) as served:
            alerts = Alerts(rules=[FailedJob()], hooks=[post_to(served.url + "/alerts", SECRET, backoff=0.01)])
            async with alerts:
                feed(alerts, failed("J1"))
                await alerts.drain()
    ids = {verify(SECRET, headers, body) for headers, body in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1
    hook = alerts.stats().hooks[0]
    assert (hook.delivered, hook.failed, hook.retried) == (1, 0, 2)
    assert [r.reason for r in records(caplog, "alert_hook_retrying")] == ["HTTP 500", "HTTP 503"]


@pytest.mark.anyio
async def test_post_to_waits_what_a_429_asks_before_trying_again(caplog: pytest.LogCaptureFixture) -> None:
    """A 429 with Retry-After: 0.2 is tried again after at least 0.2 s, whatever the (shorter) backoff."""
    caplog.set_level(logging.INFO, "eventbus.alerts")
    receiver = Receiver(429, headers={"retry-after": "0.2"})
    with anyio.fail_after(10):
        async with ServedApp(receiver.app) as served:
            alerts = Alerts(rules=[FailedJob()], hooks=[post_to(served.url + "/alerts", backoff=0.01)])
            async with alerts:
                feed(alerts, failed("J1"))
                await alerts.drain()
    (retrying,) = records(caplog, "alert_hook_retrying")
    assert (retrying.reason, retrying.delay >= 0.2, len(receiver.requests)) == ("HTTP 429", True, 2)
    assert alerts.stats().hooks[0].delivered == 1


@pytest.mark.anyio
async def test_post_to_does_not_retry_a_4xx(caplog: pytest.LogCaptureFixture) -> None:
    """A 404 is final: one request, counted as failed, the log says why it was not retried."""
    receiver = Receiver(404)
    with anyio.fail_after(10):
        async with ServedApp(receiver.app) as served:
            alerts = Alerts(rules=[FailedJob()], hooks=[post_to(served.url + "/alerts", backoff=0.01)])
            async with alerts:
                feed(alerts, failed("J1"))
                await alerts.drain()
    assert len(receiver.requests) == 1
    hook = alerts.stats().hooks[0]
    assert (hook.delivered, hook.failed, hook.retried) == (0, 1, 0)
    assert records(caplog, "alert_hook_failed")[0].error == (
        "HTTP 404 (not retried: resending the same alert would be refused again)"
    )


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections to it are refused (kept bound: no one else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.anyio
async def test_a_receiver_that_is_down_is_retried_a_bounded_number_of_times_and_logged_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Connection refused: 3 attempts, then failed; no log line holds the password, the query token or the secret."""
    caplog.set_level(logging.INFO, "eventbus.alerts")
    with refusing_port() as port:
        url = f"http://alice:hunter2-pw@127.0.0.1:{port}/alerts?token=tok-9f8e7d6c&team=crm"
        alerts = Alerts(rules=[FailedJob()], hooks=[post_to(url, SECRET, attempts=3, backoff=0.01)])
        with anyio.fail_after(10):
            async with alerts:
                feed(alerts, failed("J1"))
                await alerts.drain()
    hook = alerts.stats().hooks[0]
    assert (hook.name, hook.delivered, hook.failed, hook.retried) == (
        f"http://***@127.0.0.1:{port}/alerts?token=[redacted]&team=[redacted]",
        0,
        1,
        2,
    )
    (failure,) = records(caplog, "alert_hook_failed")
    assert failure.error.startswith("could not reach it: ") and failure.error.endswith("(attempt 3 of 3; giving up)")
    logged = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    for secret in ("hunter2-pw", "tok-9f8e7d6c", SECRET, SECRET[6:]):
        assert secret not in logged


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@asynccontextmanager
async def holding_server() -> AsyncIterator[tuple[int, list[bytes], anyio.Event, anyio.Event]]:
    """An HTTP server in the test's own loop that reads each request, says so, and answers 200 only once released.

    Yields (port, bodies received, an event set at each arrival, the release event).
    """
    bodies: list[bytes] = []
    arrived, release = anyio.Event(), anyio.Event()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        nonlocal arrived
        reader = BufferedByteReceiveStream(stream)
        async with stream:
            try:
                while True:
                    head = await reader.receive_until(b"\r\n\r\n", 65536)
                    length = content_length(head)
                    bodies.append(await reader.receive_exactly(length))
                    arrived.set()
                    await release.wait()
                    await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                return

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve)
            yield port, bodies, arrived, release
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_post_in_flight_does_not_hold_the_bus() -> None:
    """While the receiver holds the first POST, the bus goes on delivering and drains; released, both go out."""
    with anyio.fail_after(10):
        async with holding_server() as (port, bodies, arrived, release), Bus() as bus:
            alerts = Alerts(rules=[FailedJob()], hooks=[post_to(f"http://127.0.0.1:{port}/alerts")])
            async with alerts.attach(bus):
                await bus.publish(failed("J1"))
                await arrived.wait()  # the first POST is at the receiver, unanswered
                await bus.publish(failed("J2"))
                await bus.drain()  # returns: the handler did not wait for the POST
                assert alerts.stats().hooks[0].queued == 2 and len(bodies) == 1
                release.set()
                await alerts.drain()
            assert [msgspec.json.decode(b, type=Alert).job_id for b in bodies] == ["J1", "J2"]
            assert alerts.stats().hooks[0].delivered == 2


@pytest.mark.anyio
async def test_a_receiver_that_never_answers_times_out_each_attempt(caplog: pytest.LogCaptureFixture) -> None:
    """A receiver holding the request: each attempt ends at timeout, then the alert is failed."""
    with anyio.fail_after(10):
        async with holding_server() as (port, bodies, _, _):
            alerts = Alerts(
                rules=[FailedJob()],
                hooks=[post_to(f"http://127.0.0.1:{port}/alerts", timeout=0.2, attempts=2, backoff=0)],
            )
            async with alerts:
                feed(alerts, failed("J1"))
                await alerts.drain()
    hook = alerts.stats().hooks[0]
    assert (hook.delivered, hook.failed, hook.retried) == (0, 1, 1) and bodies  # (the second may not have been read)
    assert records(caplog, "alert_hook_failed")[0].error == "no answer within 0.2s (attempt 2 of 2; giving up)"


@pytest.mark.anyio
async def test_a_full_queue_drops_counts_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    """queue=2 and five alerts fired at once: two are sent, three dropped (counted, logged), none lost silently."""
    receiver = Receiver()
    with anyio.fail_after(10):
        async with ServedApp(receiver.app) as served:
            alerts = Alerts(rules=[FailedJob()], hooks=[post_to(served.url + "/alerts", queue=2)])
            async with alerts:
                feed(alerts, *(failed(f"J{i}") for i in range(5)))
                await alerts.drain()
    hook = alerts.stats().hooks[0]
    assert (hook.delivered, hook.dropped, hook.failed, hook.queued) == (2, 3, 0, 0)
    assert [msgspec.json.decode(body, type=Alert).job_id for _, body in receiver.requests] == ["J0", "J1"]
    assert [r.reason for r in records(caplog, "alert_dropped")] == ["its queue is full (2 alerts)"] * 3
