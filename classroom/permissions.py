"""Who may do what: the one check every entry point makes (WebSocket, WHIP/WHEP, admin API).

A participant's grants start as its token's narrowed by the lesson (a student or viewer publishes
only when invited) and change during the lesson within its token's grants, the ceiling: invited to
speak, brought on stage, sent back. What only moderators do is scoped: a lecturer (or admin) acts on
the whole room, a tutor only on its own classroom. The admin API acts as the school's system and
may do everything (`who` is None).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from .errors import ClassroomError
from .tokens import Grants, Role


class Action(StrEnum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    CHAT = "chat"  # chat and ask questions: the publish_data grant
    MUTE = "mute"  # a track: one's own, or one in reach for a moderator
    REMOVE = "remove"  # send a participant away
    END_SESSION = "end_session"  # DELETE a WHIP/WHEP session: one's own, or one in reach
    HANDS = "hands"  # see the raised hands, lower another's
    INVITE = "invite"  # invite to speak, send back, change what someone may do
    MODERATE_CHAT = "moderate_chat"  # delete a chat message, answer, dismiss or pass up a question
    ADMIT = "admit"  # let someone in from the waiting room, or turn them away: the lecture's
    STAGE = "stage"  # bring a participant on stage or send it back: the lecture's, not a tutor's
    LOCK = "lock"  # lock the room, mute everyone: the lecture's
    STANDBY = "standby"  # give a track a standby source (sfu.failover): the lecture's


class Subject(Protocol):
    """A token's claims or a participant: an identity, a role, what it may do now and its classroom."""

    @property
    def identity(self) -> str: ...

    @property
    def role(self) -> Role: ...

    @property
    def grants(self) -> Grants: ...

    @property
    def classroom(self) -> str | None: ...


LECTURE = frozenset({Role.LECTURER, Role.ADMIN})  # act on the whole room
MODERATORS = frozenset({Role.LECTURER, Role.TUTOR, Role.ADMIN})
_ROOM_WIDE = frozenset({Action.STAGE, Action.LOCK, Action.ADMIT, Action.STANDBY})
_VERBS = {
    Action.PUBLISH: "publish",
    Action.SUBSCRIBE: "receive media",
    Action.CHAT: "chat or ask questions",
    Action.MUTE: "mute others' tracks",
    Action.REMOVE: "remove anyone",
    Action.END_SESSION: "end another participant's session",
    Action.HANDS: "manage raised hands",
    Action.INVITE: "invite anyone to speak or change what they may do",
    Action.MODERATE_CHAT: "moderate chat and questions",
    Action.ADMIT: "admit anyone from the waiting room",
    Action.STAGE: "bring anyone on stage",
    Action.LOCK: "lock the room or mute everyone",
    Action.STANDBY: "give a track a standby source",
}


def classroom_of(who: Subject) -> str | None:
    """The classroom a participant belongs to: a box is its own, a tutor or a student its token's."""
    return who.identity if who.role is Role.CLASSROOM else who.classroom


def in_reach(moderator: Subject, other: Subject) -> bool:
    """Whom a moderator acts on and hears of: a lecturer everyone, a tutor its own classroom."""
    if moderator.role is not Role.TUTOR:
        return True
    mine = classroom_of(moderator)
    return mine is not None and classroom_of(other) == mine


def allowed(who: Subject | None, action: Action, target: Subject | None = None) -> bool:
    """Whether `who` may do `action` (to `target`, a participant or a session, where it has one)."""
    if who is None:
        return True
    grants = who.grants
    if action is Action.PUBLISH:
        return grants.publish
    if action is Action.SUBSCRIBE:
        return grants.subscribe
    if action is Action.CHAT:
        return grants.publish_data
    if action in _ROOM_WIDE:
        return grants.moderate and who.role in LECTURE
    if target is not None and target.identity == who.identity and action in (Action.MUTE, Action.END_SESSION):
        return True  # one's own track or session
    if not grants.moderate or who.role not in MODERATORS:
        return False
    return target is None or in_reach(who, target)


def authorize(who: Subject | None, action: Action, target: Subject | None = None) -> None:
    """Refuse with "forbidden", saying what the role may not do, unless `allowed`."""
    if not allowed(who, action, target):
        assert who is not None
        scope = " outside its classroom" if target is not None and who.grants.moderate else ""
        raise ClassroomError("forbidden", f"role {who.role} may not {_VERBS[action]}{scope}")


def start(role: Role) -> Grants:
    """What a role may do when it joins, before anyone changes it: a student or a viewer publishes
    only when invited (to speak, or on stage); everyone else as its token allows."""
    if role in (Role.STUDENT, Role.VIEWER):
        return Grants(publish=False, subscribe=True, publish_data=True, moderate=True, admin=True)
    return EVERYTHING


EVERYTHING = Grants(publish=True, subscribe=True, publish_data=True, moderate=True, admin=True)
