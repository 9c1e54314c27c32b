"""The lessons' rooms of every worker and every node, as the switchover sees them
(school.lesson_rooms.LessonRooms): each lesson's room opened where the placement gives it, and a
mode change told to all at once."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import aiohttp

from school.lesson_rooms import Switched

from .nodes import RELAYED, NodeInfo, NodeRegistry, relay_mark
from .placement import Worker
from .worker import SECRET_HEADER
from .workers import WorkerPool


class WorkerLessonRooms:
    """This machine's workers."""

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


class NodeLessonRooms:
    """Every node of the cluster: each lesson's room is claimed for a node (cluster.nodes), which
    opens it on one of its workers; a mode change goes to every live node, each telling its own."""

    def __init__(
        self, registry: NodeRegistry, here: WorkerLessonRooms, session: aiohttp.ClientSession, api_secret: str
    ) -> None:
        self.registry, self.here, self.session = registry, here, session
        self.mark = relay_mark(api_secret)

    async def _ask(self, node: NodeInfo, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(node.url + path, json=body, headers={RELAYED: self.mark}) as answer:
            answer.raise_for_status()
            result = await answer.json()
        return result if isinstance(result, dict) else {}

    async def open(self, lessons: list[str]) -> int:
        by_node: dict[str, tuple[NodeInfo, list[str]]] = {}
        for lesson, node in (await self.registry.claim_many(lessons)).items():
            by_node.setdefault(node.id, (node, []))[1].append(lesson)
        counts = await asyncio.gather(
            *(
                self.here.open(names) if node.id == self.registry.node.id else self._opened(node, names)
                for node, names in by_node.values()
            )
        )
        return sum(counts)

    async def _opened(self, node: NodeInfo, lessons: list[str]) -> int:
        return int((await self._ask(node, NODE_OPEN, {"lessons": lessons})).get("opened", 0))

    async def switch(
        self, mode: str, event: dict[str, Any], lessons: set[str], schools: set[str]
    ) -> Switched:
        body = {"mode": mode, "event": event, "lessons": sorted(lessons), "schools": sorted(schools)}
        nodes = await self.registry.nodes()
        others = [n for n in nodes.values() if n.id != self.registry.node.id]
        answers = await asyncio.gather(
            self.here.switch(mode, event, lessons, schools),
            *(self._switched(n, body) for n in others),
        )
        done = Switched()
        for answer in answers:
            done += answer
        return done

    async def _switched(self, node: NodeInfo, body: dict[str, Any]) -> Switched:
        answer = await self._ask(node, NODE_SWITCH, body)
        return Switched(int(answer["rooms"]), int(answer["told"]), int(answer["recording"]))


NODE_OPEN = "/internal/node/lessons/open"  # a node's front, asked by another node
NODE_SWITCH = "/internal/node/lessons/switch"
