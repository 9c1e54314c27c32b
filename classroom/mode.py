"""A lesson room's mode: online (students join from home) or offline (in person).

In person, a lesson's room still links its classrooms (a dual-teacher lecture reaches its
classrooms' boxes either way), but it has no students at home: their joins are refused. The
emergency switchover (school.switchover) flips the mode of many rooms at once; here one room does
its part without touching a transport: everyone connected is told at once, and, switching back, the
students at home stay until the lesson's classroom boxes are all back in the room, so that nobody
loses the lesson in between, and are then sent back to class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ClassroomError
from .tokens import Claims, Role

if TYPE_CHECKING:
    from .participant import Participant
    from .room import Room

ONLINE, OFFLINE = "online", "offline"
MODES = (ONLINE, OFFLINE)
AT_HOME = frozenset({Role.STUDENT, Role.VIEWER})  # who takes part only in an online lesson


class RoomMode:
    def __init__(self, room: Room, mode: str = ONLINE) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.room = room
        self.mode = mode

    def check_join(self, claims: Claims) -> None:
        if self.mode == OFFLINE and claims.role in AT_HOME:
            self.room.limits.refusals["lesson_offline"] += 1
            raise ClassroomError(
                "lesson_offline", f"lesson {self.room.name} is in person today: come to your classroom"
            )

    @property
    def recording(self) -> bool:
        """Whether the lesson's recording policy records it now: "always", or "online" while online
        (what the city plans ask for). The recorder follows it."""
        policy = self.room.options.recording
        return policy == "always" or (policy == ONLINE and self.mode == ONLINE)

    async def switch(self, mode: str, event: dict[str, Any]) -> int:
        """Take `mode` and tell everyone connected (`event`, a "mode" message); how many were told.
        No transport is touched: media flows on as it did."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        message = event | {"type": "mode", "mode": mode, "room": self.room.name, "recording": self.recording}
        self.room.tell("mode_changed", **self.room.place(), mode=mode, recording=self.recording)
        told = [p for p in self.room.participants.values() if p.send is not None and p.connected]
        for participant in told:
            await participant.notify(message)
        if mode == OFFLINE:
            await self.send_home()
        return len(told)

    async def joined(self, participant: Participant) -> None:
        """A classroom box came back: perhaps the last one the students at home waited for."""
        if self.mode == OFFLINE and participant.role is Role.CLASSROOM:
            await self.send_home()

    def classrooms_back(self) -> bool:
        present = {p.identity for p in self.room.participants.values() if p.role is Role.CLASSROOM}
        return set(self.room.options.boxes) <= present

    async def send_home(self) -> None:
        """Offline and every classroom back: the students at home end their session ("offline")."""
        if self.mode != OFFLINE or not self.classrooms_back():
            return
        home = [p for p in self.room.participants.values() if p.role in AT_HOME]
        if home:
            await self.room.disconnect(home, "offline")
