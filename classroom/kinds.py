"""The three lessons, each a policy the room consults: who watches whom, and who hears of whom.

- fusion: the classrooms of several schools and the lecturer publish and see each other;
- dual_teacher: a famous lecturer to many classrooms; each classroom's box sends a low-rate view
  that only the lecturer and that classroom's own tutor watch, until the lecturer brings it on
  stage and every classroom watches it;
- live: one or two presenters to hundreds or thousands of viewers, who watch the presenters (and
  whoever is on stage) and hear of nobody but them; they see a count instead.

Watching decides what a participant is offered: a box in a dual-teacher lesson of a hundred
classrooms is offered the lecturer's tracks, not three hundred others, and its offer keeps one size
however many classrooms join. Presence decides who gets participant and track events about whom.
A room asks its kind; nothing elsewhere tests a kind's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from .permissions import MODERATORS, in_reach
from .tokens import KINDS, Role

if TYPE_CHECKING:
    from .participant import Participant
    from .room import Room

DEFAULT = "fusion"


class RoomKind:
    """What a kind of lesson lets each participant watch and hear of."""

    name: ClassVar[str]

    def watches(self, room: Room, viewer: Participant, owner: Participant) -> bool:
        """Whether `viewer` is offered what `owner` publishes (its own choices may narrow it)."""
        raise NotImplementedError

    def sees(self, room: Room, viewer: Participant, other: Participant) -> bool:
        """Whether `viewer` hears of `other`: its joining and leaving, its tracks, its link."""
        raise NotImplementedError


class Fusion(RoomKind):
    """Everyone watches and hears of everyone."""

    name = "fusion"

    def watches(self, room: Room, viewer: Participant, owner: Participant) -> bool:
        return True

    def sees(self, room: Room, viewer: Participant, other: Participant) -> bool:
        return True


class DualTeacher(RoomKind):
    """The lecture and the stage reach everyone; a classroom reaches its lecturer and its tutor."""

    name = "dual_teacher"

    def watches(self, room: Room, viewer: Participant, owner: Participant) -> bool:
        if owner.role is Role.LECTURER or owner.identity in room.stage:
            return True
        if viewer.role is Role.LECTURER:
            return True  # the lecturer watches every classroom
        return _tutor_of(viewer, owner)

    def sees(self, room: Room, viewer: Participant, other: Participant) -> bool:
        return self.watches(room, viewer, other) or (viewer.role in MODERATORS and in_reach(viewer, other))


class Live(RoomKind):
    """Presenters (lecturers, tutors), the stage and a viewer invited to speak reach everyone; the
    other viewers reach only the presenters."""

    name = "live"

    def watches(self, room: Room, viewer: Participant, owner: Participant) -> bool:
        if owner.role in MODERATORS or owner.identity in room.stage:
            return True
        return owner.role in (Role.STUDENT, Role.VIEWER) and owner.grants.publish  # invited to speak

    def sees(self, room: Room, viewer: Participant, other: Participant) -> bool:
        return self.watches(room, viewer, other) or viewer.role in MODERATORS


def _tutor_of(tutor: Participant, other: Participant) -> bool:
    """A tutor watches its own classroom: the box its token names, and that classroom's students."""
    return tutor.role is Role.TUTOR and in_reach(tutor, other)


BY_NAME: dict[str, RoomKind] = {kind.name: kind for kind in (Fusion(), DualTeacher(), Live())}
assert tuple(BY_NAME) == KINDS, "tokens.KINDS names the same kinds"


def kind(name: str | None) -> RoomKind:
    return BY_NAME[name or DEFAULT]
