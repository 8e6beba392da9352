"""Reading contacts from CSV, JSON Lines and id files; malformed files get a clear error naming the line."""

from __future__ import annotations

import codecs
import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import adapters.contacts
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
        ("bin.txt", b"12\n\x00\x01\xff\x80\n", "bin.txt:2: not UTF-8 text"),
        ("odd.csv", b"\xff\xfee\x00m\x00\n", "odd.csv: not UTF-16 text"),  # a UTF-16 BOM, then an odd byte count
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


@pytest.mark.parametrize(
    "kind, data, encoding, expected",
    [
        (
            "csv",
            codecs.BOM_UTF16_LE + "email\tn\r\n\u00e9@b.c\tA\r\n".encode("utf-16-le"),
            None,
            [{"email": "\u00e9@b.c", "n": "A"}],
        ),
        ("jsonl", '{"email": "\u00e9@b.c"}\n'.encode("latin-1"), "latin-1", [{"email": "\u00e9@b.c"}]),
        ("ids", "101\n\u00e9\n".encode("cp1252"), "cp1252", ["101", "\u00e9"]),
    ],
    ids=["utf16-detected", "jsonl-latin1", "ids-cp1252"],
)
def test_a_pipe_in_another_encoding(
    tmp_path: Path, kind: str, data: bytes, encoding: str | None, expected: list
) -> None:
    """The encoding is found (or applied) on a pipe too: read once, never opened again."""
    fifo = tmp_path / "contacts"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(data,))
    writer.start()
    try:
        assert list(read_contacts(fifo, kind=kind, encoding=encoding)) == expected
    finally:
        writer.join(10)


