"""The lessons' rooms as the switchover sees them: opened with their lesson's settings, and told of
a mode change.

A seam, because where the rooms are depends on how kelian runs: in one process they are this
process's (LocalLessonRooms, over classroom.rooms.Rooms); with several workers or nodes they are
spread, and the cluster's implementation places each one and fans the switch out (cluster/). The
switchover itself (school.schools.Schools: scope, modes written, audit) is the same either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from classroom.room import RoomOptions
from classroom.rooms import Rooms

from .model import Classroom, Lesson, School
from .store import Store

LESSON_GRACE = 15 * 60  # seconds a lesson's room stays open after its end, for a lesson that overruns


@dataclass
class Switched:
    """What a switch reached: rooms of the scope, clients told, rooms recording now."""

    rooms: int = 0
    told: int = 0
    recording: int = 0

    def __add__(self, other: Switched) -> Switched:
        return Switched(self.rooms + other.rooms, self.told + other.told, self.recording + other.recording)


class LessonRooms(Protocol):
    async def open(self, lessons: list[str]) -> int:
        """Open the rooms of these lessons that are not open yet; how many were opened."""
        ...

    async def switch(
        self, mode: str, event: dict[str, Any], lessons: set[str], schools: set[str]
    ) -> Switched:
        """Tell every open room of these lessons, or of lessons of these schools, its new mode."""
        ...


async def room_options(store: Store, name: str, now: float) -> RoomOptions | None:
    """The settings a lesson's room opens with; None if `name` is no lesson."""
    lesson = await store.get("lesson", name)
    if not isinstance(lesson, Lesson):
        return None
    school = await store.get("school", lesson.school)
    assert isinstance(school, School)  # the store keeps no lesson without its school
    boxes = []
    for classroom_id in lesson.classrooms:
        classroom = await store.get("classroom", classroom_id)
        if isinstance(classroom, Classroom) and classroom.box:
            boxes.append(classroom.box)
    metadata = {"title": lesson.title} | ({"subject": lesson.subject} if lesson.subject else {})
    return RoomOptions(
        empty_timeout=max(60.0, lesson.ends_at + LESSON_GRACE - now),
        metadata=metadata | ({"teacher": lesson.teacher} if lesson.teacher else {}),
        kind=lesson.room_kind,
        lesson=lesson.id,
        school=school.id,
        district=school.district,
        boxes=tuple(boxes),
        mode=str(lesson.mode or school.mode),
        recording=str(lesson.recording),
    )


class LocalLessonRooms:
    """The lesson rooms of this process; also what opens a lesson's room on its first join."""

    def __init__(self, rooms: Rooms, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.rooms, self.store, self.clock = rooms, store, clock
        rooms.lessons = self.options

    async def options(self, name: str) -> RoomOptions | None:
        return await room_options(self.store, name, self.clock())

    async def open(self, lessons: list[str]) -> int:
        opened = 0
        for lesson in lessons:
            if lesson not in self.rooms.rooms:
                options = await self.options(lesson)
                if options is not None and lesson not in self.rooms.rooms:  # not opened while we looked
                    self.rooms.create(lesson, options)
                    opened += 1
        return opened

    async def switch(
        self, mode: str, event: dict[str, Any], lessons: set[str], schools: set[str]
    ) -> Switched:
        done = Switched()
        for room in list(self.rooms.rooms.values()):
            options = room.options
            if options.lesson is None or room.closed:
                continue
            if options.lesson in lessons or options.school in schools:
                done.rooms += 1
                done.told += await room.mode.switch(mode, event | {"lesson": options.lesson})
                done.recording += room.mode.recording
        return done
