"""Where the organisation is kept: the interface, and the embedded SQLite store behind it.

The interface is small on purpose (records by kind and id, a record's children, all-or-nothing
batches, the switchover audit), so that the Redis store the scale-out issue brings fills it without
the switchover or the admin API changing. SQLite is the default because a school's server must keep
its timetable through a restart with nothing else installed; it runs on one thread of its own, so a
slow disk never holds up the event loop that forwards media.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any, Protocol

from state.sqlite import SqliteThread

from .model import ORDER, RECORDS, Lesson, Problem, Record, parse, references

MAX_AUDITS = 10_000  # the oldest switchover records go past this many


class BatchError(ValueError):
    """A batch that was not written, with every problem found in it (nothing of it was kept)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s): {problems[0].error}" if problems else "no records")
        self.problems = problems


class InUse(ValueError):
    """A record that others point at: delete or change them first."""


class Store(Protocol):
    async def put(self, records: list[Record]) -> None:
        """Write every record or none: BatchError lists each record whose references are missing."""

    async def get(self, kind: str, record_id: str) -> Record | None: ...

    async def children(self, kind: str, parent_id: str, at: float | None = None) -> list[Record]:
        """The records of `kind` whose parent is `parent_id` (a school's lessons), by id; with
        `at`, only lessons in session then."""

    async def all(self, kind: str) -> list[Record]: ...

    async def delete(self, kind: str, record_id: str) -> bool:
        """False if there was none; InUse if another record points at it."""

    async def add_audit(self, entry: dict[str, Any]) -> int:
        """Keep a switchover's record; its number."""

    async def audits(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest switchover records, newest first."""

    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, id TEXT NOT NULL, parent TEXT, body TEXT NOT NULL,
    starts_at INTEGER, ends_at INTEGER,  -- lessons: a switchover asks what is in session now
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS records_by_parent ON records (kind, parent, starts_at);
CREATE TABLE IF NOT EXISTS refs (
    kind TEXT NOT NULL, id TEXT NOT NULL, ref_kind TEXT NOT NULL, ref_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS refs_from ON refs (kind, id);
CREATE INDEX IF NOT EXISTS refs_to ON refs (ref_kind, ref_id);
CREATE TABLE IF NOT EXISTS audits (
    number INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL
);
"""


class SqliteStore(SqliteThread):
    """The organisation in one SQLite file (or ":memory:")."""

    schema = _SCHEMA

    async def put(self, records: list[Record]) -> None:
        if records:
            await self._run(lambda db: _put(db, records))

    async def get(self, kind: str, record_id: str) -> Record | None:
        def read(db: sqlite3.Connection) -> Record | None:
            row = db.execute("SELECT body FROM records WHERE kind=? AND id=?", (kind, record_id)).fetchone()
            return None if row is None else _record(kind, row[0])

        return await self._run(read)

    async def children(self, kind: str, parent_id: str, at: float | None = None) -> list[Record]:
        def read(db: sqlite3.Connection) -> list[Record]:
            args: tuple[float, ...] = ()
            if at is None:
                query = "SELECT body FROM records WHERE kind=? AND parent=? ORDER BY id"
            else:
                query = (
                    "SELECT body FROM records WHERE kind=? AND parent=? AND starts_at <= ? AND ends_at > ?"
                    " ORDER BY id"
                )
                args = (at, at)
            return [_record(kind, body) for (body,) in db.execute(query, (kind, parent_id, *args))]

        return await self._run(read)

    async def all(self, kind: str) -> list[Record]:
        def read(db: sqlite3.Connection) -> list[Record]:
            rows = db.execute("SELECT body FROM records WHERE kind=? ORDER BY id", (kind,))
            return [_record(kind, body) for (body,) in rows]

        return await self._run(read)

    async def delete(self, kind: str, record_id: str) -> bool:
        return await self._run(lambda db: _delete(db, kind, record_id))

    async def add_audit(self, entry: dict[str, Any]) -> int:
        def write(db: sqlite3.Connection) -> int:
            cursor = db.execute("INSERT INTO audits (body) VALUES (?)", (json.dumps(entry),))
            number = int(cursor.lastrowid or 0)
            db.execute("DELETE FROM audits WHERE number <= ?", (number - MAX_AUDITS,))
            return number

        return await self._run(write)

    async def audits(self, limit: int = 100) -> list[dict[str, Any]]:
        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute("SELECT number, body FROM audits ORDER BY number DESC LIMIT ?", (limit,))
            return [{"number": number, **json.loads(body)} for number, body in rows]

        return await self._run(read)


def _record(kind: str, body: str) -> Record:
    """A stored record: it was checked when written, and is checked again (a hand-edited file)."""
    return parse(kind, json.loads(body))


def _exists(db: sqlite3.Connection, kind: str, record_id: str) -> bool:
    row = db.execute("SELECT 1 FROM records WHERE kind=? AND id=?", (kind, record_id)).fetchone()
    return row is not None


def _put(db: sqlite3.Connection, records: Iterable[Record]) -> None:
    ordered = sorted(records, key=lambda r: ORDER.index(r.kind))
    batch = {(r.kind, r.id) for r in ordered}
    db.execute("BEGIN IMMEDIATE")  # the checks and the writes see one state, whoever else writes
    try:
        problems = [
            Problem(r.kind, 0, r.id, f"{r.kind} {r.id!r} names {kind} {ref!r}, which is not there")
            for r in ordered
            for kind, ref in references(r)
            if (kind, ref) not in batch and not _exists(db, kind, ref)
        ]
        if problems:
            raise BatchError(problems)
        for r in ordered:
            body = json.dumps(r.to_dict(), ensure_ascii=False)
            slot = (r.starts_at, r.ends_at) if isinstance(r, Lesson) else (None, None)
            db.execute(
                "INSERT OR REPLACE INTO records (kind, id, parent, body, starts_at, ends_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (r.kind, r.id, r.parent_id, body, *slot),
            )
            db.execute("DELETE FROM refs WHERE kind=? AND id=?", (r.kind, r.id))
            db.executemany(
                "INSERT INTO refs (kind, id, ref_kind, ref_id) VALUES (?, ?, ?, ?)",
                [(r.kind, r.id, kind, ref) for kind, ref in references(r)],
            )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _delete(db: sqlite3.Connection, kind: str, record_id: str) -> bool:
    db.execute("BEGIN IMMEDIATE")
    try:
        users = db.execute(
            "SELECT kind, id FROM refs WHERE ref_kind=? AND ref_id=? ORDER BY kind, id LIMIT 3",
            (kind, record_id),
        ).fetchall()
        if users:
            named = ", ".join(f"{k} {i!r}" for k, i in users)
            raise InUse(f"{kind} {record_id!r} is used by {named}: delete or change them first")
        cursor = db.execute("DELETE FROM records WHERE kind=? AND id=?", (kind, record_id))
        db.execute("DELETE FROM refs WHERE kind=? AND id=?", (kind, record_id))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return cursor.rowcount > 0


__all__ = ["RECORDS", "BatchError", "InUse", "SqliteStore", "Store"]