def test_a_directory_or_an_unknown_suffix_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory, not a file of contacts"):
        list(read_contacts(tmp_path))
    with pytest.raises(ConfigError, match="no such file"):
        list(read_contacts(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match=r"or say which \(--format on the command line, kind= in Python\)"):
        list(read_contacts(write(tmp_path, "people.xlsx", "x")))


def test_a_file_that_is_not_utf8_names_the_line_and_what_to_do(tmp_path: Path) -> None:
    """A cp1252 CSV (what Excel on Windows saves) read as UTF-8 stops at the line of the first byte that is not.

    The line is the bad byte's own, not where the decoder's block began (it said
    line 1 for a byte on line 5,001), and the message says how to name the encoding.
    """
    good = "".join(f"p{i}@x.io,P{i}\n" for i in range(5000))
    data = ("email,name\n" + good + "j\u00e9r\u00f4me@x.io,J\u00e9r\u00f4me\n").encode("cp1252")
    p = write(tmp_path, "people.csv", data)
    with pytest.raises(ConfigError) as caught:
        list(read_contacts(p))
    assert str(caught.value) == (
        f"{p}:5002: not UTF-8 text (byte 0xe9: invalid continuation byte); name its encoding: "
        "--encoding on the command line, encoding= in Python (Excel on Windows writes cp1252)"
    )
    rows = list(read_contacts(p, encoding="cp1252"))
    assert len(rows) == 5001 and rows[-1] == {"email": "j\u00e9r\u00f4me@x.io", "name": "J\u00e9r\u00f4me"}
    with pytest.raises(ConfigError, match=r"people.csv:5002: not UTF-8 text .*; check the encoding named$"):
        list(read_contacts(p, encoding="utf-8"))


@pytest.mark.parametrize("kind, name", [("jsonl", "c.jsonl"), ("ids", "ids.txt")])
def test_json_lines_and_ids_that_are_not_utf8(tmp_path: Path, kind: str, name: str) -> None:
    """JSON Lines (a UnicodeDecodeError traceback before) and id files name the line too, and take an encoding."""
    text = '{"email": "a@b.c"}\n{"email": "\u00e9@b.c"}\n' if kind == "jsonl" else "101\n\u00e9102\n"
    p = write(tmp_path, name, text.encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"{name}:2: not UTF-8 text \(byte 0xe9: invalid continuation byte\)"):
        list(read_contacts(p))
    rows = list(read_contacts(p, encoding="latin-1"))
    assert rows[-1] == ({"email": "\u00e9@b.c"} if kind == "jsonl" else "\u00e9102")


@pytest.mark.parametrize("bom, codec", [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")])
def test_utf16_with_a_byte_order_mark_is_read_as_such(tmp_path: Path, bom: bytes, codec: str) -> None:
    """Excel's "Unicode Text" (UTF-16, tab separated, CRLF) reads without naming the encoding."""
    text = 'email\tname\r\nj\u00e9@x.io\tJ\u00e9r\u00f4me\r\n\u00e5@x.io\t"a\tb"\r\n'
    p = write(tmp_path, "people.csv", bom + text.encode(codec))
    assert list(read_contacts(p)) == [
        {"email": "j\u00e9@x.io", "name": "J\u00e9r\u00f4me"},
        {"email": "\u00e5@x.io", "name": "a\tb"},
    ]
    assert list(read_contacts(p, encoding="utf-16")) == list(read_contacts(p))


def test_old_macintosh_line_ends(tmp_path: Path) -> None:
    """Lines may end in a lone CR (Excel's "CSV (Macintosh)"); they count for the line a bad byte is on too."""
    mac = 'email,name\ra@b.c,Ann\rc@d.e,"x\ry"\r'
    assert list(read_contacts(write(tmp_path, "mac.csv", mac))) == [
        {"email": "a@b.c", "name": "Ann"},
        {"email": "c@d.e", "name": "x\ry"},  # a quoted cell keeps its line break
    ]
    with pytest.raises(ConfigError, match=r"mac2.csv:5: not UTF-8 text"):
        list(read_contacts(write(tmp_path, "mac2.csv", mac.encode() + b"\xe9@x.io,E\r")))


class Blocks(io.RawIOBase):
    """A file that hands over at most ``size`` bytes a read, to put block boundaries everywhere."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data, self._size, self._at = data, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        piece = self._data[self._at : self._at + min(self._size, len(buffer))]
        buffer[: len(piece)] = piece
        self._at += len(piece)
        return len(piece)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 64])
def test_the_line_of_a_bad_byte_wherever_the_blocks_split(size: int) -> None:
    """Line ends of every kind, split across blocks of every size (a CRLF across two counts once)."""
    data = b'a,b\r\n1,2\r3,4\n\r\n5,"x\r\ny"\r\n' + b"6,\xc3\xa9\r\n" * 3 + b"7,\xe9\r\n8,9\r\n"
    # lines: a,b | 1,2 (a lone CR) | 3,4 | (blank) | 5,"x | y" | 6,é three times | 7,<0xe9>: line 10
    with pytest.raises(ConfigError, match=r"x.csv:10: not UTF-8 text \(byte 0xe9"):
        with Blocks(data, size) as raw, adapters.contacts._text(io.BufferedReader(raw, 4), Path("x.csv"), None) as t:
            list(t)


@pytest.mark.parametrize("kind, name", [("csv", "c.csv"), ("jsonl", "c.jsonl"), ("ids", "c.txt")])
def test_a_line_longer_than_the_limit_is_refused_without_reading_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, name: str
) -> None:
    """A file with no line ends (a binary file, a wrong format) stops at MAX_LINE bytes with the line named."""
    monkeypatch.setattr(adapters.contacts, "MAX_LINE", 1000)
    p = write(tmp_path, name, ('{"a": 1}' if kind == "jsonl" else "a") + "\n" + "x" * 70_000)
    with pytest.raises(ConfigError, match=rf"{name}:2: line longer than 1000 bytes"):
        list(read_contacts(p))
    u16 = write(tmp_path, "u16.csv", codecs.BOM_UTF16_LE + ("a\n" + "x" * 5000).encode("utf-16-le"))
    with pytest.raises(ConfigError, match=r"u16.csv:2: line longer than 1000 characters"):
        list(read_contacts(u16))


@pytest.mark.parametrize(
    "encoding, message",
    [
        ("nope", "unknown encoding: 'nope' (for example utf-8, cp1252, latin-1, utf-16)"),
        ("base64", "not a text encoding: 'base64'"),
        ("utf\x00", "unknown encoding"),
    ],
)
def test_an_unknown_encoding_is_refused_before_reading(tmp_path: Path, encoding: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_contacts(tmp_path / "missing.csv", encoding=encoding)  # refused before the file is looked at


def test_csv_errors_name_their_line_however_rows_are_read(tmp_path: Path) -> None:
    """Rows are turned into dicts a batch at a time; errors still name their own line, the first one first.

    Quoted cells spanning lines (CRLF, LF, a lone CR) count as the csv module counts them.
    """
    spanning = 'a@x.io,"two\r\nlines"\r\nb@x.io,"three\nmore\rlines"\r\n'  # rows on lines 3-4 and 5-7
    rows = "".join(f"p{i}@x.io,P{i}\r\n" for i in range(3000))  # lines 8 to 3007
    text = "email,name\r\n\r\n" + spanning + rows + "long@x.io,L,extra\r\n" + 'q@x.io,"unclosed\r\n'
    with pytest.raises(ConfigError, match=r"c.csv:3008: more values than columns \(3 > 2\)"):
        list(read_contacts(write(tmp_path, "c.csv", text)))
    short = "email,name\r\n" + spanning.replace("\r\n", "\n", 1) + "x,y,z\n"
    with pytest.raises(ConfigError, match=r"d.csv:7: more values than columns"):  # before the unclosed quote
        list(read_contacts(write(tmp_path, "d.csv", short + 'q@x.io,"unclosed\n')))
    unnamed = "email,,name\n" + "a@x.io,,A\n" * 2000 + "b@x.io,oops,B\n"
    with pytest.raises(ConfigError, match=r"u.csv:2002: a value in column 2, which has no name"):
        list(read_contacts(write(tmp_path, "u.csv", unnamed)))
    ok = list(read_contacts(write(tmp_path, "ok.csv", "email,name\r\n" + spanning + rows + "z@x.io\r\n")))
    assert len(ok) == 3003 and ok[0] == {"email": "a@x.io", "name": "two\r\nlines"}
    assert ok[-1] == {"email": "z@x.io", "name": None} and ok[1500]["email"] == "p1498@x.io"
