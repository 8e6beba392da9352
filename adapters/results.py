"""Every input contact's fate in one file: what became of each row of a submit (and of its jobs, when followed).

:class:`Results` is a bus subscriber that keeps, per chunk, the job it became
or why it was refused, and per contact, the item event its job reported.
:meth:`Results.rows` joins that with the input and the report of the run
(:class:`~adapters.submit.SubmitReport`, or a :class:`~adapters.submit.Plan`
when the run was interrupted before its report), and :meth:`Results.write`
writes one line per input row, in input order, as CSV or JSON Lines:

========== ===================================================================
status     meaning
========== ===================================================================
succeeded  the provider reported the contact done (``outcome``: ``created``,
           ``found``...; ``data``: what it returned, e.g. the email found), or
           its own report was lost and its job ended with every contact
           done (``message`` says so: a dropped Datananas WebSocket)
failed     the provider reported the contact failed (``outcome``: its code)
invalid    not sent: it failed the checks before sending (``message``: why)
rejected   its chunk was refused (``message``: the provider's reason)
submitted  its chunk was accepted as ``job_id``; no result for it was seen
           (the run did not follow the jobs, or ended first; when its job
           ended, ``message`` says how: expired, failed, or its counts)
unknown    its chunk was sent and no answer came: it may have been taken
not_sent   its chunk was never sent (the run stopped or was interrupted)
========== ===================================================================

InsideView reports results by contact id: every row holding an id gets that
id's result (an id given twice is sent once).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from adapters.submit import AcceptedJob, Plan, PlannedChunk, RejectedChunk, SubmitReport
from eventbus import events as ev
from eventbus.exceptions import ConfigError

__all__ = [
    "ChunkFates",
    "ItemResults",
    "ResultRow",
    "Results",
    "read_results",
    "results_format",
    "waiting_jobs",
    "write_rows",
]

STATUSES = ("succeeded", "failed", "invalid", "rejected", "submitted", "unknown", "not_sent")


@dataclass
class ResultRow:
    """One input row's fate (see the module's table of statuses)."""

    row: int
    contact: Mapping[str, Any]
    status: str
    job_id: str = ""
    outcome: str = ""
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def results_format(path: str | Path) -> str:
    """``csv`` or ``jsonl`` from a results file's suffix; ConfigError for anything else."""
    kind = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(Path(path).suffix.lower())
    if kind is None:
        raise ConfigError(f"{path}: a results file is .csv or .jsonl/.ndjson")
    return kind


class ChunkFates:
    """What a submit's events say of each chunk: how many there are, which were sent, taken as which job, refused."""

    def __init__(self) -> None:
        self.count = 0  # chunks in the run (0 until one is sent)
        self.sent: set[int] = set()  # chunk indexes
        self.jobs: dict[int, str] = {}  # chunk index -> job id
        self.refused: dict[int, str] = {}  # chunk index -> why

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.BatchSubmitted):
            self.count = event.chunk_count
            self.sent.add(event.chunk_index)
        elif isinstance(event, ev.JobAccepted) and event.chunk_index >= 0:
            self.jobs[event.chunk_index] = event.job_id
        elif isinstance(event, ev.SubmitRejected) and event.chunk_index >= 0:
            self.refused.setdefault(event.chunk_index, event.reason)
        elif isinstance(event, ev.QuotaExhausted) and ev.is_chunk_ref(event.job_id):  # refused, named by its ref
            self.refused.setdefault(int(event.job_id.rpartition("#")[2]), event.reason)


