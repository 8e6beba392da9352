"""`eventbus serve` and the command line's shared number checks: refused at parse time (exit 2), never a traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventbus.cli import build_parser, count, integer, non_negative, number, port, positive, redact_userinfo

SHARED = {port, positive, non_negative, count, integer}


@pytest.mark.parametrize(
    "convert, text, value",
    [
        (port, "0", 0),
        (port, "65535", 65535),
        (positive, "0.5", 0.5),
        (positive, "1e9", 1e9),
        (non_negative, "0", 0.0),
        (count, "1", 1),
        (integer, "-3", -3),
    ],
)
def test_shared_number_types_accept_values_in_range(convert, text: str, value: float) -> None:
    """In-range values come back as numbers of the asked kind."""
    result = convert(text)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(
    "convert, text, expected",
    [
        (port, "70000", "a whole number from 0 to 65535"),
        (port, "-1", "a whole number from 0 to 65535"),
        (port, "80.5", "a whole number from 0 to 65535"),
        (positive, "nan", "a finite number greater than 0"),
        (positive, "inf", "a finite number greater than 0"),
        (positive, "-inf", "a finite number greater than 0"),
        (positive, "1e400", "a finite number greater than 0"),
        (positive, "0", "a finite number greater than 0"),
        (positive, "-1", "a finite number greater than 0"),
        (non_negative, "nan", "a finite number of at least 0"),
        (non_negative, "-0.1", "a finite number of at least 0"),
        (count, "0", "a whole number of at least 1"),
        (integer, "x", "a whole number"),
        (integer, "9" * 5000, "a whole number"),
    ],
)
def test_shared_number_types_refuse_with_what_they_expect(convert, text: str, expected: str) -> None:
    """NaN, infinities, out-of-range and non-numbers are refused with the expected form and a bounded echo."""
    with pytest.raises(argparse.ArgumentTypeError, match=f"expected {expected}, not") as info:
        convert(text)
    assert len(str(info.value)) < 120


def test_number_bounds_combine() -> None:
    """An exclusive lower bound and an inclusive upper bound both hold."""
    fraction = number(float, above=0, maximum=1)
    assert fraction("1") == 1.0
    for bad in ("0", "1.01"):
        with pytest.raises(argparse.ArgumentTypeError, match="a finite number greater than 0 and at most 1, not"):
            fraction(bad)


def _options(command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.option_strings[-1]: a for a in sub.choices[command]._actions if a.option_strings}


@pytest.mark.parametrize("command", ["serve", "submit", "simulate", "demo"])
def test_every_number_option_uses_a_shared_validating_type(command: str) -> None:
    """No int/float option of these commands reads numbers with bare int() or float() (which take nan, inf, -1)."""
    numeric = {name: a for name, a in _options(command).items() if a.type in (int, float) or a.type in SHARED}
    assert numeric, "the command has number options"
    bare = [name for name, a in numeric.items() if a.type not in SHARED]
    assert bare == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["serve", "--port", "70000"], "argument --port: expected a whole number from 0 to 65535"),
        (["serve", "--port", "-1"], "argument --port: expected a whole number from 0 to 65535"),
        (["serve", "--tolerance", "nan"], "argument --tolerance: expected a finite number greater than 0"),
        (["serve", "--tolerance", "inf"], "argument --tolerance: expected a finite number greater than 0"),
        (["serve", "--tolerance", "-5"], "argument --tolerance: expected a finite number greater than 0"),
        (["serve", "--max-body", "0"], "argument --max-body: expected a whole number of at least 1"),
        (["simulate", "--port", "65536"], "argument --port: expected a whole number from 0 to 65535"),
        (["simulate", "--item-time", "nan"], "argument --item-time: expected a finite number of at least 0"),
        (["demo", "--contacts", "0"], "argument --contacts: expected a whole number of at least 1"),
        (["demo", "--item-time", "-1"], "argument --item-time: expected a finite number of at least 0"),
    ],
)
def test_bad_numbers_exit_2_at_parse_time(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """serve and simulate refuse a bad port, tolerance or size before running anything."""
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventbus", "serve", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_serve_port_out_of_range_is_one_line_not_a_traceback() -> None:
    """`serve --port 70000` exits 2 with the expected range (it printed an OverflowError traceback)."""
    proc = _serve("--port", "70000")
    assert proc.returncode == 2
    assert "expected a whole number from 0 to 65535, not '70000'" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_host_with_a_password_is_not_echoed() -> None:
    """A --host typed with user:password@ fails to bind; the message shows ***@ instead of the password."""
    proc = _serve("--host", "admin:TOPSECRET@127.0.0.1", "--port", "0")
    assert proc.returncode == 1 and "cannot listen on ***@127.0.0.1:0" in proc.stderr
    assert "TOPSECRET" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


def test_serve_host_that_is_no_host_name_is_one_line() -> None:
    """A host with a control character (socket raises TypeError) is a clear error, not a traceback."""
    proc = _serve("--host", "127.0.0.1\x01", "--port", "0")
    assert proc.returncode == 1 and "cannot listen on" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "address, shown",
    [
        ("http://user:pass@host:8000/x?y=1", "http://***@host:8000/x?y=1"),
        ("admin:pw@0.0.0.0", "***@0.0.0.0"),
        ("a@b@host", "***@host"),
        ("http://host/a@b", "http://host/a@b"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:80", "[::1]:80"),
    ],
)
def test_redact_userinfo(address: str, shown: str) -> None:
    """Only the userinfo before the host is hidden; an @ in the path is left alone."""
    assert redact_userinfo(address) == shown


@pytest.mark.parametrize(
    "secret, message",
    [("", "webhook secret is empty"), ("whsec_***", "webhook secret starts with 'whsec_' but the rest is not base64")],
    ids=["empty", "malformed-whsec"],
)
def test_serve_refuses_an_unusable_secret_in_one_line(secret: str, message: str) -> None:
    """An empty (it verified against an empty HMAC key) or malformed secret exits 1 without a traceback."""
    proc = _serve("--secret", secret, "--port", "0")
    assert proc.returncode == 1 and f"--secret (or $EVENTBUS_WEBHOOK_SECRET): {message}" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "source, error",
    [("def parse(:\n", "SyntaxError"), ("raise RuntimeError('no config')\n", "RuntimeError: no config")],
    ids=["syntax-error", "raises-on-import"],
)
def test_serve_parser_module_that_fails_to_import_is_one_line(tmp_path: Path, source: str, error: str) -> None:
    """A --parser module that cannot be imported (any exception) is a clear error naming it, not a traceback."""
    (tmp_path / "brokenhooks.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    proc = _serve("--parser", "acme=brokenhooks:parse", "--port", "0", env=env)
    assert proc.returncode == 1 and "--parser 'acme=brokenhooks:parse': cannot load brokenhooks:parse" in proc.stderr
    assert error in proc.stderr and "Traceback" not in proc.stderr
