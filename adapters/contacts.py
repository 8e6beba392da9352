"""Read contacts from files: CSV (header row), JSON Lines, or a plain list of ids (one per line).

Every reader yields plain dicts (or id strings) in input order, so a contact's
0-based position is its item key. Malformed input raises :class:`ConfigError`
naming the file, the line and what is wrong — nothing is half-read silently.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import chain, islice, repeat
from pathlib import Path
from typing import IO, Any

import msgspec

from eventbus.exceptions import ConfigError

__all__ = ["MAX_LINE", "check_encoding", "read_contacts"]

MAX_LINE = 1024 * 1024  # one contact per line; a longer line is refused, not truncated
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # what Excel's "Unicode Text" starts with


def check_encoding(name: str) -> str:
    """The codec name Python knows ``name`` by (``cp1252``, ``latin-1``, ``utf-16``...); ConfigError if unknown."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: a name with a NUL in it
        raise ConfigError(f"unknown encoding: {name[:40]!r} (for example utf-8, cp1252, latin-1, utf-16)") from None
    try:
        "x".encode(info.name)
    except (LookupError, TypeError):  # a bytes-to-bytes codec such as base64 or zlib: not a text encoding
        raise ConfigError(f"not a text encoding: {name[:40]!r} (for example utf-8, cp1252, latin-1, utf-16)") from None
    return info.name


def read_contacts(
    path: str | Path, *, kind: str | None = None, encoding: str | None = None
) -> Iterator[dict[str, Any] | str]:
    """Yield the contacts of ``path``; ``kind`` is ``csv``, ``jsonl`` or ``ids`` (default: from the suffix).

    ``encoding`` names the file's text encoding. By default a file is UTF-8
    (with or without a byte order mark), or UTF-16 when it starts with a
    UTF-16 byte order mark (Excel's "Unicode Text"). Name another one, such as
    ``cp1252`` (what Excel on Windows writes for "CSV") or ``latin-1``, for a
    file that is not UTF-8: a byte that is not text in the encoding stops the
    reading with the file and the line named.
    """
    if encoding is not None:
        encoding = check_encoding(encoding)
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, not a file of contacts")
    if not p.exists():  # anything else that exists may be read: a file, a pipe (/dev/stdin, <(...))
        raise ConfigError(f"{p}: no such file")
    kind = kind or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "ids", ".ids": "ids"}.get(
        p.suffix.lower()
    )
    if kind == "csv":
        return _csv(p, encoding)
    if kind == "jsonl":
        return _jsonl(p, encoding)
    if kind == "ids":
        return _ids(p, encoding)
    raise ConfigError(
        f"{p}: cannot tell the format from the suffix; use .csv, .jsonl/.ndjson or .txt (ids), "
        "or say which (--format on the command line, kind= in Python)"
    )


def _open(p: Path) -> IO[bytes]:
    try:
        return p.open("rb")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None


_BLOCK = 1 << 16


def _raw_lines(f: IO[bytes], p: Path) -> Iterator[list[bytes]]:
    """The file's lines as bytes split at ``\n`` (ends dropped), a list per block read; a UTF-8 BOM is dropped.

    A line longer than :data:`MAX_LINE` bytes is a ConfigError, found before
    more than a block past it is held.
    """
    pending = b""
    done = 0  # lines handed over
    while block := f.read(_BLOCK):
        if not done and not pending:
            block = block.removeprefix(codecs.BOM_UTF8)  # written by some Windows tools; not part of the JSON
        lines = (pending + block).split(b"\n")
        pending = lines.pop()  # the line the next block goes on with
        if len(pending) > MAX_LINE or (lines and max(map(len, lines)) > MAX_LINE):
            long = next((i for i, line in enumerate(lines) if len(line) > MAX_LINE), len(lines))
            raise ConfigError(f"{p}:{done + long + 1}: line longer than {MAX_LINE} bytes")
        done += len(lines)
        yield lines
    if pending:
        yield [pending]


def _line_ends(data: bytes | str) -> int:
    """How many lines end in ``data`` (bytes read, or a decoded cell): at ``\r\n``, ``\n`` or a lone ``\r``."""
    if isinstance(data, str):
        return data.count("\n") + data.count("\r") - data.count("\r\n")
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