class Results:
    """A subscriber noting what the events say of each chunk and each contact; see the module's docstring."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.chunks = ChunkFates()
        self.items: dict[str, ev.ItemSucceeded | ev.ItemFailed] = {}  # item key -> the first report of it
        # job id -> how it ended
        self.ended: dict[str, ev.JobCompleted | ev.JobFailed | ev.JobCancelled | ev.JobExpired] = {}

    @staticmethod
    def check_writable(path: str | Path) -> None:
        """ConfigError now, before a run, if ``path`` is not a results file that can be written."""
        results_format(path)
        try:
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write the results: {exc.strerror}") from None

    def __call__(self, event: ev.Event) -> None:
        if event.provider != self.provider:
            return
        if isinstance(event, ev.ItemSucceeded | ev.ItemFailed):
            if not (isinstance(event, ev.ItemFailed) and event.source == "submit" and event.code == "invalid"):
                self.items.setdefault(event.key, event)  # the tracker lets one report of each item through
        elif isinstance(event, ev.JobCompleted | ev.JobFailed | ev.JobCancelled | ev.JobExpired):
            self.ended.setdefault(event.job_id, event)
        else:
            self.chunks(event)

    def rows(
        self,
        contacts: Sequence[Any],
        run: SubmitReport | Plan,
        numbers: Sequence[int] | None = None,
        *,
        all_seen: bool = True,
    ) -> Iterator[ResultRow]:
        """Each input row's :class:`ResultRow`, in input order.

        ``run`` is the run's ``SubmitReport`` (its ``accepted`` and ``rejected``
        give each chunk's rows and fate, whatever events are still on their way)
        or the ``Plan`` of the same contacts (its ``chunks``), and its
        ``invalid`` problems. ``numbers`` are the contacts' row numbers when the
        run was given them (``rows=``); by default 0, 1, 2... ``all_seen=False``
        says the events may not all have arrived (a subscriber on a bus, the run
        interrupted): a chunk nothing was heard of is then ``unknown``, never
        ``not_sent``, so that nothing taken is sent again on its word.
        """
        jobs, refused, sent = dict(self.chunks.jobs), dict(self.chunks.refused), set(self.chunks.sent)
        if isinstance(run, SubmitReport):
            for job in run.accepted:
                jobs.setdefault(job.chunk_index, job.job_id)
            for r in run.rejected:
                refused.setdefault(r.chunk_index, r.reason)  # the event's own reason first (the provider's code)
            sent.update(r.chunk_index for r in run.rejected if r.sent)
            sent.update(j.chunk_index for j in run.accepted)
        numbered = list(zip(numbers, contacts, strict=True)) if numbers is not None else list(enumerate(contacts))
        chunk_of: dict[int, int] = {}
        sizes: dict[int, int] = {}
        for chunk in _chunks(run):
            chunk_of.update(dict.fromkeys(chunk.rows, chunk.chunk_index))
            sizes[chunk.chunk_index] = len(chunk.rows)
        problems: dict[int, list[str]] = {}
        for problem in run.invalid:
            problems.setdefault(problem.row, []).append(str(problem))
        by_id = self.provider == "insideview"  # its items are keyed by contact id, not by row
        chunk_of_id: dict[str | None, int] = {}  # an id given twice is sent once, with its first valid row
        if by_id:
            contact_at = dict(numbered)
            for row, index in chunk_of.items():
                chunk_of_id.setdefault(_id_of(contact_at[row]), index)
        for row, contact in numbered:
            shown = {"id": contact} if isinstance(contact, str) else contact
            if row in problems:
                yield ResultRow(row, shown, "invalid", message="; ".join(problems[row]))
                continue
            key = _id_of(contact) if by_id else str(row)
            item = self.items.get(key) if key is not None else None
            if item is not None:
                yield _reported(row, shown, item)
                continue
            index = chunk_of.get(row, chunk_of_id.get(key) if by_id else None)
            if index is None:
                yield ResultRow(row, shown, "not_sent")
            elif index in jobs:
                yield self._unreported(row, shown, jobs[index], sizes[index])
            elif index in refused:  # (a chunk the run stopped before is reported refused too, with why)
                yield ResultRow(row, shown, "rejected" if index in sent else "not_sent", message=refused[index])
            elif index in sent:
                yield ResultRow(row, shown, "unknown", message="sent, no answer: may have been taken")
            elif not all_seen:
                yield ResultRow(row, shown, "unknown", message="the run ended before this chunk's fate was known")
            else:
                yield ResultRow(row, shown, "not_sent")

    def _unreported(self, row: int, contact: Mapping[str, Any], job_id: str, size: int) -> ResultRow:
        """A row of an accepted job with no report of its own: succeeded if its job said all its contacts were.

        Datananas reports no contact failed, and replays nothing after a dropped
        WebSocket: a contact's own event can be lost while its job's end, which
        counts every contact created or updated, still arrives.
        """
        end = self.ended.get(job_id)
        if end is None:
            return ResultRow(row, contact, "submitted", job_id=job_id)
        if not isinstance(end, ev.JobCompleted):
            why = f": {end.reason}" if end.reason else ""
            state = {ev.JobFailed: "failed", ev.JobCancelled: "was cancelled", ev.JobExpired: "expired"}[type(end)]
            message = f"its job {state}{why}; no report for this contact was seen"
            return ResultRow(row, contact, "submitted", job_id=job_id, message=message)
        if end.failed == 0 and end.succeeded == size:
            return ResultRow(
                row,
                contact,
                "succeeded",
                job_id=job_id,
                message=f"its job reported all {size} contacts done; this one's own report was not seen",
            )
        return ResultRow(
            row,
            contact,
            "submitted",
            job_id=job_id,
            message=f"its job ended ({end.succeeded} done, {end.failed} failed of {size}); "
            "no report for this contact was seen",
        )

    def write(
        self,
        path: str | Path,
        contacts: Sequence[Any],
        run: SubmitReport | Plan,
        numbers: Sequence[int] | None = None,
        *,
        all_seen: bool = True,
    ) -> dict[str, int]:
        """Write :meth:`rows` to ``path`` (CSV or JSON Lines, by suffix); return how many rows have each status."""
        return write_rows(path, list(self.rows(contacts, run, numbers, all_seen=all_seen)))


class ItemResults:
    """A subscriber keeping each contact's first report, for jobs followed by id (``eventbus follow --results``).

    The input rows are not known there: :meth:`write` writes one line per
    contact reported, by job (in the order given) and key, with columns
    ``job_id, key, status, outcome, message`` and ``data.<name>`` for each
    field the provider returned (as :class:`Results` does, cells a
    spreadsheet would run as formulas made plain text).
    """

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.items: dict[tuple[str, str], ev.ItemSucceeded | ev.ItemFailed] = {}

    def __call__(self, event: ev.Event) -> None:
        if event.provider == self.provider and isinstance(event, ev.ItemSucceeded | ev.ItemFailed):
            self.items.setdefault((event.job_id, event.key), event)

    def write(self, path: str | Path, job_ids: Sequence[str]) -> dict[str, int]:
        """Write the contacts reported to ``path`` (CSV or JSON Lines, by suffix); return how many have each status."""
        kind = results_format(path)
        order = {job_id: i for i, job_id in enumerate(job_ids)}
        keys = sorted(self.items, key=lambda jk: (order.get(jk[0], len(order)), jk[0], _key_order(jk[1])))
        rows = [_reported(0, {}, self.items[jk]) for jk in keys]
        lines = [
            {
                "job_id": r.job_id,
                "key": key,
                "status": r.status,
                "outcome": r.outcome,
                "message": r.message,
                "data": r.data,
            }
            for r, (_, key) in zip(rows, keys, strict=True)
        ]

        def write_csv(f: Any) -> None:
            columns = ("job_id", "key", "status", "outcome", "message")
            data = list(dict.fromkeys(name for r in rows for name in map(str, r.data)))
            writer = csv.writer(f)
            writer.writerow([*columns, *(f"data.{name}" for name in data)])
            for line in lines:
                writer.writerow(_inert([line[c] for c in columns] + [_cell(line["data"].get(name)) for name in data]))

        _write(path, kind, lines, write_csv)
        return _counts(rows)

    def merged(self, rows: Sequence[ResultRow]) -> list[ResultRow]:
        """The rows of a submit's results file (:func:`read_results`), each given the report its job made of it.

        A row belongs to the job named in its ``job_id``; its item is found by
        contact id for InsideView, and for the other providers by its position
        among its job's rows in row order (the order the chunk was sent in).
        Rows no report was seen for are kept as they were.
        """
        by_id = self.provider == "insideview"
        positions: dict[str, int] = {}
        out = []
        for r in sorted(rows, key=lambda r: r.row):
            key: str | None = None
            if r.job_id:
                if by_id:
                    key = _id_of(r.contact)
                else:
                    key = str(positions.get(r.job_id, 0))
                    positions[r.job_id] = int(key) + 1
            item = self.items.get((r.job_id, key)) if key is not None else None
            out.append(r if item is None else _reported(r.row, r.contact, item))
        return out


def waiting_jobs(rows: Iterable[ResultRow]) -> list[str]:
    """The jobs a submit's results file still waits on: the ``job_id`` of its rows ``submitted``, each once."""
    return list(dict.fromkeys(r.job_id for r in rows if r.status == "submitted" and r.job_id))


