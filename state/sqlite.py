"""One SQLite connection on a thread of its own, for an async server.

sqlite3 calls block; a slow disk must never hold up the event loop that forwards media, so every
query runs on one worker thread that owns the connection (SQLite connections are not shared
between threads). WAL lets several such stores use one file: the organisation, the library.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class SqliteThread:
    schema = ""  # the subclass's tables: CREATE TABLE IF NOT EXISTS ...

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kelian-sqlite")
        self._local = threading.local()
        self._closed = False

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None)  # we say BEGIN and COMMIT
            db.execute("PRAGMA busy_timeout=5000")  # another store or process of the same file is writing
            db.execute("PRAGMA journal_mode=WAL")  # kept in the file: the first to open it sets it
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut may lose the last commit only
            db.executescript(self.schema)
            self._local.db = db
        return db

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: work(self._db()))

    async def open(self) -> None:
        """Create the file and its tables now, so that a bad path fails at start, not mid-lesson."""
        await self._run(lambda db: None)

    async def close(self) -> None:
        """Close the file; safe to call twice."""
        if self._closed:
            return
        self._closed = True

        def shut() -> None:
            db: sqlite3.Connection | None = getattr(self._local, "db", None)
            if db is not None:
                db.close()
                self._local.db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)
