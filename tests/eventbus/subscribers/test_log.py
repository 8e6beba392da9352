"""Structured log streaming: JSON lines, console lines and redaction."""

from __future__ import annotations

import io

import msgspec

from eventbus import events as ev
from eventbus.subscribers.log import REDACTED, EventLogger, redact

P = {"provider": "mautic", "source": "poll", "job_id": "j1"}


def test_json_lines_carry_every_field() -> None:
    """In JSON mode each event is one line whose keys are the event's fields and the tag."""
    out = io.StringIO()
    log = EventLogger(out, json=True)
    log(ev.JobProgress(id="p", done=5, total=10, **P))
    log(ev.ItemFailed(id="f", key="7", code="400", message="bad email", details={"email": ["invalid"]}, **P))
    lines = [msgspec.json.decode(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["job_progress", "item_failed"]
    assert lines[0]["done"] == 5 and lines[0]["job_id"] == "j1" and lines[0]["level"] == "info"
    assert lines[1]["details"] == {"email": ["invalid"]}


def test_warnings_for_problems() -> None:
    """InvalidSignal, JobFailed and QuotaExhausted are logged at warning level."""
    out = io.StringIO()
    EventLogger(out, json=True)(ev.InvalidSignal(id="i", reason="bad json", **P))
    assert msgspec.json.decode(out.getvalue())["level"] == "warning"


def test_console_mode_is_key_value() -> None:
    """Console mode prints the tag and key=value pairs on one line."""
    out = io.StringIO()
    EventLogger(out, json=False)(ev.JobCompleted(id="c", succeeded=3, **P))
    text = out.getvalue()
    assert "job_completed" in text and "succeeded=3" in text and text.count("\n") == 1


def test_secrets_are_redacted_at_any_depth() -> None:
    """Values under secret-looking keys and bearer tokens in strings never reach the log."""
    out = io.StringIO()
    event = ev.ItemSucceeded(
        id="s",
        key="1",
        outcome="found",
        data={
            "email": "a@b.c",
            "api_key": "k-123456789",
            "nested": {"accessToken": "tok-abcdefgh"},
            "note": "sent with Bearer abcdefghijklmnop",
        },
        **P,
    )
    EventLogger(out, json=True)(event)
    text = out.getvalue()
    for secret in ("k-123456789", "tok-abcdefgh", "abcdefghijklmnop"):
        assert secret not in text
    data = msgspec.json.decode(text)["data"]
    assert data["api_key"] == REDACTED and data["nested"]["accessToken"] == REDACTED
    assert data["email"] == "a@b.c"


def test_redact_leaves_ordinary_values() -> None:
    """Ordinary values pass through unchanged, lists included."""
    assert redact({"a": [1, "x"], "b": None}) == {"a": [1, "x"], "b": None}
    assert redact("whsec_QUJDREVGR0hJSktM") == REDACTED
