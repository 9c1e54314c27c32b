"""What a joined participant may ask over its WebSocket: one small handler per message type.

A handler reads and checks the message's fields and calls the classroom layer, which decides and
refuses (classroom.permissions); it returns the reply, or None for no reply. ws.py owns the
connection: joining, rates, framing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from classroom.errors import ClassroomError
from classroom.participant import Participant
from classroom.permissions import Action, allowed, authorize
from classroom.room import Room
from sfu.sdp import MAX_SDP_BYTES

MAX_SDP = MAX_SDP_BYTES
SOURCES = ("camera", "microphone", "screen")

Message = dict[str, Any]
Handler = Callable[[Room, Participant, Message], Awaitable[Message | None]]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(function: Handler) -> Handler:
        HANDLERS[name] = function
        return function

    return register


def string(message: Message, key: str, limit: int = 1024) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ClassroomError(
            "bad_message", f'"{key}" must be a non-empty string of at most {limit} characters'
        )
    return value


def flag(message: Message, key: str, meaning: str) -> bool:
    value = message.get(key)
    if not isinstance(value, bool):
        raise ClassroomError("bad_message", f'"{key}" must be true or false: {meaning}')
    return value


def _dimension(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 16384


# -- media -------------------------------------------------------------------------------------------


@handler("publish")
async def publish(room: Room, participant: Participant, message: Message) -> Message:
    sources = message.get("sources") or {}
    if not isinstance(sources, dict) or not all(
        isinstance(k, str) and v in SOURCES for k, v in sources.items()
    ):
        raise ClassroomError("bad_message", '"sources" maps mids to camera, microphone or screen')
    answer = await room.publish(participant, string(message, "sdp", MAX_SDP), sources)
    return {"type": "answer", "sdp": answer, "tracks": participant.info()["tracks"]}


@handler("answer")
async def answer(room: Room, participant: Participant, message: Message) -> None:
    await room.answer(participant, string(message, "sdp", MAX_SDP))


@handler("unpublish")
async def unpublish(room: Room, participant: Participant, message: Message) -> Message:
    track = string(message, "track")
    room.unpublish(participant, track)
    return {"type": "unpublished", "track": track}


@handler("track_settings")
async def track_settings(room: Room, participant: Participant, message: Message) -> Message:
    track = string(message, "track")
    width, height = message.get("width", 0), message.get("height", 0)
    enabled = message.get("enabled", True)
    if not (_dimension(width) and _dimension(height) and isinstance(enabled, bool)):
        raise ClassroomError(
            "bad_message", '"width" and "height" are whole pixels (0: any), "enabled" true or false'
        )
    room.set_view(participant, track, width, height, enabled)
    return {"type": "track_settings", "track": track, "width": width, "height": height, "enabled": enabled}


async def _subscription(room: Room, participant: Participant, message: Message, on: bool) -> Message:
    kind = message["type"]
    target = message.get("track") or message.get("participant")
    if not isinstance(target, str) or not target or len(target) > 1024:
        raise ClassroomError("bad_message", f'"{kind}" names a "track" id or a "participant" sid')
    tracks = await room.set_subscribed(participant, target, on)
    return {"type": f"{kind}d", "tracks": tracks}


@handler("subscribe")
async def subscribe(room: Room, participant: Participant, message: Message) -> Message:
    return await _subscription(room, participant, message, True)


@handler("unsubscribe")
async def unsubscribe(room: Room, participant: Participant, message: Message) -> Message:
    return await _subscription(room, participant, message, False)


# -- moderation --------------------------------------------------------------------------------------


@handler("mute")
async def mute(room: Room, participant: Participant, message: Message) -> Message:
    muted = flag(message, "muted", "mute or unmute")
    track = string(message, "track")
    producer = room.find_track(track)
    owner = room.owner_of(producer) if producer is not None else None
    if producer is None or owner is None or not allowed(participant, Action.MUTE, owner):
        if owner is not None:  # the track exists: say why it may not be muted
            authorize(participant, Action.MUTE, owner)
        raise ClassroomError("not_found", f"no track {track!r} in this room")
    await room.set_muted(producer, muted, by=participant.sid)
    return {"type": "muted", "track": track, "muted": muted}


@handler("mute_all")
async def mute_all(room: Room, participant: Participant, message: Message) -> Message:
    kind = message.get("kind", "audio")
    if kind not in ("audio", "video"):
        raise ClassroomError("bad_message", '"kind" is "audio" (the default) or "video"')
    return {"type": "muted_all", "kind": kind, "tracks": await room.moderation.mute_all(participant, kind)}


@handler("remove")
async def remove(room: Room, participant: Participant, message: Message) -> Message:
    identity = string(message, "identity")
    if identity == participant.identity:
        raise ClassroomError("bad_message", 'to leave, send "leave"')
    sessions = room.find(identity)
    if not sessions:
        authorize(participant, Action.REMOVE)
        raise ClassroomError("not_found", f"nobody called {identity!r} is in this room")
    authorize(participant, Action.REMOVE, sessions[0])
    await room.remove(identity)
    return {"type": "removed", "identity": identity}


@handler("stage")
async def stage(room: Room, participant: Participant, message: Message) -> Message:
    on = flag(message, "on", "bring on stage, or send back")
    identity = string(message, "identity")
    await room.moderation.stage(participant, identity, on)
    return {"type": "staged", "identity": identity, "on": on, "stage": sorted(room.stage)}


@handler("set_standby")
async def set_standby(room: Room, participant: Participant, message: Message) -> Message:
    track, standby = string(message, "track"), string(message, "standby")
    room.set_standby(participant, track, standby)
    return {"type": "standby_set", "track": track, "standby": standby}


@handler("clear_standby")
async def clear_standby(room: Room, participant: Participant, message: Message) -> Message:
    track = string(message, "track")
    room.clear_standby(participant, track)
    return {"type": "standby_cleared", "track": track}


@handler("raise_hand")
async def raise_hand(room: Room, participant: Participant, message: Message) -> Message:
    position = await room.moderation.raise_hand(participant)
    return {"type": "hand", "raised": True, "position": position}


@handler("lower_hand")
async def lower_hand(room: Room, participant: Participant, message: Message) -> Message:
    identity = string(message, "identity") if "identity" in message else participant.identity
    await room.moderation.lower_hand(participant, identity)
    return {"type": "hand", "identity": identity, "raised": False}


@handler("invite")
async def invite(room: Room, participant: Participant, message: Message) -> Message:
    identity, to = string(message, "identity"), message.get("to", "speak")
    await room.moderation.invite(participant, identity, to)
    return {"type": "invited", "identity": identity, "to": to}


@handler("accept_invitation")
async def accept_invitation(room: Room, participant: Participant, message: Message) -> Message:
    invitation = await room.moderation.answer(participant, True)
    return {"type": "invitation_accepted", "to": invitation.to, "grants": participant.grants.to_dict()}


@handler("decline_invitation")
async def decline_invitation(room: Room, participant: Participant, message: Message) -> Message:
    invitation = await room.moderation.answer(participant, False)
    return {"type": "invitation_declined", "to": invitation.to}


@handler("send_back")
async def send_back(room: Room, participant: Participant, message: Message) -> Message:
    identity = string(message, "identity")
    await room.moderation.stage(participant, identity, False)
    return {"type": "sent_back", "identity": identity}


@handler("set_permissions")
async def set_permissions(room: Room, participant: Participant, message: Message) -> Message:
    identity = string(message, "identity")
    changes = {key: value for key, value in message.items() if key not in ("type", "id", "identity")}
    if not changes or not all(isinstance(value, bool) for value in changes.values()):
        raise ClassroomError(
            "bad_message", 'name what to change: "publish", "subscribe" or "publish_data", true or false'
        )
    grants = await room.moderation.set_permissions(participant, identity, changes)
    return {"type": "permissions_set", "identity": identity, "grants": grants.to_dict()}


@handler("lock")
async def lock(room: Room, participant: Participant, message: Message) -> Message:
    locked = flag(message, "locked", "lock or unlock the room")
    await room.moderation.lock(participant, locked)
    return {"type": "locked", "locked": locked}


async def _admission(room: Room, participant: Participant, message: Message, admit: bool) -> Message:
    identity = string(message, "identity")
    await room.moderation.admit(participant, identity, admit)
    return {"type": "admitted" if admit else "denied", "identity": identity}


@handler("admit")
async def admit(room: Room, participant: Participant, message: Message) -> Message:
    return await _admission(room, participant, message, True)


@handler("deny")
async def deny(room: Room, participant: Participant, message: Message) -> Message:
    return await _admission(room, participant, message, False)


# -- chat and questions ------------------------------------------------------------------------------


@handler("chat")
async def chat(room: Room, participant: Participant, message: Message) -> Message:
    sent = await room.chat.post(participant, message.get("text"), message.get("to", "room"))
    return {"type": "chat_sent", "message": sent.info()}


@handler("delete_chat")
async def delete_chat(room: Room, participant: Participant, message: Message) -> Message:
    message_id = string(message, "message")
    await room.chat.delete(participant, message_id)
    return {"type": "chat_deleted", "message": message_id}


@handler("ask")
async def ask(room: Room, participant: Participant, message: Message) -> Message:
    question = await room.chat.ask(participant, message.get("text"), message.get("to", "lecturer"))
    return {"type": "asked", "question": question.info()}


async def _settle(room: Room, participant: Participant, message: Message, action: str) -> Message:
    question = await room.chat.settle(participant, string(message, "question"), action, message.get("text"))
    return {"type": "question", "question": question.info()}


@handler("answer_question")
async def answer_question(room: Room, participant: Participant, message: Message) -> Message:
    return await _settle(room, participant, message, "answer")


@handler("dismiss_question")
async def dismiss_question(room: Room, participant: Participant, message: Message) -> Message:
    return await _settle(room, participant, message, "dismiss")


@handler("forward_question")
async def forward_question(room: Room, participant: Participant, message: Message) -> Message:
    return await _settle(room, participant, message, "forward")
