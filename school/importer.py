"""Bulk import of a school's timetable and roster, as JSON or CSV: checked whole, written whole.

A school's system exports thousands of rows; one bad row (a lesson naming a classroom that is not
there, an end before its start) must not leave half a timetable behind, and the person who made the
export must learn every bad row at once, not one per attempt. So every row is parsed, every problem
collected with its kind and row number, and the store writes the batch in one transaction or not at
all (its references are checked there, against the batch and what is stored).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from .model import ORDER, Batch, Problem, RecordError, parse

MAX_ROWS = 50_000  # in one import
PLURALS = {kind: kind + "s" for kind in ORDER}


def from_json(body: Any) -> Batch:
    """``{"districts": [...], "schools": [...], "classrooms": [...], "teachers": [...],
    "students": [...], "lessons": [...]}``, any of them."""
    batch = Batch()
    if not isinstance(body, dict):
        batch.problems.append(Problem("import", 0, None, "an import is a JSON object of lists by kind"))
        return batch
    wanted = {plural: kind for kind, plural in PLURALS.items()}
    for key in body:
        if key not in wanted:
            batch.problems.append(
                Problem("import", 0, None, f"unknown list {key!r}: expected {', '.join(wanted)}")
            )
    for plural, kind in wanted.items():
        rows = body.get(plural) or []
        if not isinstance(rows, list):
            batch.problems.append(Problem(kind, 0, None, f"{plural} must be a list"))
            continue
        _add(batch, kind, rows)
    return batch


def from_csv(kind: str, data: str) -> Batch:
    """One kind of record, a header row of its field names (lists such as a lesson's classrooms
    separated by spaces or semicolons)."""
    batch = Batch()
    if kind not in PLURALS:
        batch.problems.append(Problem("import", 0, None, f"kind must be one of {', '.join(ORDER)}"))
        return batch
    try:
        rows = [
            {k: v for k, v in row.items() if v not in (None, "")}
            for row in csv.DictReader(io.StringIO(data.lstrip("\ufeff")))  # Excel writes a BOM
        ]
    except csv.Error as exc:
        batch.problems.append(Problem(kind, 0, None, f"not CSV: {exc}"))
        return batch
    if any(None in row for row in rows):
        batch.problems.append(Problem(kind, 0, None, "a row has more cells than the header"))
        return batch
    _add(batch, kind, rows)
    return batch


def _add(batch: Batch, kind: str, rows: list[Any]) -> None:
    if len(batch.records) + len(rows) > MAX_ROWS:
        batch.problems.append(Problem(kind, 0, None, f"at most {MAX_ROWS} rows in one import"))
        return
    seen = {r.id for r in batch.records if r.kind == kind}
    for n, row in enumerate(rows, 1):
        row_id = row.get("id") if isinstance(row, dict) and isinstance(row.get("id"), str) else None
        try:
            record = parse(kind, row)
        except RecordError as exc:
            batch.problems.append(Problem(kind, n, row_id, str(exc)))
            continue
        if record.id in seen:
            batch.problems.append(Problem(kind, n, record.id, f"{kind} {record.id!r} is in the import twice"))
            continue
        seen.add(record.id)
        batch.records.append(record)
        batch.rows[(kind, record.id)] = n
