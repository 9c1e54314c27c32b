"""WHIP (RFC 9725) and WHEP: publish and play with one HTTP POST of an SDP offer.

OBS, GStreamer and hardware classroom boxes speak WHIP; players speak WHEP. Each session is a
participant of the room with a publisher (WHIP) or subscriber (WHEP) Transport and no signaling
channel; DELETE on its Location ends it. The server is ICE-lite with one host candidate, so there
is nothing to trickle: PATCH answers 405 as the RFC asks of servers without trickle or restarts.
"""

from __future__ import annotations

import logging

from aiohttp import web

from sfu.negotiation import NegotiationError

from . import appkeys
from .room import Participant, Rooms, SignalingError
from .tokens import Claims, TokenError, verify

log = logging.getLogger(__name__)

MAX_OFFER = 64 * 1024
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag, Accept-Patch",
    "Access-Control-Max-Age": "86400",
}


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type="text/plain", headers=CORS)


def _claims(request: web.Request, room: str) -> Claims:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise TokenError("missing Authorization: Bearer <token>", 401)
    config = request.app[appkeys.CONFIG]
    return verify(header[7:].strip(), config.api_key, config.api_secret, room=room)


async def _offer(request: web.Request) -> str:
    if request.content_type != "application/sdp":
        raise SignalingError("unsupported_media_type", "the body must be an application/sdp offer")
    if request.content_length is not None and request.content_length > MAX_OFFER:
        raise SignalingError("too_large", "the offer is larger than 64 KiB")
    body = await request.content.read(MAX_OFFER + 1)
    if len(body) > MAX_OFFER:
        raise SignalingError("too_large", "the offer is larger than 64 KiB")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignalingError("bad_sdp", "the offer is not UTF-8 text") from None


def _created(
    request: web.Request, kind: str, room: str, participant: Participant, answer: str
) -> web.Response:
    location = f"/{kind}/{room}/{participant.sid}"
    headers = dict(CORS) | {"Location": location, "ETag": f'"{participant.sid}"'}
    return web.Response(status=201, text=answer, content_type="application/sdp", headers=headers)


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
        return _error(exc.status, exc.message)
    grant = claims.grants.publish if kind == "whip" else claims.grants.subscribe
    if not grant:
        verb = "publish" if kind == "whip" else "subscribe"
        return _error(403, f"role {claims.role} may not {verb}")
    try:
        offer = await _offer(request)
    except SignalingError as exc:
        status = {"unsupported_media_type": 415, "too_large": 413}.get(exc.code, 400)
        return _error(status, exc.message)
    room = rooms.get(room_name)
    try:
        participant = await room.join(claims, None, kind=kind)
    except SignalingError as exc:  # room_full, or room_closed while it is being closed
        return _error(409, exc.message)
    try:
        if kind == "whip":
            answer = await room.publish(participant, offer)
        else:
            answer = room.play(participant, offer, request.query.get("participant"))
    except (SignalingError, NegotiationError) as exc:
        await room.leave(participant, reason="offer refused")
        message = exc.message if isinstance(exc, SignalingError) else str(exc)
        code = exc.code if isinstance(exc, SignalingError) else "bad_sdp"
        return _error(403 if code == "forbidden" else 400 if code == "bad_sdp" else 409, message)
    log.info("%s session %s in room %s for %s", kind, participant.sid, room_name, claims.identity)
    return _created(request, kind, room_name, participant, answer)


async def delete(request: web.Request) -> web.Response:
    rooms: Rooms = request.app[appkeys.ROOMS]
    room_name, sid = request.match_info["room"], request.match_info["sid"]
    participant = rooms.find_session(sid)
    if (
        participant is None
        or participant.room.name != room_name
        or participant.kind != request.match_info["kind"]
    ):
        return _error(404, "no such session")
    try:
        _claims(request, room_name)
    except TokenError as exc:
        return _error(exc.status, exc.message)
    await participant.room.leave(participant, reason="ended by DELETE")
    return web.Response(status=200, headers=CORS)


async def patch(request: web.Request) -> web.Response:
    return _error(405, "kelian is ICE-lite with one host candidate: no trickle ICE or ICE restart by PATCH")


def routes() -> list[web.RouteDef]:
    return [
        web.post("/whip/{room}", whip_post),
        web.post("/whep/{room}", whep_post),
        web.options("/{kind:whip|whep}/{room}", options),
        web.options("/{kind:whip|whep}/{room}/{sid}", options),
        web.delete("/{kind:whip|whep}/{room}/{sid}", delete),
        web.patch("/{kind:whip|whep}/{room}/{sid}", patch),
    ]
