"""The library's catalogue in the server's SQLite file (state.sqlite): items by id, searched by
their catalogue fields and words of their title and tags."""

from __future__ import annotations

import json
import sqlite3

from state.sqlite import SqliteThread

from .model import Item

_SCHEMA = """
CREATE TABLE IF NOT EXISTS library_items (
    id TEXT PRIMARY KEY, body TEXT NOT NULL, status TEXT, kind TEXT, stage TEXT, grade TEXT,
    subject TEXT, teacher TEXT, school TEXT, date TEXT, words TEXT, created_at REAL
);
CREATE INDEX IF NOT EXISTS library_by_status ON library_items (status, created_at);
"""
FILTERS = ("status", "kind", "stage", "grade", "subject", "teacher", "school", "date")


class LibraryStore(SqliteThread):
    schema = _SCHEMA

    async def put(self, item: Item) -> None:
        body = item.to_dict()
        words = " ".join([item.title, *item.tags]).lower()

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO library_items"
                " (id, body, status, kind, stage, grade, subject, teacher, school, date, words, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item.id, json.dumps(body, ensure_ascii=False), item.status, item.kind, item.stage,
                 item.grade, item.subject, item.teacher, item.school, item.date, words, item.created_at),
            )  # fmt: skip

        await self._run(write)

    async def get(self, item_id: str) -> Item | None:
        def read(db: sqlite3.Connection) -> Item | None:
            row = db.execute("SELECT body FROM library_items WHERE id=?", (item_id,)).fetchone()
            return None if row is None else Item(**json.loads(row[0]))

        return await self._run(read)

    async def search(
        self,
        filters: dict[str, str],
        words: str | None = None,
        limit: int = 50,
        offset: int = 0,
        finished: bool = False,
    ) -> list[Item]:
        """Items matching every filter (FILTERS) and, with `words`, having each word in their
        title or tags (with `finished`, none still being finished); newest first."""
        where, args = (["status != 'finishing'"] if finished else []), []
        for key, value in filters.items():
            if key in FILTERS:
                where.append(f"{key} = ?")
                args.append(value)
        for word in (words or "").lower().split()[:8]:
            where.append("instr(words, ?) > 0")
            args.append(word)
        query = "SELECT body FROM library_items" + (" WHERE " + " AND ".join(where) if where else "")
        query += " ORDER BY created_at DESC LIMIT ? OFFSET ?"

        def read(db: sqlite3.Connection) -> list[Item]:
            return [Item(**json.loads(body)) for (body,) in db.execute(query, (*args, limit, offset))]

        return await self._run(read)

    async def delete(self, item_id: str) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM library_items WHERE id=?", (item_id,)).rowcount > 0

        return await self._run(write)


__all__ = ["FILTERS", "LibraryStore"]
