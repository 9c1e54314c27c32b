"""The lessons' rooms of every worker, as the switchover sees them (school.lesson_rooms.LessonRooms):
each lesson's room opened on the worker the placement gives it, and a mode change told to all."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import aiohttp

from school.lesson_rooms import Switched

from .placement import Worker
from .worker import SECRET_HEADER
from .workers import WorkerPool


class ClusterLessonRooms:
    def __init__(self, pool: WorkerPool, session: aiohttp.ClientSession) -> None:
        self.pool, self.session = pool, session

    async def _ask(self, worker: Worker, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {SECRET_HEADER: self.pool.secret}
        async with self.session.post(worker.url + path, json=body, headers=headers) as answer:
            answer.raise_for_status()
            result = await answer.json()
        return result if isinstance(result, dict) else {}

    async def open(self, lessons: list[str]) -> int:
        placement = self.pool.placement
        by_worker: dict[Worker, list[str]] = defaultdict(list)
        for lesson in lessons:
            by_worker[placement.place(lesson)].append(lesson)
        answers = await asyncio.gather(
            *(self._ask(w, "/internal/lessons/open", {"lessons": names}) for w, names in by_worker.items())
        )
        for (worker, names), answer in zip(by_worker.items(), answers, strict=True):
            for name in set(names) - set(answer.get("open", [])):  # no lesson after all: not held there
                placement.release(name, worker)
        return sum(int(answer.get("opened", 0)) for answer in answers)

    async def switch(
        self, mode: str, event: dict[str, Any], lessons: set[str], schools: set[str]
    ) -> Switched:
        body = {"mode": mode, "event": event, "lessons": sorted(lessons), "schools": sorted(schools)}
        live = [w for w in self.pool.placement.workers if w.alive]
        answers = await asyncio.gather(*(self._ask(w, "/internal/lessons/switch", body) for w in live))
        done = Switched()
        for answer in answers:
            done += Switched(int(answer["rooms"]), int(answer["told"]), int(answer["recording"]))
        return done
