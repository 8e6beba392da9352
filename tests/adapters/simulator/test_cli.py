"""`eventbus simulate`: runs alone, prints where it listens, serves, stops on SIGTERM; bad faults are refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx


def test_simulate_serves_until_sigterm() -> None:
    """The command prints 'listening on http://H:P', answers there, and exits 0 on SIGTERM."""
    with subprocess.Popen(
        [sys.executable, "-m", "eventbus", "simulate", "--port", "0", "--seed", "7", "--fault", "ws_drop_after=10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    ) as proc:
        try:
            line = proc.stdout.readline()  # blocks until the server is up: the line is printed after startup
            assert line.startswith("listening on http://127.0.0.1:"), line + proc.stderr.read()
            base = line.split()[-1]
            r = httpx.post(base + "/pronto/api/v2/contacts/bulk_enrich", json={}, headers={"x-api-key": "demo-key"})
            assert r.status_code == 400
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def refused(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`eventbus simulate ARGS` expected to refuse at once (it would serve otherwise: the timeout fails the test)."""
    return subprocess.run(
        [sys.executable, "-m", "eventbus", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_simulate_refuses_unknown_fault() -> None:
    """An unknown --fault name exits non-zero with a message listing the valid ones."""
    proc = refused("--fault", "explode=1")
    assert proc.returncode == 1
    assert "unknown fault 'explode'" in proc.stderr and "ws_drop_after" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_simulate_refuses_a_taken_port() -> None:
    """A port already in use exits 1 with a message naming it, not a traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = refused("--port", str(port))
    assert proc.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_simulate_refuses_negative_item_time() -> None:
    """--item-time below zero exits 2 (a bad argument) with a message naming the option."""
    proc = refused("--item-time", "-1")
    assert proc.returncode == 2 and "--item-time" in proc.stderr and "Traceback" not in proc.stderr


def test_simulate_refuses_a_webhook_secret_with_a_trailing_newline() -> None:
    """A secret read from a file with its newline would sign every webhook with the wrong key: refused at start."""
    proc = refused("--port", "0", env={"EVENTBUS_WEBHOOK_SECRET": "s3cret-value\n"})
    assert proc.returncode == 1 and "webhook secret begins or ends with a space or line break" in proc.stderr
    assert "s3cret-value" not in proc.stderr and "Traceback" not in proc.stderr


def test_the_printed_exports_point_eventbus_submit_at_the_simulator(tmp_path) -> None:
    """After 'listening on', one `export` line per provider: with them, `eventbus submit` works for all four."""
    import shlex

    files = {
        "insideview": ("ids.txt", "".join(f"{1000 + i}\n" for i in range(30)), []),
        "mautic": ("people.csv", "email\n" + "".join(f"p{i}@x.io\n" for i in range(30)), []),
        "datananas": ("people.csv", "email\n" + "".join(f"p{i}@x.io\n" for i in range(30)), ["--list", "L"]),
        "pronto": ("people.csv", "first_name,last_name,domain\n" + "A,B,acme.io\n" * 30, ["--follow"]),
    }
    with subprocess.Popen(
        [sys.executable, "-m", "eventbus", "simulate", "--port", "0"], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            lines = [proc.stdout.readline() for _ in range(6)]
            assert lines[0].startswith("listening on ") and lines[1].startswith("#"), lines
            env = {k: v for line in lines[2:] for k, v in (w.split("=", 1) for w in shlex.split(line)[1:])}
            assert {k for k in env if k.endswith("_BASE_URL")} == {f"{p.upper()}_BASE_URL" for p in files}
            for provider, (name, text, options) in files.items():
                f = tmp_path / name
                f.write_text(text)
                done = subprocess.run(
                    [sys.executable, "-m", "eventbus", "submit", "--provider", provider, *options, str(f)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    env={**os.environ, **env},
                )
                assert done.returncode == 0, (provider, done.stdout, done.stderr)
                said = "all 1 job completed" if "--follow" in options else "1 chunk, 1 accepted, 0 rejected"
                assert said in done.stdout, done.stdout
        finally:
            proc.terminate()
            proc.wait(timeout=20)
