"""Moderation: raised hands, invitations, what each participant may do now, the lock and the
waiting room.

The state is kept by identity, not by session, so that it survives a reconnect: a classroom box
that reboots in the middle of its turn on stage, or a student whose phone changes network with its
hand up, finds the lesson as it left it. It is forgotten when the participant leaves for good
(``leave``, or a moderator removing it). Every change is told to whom it concerns: the participant
it is about, and the moderators in reach (a lecturer everyone, a tutor its own classroom).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .errors import ClassroomError
from .permissions import MODERATORS, Action, allowed, authorize, classroom_of, in_reach, start
from .tokens import Claims, Grants, Role

if TYPE_CHECKING:
    from .participant import Participant
    from .room import Room

INVITATIONS = ("speak", "stage")
SETTABLE = ("publish", "subscribe", "publish_data")  # moderate and admin come only with a token
MAX_WAITING = 10_000
# Reasons a session ends for good, after which its hand, invitation and permissions are forgotten;
# any other (a dropped connection whose grace ran out, a second tab) keeps them for its return.
FINAL_REASONS = frozenset({"left", "removed"})


def who(participant: Participant | None) -> dict[str, Any] | None:
    """A moderator as events name it; None is the school's system (the admin API)."""
    if participant is None:
        return None
    return {"sid": participant.sid, "identity": participant.identity, "name": participant.name}


def _now_ms() -> int:
    return int(time.time() * 1000)


def person(claims: Claims, at: int) -> dict[str, Any]:
    """Someone in a queue (hands, the waiting room), as moderators see it."""
    return {
        "identity": claims.identity,
        "name": claims.name or claims.identity,
        "role": str(claims.role),
        "classroom": classroom_of(claims),
        "at": at,
    }


@dataclass
class Hand:
    claims: Claims
    sid: str
    at: int  # Unix milliseconds: the queue is first come, first served

    def info(self) -> dict[str, Any]:
        return person(self.claims, self.at) | {"sid": self.sid}


@dataclass
class Invitation:
    to: str  # speak | stage
    by: dict[str, Any] | None


@dataclass
class Waiter:
    """A join held in the waiting room: ``enter`` completes it, ``turn_away`` ends it."""

    claims: Claims
    at: int
    enter: Callable[[], Awaitable[None]]
    turn_away: Callable[[str], Awaitable[None]]
    tell: Callable[[dict[str, Any]], Awaitable[None]]  # its place when it moves up
    position: int = 0

    def info(self) -> dict[str, Any]:
        return person(self.claims, self.at)