class _Counted(io.BufferedIOBase):
    """A binary file as a text reader reads it, block by block, counting the line ends it has handed over.

    When a block does not decode, the line of the bad byte is the line ends in
    the blocks before it plus those before the byte in its own block. A line
    growing past :data:`MAX_LINE` bytes is refused as its blocks arrive, before
    the text reader holds it whole. Only for encodings in which line ends are
    the ASCII bytes (:func:`_is_ascii_based`).
    """

    def __init__(self, raw: IO[bytes], path: Path) -> None:
        self._raw = raw
        self._path = path
        self._ends = 0  # in every block handed over
        self._ends_before = 0  # in the blocks before the last one
        self._cr = self._cr_before = False  # whether the blocks so far end with "\r" (its "\n" may follow)
        self._open_line = 0  # bytes handed over since the last line end

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        data = self._raw.read1(size)
        self._ends_before, self._cr_before = self._ends, self._cr
        if data:
            self._ends += _line_ends(data) - (self._cr and data.startswith(b"\n"))
            self._cr = data.endswith(b"\r")
            last_end = max(data.rfind(b"\n"), data.rfind(b"\r"))
            self._open_line = len(data) - last_end - 1 if last_end >= 0 else self._open_line + len(data)
            if self._open_line > MAX_LINE:
                raise ConfigError(f"{self._path}:{self._ends + 1}: line longer than {MAX_LINE} bytes")
        return data

    read = read1

    def line_of(self, exc: UnicodeDecodeError) -> int:
        """The line (from 1) of the byte that did not decode, in the block last handed over."""
        before = exc.object[: exc.start]
        return self._ends_before + _line_ends(before) - (self._cr_before and before.startswith(b"\n")) + 1


def _is_ascii_based(codec: str) -> bool:
    """True when the line ends and CSV's separators and quotes are the same single bytes as in ASCII."""
    try:
        return '\r\n,;\t"#'.encode(codec) == b'\r\n,;\t"#'
    except UnicodeEncodeError:
        return False


def _codec_of(f: IO[bytes], encoding: str | None) -> str:
    """The encoding to read with: the one given, else UTF-16 after a UTF-16 byte order mark, else UTF-8."""
    if encoding is not None:
        return encoding
    head = f.peek(2)[:2] if hasattr(f, "peek") else b""
    return "utf-16" if head in _UTF16_BOMS else "utf-8"


def _not_text(p: Path, number: int | None, codec: str, exc: UnicodeDecodeError, given: bool) -> ConfigError:
    """What to say of a byte that is not text in the encoding: where it is, and what to do about it."""
    where = f"{p}:{number}" if number else str(p)
    name = codec.upper() if codec.startswith("utf") else codec
    bad = exc.object[exc.start : exc.start + 1]
    what = f"byte 0x{bad.hex()}: {exc.reason}" if bad else exc.reason
    if given:
        hint = "check the encoding named"
    else:
        hint = "name its encoding: --encoding on the command line, encoding= in Python (Excel on Windows writes cp1252)"
    return ConfigError(f"{where}: not {name} text ({what}); {hint}")


@contextmanager
def _text(f: IO[bytes], p: Path, encoding: str | None) -> Iterator[Iterator[str]]:
    """The file's lines decoded, one string per line with its end, as the csv module wants them.

    Lines end at ``\n``, ``\r\n`` or a lone ``\r`` (old Macintosh files). A
    UTF-8 byte order mark is dropped. A byte that is not text in the encoding,
    met while the ``with`` block reads, is a ConfigError naming its own line
    (not the line where the decoder's block began); in UTF-16 and UTF-32, where
    line ends are not single bytes, it names the file.
    """
    codec = _codec_of(f, encoding)
    counted = _Counted(f, p) if _is_ascii_based(codec) else None
    # newline="": lines end at "\n", "\r\n" or "\r" only, and keep their ends
    text = io.TextIOWrapper(counted or f, encoding="utf-8-sig" if codec == "utf-8" else codec, newline="")
    text._CHUNK_SIZE = _BLOCK  # type: ignore[attr-defined]  # fewer, larger blocks through _Counted
    try:
        yield text if counted else _bounded(text, p)
    except UnicodeDecodeError as exc:
        raise _not_text(p, counted and counted.line_of(exc), codec, exc, encoding is not None) from None
    finally:
        text.detach() if counted is None else text.close()  # the file itself is closed by its opener


def _bounded(text: IO[str], p: Path) -> Iterator[str]:
    """The lines of ``text``, none longer than :data:`MAX_LINE` characters (a longer one is a ConfigError)."""
    for number, line in enumerate(iter(lambda: text.readline(MAX_LINE + 1), ""), 1):
        if len(line) > MAX_LINE:
            raise ConfigError(f"{p}:{number}: line longer than {MAX_LINE} characters")
        yield line


_DELIMITERS = (",", ";", "\t")  # ";" is what spreadsheets write where the decimal mark is a comma


def _delimiter(header: str) -> str:
    """The delimiter the header line uses most (a comma when it has none of them: a one-column file)."""
    counts = [(header.count(d), -i, d) for i, d in enumerate(_DELIMITERS)]
    count, _, delimiter = max(counts)
    return delimiter if count else ","


