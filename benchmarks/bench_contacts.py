"""Reading contacts from files, against the standard library doing the same in the same run.

``read_contacts`` on a CSV of 200,000 rows (4 columns, comma separated,
CRLF, UTF-8) against ``csv.DictReader`` over the same file opened as the
csv module's documentation says (``newline=""``, ``utf-8-sig``): the
baseline is what a user would write by hand. ``read_contacts`` does more: it
finds the delimiter, checks the header for duplicate and unnamed columns,
bounds each line's length, and names the line of a byte that is not text or
a row longer than the header; ``DictReader`` puts a long row's extra values
under a ``None`` key and stops at a bad byte with no line named.

A JSON Lines file of the same contacts is read by ``read_contacts``
against ``msgspec.json.Decoder`` over the file's lines (``for line in f``).

Both run ``repeat`` times; the best wall-clock time of each is reported
(reading a file is CPU-bound here: it is in the page cache after the first run).
"""

from __future__ import annotations

import csv
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from adapters.contacts import read_contacts
from benchmarks._util import ratio

NAME = "contacts"


def _best(fn: Callable[[], int], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _write(folder: Path, n: int) -> tuple[Path, Path]:
    rows = [
        {"email": f"person{i}@example.com", "first_name": f"First{i}", "last_name": f"Last{i}", "company": "Acme"}
        for i in range(n)
    ]
    csv_path, jsonl_path = folder / "people.csv", folder / "people.jsonl"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    jsonl_path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in rows))
    return csv_path, jsonl_path


def _dict_reader(path: Path) -> int:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return len(list(csv.DictReader(f)))


def _msgspec_lines(path: Path) -> int:
    decoder = msgspec.json.Decoder(dict[str, Any])
    with path.open("rb") as f:
        return len([decoder.decode(line) for line in f if line.strip()])


def run(quick: bool) -> dict:
    n = 20_000 if quick else 200_000
    repeat = 3 if quick else 5
    with tempfile.TemporaryDirectory() as folder:
        csv_path, jsonl_path = _write(Path(folder), n)
        assert len(list(read_contacts(csv_path))) == _dict_reader(csv_path) == n
        assert list(read_contacts(jsonl_path)) == list(read_contacts(csv_path))
        ours_csv = _best(lambda: len(list(read_contacts(csv_path))), repeat)
        base_csv = _best(lambda: _dict_reader(csv_path), repeat)
        ours_jsonl = _best(lambda: len(list(read_contacts(jsonl_path))), repeat)
        base_jsonl = _best(lambda: _msgspec_lines(jsonl_path), repeat)
    return {
        "contacts": n,
        "csv_read_contacts_s": round(ours_csv, 4),
        "csv_dictreader_s": round(base_csv, 4),
        "ratio_csv_read_contacts_vs_dictreader": ratio(ours_csv, base_csv),
        "csv_us_per_row": round(ours_csv / n * 1e6, 2),
        "jsonl_read_contacts_s": round(ours_jsonl, 4),
        "jsonl_msgspec_lines_s": round(base_jsonl, 4),
        "ratio_jsonl_read_contacts_vs_msgspec_lines": ratio(ours_jsonl, base_jsonl),
    }
