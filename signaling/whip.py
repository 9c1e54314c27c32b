"""WHIP (RFC 9725) and WHEP: publish and play with one HTTP POST of an SDP offer.

OBS, GStreamer, FFmpeg and hardware classroom boxes speak WHIP; players speak WHEP. Each session is
a participant of the room with a publisher (WHIP) or subscriber (WHEP) Transport and no signaling
channel. Its resource URL (the Location of the 201) ends in a random secret, not the participant's
sid, which everyone in the room sees; DELETE on it ends the session, for the session's own identity,
a moderator of the room, or the admin API. The server is ICE-lite with one host candidate, so there
is nothing to trickle: PATCH answers 405, which RFC 9725 allows a server without trickle or ICE
restarts.
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import quote

from aiohttp import hdrs, web

from classroom.errors import ClassroomError
from classroom.participant import Participant
from classroom.permissions import Action, allowed, authorize
from classroom.rooms import Rooms
from classroom.tokens import Claims, TokenError, verify
from sfu.negotiation import NegotiationError
from sfu.sdp import MAX_SDP_BYTES

from . import admin, appkeys

log = logging.getLogger(__name__)

MAX_OFFER = MAX_SDP_BYTES
RETRY_AFTER_FULL = 10  # seconds an encoder waits before trying a full room again
CHALLENGE = 'Bearer realm="kelian"'
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag, Accept-Patch, Retry-After, WWW-Authenticate",
    "Access-Control-Max-Age": "86400",
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=message + "\n", content_type="text/plain", headers=CORS | (headers or {})
    )


def _unauthorized(request: web.Request, exc: TokenError, challenge: str = CHALLENGE) -> web.Response:
    """401 with the challenge RFC 9110 requires (and RFC 6750's error when a token was sent)."""
    if exc.status != 401:
        return _error(exc.status, exc.message)
    sent = _bearer(request) is not None
    value = f'{challenge}, error="invalid_token"' if sent else challenge
    return _error(401, exc.message, {"WWW-Authenticate": value})


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    return header[7:].strip() if header.startswith("Bearer ") else None


def _claims(request: web.Request, room: str) -> Claims:
    token = _bearer(request)
    if token is None:
        raise TokenError("missing Authorization: Bearer <token>", 401)
    config = request.app[appkeys.CONFIG]
    return verify(token, config.api_key, config.api_secret, room=room, max_ttl=config.max_token_ttl)


async def _offer(request: web.Request) -> str:
    if request.content_type != "application/sdp":
        raise ClassroomError("unsupported_media_type", "the body must be an application/sdp offer")
    if request.content_length is not None and request.content_length > MAX_OFFER:
        raise ClassroomError("too_large", f"the offer is larger than {MAX_OFFER // 1024} KiB")
    body = await request.content.read(MAX_OFFER + 1)
    if len(body) > MAX_OFFER:
        raise ClassroomError("too_large", f"the offer is larger than {MAX_OFFER // 1024} KiB")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ClassroomError("bad_sdp", "the offer is not UTF-8 text") from None


def _refused(exc: ClassroomError) -> web.Response:
    headers = {"Retry-After": str(RETRY_AFTER_FULL)} if exc.status == 503 else None
    return _error(exc.status, exc.message, headers)


def resource_path(kind: str, room: str, resource: str) -> str:
    """The session's URL path; the room name is percent-encoded (a room may be called "maths 5a")."""
    return f"/{kind}/{quote(room, safe='')}/{resource}"


async def options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=CORS | {"Accept-Post": "application/sdp"})


async def whip_post(request: web.Request) -> web.Response:
    return await _start(request, "whip")


async def whep_post(request: web.Request) -> web.Response:
    return await _start(request, "whep")


async def _start(request: web.Request, kind: str) -> web.Response:
    room_name = request.match_info["room"]
    rooms: Rooms = request.app[appkeys.ROOMS]
    try:
        claims = _claims(request, room_name)
    except TokenError as exc:
        return _unauthorized(request, exc)
    try:
        authorize(rooms.standing(claims), Action.PUBLISH if kind == "whip" else Action.SUBSCRIBE)
        existing = rooms.rooms.get(room_name)
        if existing is not None:  # refuse before reading the offer: closed, locked, or it must wait
            existing.check_join(claims)
            if existing.moderation.must_wait(claims):
                raise ClassroomError("forbidden", "this room admits students and viewers by its waiting room")
    except ClassroomError as exc:
        return _refused(exc)
    try:
        offer = await _offer(request)
    except ClassroomError as exc:
        return _refused(exc)
    room = await rooms.open(room_name, claims.kind)
    try:
        participant = await room.join(claims, None, kind=kind)
    except ClassroomError as exc:  # room_full, or room_closed while it is being closed
        return _refused(exc)
    participant.resource = secrets.token_urlsafe(18)
    try:
        if kind == "whip":
            answer = await room.publish(participant, offer)
        else:
            answer = room.play(participant, offer, request.query.get("participant"))
    except (ClassroomError, NegotiationError) as exc:
        await room.leave(participant, reason="offer refused")
        if isinstance(exc, NegotiationError):
            exc = ClassroomError("bad_sdp", str(exc))
        return _refused(exc)
    log.info("%s session %s in room %s for %s", kind, participant.sid, room_name, claims.identity)
    location = resource_path(kind, room_name, participant.resource)
    return web.Response(
        status=201, text=answer, content_type="application/sdp", headers=CORS | {"Location": location}
    )


def _may_end(request: web.Request, room: str, session: Participant | None) -> web.Response | None:
    """None if the caller may end `session`: the admin API (HTTP Basic), or a Bearer token for the
    room whose identity is the session's own or which may moderate. Otherwise the refusal."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    if header.lower().startswith("basic "):
        try:
            admin.authenticate(request)
        except ClassroomError as exc:
            return _error(401, exc.message, {"WWW-Authenticate": admin.REALM})
        return None
    try:
        claims = _claims(request, room)
    except TokenError as exc:
        return _unauthorized(request, exc, f"{CHALLENGE}, {admin.REALM}")
    if session is None or allowed(claims, Action.END_SESSION, session):
        return None
    return _error(403, "only the session's own identity, a moderator of the room or the admin API may end it")


async def delete(request: web.Request) -> web.Response:
    rooms: Rooms = request.app[appkeys.ROOMS]
    room_name, kind = request.match_info["room"], request.match_info["kind"]
    session = rooms.find_resource(request.match_info["resource"])
    if session is not None and (session.room.name != room_name or session.kind != kind):
        session = None
    refusal = _may_end(request, room_name, session)
    if refusal is not None:
        return refusal
    if session is None:
        return _error(404, "no such session")
    await session.room.leave(session, reason="ended by DELETE")
    return web.Response(status=200, headers=CORS)


async def patch(request: web.Request) -> web.Response:
    return _error(
        405,
        "kelian is ICE-lite with one host candidate: no trickle ICE or ICE restart by PATCH",
        {"Allow": "DELETE, OPTIONS"},
    )


def routes() -> list[web.RouteDef]:
    return [
        web.post("/whip/{room}", whip_post),
        web.post("/whep/{room}", whep_post),
        web.options("/{kind:whip|whep}/{room}", options),
        web.options("/{kind:whip|whep}/{room}/{resource}", options),
        web.delete("/{kind:whip|whep}/{room}/{resource}", delete),
        web.patch("/{kind:whip|whep}/{room}/{resource}", patch),
    ]
