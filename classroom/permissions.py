"""Who may do what: the one check every entry point makes (WebSocket, WHIP/WHEP, admin API).

A participant's grants start as its token's and are the most it may ever have; the room narrows or
widens them within that ceiling during the lesson (invited to speak, brought on stage, sent back).
The admin API acts as the school's system and may do everything (`who` is None).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from .errors import ClassroomError
from .tokens import Grants, Role


class Action(StrEnum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    MUTE = "mute"  # a track: one's own, or anyone's for a moderator
    REMOVE = "remove"  # send a participant away
    END_SESSION = "end_session"  # DELETE a WHIP/WHEP session: one's own, or anyone's for a moderator
    STAGE = "stage"  # bring a participant on stage or send it back: the lecturer's


class Subject(Protocol):
    """A token's claims or a participant: an identity, a role and what it may do now."""

    @property
    def identity(self) -> str: ...

    @property
    def role(self) -> Role: ...

    @property
    def grants(self) -> Grants: ...


_VERBS = {
    Action.PUBLISH: "publish",
    Action.SUBSCRIBE: "receive media",
    Action.MUTE: "mute others' tracks",
    Action.REMOVE: "remove anyone",
    Action.END_SESSION: "end another participant's session",
    Action.STAGE: "bring anyone on stage",
}


def allowed(who: Subject | None, action: Action, owner: str | None = None) -> bool:
    """Whether `who` may do `action` (to something of identity `owner`, where it has one)."""
    if who is None:
        return True
    grants = who.grants
    if action is Action.PUBLISH:
        return grants.publish
    if action is Action.SUBSCRIBE:
        return grants.subscribe
    if action is Action.STAGE:  # the lecture's, not a tutor's: a tutor moderates its own classroom
        return grants.moderate and who.role in (Role.LECTURER, Role.ADMIN)
    if owner is not None and owner == who.identity and action is not Action.REMOVE:
        return True  # one's own track or session
    return grants.moderate


def authorize(who: Subject | None, action: Action, owner: str | None = None) -> None:
    """Refuse with "forbidden", saying what the role may not do, unless `allowed`."""
    if not allowed(who, action, owner):
        assert who is not None
        raise ClassroomError("forbidden", f"role {who.role} may not {_VERBS[action]}")