class Moderation:
    def __init__(self, room: Room) -> None:
        self.room = room
        self.hands: dict[str, Hand] = {}  # by identity, in the order raised
        self.invitations: dict[str, Invitation] = {}  # by identity: one open invitation each
        self.permits: dict[str, Grants] = {}  # by identity: what moderators let it do now
        self.locked = False
        self.seen: set[str] = set()  # identities that have been in: a lock does not keep them out
        self.waiting: dict[str, Waiter] = {}
        self.admitted: set[str] = set()  # from the waiting room: a reconnect does not wait again

    # -- what each participant may do --------------------------------------------------------------

    def grants_of(self, claims: Claims) -> Grants:
        """Its token's grants narrowed by what the lesson lets it do now."""
        permit = self.permits.get(claims.identity)
        return claims.grants.narrow(permit if permit is not None else start(claims.role))

    async def set_permissions(
        self, by: Participant | None, identity: str, changes: dict[str, bool]
    ) -> Grants:
        """Let a participant do more or less (within its token), at once on all its sessions: a
        track it may no longer publish ends, what it may no longer receive stops."""
        sessions = self._sessions(identity)
        authorize(by, Action.INVITE, sessions[0])
        unknown = set(changes) - set(SETTABLE)
        if unknown:
            raise ClassroomError(
                "bad_message", f"only {', '.join(SETTABLE)} can be changed, not {sorted(unknown)}"
            )
        claims = sessions[0].claims
        current = self.permits.get(identity, start(claims.role))
        self.permits[identity] = replace(current, **changes)
        await self._apply(identity, by)
        return self.grants_of(claims)

    async def _apply(self, identity: str, by: Participant | None) -> None:
        room = self.room
        changed = {
            p.sid: (p, p.grants, grants)
            for p in room.find(identity)
            if (grants := self.grants_of(p.claims)) != p.grants
        }
        if not changed:
            return

        def change() -> None:
            for participant, _, grants in changed.values():
                participant.grants = grants

        if any(was.publish != now.publish for _, was, now in changed.values()):
            # a live room's audience watches a viewer invited to speak: who sees whom changes
            await room.reveal(identity, change, None, "stopped_speaking")
        else:
            change()
        for participant, was, grants in changed.values():
            if not grants.publish and participant.producers:
                if participant.kind == "whip":  # the session is its publishing: it ends
                    await room.leave(participant, reason="publish revoked")
                    continue
                for producer in list(participant.producers.values()):
                    producer.close()
            if grants.subscribe != was.subscribe:
                room.reconcile(participant)
                await room.negotiate(participant)
            await participant.notify({"type": "permissions", "grants": grants.to_dict(), "by": who(by)})

    # -- hands -------------------------------------------------------------------------------------

    async def raise_hand(self, participant: Participant) -> int:
        """Put a hand up (a second raise keeps its place); its place in the queue, from 1."""
        if participant.identity not in self.hands:
            self.hands[participant.identity] = Hand(participant.claims, participant.sid, _now_ms())
            await self._hands_changed()
        return list(self.hands).index(participant.identity) + 1

    async def lower_hand(self, by: Participant | None, identity: str) -> None:
        hand = self.hands.get(identity)
        if by is None or by.identity != identity:
            if hand is None:
                raise ClassroomError("not_found", f"{identity!r} has no hand up")
            authorize(by, Action.HANDS, hand.claims)
        if hand is None:
            return
        del self.hands[identity]
        await self._hands_changed()
        if by is None or by.identity != identity:
            for participant in self.room.find(identity):
                await participant.notify({"type": "hand", "raised": False, "by": who(by)})

    def queue(self, viewer: Participant | None) -> list[dict[str, Any]]:
        """The raised hands `viewer` sees (a tutor its classroom's; the admin API all)."""
        return [h.info() for h in self.hands.values() if viewer is None or in_reach(viewer, h.claims)]

    async def _hands_changed(self) -> None:
        for moderator in self.room.participants.values():
            if moderator.send is not None and allowed(moderator, Action.HANDS):
                await moderator.notify({"type": "hands", "queue": self.queue(moderator)})

    # -- invitations and the stage ---------------------------------------------------------------------

    async def invite(self, by: Participant | None, identity: str, to: str) -> None:
        """Ask a participant to speak (it may publish) or to come on stage (everyone watches it);
        it accepts or declines."""
        if to not in INVITATIONS:
            raise ClassroomError("bad_message", '"to" is "speak" or "stage"')
        sessions = [p for p in self._sessions(identity) if p.send is not None]
        if not sessions:
            raise ClassroomError("not_found", f"{identity!r} has no signaling connection to answer with")
        authorize(by, Action.STAGE if to == "stage" else Action.INVITE, sessions[0])
        self.invitations[identity] = Invitation(to, who(by))
        for participant in sessions:
            await participant.notify({"type": "invitation", "to": to, "by": who(by)})

    async def answer(self, participant: Participant, accept: bool) -> Invitation:
        """The invited participant's answer; on accepting it may publish (and is on stage)."""
        invitation = self.invitations.get(participant.identity)
        if invitation is None:
            raise ClassroomError("unexpected", "there is no invitation to answer")
        if accept and invitation.to == "stage":
            self.room.check_stage(participant.identity)
        del self.invitations[participant.identity]
        if accept:
            if participant.identity in self.hands:
                del self.hands[participant.identity]
                await self._hands_changed()
            self.permits[participant.identity] = replace(
                self.permits.get(participant.identity, start(participant.role)), publish=True
            )
            await self._apply(participant.identity, None)
            if invitation.to == "stage":
                await self.room.set_stage(participant.identity, True)
        message = {
            "type": "invitation_answered",
            "identity": participant.identity,
            "to": invitation.to,
            "accepted": accept,
        }
        for moderator in self.room.participants.values():
            if moderator is not participant and allowed(moderator, Action.INVITE, participant):
                await moderator.notify(message)
        return invitation

    async def stage(self, by: Participant | None, identity: str, on: bool) -> None:
        """Bring a participant on stage at once (it may publish), or send it back: off stage, its
        hand down, and back to what its role may do when it joins."""
        if on:
            authorize(by, Action.STAGE)
            self.room.check_stage(identity)
            self.permits[identity] = replace(
                self.permits.get(identity, start(self._sessions(identity)[0].role)), publish=True
            )
            await self._apply(identity, by)
            await self.room.set_stage(identity, True)
            return
        sessions = self.room.find(identity)
        if identity in self.room.stage:
            authorize(by, Action.STAGE)
        elif sessions:
            authorize(by, Action.INVITE, sessions[0])
        else:
            raise ClassroomError("not_found", f"nobody called {identity!r} is in this room")
        await self.room.set_stage(identity, False)
        self.invitations.pop(identity, None)
        self.permits.pop(identity, None)
        if identity in self.hands:
            del self.hands[identity]
            await self._hands_changed()
        await self._apply(identity, by)
        for participant in sessions:  # its page drops the invitation, the hand and the stage
            await participant.notify({"type": "sent_back", "by": who(by)})

    # -- the room as a whole -------------------------------------------------------------------------

    async def lock(self, by: Participant | None, locked: bool) -> None:
        """A locked room lets in only its moderators and whoever has been in it (to reconnect)."""
        authorize(by, Action.LOCK)
        if self.locked != locked:
            self.locked = locked
            await self.room.broadcast({"type": "room_locked", "locked": locked, "by": who(by)})

    def check_lock(self, claims: Claims) -> None:
        if self.locked and claims.identity not in self.seen and claims.role not in MODERATORS:
            self.room.limits.refusals["room_locked"] += 1
            raise ClassroomError("room_locked", f"room {self.room.name} is locked: ask the teacher")

    async def mute_all(self, by: Participant | None, kind: str) -> int:
        """Mute every `kind` track but the lecturers' and one's own (a tutor: its classroom's);
        how many were muted."""
        authorize(by, Action.MUTE)
        muted = 0
        for owner in list(self.room.participants.values()):
            if owner.role is Role.LECTURER or owner is by or not allowed(by, Action.MUTE, owner):
                continue
            for producer in list(owner.producers.values()):
                if producer.kind == kind and not producer.paused:
                    await self.room.set_muted(producer, True, by=by.sid if by is not None else None)
                    muted += 1
        return muted

    # -- the waiting room -------------------------------------------------------------------------

    def must_wait(self, claims: Claims) -> bool:
        return (
            self.room.options.waiting_room
            and claims.role in (Role.STUDENT, Role.VIEWER)
            and claims.identity not in self.admitted
        )

    async def wait(self, waiter: Waiter) -> int:
        """Hold a join until a moderator admits it; its place in the waiting room, from 1."""
        identity = waiter.claims.identity
        earlier = self.waiting.pop(identity, None)
        if earlier is not None:
            await earlier.turn_away("replaced")
        elif len(self.waiting) >= MAX_WAITING:
            raise ClassroomError("room_full", f"the waiting room of {self.room.name} is full")
        self.waiting[identity] = waiter
        await self._waiting_changed()
        return len(self.waiting)

    async def stop_waiting(self, waiter: Waiter) -> None:
        """A waiting client went away."""
        if self.waiting.get(waiter.claims.identity) is waiter:
            del self.waiting[waiter.claims.identity]
            await self._waiting_changed()

    async def admit(self, by: Participant | None, identity: str, admit: bool) -> None:
        authorize(by, Action.ADMIT)
        waiter = self.waiting.pop(identity, None)
        if waiter is None:
            raise ClassroomError("not_found", f"{identity!r} is not in the waiting room")
        await self._waiting_changed()
        if admit:
            self.admitted.add(identity)
            self.seen.add(identity)
            await waiter.enter()
        else:
            await waiter.turn_away("denied")

    async def turn_away_all(self, reason: str) -> None:
        """The room closes: nobody waits for it any more."""
        waiters, self.waiting = list(self.waiting.values()), {}
        for waiter in waiters:
            await waiter.turn_away(reason)

    def waiting_list(self) -> list[dict[str, Any]]:
        return [w.info() for w in self.waiting.values()]

    async def _waiting_changed(self) -> None:
        message = {"type": "waiting_list", "waiting": self.waiting_list()}
        for moderator in self.room.participants.values():
            if moderator.send is not None and allowed(moderator, Action.ADMIT):
                await moderator.notify(message)
        for position, waiter in enumerate(self.waiting.values(), 1):
            if waiter.position and waiter.position != position:  # moved up: say so
                await waiter.tell({"type": "waiting_room", "room": self.room.name, "position": position})
            waiter.position = position

    # -- joining and leaving -----------------------------------------------------------------------

    def joined(self, participant: Participant) -> None:
        self.seen.add(participant.identity)

    async def left(self, participant: Participant, reason: str) -> None:
        """Forget a participant's hand, invitation and permissions once it has left for good."""
        identity = participant.identity
        if reason not in FINAL_REASONS or self.room.find(identity):
            return
        self.invitations.pop(identity, None)
        self.permits.pop(identity, None)
        self.admitted.discard(identity)
        if identity in self.hands:
            del self.hands[identity]
            await self._hands_changed()
        if identity in self.room.stage:
            await self.room.set_stage(identity, False)

    def state(self, participant: Participant) -> dict[str, Any]:
        """What a joining (or resuming) participant learns of the lesson's moderation."""
        invitation = self.invitations.get(participant.identity)
        state: dict[str, Any] = {
            "hand_raised": participant.identity in self.hands,
            "invitation": {"to": invitation.to, "by": invitation.by} if invitation else None,
        }
        if allowed(participant, Action.HANDS):
            state["hands"] = self.queue(participant)
        if allowed(participant, Action.ADMIT):
            state["waiting"] = self.waiting_list()
        return state

    def _sessions(self, identity: str) -> list[Participant]:
        sessions = self.room.find(identity)
        if not sessions:
            raise ClassroomError("not_found", f"nobody called {identity!r} is in this room")
        return sessions
