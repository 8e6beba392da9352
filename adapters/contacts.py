"""Read contacts from files: CSV (header row), JSON Lines, or a plain list of ids (one per line).

Every reader yields plain dicts (or id strings) in input order, so a contact's
0-based position is its item key. Malformed input raises :class:`ConfigError`
naming the file, the line and what is wrong — nothing is half-read silently.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any

import msgspec

from eventbus.exceptions import ConfigError

__all__ = ["MAX_LINE", "read_contacts"]

MAX_LINE = 1024 * 1024  # one contact per line; a longer line is refused, not truncated
_BOM = b"\xef\xbb\xbf"


def read_contacts(path: str | Path, *, kind: str | None = None) -> Iterator[dict[str, Any] | str]:
    """Yield the contacts of ``path``; ``kind`` is ``csv``, ``jsonl`` or ``ids`` (default: from the suffix)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, not a file of contacts")
    if not p.exists():  # anything else that exists may be read: a file, a pipe (/dev/stdin, <(...))
        raise ConfigError(f"{p}: no such file")
    kind = kind or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "ids", ".ids": "ids"}.get(
        p.suffix.lower()
    )
    if kind == "csv":
        return _csv(p)
    if kind == "jsonl":
        return _jsonl(p)
    if kind == "ids":
        return _ids(p)
    raise ConfigError(
        f"{p}: cannot tell the format from the suffix; use .csv, .jsonl/.ndjson or .txt (ids), "
        "or say which (--format on the command line, kind= in Python)"
    )


def _open(p: Path, binary: bool = False) -> Any:
    try:
        return p.open("rb") if binary else p.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None


_DELIMITERS = (",", ";", "\t")  # ";" is what spreadsheets write where the decimal mark is a comma


def _delimiter(header: str) -> str:
    """The delimiter the header line uses most (a comma when it has none of them: a one-column file)."""
    counts = [(header.count(d), -i, d) for i, d in enumerate(_DELIMITERS)]
    count, _, delimiter = max(counts)
    return delimiter if count else ","


def _csv(p: Path) -> Iterator[dict[str, Any]]:
    """Rows as dicts keyed by the header's names (stripped of spaces), comma, semicolon or tab separated.

    Every row keeps every named column: an empty cell is ``""``, a short row's
    missing cells ``None``; submitting treats both as absent, and rows that
    share their keys can be prepared in bulk. A column with no name (a
    trailing delimiter, say) is dropped while its cells are empty; a value in
    it is an error, since it cannot be sent under any field.
    """
    with _open(p) as f:
        reader = None
        try:
            first = f.readline()  # no seek back: the file may be a pipe (/dev/stdin)
            # strict: an unclosed quote is an error, not a merged row
            reader = csv.reader(chain([first], f), delimiter=_delimiter(first), strict=True)
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
            for row in reader:
                line = reader.line_num
                if not row:
                    continue  # a blank line
                if len(row) > width:
                    raise ConfigError(f"{p}:{line}: more values than columns ({len(row)} > {width})")
                if unnamed:
                    for i in unnamed:
                        if i < len(row) and row[i].strip():
                            raise ConfigError(
                                f"{p}:{line}: a value in column {i + 1}, which has no name in the header: "
                                f"{row[i][:40]!r}"
                            )
                    row = [row[i] if i < len(row) else None for i in keep]
                    yield dict(zip(named, row, strict=True))
                    continue
                contact = dict(zip(header, row, strict=False))  # a short row: the rest below
                if len(row) < width:
                    contact.update(dict.fromkeys(header[len(row) :]))
                yield contact
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}:{reader.line_num if reader else 1}: malformed CSV: {exc}") from None


def _jsonl(p: Path) -> Iterator[dict[str, Any]]:
    decoder = msgspec.json.Decoder(dict[str, Any])
    with _open(p, binary=True) as f:
        for number, line in enumerate(f, 1):
            if len(line) > MAX_LINE:
                raise ConfigError(f"{p}:{number}: line longer than {MAX_LINE} bytes")
            if number == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]  # written by some Windows tools; not part of the JSON
            if not line.strip():
                continue
            try:
                yield decoder.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
                raise ConfigError(f"{p}:{number}: not a JSON object: {exc}") from None


def _ids(p: Path) -> Iterator[str]:
    with _open(p) as f:
        try:
            for line in f:
                value = line.strip()
                if value and not value.startswith("#"):
                    yield value
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{p}: not UTF-8 text: {exc}") from None
