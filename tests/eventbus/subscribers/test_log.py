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
    """Events that say something went wrong are logged at warning level, the rest (a contact's failure too) info."""
    out = io.StringIO()
    log = EventLogger(out, json=True)
    warned = [
        ev.InvalidSignal(id="i", reason="bad json", **P),
        ev.JobFailed(id="f", reason="r", **P),
        ev.QuotaExhausted(id="q", reason="credits", status=402, **P),
        ev.SubmitRejected(id="r", status=400, reason="bad", retriable=False, **P),
        ev.JobExpired(id="e", **P),
        ev.JobStuck(id="s", silent_for=300, **P),
        *(ev.SourceState(id=s, state=s, **P) for s in ("disconnected", "reconnecting", "gave_up")),  # type: ignore[arg-type]
    ]
    told = [
        ev.ItemFailed(id="x", key="1", code="400", message="m", **P),
        ev.JobCompleted(id="c", **P),
        ev.Throttled(id="t", retry_after=1, **P),
        *(ev.SourceState(id=s, state=s, **P) for s in ("connected", "stopped")),  # type: ignore[arg-type]
    ]
    for event in warned + told:
        log(event)
    levels = [msgspec.json.decode(line)["level"] for line in out.getvalue().splitlines()]
    assert levels == ["warning"] * len(warned) + ["info"] * len(told)


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


def test_secrets_in_free_text_are_redacted_keeping_their_names() -> None:
    """A token in a URL's query, a password in a URL, "api_key": "..." in a body excerpt and X-API-KEY: ... in a
    message are redacted where they stand (only values under secret-named keys and bearer tokens were)."""
    out = io.StringIO()
    log = EventLogger(out, json=True)
    log(ev.SourceState(id="s", state="connected", detail="wss://api.x.com/ws?token=QTOKEN123&x=1", **P))
    log(ev.InvalidSignal(id="i", reason="bad", excerpt='{"api_key":"BODYKEY789","crm_token": "T9X"}', **P))
    message = "failed calling https://u:PASS@h/x?api_key=QK2 with X-API-KEY: HK3 and password=PW4"
    log(ev.ItemFailed(id="f", key="0", code="x", message=message, details={"url": "https://h/?access_token=AT5"}, **P))
    text = out.getvalue()
    for secret in ("QTOKEN123", "BODYKEY789", "T9X", "PASS", "QK2", "HK3", "PW4", "AT5"):
        assert secret not in text, secret
    lines = [msgspec.json.decode(line) for line in text.splitlines()]
    assert lines[0]["detail"] == f"wss://api.x.com/ws?token={REDACTED}&x=1"
    assert lines[1]["excerpt"] == f'{{"api_key":"{REDACTED}","crm_token": "{REDACTED}"}}'
    assert lines[2]["message"] == (
        f"failed calling https://***@h/x?api_key={REDACTED} with X-API-KEY: {REDACTED} and password={REDACTED}"
    )


def test_free_text_without_secrets_is_left_as_it_is() -> None:
    """Words that name a secret without giving one, and URLs without credentials, are not touched."""
    for text in (
        "token expired, refreshing",
        "signature check failed: wrong secret",
        "the token was refused (DATANANAS_TOKEN)",
        "url https://example.com/a?b=1&page=2",
        "time: 12:30, key 7",
        "a" * 5000 + "token" + "b" * 5000,
    ):
        assert redact(text) == text
