"""The rooms of this node."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sfu.node import Node

from .errors import ClassroomError
from .kinds import DEFAULT as DEFAULT_KIND
from .limits import RoomLimits
from .participant import Participant
from .permissions import start
from .room import Room, RoomOptions
from .tokens import Claims


def default_recording(kind: str) -> str:
    """A live lecture is recorded unless a school says otherwise; a class among classrooms is not."""
    return "always" if kind == "live" else "never"


class Rooms:
    """The rooms of this node: created on first join and closed when the last participant leaves, or
    created ahead by the admin API and closed when empty for their ``empty_timeout``."""

    def __init__(self, node: Node, max_audio_streams: int = 0, limits: RoomLimits | None = None) -> None:
        self.node = node
        self.max_audio_streams = max_audio_streams
        self.limits = limits or RoomLimits()
        self.refusals = self.limits.refusals  # every bound's refusals, rooms' and connections'
        self.rooms: dict[str, Room] = {}
        self.lessons: Callable[[str], Awaitable[RoomOptions | None]] | None = None
        # what happened, for the webhooks: called at once, must not wait (signaling.webhooks.emit)
        self.listeners: list[Callable[..., None]] = []

    async def open(self, name: str, kind: str | None = None) -> Room:
        """The room `name` for a join: one that is not open yet and is a lesson of the timetable
        (``lessons``, school.Schools) opens with the lesson's settings (kind, place, mode); any
        other as `get` makes it."""
        if name not in self.rooms and self.lessons is not None:
            options = await self.lessons(name)
            if options is not None and name not in self.rooms:  # not opened while we looked
                return self.create(name, options)
        return self.get(name, kind)

    def get(self, name: str, kind: str | None = None) -> Room:
        """The room `name`, made now if it does not exist (by a first join, of the `kind` its token
        names, fusion by default; a room that exists keeps the kind it has)."""
        room = self.rooms.get(name)
        if room is None:
            kind = kind or DEFAULT_KIND
            options = RoomOptions(empty_timeout=0.0, kind=kind, recording=default_recording(kind))
            room = Room(name, self.node, self._empty, options, self.max_audio_streams, self.limits, self.tell)
            self.rooms[name] = room
            self.tell("lesson_started", **room.place())
        return room

    def standing(self, claims: Claims) -> Claims:
        """The claims of a session about to join, with the grants it would have now (an invited
        student publishes; one not invited does not), without making the room."""
        room = self.rooms.get(claims.room)
        grants = room.moderation.grants_of(claims) if room else claims.grants.narrow(start(claims.role))
        return replace(claims, grants=grants)

    def create(self, name: str, options: RoomOptions) -> Room:
        """A room set up ahead of its lesson (the admin API); it waits ``empty_timeout`` for someone."""
        if name in self.rooms:
            raise ClassroomError("exists", f"room {name} already exists")
        room = self.rooms[name] = Room(
            name, self.node, self._empty, options, self.max_audio_streams, self.limits, self.tell
        )
        self.tell("lesson_started", **room.place())
        if options.empty_timeout > 0:
            room._emptied()
        return room

    def _empty(self, room: Room) -> None:
        if self.rooms.get(room.name) is room and not room.participants:
            del self.rooms[room.name]
            self.node.close_router(room.name)
            self.tell("lesson_ended", **room.place())

    def tell(self, event: str, **fields: Any) -> None:
        for listener in self.listeners:
            listener(event, **fields)

    def find_resource(self, resource: str) -> Participant | None:
        """The WHIP/WHEP session whose URL ends in ``resource`` (compared in constant time)."""
        key = resource.encode("utf-8", "surrogatepass")
        for room in self.rooms.values():
            for participant in room.participants.values():
                secret = participant.resource
                if secret is not None and secrets.compare_digest(secret.encode(), key):
                    return participant
        return None
