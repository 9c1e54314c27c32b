"""Which rooms are recorded: on demand (the admin API), and by each room's policy.

A room's policy is its lesson's (``always``, ``never``, or ``online``: recorded while the lesson is
online, what the city plans ask for); a live room that is no lesson of the timetable is recorded by
default. The policy is looked at when a room opens and whenever its mode changes (a switchover), and
a recording ends with its room. ``auto`` off (``--no-auto-record``) leaves only the admin API's.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from classroom.errors import ClassroomError
from classroom.room import Room
from classroom.rooms import Rooms

from .session import RecordingSession, safe_name

log = logging.getLogger(__name__)


class Recordings:
    def __init__(self, rooms: Rooms, directory: str, auto: bool = True) -> None:
        self.rooms = rooms
        self.directory = Path(directory)
        self.auto = auto
        self.sessions: dict[str, RecordingSession] = {}  # by room name
        self._tasks: set[asyncio.Task[Any]] = set()
        rooms.listeners.append(self._heard)

    async def start(self, room: Room, tracks: list[str] | None = None) -> RecordingSession:
        """Record the room (`tracks` None: every track, those published later too), or only these
        tracks; a recording already going takes them in."""
        session = self.sessions.get(room.name)
        if session is None or session.stopped.is_set():
            session = self.sessions[room.name] = RecordingSession(room, self.directory / safe_name(room.name))
            try:
                await session.start(tracks)
            except Exception:
                del self.sessions[room.name]
                await session.stop()
                raise
        else:
            session.record(tracks)
        return session

    async def stop(self, name: str) -> RecordingSession | None:
        session = self.sessions.pop(name, None)
        if session is not None:
            files = await session.stop()
            self.rooms.tell("recording_finished", **session.room.place(), files=files)
        return session

    async def stop_all(self) -> None:
        for name in list(self.sessions):
            await self.stop(name)
        for task in list(self._tasks):
            await task

    async def follow(self, room: Room) -> None:
        """Start or stop the room's recording as its policy says now."""
        if not self.auto or room.closed:
            return
        recorded = room.name in self.sessions
        if room.mode.recording and not recorded:
            try:
                await self.start(room)
            except (OSError, ClassroomError) as exc:  # no recorder: the lesson goes on
                log.error("recording of %s did not start: %s", room.name, exc)
        elif not room.mode.recording and recorded:
            await self.stop(room.name)

    def _heard(self, event: str, **fields: Any) -> None:
        name = fields.get("room")
        if event == "lesson_ended":
            coro = self.stop(str(name))
        elif event in ("lesson_started", "mode_changed") and (room := self.rooms.rooms.get(str(name))):
            coro = self.follow(room)
        else:
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