def _csv(p: Path, encoding: str | None) -> Iterator[dict[str, Any]]:
    """Rows as dicts keyed by the header's names (stripped of spaces), comma, semicolon or tab separated.

    Every row keeps every named column: an empty cell is ``""``, a short row's
    missing cells ``None``; submitting treats both as absent, and rows that
    share their keys can be prepared in bulk. A column with no name (a
    trailing delimiter, say) is dropped while its cells are empty; a value in
    it is an error, since it cannot be sent under any field.
    """
    with _open(p) as f, _text(f, p, encoding) as lines:
        reader = None
        try:
            first = next(lines, "")  # no seek back: the file may be a pipe (/dev/stdin)
            # strict: an unclosed quote is an error, not a merged row
            reader = csv.reader(chain([first], lines), delimiter=_delimiter(first), strict=True)
            header = [name.strip() for name in next(reader, [])]
            if not any(header):
                raise ConfigError(f"{p}: empty CSV (a header row is required)")
            named = [name for name in header if name]
            if len(set(named)) != len(named):
                duplicates = sorted({name for name in named if named.count(name) > 1})
                raise ConfigError(f"{p}: duplicate column names in the header: {duplicates}")
            unnamed = [i for i, name in enumerate(header) if not name]
            keep = [i for i, name in enumerate(header) if name]
            width = len(header)
            done = reader.line_num  # the line the rows read so far end on
            while True:
                batch: list[list[str]] = []
                try:
                    batch.extend(islice(reader, _BATCH))  # keeps the rows read before a malformed one
                except csv.Error:
                    yield from _odd_rows(p, batch, done, header, named, keep, unnamed)  # their errors come first
                    raise
                if not batch:
                    break
                if not unnamed and len(batch[0]) == width and len(set(map(len, batch))) == 1:
                    yield from map(dict, map(zip, repeat(header), batch))  # the common case, in C
                else:
                    yield from _odd_rows(p, batch, done, header, named, keep, unnamed)
                done = reader.line_num
        except csv.Error as exc:
            raise ConfigError(f"{p}:{reader.line_num if reader else 1}: malformed CSV: {exc}") from None


_BATCH = 1024  # CSV rows turned into dicts at once when they all have the header's width


def _odd_rows(
    p: Path, batch: list[list[str]], done: int, header: list[str], named: list[str], keep: list[int], unnamed: list[int]
) -> Iterator[dict[str, Any]]:
    """Rows one at a time: blank, short or long ones, or a header with unnamed columns.

    ``done`` is the line the rows before ``batch`` end on; a row's own line
    (for an error) is found by counting, since a quoted cell may span lines.
    """
    width = len(header)
    line = done
    for row in batch:
        line += 1 + sum(map(_line_ends, row))  # the line this row ends on, as csv counts
        if not row:
            continue  # a blank line
        if len(row) > width:
            raise ConfigError(f"{p}:{line}: more values than columns ({len(row)} > {width})")
        if unnamed:
            for i in unnamed:
                if i < len(row) and row[i].strip():
                    raise ConfigError(
                        f"{p}:{line}: a value in column {i + 1}, which has no name in the header: {row[i][:40]!r}"
                    )
            yield dict(zip(named, [row[i] if i < len(row) else None for i in keep], strict=True))
            continue
        contact = dict(zip(header, row, strict=False))  # a short row: the rest below
        if len(row) < width:
            contact.update(dict.fromkeys(header[len(row) :]))
        yield contact


def _jsonl(p: Path, encoding: str | None) -> Iterator[dict[str, Any]]:
    """One JSON object per line; blank lines are skipped. JSON is UTF-8 (RFC 8259), unless an encoding is named."""
    with _open(p) as f:
        if _codec_of(f, encoding) == "utf-8":  # the bytes go to msgspec as they are, which checks them as UTF-8
            yield from _json_objects(p, _raw_lines(f, p), encoding is not None)
        else:
            with _text(f, p, encoding) as lines:
                yield from _json_objects(p, [lines], True)


def _check_utf8(p: Path, number: int, line: bytes, given: bool) -> None:
    """Raise the error naming line ``number``'s first byte that is not UTF-8, if there is one."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_text(p, number, "utf-8", exc, given) from None


def _json_objects(p: Path, blocks: Iterable[Iterable[bytes | str]], given: bool) -> Iterator[dict[str, Any]]:
    """The lines' JSON objects; ``blocks`` holds the lines in groups (as read), in order."""
    decode = msgspec.json.Decoder(dict[str, Any]).decode
    number = 0
    for lines in blocks:
        for line in lines:
            number += 1
            try:
                contact = decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
                if not line.strip():
                    continue  # a blank line
                if isinstance(line, bytes):  # msgspec 0.23 says "Invalid UTF-8 encoded string": name the byte
                    _check_utf8(p, number, line, given)
                raise ConfigError(f"{p}:{number}: not a JSON object: {exc}") from None
            except UnicodeDecodeError as exc:  # bytes that are not UTF-8 (msgspec before 0.23)
                raise _not_text(p, number, "utf-8", exc, given) from None
            yield contact


def _ids(p: Path, encoding: str | None) -> Iterator[str]:
    with _open(p) as f, _text(f, p, encoding) as lines:
        for line in lines:
            value = line.strip()
            if value and not value.startswith("#"):
                yield value
