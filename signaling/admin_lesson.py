"""The admin API's lesson routes: the stage, hands, invitations, permissions, the lock, the waiting
room, chat and questions, for a school's system acting as the lesson's moderator.

Each does what a lecturer does over the WebSocket, through the same classroom methods (with no
participant behind it: the school's system may do everything), so both ways in give the same result
and the same events.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from classroom.errors import ClassroomError
from classroom.moderation import SETTABLE
from classroom.room import Room

from . import appkeys
from .admin import PREFIX, endpoint, invalid, json_object, name_field, room_of, sessions_of

MAX_TRACKS_NAMED = 100  # in one recording request

ROOM = PREFIX + "/rooms/{room}"
PARTICIPANT = ROOM + "/participants/{identity}"


def _flag(body: dict[str, object], key: str) -> bool:
    value = body[key]
    if not isinstance(value, bool):
        raise invalid(f"{key} must be true or false, got {value!r}")
    return value


@endpoint
async def stage(request: web.Request) -> web.Response:
    """Bring a participant on stage (every participant watches it, it may publish) or send it back."""
    room = room_of(request)
    body = await json_object(request, {"identity", "on"}, required={"identity", "on"})
    identity = name_field(body["identity"], "identity")
    await room.moderation.stage(None, identity, _flag(body, "on"))
    return web.json_response({"stage": sorted(room.stage)})


@endpoint
async def lock(request: web.Request) -> web.Response:
    """A locked room lets in only its moderators and whoever has already been in."""
    room = room_of(request)
    body = await json_object(request, {"locked"}, required={"locked"})
    await room.moderation.lock(None, _flag(body, "locked"))
    return web.json_response({"locked": room.moderation.locked})


@endpoint
async def mute_all(request: web.Request) -> web.Response:
    """Mute every microphone (or camera) but the lecturers'."""
    room = room_of(request)
    body = await json_object(request, {"kind"}, required=set())
    kind = body.get("kind", "audio")
    if kind not in ("audio", "video"):
        raise invalid(f'kind is "audio" or "video", got {kind!r}')
    return web.json_response({"kind": kind, "tracks": await room.moderation.mute_all(None, kind)})


@endpoint
async def set_standby(request: web.Request) -> web.Response:
    """Give a track a standby: it feeds the track's subscribers while the track is silent or gone."""
    room = room_of(request)
    body = await json_object(request, {"standby"}, required={"standby"})
    track, standby = request.match_info["track"], name_field(body["standby"], "standby")
    room.set_standby(None, track, standby)
    return web.json_response({"track": track, "standby": standby})


@endpoint
async def clear_standby(request: web.Request) -> web.Response:
    room_of(request).clear_standby(None, request.match_info["track"])
    return web.Response(status=204)


@endpoint
async def set_recording(request: web.Request) -> web.Response:
    """Start recording the room (every track, each into a file of its own) or some of its tracks,
    or stop."""
    room = room_of(request)
    body = await json_object(request, {"on", "tracks"}, required={"on"})
    tracks = _tracks(room, body["tracks"]) if "tracks" in body else None
    recordings = request.app[appkeys.RECORDINGS]
    if _flag(body, "on"):
        return web.json_response((await recordings.start(room, tracks)).info())
    session = recordings.sessions.get(room.name)
    if session is None:
        raise ClassroomError("not_found", f"room {room.name} is not being recorded")
    if tracks is not None:
        session.leave_out(tracks)
        return web.json_response(session.info())
    await recordings.stop(room.name)
    return web.json_response(session.info())


def _tracks(room: Room, value: Any) -> list[str]:
    """A list of the room's track ids, each checked: a misspelt one is refused, not ignored."""
    if not isinstance(value, list) or not value or len(value) > MAX_TRACKS_NAMED:
        raise invalid(f"tracks is a list of 1 to {MAX_TRACKS_NAMED} track ids")
    published = {p.id for owner in room.participants.values() for p in owner.producers.values()}
    for track in value:
        if not isinstance(track, str):
            raise invalid("tracks is a list of track ids (text)")
        if track not in published:
            raise ClassroomError("not_found", f"no track {track[:64]!r} is published in room {room.name}")
    return list(dict.fromkeys(value))


@endpoint
async def recording(request: web.Request) -> web.Response:
    room = room_of(request)
    session = request.app[appkeys.RECORDINGS].sessions.get(room.name)
    if session is None:
        raise ClassroomError("not_found", f"room {room.name} is not being recorded")
    return web.json_response(session.info())


@endpoint
async def hands(request: web.Request) -> web.Response:
    return web.json_response({"queue": room_of(request).moderation.queue(None)})


