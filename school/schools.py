"""The organisation at work: lessons open their rooms with their settings, the emergency switchover
flips a district, a school or a list of lessons between in person and online, and a lesson's roster
gets its join tokens in one call.

A switchover is one operation because an emergency allows no other: the modes are written (so a
restart keeps them), every lesson in scope that is in session opens its online room, and every
connected client of the scope is told at once through its own send queue, so no slow socket holds
up the others. Nothing is renegotiated and no transport is touched: classroom boxes keep their media
flowing while their layout changes. Each switchover is audited (who, scope, when, how many were
told, how long until the last was), kept in the store and passed to ``on_switch`` (metrics, the
webhook).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from classroom.errors import ClassroomError
from classroom.tokens import mint

from .lesson_rooms import LessonRooms
from .model import Classroom, District, Lesson, Mode, Record, School, Student
from .store import Store

TOKEN_SLACK = 3600  # a roster's tokens outlive the lesson by this much (it may overrun, rejoin)


@dataclass(frozen=True)
class Scope:
    """Whom a switchover covers: a district, a school, or a list of lessons."""

    district: str | None = None
    school: str | None = None
    lessons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.district:
            return {"district": self.district}
        if self.school:
            return {"school": self.school}
        return {"lessons": list(self.lessons)}


class NotFound(LookupError):
    pass


class Schools:
    def __init__(
        self,
        store: Store,
        lesson_rooms: LessonRooms,
        api_key: str,
        api_secret: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.lesson_rooms = lesson_rooms
        self.api_key, self.api_secret = api_key, api_secret
        self.clock = clock
        self.on_switch: list[Callable[[dict[str, Any]], Awaitable[None]]] = []
        self.counts: Counter[str] = Counter()  # switchovers by mode, clients told: for /metrics
        self.last_told_ms = 0.0

    # -- the switchover ----------------------------------------------------------------------------

    async def switch(self, scope: Scope, mode: Mode, by: str | None = None) -> dict[str, Any]:
        """Switch `scope` to `mode`; the audit record (with its number)."""
        started, at = time.monotonic(), self.clock()
        schools, lessons, writes = await self._resolve(scope, mode, at)
        await self.store.put(writes)
        opened = await self.lesson_rooms.open([lesson.id for lesson in lessons]) if mode is Mode.ONLINE else 0
        switch_id = "SW_" + secrets.token_urlsafe(9)
        event = {"switch": switch_id, "scope": scope.to_dict(), "by": by}
        in_scope = set(scope.lessons) or {lesson.id for lesson in lessons}
        done = await self.lesson_rooms.switch(str(mode), event, in_scope, set() if scope.lessons else schools)
        told, rooms, recording = done.told, done.rooms, done.recording
        told_ms = round((time.monotonic() - started) * 1000, 1)
        audit = {
            "switch": switch_id,
            "at": round(at, 3),
            "by": by,
            "scope": scope.to_dict(),
            "mode": str(mode),
            "schools": len(schools),
            "lessons_in_session": len(lessons),
            "rooms_opened": opened,
            "rooms": rooms,
            "rooms_recording": recording,
            "clients_told": told,
            "told_ms": told_ms,
        }
        audit["number"] = await self.store.add_audit(audit)
        self.counts[str(mode)] += 1
        self.counts["told"] += told
        self.last_told_ms = told_ms
        for callback in self.on_switch:
            await callback(audit)
        return audit

    async def _resolve(
        self, scope: Scope, mode: Mode, at: float
    ) -> tuple[set[str], list[Lesson], list[Record]]:
        """The schools in scope, its lessons in session now, and the records whose mode changes."""
        writes: list[Record] = []
        if scope.lessons:
            lessons = []
            for lesson_id in scope.lessons:
                lesson = await self.store.get("lesson", lesson_id)
                if not isinstance(lesson, Lesson):
                    raise NotFound(f"no lesson {lesson_id!r}")
                lessons.append(lesson)
                writes.append(dataclasses.replace(lesson, mode=mode))
            return set(), [lesson for lesson in lessons if lesson.in_session(at)], writes
        if scope.district:
            district = await self.store.get("district", scope.district)
            if not isinstance(district, District):
                raise NotFound(f"no district {scope.district!r}")
            writes.append(dataclasses.replace(district, mode=mode))
            schools = [s for s in await self.store.children("school", district.id) if isinstance(s, School)]
        else:
            school = await self.store.get("school", scope.school or "")
            if not isinstance(school, School):
                raise NotFound(f"no school {scope.school!r}")
            schools = [school]
        lessons = []
        for school in schools:
            writes.append(dataclasses.replace(school, mode=mode))
            for lesson in await self.store.children("lesson", school.id, at=at):
                assert isinstance(lesson, Lesson)
                lessons.append(lesson)
                if lesson.mode is not None:  # a lesson switched on its own follows its school now
                    writes.append(dataclasses.replace(lesson, mode=None))
        return {s.id for s in schools}, lessons, writes

    # -- join tokens for a lesson's roster -----------------------------------------------------------

    async def roster_tokens(self, lesson_id: str, max_ttl: int) -> dict[str, Any]:
        """A token for everyone of the lesson: its teacher (lecturer), each classroom's box, each
        student (bound to its classroom's box, so that a tutor there moderates it)."""
        lesson = await self.store.get("lesson", lesson_id)
        if not isinstance(lesson, Lesson):
            raise NotFound(f"no lesson {lesson_id!r}")
        ttl = int(min(max_ttl, max(3600, lesson.ends_at + TOKEN_SLACK - self.clock())))
        boxes: dict[str, str] = {}
        people: list[tuple[str, str, str, str | None]] = []  # identity, role, name, classroom
        if lesson.teacher:
            teacher = await self.store.get("teacher", lesson.teacher)
            people.append((lesson.teacher, "lecturer", getattr(teacher, "name", lesson.teacher), None))
        for classroom_id in lesson.classrooms:
            classroom = await self.store.get("classroom", classroom_id)
            if isinstance(classroom, Classroom) and classroom.box:
                boxes[classroom.id] = classroom.box
                people.append((classroom.box, "classroom", classroom.name, None))
        for student_id in lesson.students:
            student = await self.store.get("student", student_id)
            assert isinstance(student, Student)
            box = boxes.get(student.classroom or "")
            people.append((student.id, "student", student.name, box))
        tokens = [
            {
                "identity": identity,
                "role": role,
                "name": name,
                "token": self._mint(lesson, identity, role, name, classroom, ttl),
            }
            for identity, role, name, classroom in people
        ]
        return {"lesson": lesson.id, "room": lesson.id, "ttl": ttl, "tokens": tokens}

    def _mint(
        self, lesson: Lesson, identity: str, role: str, name: str, classroom: str | None, ttl: int
    ) -> str:
        try:
            return mint(
                self.api_key,
                self.api_secret,
                room=lesson.id,
                identity=identity,
                role=role,
                name=name,
                ttl=ttl,
                kind=lesson.room_kind,
                classroom=classroom,
            )
        except ValueError as exc:  # a name the token cannot carry: the record was checked already
            raise ClassroomError("invalid_request", str(exc)) from None
