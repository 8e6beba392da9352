"""Every script in examples/ runs to the end against the simulator, as a user would run it."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )


def test_every_example_is_tested_here() -> None:
    """A new example gets a test below (the names are listed by hand)."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == [
        "durable_subscribers.py",
        "follow_jobs.py",
        "logs_and_alerts.py",
        "webhooks_in_your_app.py",
    ]


def test_durable_subscribers(tmp_path: Path) -> None:
    proc = run("durable_subscribers.py", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "first run:  'outcomes' recorded 120 contacts and acknowledged 100"
    assert lines[1] == "second run: 'outcomes' now has 200 contacts; 20 came twice"
    history = re.search(r"'audit', new, read the whole history: (\{.*\})", proc.stdout)
    assert history
    counts = ast.literal_eval(history.group(1))
    assert counts.get("item_succeeded", 0) + counts.get("item_failed", 0) == 200
    assert counts["job_accepted"] == counts["job_completed"] == 1
    last = sum(counts.values())
    assert lines[-1] == f"cursors saved in jobs.db: {{'audit': {last}, 'outcomes': {last}}} (last position {last})"
    assert (tmp_path / "jobs.db").exists()


def test_follow_jobs(tmp_path: Path) -> None:
    proc = run("follow_jobs.py", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert sum(" accepted (" in line for line in lines) == 4  # 3 Pronto jobs (100, 100, 50) and 1 Datananas
    assert sum(" completed: " in line for line in lines) == 4
    assert lines[-1].startswith("done: ") and "could not be enriched" in lines[-1]


def test_logs_and_alerts(tmp_path: Path) -> None:
    proc = run("logs_and_alerts.py", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    entries = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {e["event"] for e in entries} >= {"batch_submitted", "job_accepted", "quota_exhausted"}
    assert [e["level"] for e in entries if e["event"] == "quota_exhausted"] == ["warning"]
    assert "ALERT pronto: out of quota (HTTP 422): insufficient_credits" in proc.stderr
    assert "1 of 3 chunks accepted, 2 not; stopped: insufficient_credits" in proc.stderr
    # Two chunks refused for want of credits: one alert, logged once and paged once.
    assert [e.get("rule") for e in entries if e["event"] == "alert"] == ["quota_exhausted"]
    assert proc.stderr.count("ALERT ") == 1 and proc.stderr.rstrip().endswith("alerts fired: {'quota_exhausted': 1}")


def test_webhooks_in_your_app(tmp_path: Path) -> None:
    proc = run("webhooks_in_your_app.py", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = proc.stdout.splitlines()
    assert first.startswith("120 contacts sent in 2 jobs: ") and "found" in first
    found = int(first.split(": ")[1].split(" found")[0])
    assert 0 < found < 120
    assert "'accepted': 120" in second and "'published': 120" in second and "'refused': 0" in second


@pytest.mark.parametrize("name", ["follow_jobs.py", "logs_and_alerts.py", "webhooks_in_your_app.py"])
def test_examples_say_how_to_run_them(name: str) -> None:
    assert f"python examples/{name}" in (EXAMPLES / name).read_text()