def read_results(path: str | Path) -> list[ResultRow]:
    """The rows of a results file that ``eventbus submit --results`` wrote (CSV or JSON Lines, by suffix).

    A :class:`ConfigError` names the file (and line) when it is not one: a
    column or field missing, a row number that is not one.
    """
    kind = results_format(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return _read_jsonl(path, f) if kind == "jsonl" else _read_csv(path, f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the results: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a results file of eventbus submit (not UTF-8 text: {exc.reason})") from None


_FIXED = ("row", "status", "job_id", "outcome", "message")


def _read_csv(path: str | Path, f: Any) -> list[ResultRow]:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or tuple(header[: len(_FIXED)]) != _FIXED:
        raise ConfigError(f"{path}: not a results file of eventbus submit: its header must begin {','.join(_FIXED)}")
    rest = header[len(_FIXED) :]
    first_data = next((i for i, name in enumerate(rest) if name.startswith("data.")), len(rest))
    inputs, data = rest[:first_data], [name[len("data.") :] for name in rest[first_data:]]
    rows = []
    for line, values in enumerate(reader, start=2):
        if len(values) != len(header):
            raise ConfigError(f"{path}:{line}: {len(values)} values for the header's {len(header)} columns")
        fixed, contact, found = (
            values[: len(_FIXED)],
            values[len(_FIXED) :][:first_data],
            values[len(header) - len(data) :],
        )
        rows.append(
            ResultRow(
                _row_number(path, line, fixed[0]),
                dict(zip(inputs, contact, strict=True)),
                *fixed[1:],
                data={name: value for name, value in zip(data, found, strict=True) if value != ""},
            )
        )
    return rows


class _Line(msgspec.Struct):
    row: int
    status: str
    job_id: str = ""
    outcome: str = ""
    message: str = ""
    input: dict[str, Any] = {}
    data: dict[str, Any] = {}


def _read_jsonl(path: str | Path, f: Any) -> list[ResultRow]:
    decode = msgspec.json.Decoder(_Line).decode
    rows = []
    for line, text in enumerate(f, start=1):
        if not text.strip():
            continue
        try:
            r = decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise ConfigError(f"{path}:{line}: not a line of an eventbus submit results file: {exc}") from None
        rows.append(ResultRow(r.row, r.input, r.status, r.job_id, r.outcome, r.message, r.data))
    return rows


def _row_number(path: str | Path, line: int, text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise ConfigError(f"{path}:{line}: the row number is {ev.excerpt(text, 40)!r}, not a whole number")
    return int(text)


def write_rows(path: str | Path, rows: Sequence[ResultRow]) -> dict[str, int]:
    """Write result rows as :meth:`Results.write` does (CSV or JSON Lines, by suffix); how many have each status."""
    _write(path, results_format(path), map(_as_dict, rows), lambda f: _write_csv(f, list(rows)))
    return _counts(rows)


def _counts(rows: Iterable[ResultRow]) -> dict[str, int]:
    """How many rows have each status, in the order of :data:`STATUSES`, those with none left out."""
    counts = {status: 0 for status in STATUSES}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {status: n for status, n in counts.items() if n}


def _key_order(key: str) -> tuple[int, int, str]:
    """Item keys in order: numbers (rows, positions) by value, then the rest as text."""
    return (0, int(key), "") if key.isascii() and key.isdigit() and len(key) < 19 else (1, 0, key)


def _write(path: str | Path, kind: str, jsonl: Iterable[dict[str, Any]], write_csv: Any) -> None:
    """Write a results file: ``jsonl``'s objects one per line, or the CSV ``write_csv(f)`` writes.

    The file is written beside its place and moved there once whole, so that a
    write that fails half-way leaves the file that was there (``eventbus follow
    --submitted F --results F`` rewrites the file it read) and no part of the new one.
    """
    target = Path(os.path.realpath(path))  # (through a symbolic link, to the file it names)
    partial = target.with_name(target.name + ".partial")
    try:
        try:
            with open(partial, "w", newline="", encoding="utf-8") as f:
                if kind == "jsonl":
                    encoder = msgspec.json.Encoder()
                    for line in jsonl:
                        f.write(encoder.encode(line).decode() + "\n")
                else:
                    write_csv(f)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the results: {exc.strerror}") from None


def _chunks(run: SubmitReport | Plan) -> Iterable[PlannedChunk | AcceptedJob | RejectedChunk]:
    """Every chunk's index and rows: a plan's chunks, or a report's chunks taken and not taken."""
    return run.chunks if isinstance(run, Plan) else [*run.accepted, *run.rejected]


def _id_of(contact: Any) -> str | None:
    if isinstance(contact, str):
        return contact.strip()
    if isinstance(contact, Mapping):
        value = contact.get("id")
        return str(value).strip() if value is not None else None
    return None


def _reported(row: int, contact: Mapping[str, Any], item: ev.ItemSucceeded | ev.ItemFailed) -> ResultRow:
    if isinstance(item, ev.ItemSucceeded):
        return ResultRow(row, contact, "succeeded", item.job_id, item.outcome, data=dict(item.data))
    return ResultRow(row, contact, "failed", item.job_id, item.code, item.message, dict(item.details))


def _as_dict(r: ResultRow) -> dict[str, Any]:
    return {
        "row": r.row,
        "status": r.status,
        "job_id": r.job_id,
        "outcome": r.outcome,
        "message": r.message,
        "input": dict(r.contact),
        "data": r.data,
    }


def _write_csv(f: Any, rows: list[ResultRow]) -> None:
    """The input's columns, then the result's, then ``data.<name>`` for each field the provider returned."""
    inputs: dict[str, None] = {}
    data: dict[str, None] = {}
    for r in rows:
        inputs.update(dict.fromkeys(map(str, r.contact)))
        data.update(dict.fromkeys(map(str, r.data)))
    fixed = ["row", "status", "job_id", "outcome", "message"]
    header = [*fixed, *inputs, *(f"data.{name}" for name in data)]
    writer = csv.writer(f)
    writer.writerow(header)
    for r in rows:
        line = [r.row, r.status, r.job_id, r.outcome, r.message]
        line += [_cell(r.contact.get(name)) for name in inputs]
        line += [_cell(r.data.get(name)) for name in data]
        writer.writerow(_inert(line))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str | int | float | bool):
        return value
    return msgspec.json.encode(value).decode()  # a list or an object: as JSON


def _inert(line: list[Any]) -> list[Any]:
    """Text a spreadsheet would run as a formula (``=...``, ``@...``, ``+cmd...``) made plain text with a ``'``.

    A ``+`` or ``-`` followed by a digit, a space or a dot is left alone:
    phone numbers (``+33 6...``) and negative numbers keep their form.
    """
    out = []
    for value in line:
        if isinstance(value, str) and value and _formula_like(value):
            value = "'" + value
        out.append(value)
    return out


def _formula_like(text: str) -> bool:
    first = text[0]
    if first in "=@\t\r":
        return True
    return first in "+-" and len(text) > 1 and not (text[1].isdigit() or text[1] in " .")
