"""Reading contacts from CSV, JSON Lines and id files; malformed files get a clear error naming the line."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from adapters.contacts import read_contacts
from eventbus.exceptions import ConfigError


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def test_csv_rows_keep_order_and_every_column(tmp_path: Path) -> None:
    """A CSV with a header gives one plain dict per row in order, every column in each; a BOM is ignored."""
    p = write(tmp_path, "c.csv", "\ufefffirst_name,last_name,domain\nAnn,Lee,acme.io\nBob,,x.io\nCy\n")
    rows = list(read_contacts(p))
    assert rows == [
        {"first_name": "Ann", "last_name": "Lee", "domain": "acme.io"},
        {"first_name": "Bob", "last_name": "", "domain": "x.io"},  # an empty cell: submitting treats it as absent
        {"first_name": "Cy", "last_name": None, "domain": None},  # a short row's missing cells
    ]
    assert all(type(r) is dict for r in rows)


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_csv_delimiter_is_read_from_the_header(tmp_path: Path, delimiter: str) -> None:
    """Comma, semicolon (spreadsheets in comma-decimal locales) and tab files read alike; quoted cells keep theirs."""
    d = delimiter
    text = f'\ufeffemail{d} First Name {d}note\r\na@b.co{d}Ann{d}"x, y; z"\r\nc@d.co{d}{d}\r\n'
    assert list(read_contacts(write(tmp_path, "c.csv", text))) == [
        {"email": "a@b.co", "First Name": "Ann", "note": "x, y; z"},  # header names stripped of spaces
        {"email": "c@d.co", "First Name": "", "note": ""},
    ]


def test_csv_one_column_and_blank_lines(tmp_path: Path) -> None:
    """A one-column file (no delimiter in the header) reads as commas; blank lines are skipped."""
    assert list(read_contacts(write(tmp_path, "c.csv", "email\na@b.co\n\nc@d.co\n"))) == [
        {"email": "a@b.co"},
        {"email": "c@d.co"},
    ]


def test_csv_unnamed_empty_columns_are_dropped(tmp_path: Path) -> None:
    """Columns with no header name (trailing delimiters, spacer columns) are dropped while their cells are empty."""
    text = "email,,name,\na@b.co,,Ann,\nc@d.co, ,Bob\n"
    assert list(read_contacts(write(tmp_path, "c.csv", text))) == [
        {"email": "a@b.co", "name": "Ann"},
        {"email": "c@d.co", "name": "Bob"},
    ]


def test_jsonl_with_a_bom(tmp_path: Path) -> None:
    """A UTF-8 byte order mark before the first JSON object is not part of it."""
    data = b"\xef\xbb\xbf" + b'{"email": "a@b.c"}\n{"email": "d@e.f"}\n'
    assert [c["email"] for c in read_contacts(write(tmp_path, "c.jsonl", data))] == ["a@b.c", "d@e.f"]  # type: ignore[index]


def test_jsonl_and_ids(tmp_path: Path) -> None:
    """JSON Lines skips blank lines; id files skip blanks and comments."""
    assert list(read_contacts(write(tmp_path, "c.jsonl", '{"email": "a@b.c"}\n\n{"email": "d@e.f"}\n'))) == [
        {"email": "a@b.c"},
        {"email": "d@e.f"},
    ]
    assert list(read_contacts(write(tmp_path, "ids.txt", "# new contacts\n123\n\n456\n"))) == ["123", "456"]


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("bad.jsonl", '{"email": "a@b.c"}\n[1, 2]\n', "bad.jsonl:2: not a JSON object"),
        ("bad.jsonl", '{"email": \n', "bad.jsonl:1: not a JSON object"),
        ("bad.csv", "a,b\n1,2,3\n", "bad.csv:2: more values than columns"),
        ("bad.csv", "a;b\n1;2\n3;4;5\n", "bad.csv:3: more values than columns"),
        ("dup.csv", "a,a\n1,2\n", "duplicate column names"),
        ("dup.csv", "a, a ,b\n1,2,3\n", r"duplicate column names in the header: \['a'\]"),
        (
            "unnamed.csv",
            "email,,name\na@b.co,,Ann\nc@d.co,oops,Bob\n",
            "unnamed.csv:3: a value in column 2, which has no",
        ),
        ("empty.csv", "", "empty CSV"),
        ("blank.csv", " , \n1,2\n", "empty CSV"),
        ("quote.csv", 'a,b\n"1,2\n', "quote.csv:2: malformed CSV: unexpected end of data"),
        ("quote.csv", 'a,b\n"x"y,2\n', "quote.csv:2: malformed CSV: ',' expected after"),
        ("c.xlsx", "x", "cannot tell the format"),
        ("bin.txt", b"\xff\xfe\x00\x01", "not UTF-8"),
    ],
)
def test_malformed_files_name_the_line(tmp_path: Path, name: str, data: str | bytes, message: str) -> None:
    """Malformed input raises ConfigError with the file, the line and what is wrong."""
    with pytest.raises(ConfigError, match=message):
        list(read_contacts(write(tmp_path, name, data)))


def test_missing_file(tmp_path: Path) -> None:
    """A file that does not exist is a ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match="no such file"):
        read_contacts(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    "kind, data, expected",
    [
        ("csv", "email;first_name\na@b.c;Ann\n", [{"email": "a@b.c", "first_name": "Ann"}]),
        ("jsonl", '{"email": "a@b.c"}\n', [{"email": "a@b.c"}]),
        ("ids", "101\n102\n", ["101", "102"]),
    ],
)
def test_contacts_can_come_through_a_pipe(tmp_path: Path, kind: str, data: str, expected: list) -> None:
    """A named pipe (as /dev/stdin or <(...) give), read once with no seeking back, with the format said."""
    fifo = tmp_path / "contacts"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_text, args=(data,))  # blocks until the reader opens the pipe
    writer.start()
    try:
        assert list(read_contacts(fifo, kind=kind)) == expected
    finally:
        writer.join(10)


def test_a_directory_or_an_unknown_suffix_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory, not a file of contacts"):
        list(read_contacts(tmp_path))
    with pytest.raises(ConfigError, match="no such file"):
        list(read_contacts(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match=r"or say which \(--format on the command line, kind= in Python\)"):
        list(read_contacts(write(tmp_path, "people.xlsx", "x")))
