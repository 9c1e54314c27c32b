"""The library at work: recordings become items (the finishing job, in a process of its own, with
progress), micro-lessons are cut from them, reviewers pass or refuse them, and their media files are
found for playback.

An item's files live in a folder of its own under the library's directory: lesson.mp4, hls/ and
poster.jpg, whatever made them (the finishing job or a cut), so playback needs one rule.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .cut import cut
from .model import MAX_MICRO, Item, ItemError, catalogue, review
from .store import LibraryStore

log = logging.getLogger(__name__)

RECORDING = re.compile(r"^[\w.-]{1,64}/\d{8}T\d{6}$")  # <room>/<start time>, as recorder.session names it
MEDIA = re.compile(r"^(lesson\.mp4|poster\.jpg|hls/index\.m3u8|hls/segment\d{5}\.ts)$")


class NotFound(LookupError):
    pass


class Library:
    def __init__(self, store: LibraryStore, directory: str, recordings: str) -> None:
        self.store = store
        self.directory = Path(directory)
        self.recordings = Path(recordings)
        self._jobs: set[asyncio.Task[None]] = set()

    async def get(self, item_id: str) -> Item:
        item = await self.store.get(item_id)
        if item is None:
            raise NotFound(f"no library item {item_id!r}")
        return item

    async def add_lesson(self, recording: Any, fields: dict[str, Any]) -> Item:
        """An item for a recording; the finishing job builds its files (status "finishing", then
        "draft", or "failed" with the reason)."""
        if not isinstance(recording, str) or not RECORDING.match(recording):
            raise ItemError('recording is "<room>/<start time>", as GET /rooms/{room}/recording says')
        source = self.recordings / recording
        if not source.is_dir():
            raise NotFound(f"no recording {recording!r}")
        item = Item(
            id=_new_id(), kind="lesson", recording=recording, created_at=time.time(), **catalogue(fields)
        )
        await self.store.put(item)
        self._spawn(self._finish(item, source))
        return item

    async def _finish(self, item: Item, source: Path) -> None:
        try:
            await self._run_finishing(item, source)
        except (OSError, ValueError) as exc:  # no process to run it: the item says so, never "finishing"
            item.status, item.reason = "failed", f"the finishing job did not run: {exc}"[:500]
            await self.store.put(item)

    async def _run_finishing(self, item: Item, source: Path) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "recorder.finish", str(source), str(self.directory / item.id), "--progress",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        result: dict[str, Any] = {}
        while line := await process.stdout.readline():
            try:
                said = json.loads(line)
            except ValueError:
                continue
            if "progress" in said:
                item.progress = float(said["progress"])
                await self.store.put(item)
            else:
                result = said
        errors = (await process.stderr.read()).decode(errors="replace")
        if await process.wait() == 0 and result:
            item.status, item.duration, item.progress = "draft", float(result["duration"]), 1.0
        else:
            item.status = "failed"
            item.reason = (errors.strip().splitlines() or ["the finishing job failed"])[-1][:500]
            log.error("finishing %s failed: %s", item.id, item.reason)
        await self.store.put(item)

    async def add_micro(
        self, lesson_id: str, start: Any, end: Any, exact: Any, fields: dict[str, Any]
    ) -> Item:
        """A micro-lesson: [start, end] of a finished lesson, at most five minutes, its own item."""
        lesson = await self.get(lesson_id)
        if lesson.kind != "lesson" or lesson.status in ("finishing", "failed"):
            raise ItemError(f"{lesson_id} is not a finished lesson")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, end)):
            raise ItemError("start and end are seconds into the lesson")
        if not 0 <= start < end <= lesson.duration + 0.5:
            raise ItemError(f"the clip must lie within the lesson's {lesson.duration:g} s")
        if end - start > MAX_MICRO:
            raise ItemError(f"a micro-lesson is at most {MAX_MICRO:g} s, this one {end - start:g} s")
        if not isinstance(exact, bool):
            raise ItemError("exact is true (re-encode, frame-exact) or false (at keyframes)")
        inherited = {
            k: getattr(lesson, k) for k in ("stage", "grade", "subject", "teacher", "school", "date")
        }
        item = Item(
            id=_new_id(), kind="micro", lesson=lesson.id, created_at=time.time(),
            **(inherited | catalogue(fields)),
        )  # fmt: skip
        folder = self.directory / item.id
        try:
            made = await asyncio.to_thread(
                cut, self.directory / lesson.id / "lesson.mp4", folder, float(start), float(end), exact
            )
        except (OSError, ValueError) as exc:  # PyAV's errors are both: leave no half-made clip behind
            shutil.rmtree(folder, ignore_errors=True)
            raise ItemError(f"the clip could not be cut: {exc}") from None
        item.start, item.duration, item.status, item.progress = made["start"], made["duration"], "draft", 1.0
        await self.store.put(item)
        return item

    async def edit(self, item_id: str, fields: dict[str, Any]) -> Item:
        item = await self.get(item_id)
        for key, value in catalogue(fields, partial=True).items():
            setattr(item, key, value)
        await self.store.put(item)
        return item

    async def review(self, item_id: str, action: Any, reviewer: Any, reason: Any) -> Item:
        item = await self.get(item_id)
        review(item, str(action), reviewer, reason)
        await self.store.put(item)
        return item

    def media(self, item: Item, name: str) -> Path | None:
        """The file `name` of an item (lesson.mp4, poster.jpg, hls/...), None if it is no such file."""
        if not MEDIA.match(name):
            return None
        path = self.directory / item.id / name
        return path if path.is_file() else None

    async def close(self) -> None:
        for task in list(self._jobs):
            task.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)


def _new_id() -> str:
    return "LI_" + secrets.token_urlsafe(9)