@endpoint
async def lower_hand(request: web.Request) -> web.Response:
    room = room_of(request)
    await room.moderation.lower_hand(None, request.match_info["identity"])
    return web.Response(status=204)


@endpoint
async def invite(request: web.Request) -> web.Response:
    """Invite a participant to speak or on stage; it accepts or declines in its client."""
    room = room_of(request)
    body = await json_object(request, {"to"}, required=set())
    sessions_of(request, room)
    await room.moderation.invite(None, request.match_info["identity"], body.get("to", "speak"))
    return web.Response(status=202)


@endpoint
async def send_back(request: web.Request) -> web.Response:
    room = room_of(request)
    sessions_of(request, room)
    await room.moderation.stage(None, request.match_info["identity"], False)
    return web.Response(status=204)


@endpoint
async def permissions(request: web.Request) -> web.Response:
    """Let a participant publish, receive or chat, or stop it, within what its token allows."""
    room = room_of(request)
    body = await json_object(request, set(SETTABLE), required=set())
    if not body:
        raise invalid(f"name what to change: {', '.join(SETTABLE)}")
    changes = {key: _flag(body, key) for key in body}
    grants = await room.moderation.set_permissions(None, request.match_info["identity"], changes)
    return web.json_response({"identity": request.match_info["identity"], "grants": grants.to_dict()})


@endpoint
async def waiting(request: web.Request) -> web.Response:
    return web.json_response({"waiting": room_of(request).moderation.waiting_list()})


@endpoint
async def admit(request: web.Request) -> web.Response:
    """Admit a participant from the waiting room (``{"admit": true}``) or turn it away."""
    room = room_of(request)
    body = await json_object(request, {"admit"}, required={"admit"})
    await room.moderation.admit(None, request.match_info["identity"], _flag(body, "admit"))
    return web.Response(status=204)


@endpoint
async def chat(request: web.Request) -> web.Response:
    """The room's chat so far (every message the room keeps)."""
    return web.json_response({"chat": room_of(request).chat.history(None)["chat"]})


@endpoint
async def post_chat(request: web.Request) -> web.Response:
    """A message from the school's system to everyone in the room ("from": null)."""
    room = room_of(request)
    body = await json_object(request, {"text"}, required={"text"})
    try:
        message = await room.chat.post(None, body["text"])
    except ClassroomError as exc:
        raise invalid(exc.message) from None
    return web.json_response(message.info(), status=201)


@endpoint
async def delete_chat(request: web.Request) -> web.Response:
    room = room_of(request)
    await room.chat.delete(None, request.match_info["message"])
    return web.Response(status=204)


@endpoint
async def questions(request: web.Request) -> web.Response:
    return web.json_response({"questions": room_of(request).chat.history(None)["questions"]})


@endpoint
async def settle_question(request: web.Request) -> web.Response:
    """Answer a question (with an optional "text"), dismiss it, or pass it up to the lecturers."""
    room = room_of(request)
    body = await json_object(request, {"action", "text"}, required={"action"})
    action = body["action"]
    if action not in ("answer", "dismiss", "forward"):
        raise invalid(f'action is "answer", "dismiss" or "forward", got {action!r}')
    try:
        question = await room.chat.settle(None, request.match_info["question"], action, body.get("text"))
    except ClassroomError as exc:
        if exc.code == "not_found":
            raise
        raise invalid(exc.message) from None
    return web.json_response(question.info())


def routes() -> list[web.RouteDef]:
    return [
        web.post(ROOM + "/stage", stage),
        web.post(ROOM + "/lock", lock),
        web.post(ROOM + "/mute_all", mute_all),
        web.post(ROOM + "/recording", set_recording),
        web.get(ROOM + "/recording", recording, allow_head=False),
        web.post(ROOM + "/tracks/{track}/standby", set_standby),
        web.delete(ROOM + "/tracks/{track}/standby", clear_standby),
        web.get(ROOM + "/hands", hands, allow_head=False),
        web.delete(ROOM + "/hands/{identity}", lower_hand),
        web.post(PARTICIPANT + "/invite", invite),
        web.post(PARTICIPANT + "/send_back", send_back),
        web.post(PARTICIPANT + "/permissions", permissions),
        web.get(ROOM + "/waiting", waiting, allow_head=False),
        web.post(ROOM + "/waiting/{identity}", admit),
        web.get(ROOM + "/chat", chat, allow_head=False),
        web.post(ROOM + "/chat", post_chat),
        web.delete(ROOM + "/chat/{message}", delete_chat),
        web.get(ROOM + "/questions", questions, allow_head=False),
        web.post(ROOM + "/questions/{question}", settle_question),
    ]
