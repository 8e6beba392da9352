"""Read contacts from files: CSV (header row), JSON Lines, or a plain list of ids (one per line).

Every reader yields plain dicts (or id strings) in input order, so a contact's
0-based position is its item key. Malformed input raises :class:`ConfigError`
naming the file, the line and what is wrong — nothing is half-read silently.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from eventbus.exceptions import ConfigError

__all__ = ["MAX_LINE", "read_contacts"]

MAX_LINE = 1024 * 1024  # one contact per line; a longer line is refused, not truncated


def read_contacts(path: str | Path, *, kind: str | None = None) -> Iterator[dict[str, Any] | str]:
    """Yield the contacts of ``path``; ``kind`` is ``csv``, ``jsonl`` or ``ids`` (default: from the suffix)."""
    p = Path(path)
    if not p.is_file():
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
    raise ConfigError(f"{p}: cannot tell the format from the suffix; use .csv, .jsonl/.ndjson or .txt (ids)")


def _open(p: Path) -> Any:
    try:
        return p.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None


def _csv(p: Path) -> Iterator[dict[str, Any]]:
    with _open(p) as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise ConfigError(f"{p}: empty CSV (a header row is required)")
        if len(set(reader.fieldnames)) != len(reader.fieldnames):
            raise ConfigError(f"{p}: duplicate column names in the header: {reader.fieldnames}")
        try:
            for row in reader:
                if None in row:
                    raise ConfigError(f"{p}:{reader.line_num}: more values than columns")
                # Every row keeps every column (an empty cell is "", a short row's missing cells None): submitting
                # treats both as absent, and rows that share their keys can be prepared in bulk.
                yield row
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}:{reader.line_num}: malformed CSV: {exc}") from None


def _jsonl(p: Path) -> Iterator[dict[str, Any]]:
    decoder = msgspec.json.Decoder(dict[str, Any])
    with p.open("rb") as f:
        for number, line in enumerate(f, 1):
            if len(line) > MAX_LINE:
                raise ConfigError(f"{p}:{number}: line longer than {MAX_LINE} bytes")
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
