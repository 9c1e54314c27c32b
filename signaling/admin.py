"""The admin REST API under /api/v1: what a school's systems use to run lessons on this server.

A timetable system creates a room before the lesson (with a size limit and metadata such as stage,
grade, subject and teacher), mints a join token for each classroom, lecturer and student, and can
look into a running lesson, remove a participant, mute a track or close the room.

Authentication is HTTP Basic with the server's API key as user name and its API secret as password,
as the Twilio and Agora REST APIs do: every HTTP client and `curl -u` speak it, and a school's IT
person needs nothing more than the two values the server was configured with. Both are compared in
constant time. Every answer is JSON; an error is ``{"error": {"code": ..., "message": ...}}`` whose
message says what to change, and a refused request changes nothing.

Room-level behaviour (closing, removing, muting, capacity) lives in room.py so that the WebSocket
side gives moderators the same operations; this module only parses, authenticates and formats.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import hdrs, web
from aiohttp.typedefs import LooseHeaders

from classroom import kinds, text
from classroom.errors import ClassroomError
from classroom.participant import Participant
from classroom.room import Room, RoomOptions
from classroom.rooms import Rooms, default_recording
from classroom.tokens import Role, mint
from sfu.codecs import codec_names

from . import appkeys

PREFIX = "/api/v1"
REALM = 'Basic realm="kelian"'
MAX_METADATA_KEYS = 32
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 1024
MAX_EMPTY_TIMEOUT = 7 * 24 * 3600  # rooms live in memory: a week is already longer than a restart cycle
DEFAULT_EMPTY_TIMEOUT = 300
DEFAULT_TTL = 3600

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, headers: LooseHeaders | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def _unauthorized(message: str) -> ClassroomError:
    return ClassroomError("unauthorized", message)


def invalid(message: str) -> ClassroomError:
    return ClassroomError("invalid_request", message)


# -- authentication -----------------------------------------------------------------------------------


def authenticate(request: web.Request) -> None:
    """Check Basic credentials against the API key and secret; "unauthorized" if they do not match.

    Both comparisons always run, on bytes (compare_digest refuses non-ASCII str), so the time taken does
    not tell which of the two was wrong.
    """
    header = request.headers.get(hdrs.AUTHORIZATION)
    if not header:
        raise _unauthorized("authentication required: HTTP Basic with the API key and API secret")
    key, secret = _basic_credentials(header)
    config = request.app[appkeys.CONFIG]
    key_ok = hmac.compare_digest(key, config.api_key.encode())
    secret_ok = hmac.compare_digest(secret, config.api_secret.encode())
    if not (key_ok & secret_ok):
        raise _unauthorized("wrong API key or secret")


def _basic_credentials(header: str) -> tuple[bytes, bytes]:
    """(user, password) as bytes from ``Basic base64(user:password)`` (RFC 7617).

    Parsed here rather than with aiohttp.BasicAuth, which aiohttp deprecates; bytes because that is what
    compare_digest needs for credentials that are not ASCII.
    """
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise _unauthorized(f"the admin API takes HTTP Basic authentication, not {scheme!r}")
    try:
        decoded = base64.b64decode(encoded.strip().encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        raise _unauthorized("malformed Basic credentials: expected base64 of key:secret") from None
    user, colon, password = decoded.partition(b":")
    if not colon:
        raise _unauthorized("malformed Basic credentials: expected base64 of key:secret")
    return user, password


def endpoint(handler: Handler) -> Handler:
    """Authenticate first (so a stranger cannot even learn which rooms exist), then turn errors to JSON."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            authenticate(request)
            return await handler(request)
        except ClassroomError as exc:
            headers = {hdrs.WWW_AUTHENTICATE: REALM} if exc.status == 401 else None
            return error_response(exc.status, exc.code, exc.message, headers)

    return wrapped


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer the router's own 404, 405 and 413 under /api/ in the API's JSON error format too.

    Scripts written against the API parse one error shape; they should not have to handle aiohttp's
    plain-text pages for a mistyped path or method.
    """
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "error")
        message = {
            404: f"no such API endpoint: {request.method} {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
        }.get(exc.status, exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k not in (hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH)}
        return error_response(exc.status, code, message, headers)


# -- request parsing ----------------------------------------------------------------------------------


async def json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (its fields are the caller's to check)."""
    try:
        body = text.parse_json(await request.read())
    except ValueError as exc:
        raise invalid(f"the body must be JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    return body


async def json_object(request: web.Request, fields: set[str], required: set[str]) -> dict[str, Any]:
    """The body as a JSON object with only known fields and every required one.

    Unknown fields are refused rather than ignored: a misspelt "max_participant" would otherwise create
    an unlimited room and nobody would notice until the lesson.
    """
    body = await json_body(request)
    unknown = sorted(set(body) - fields)
    if unknown:
        raise invalid(f"unknown field {unknown[0]!r}; expected {', '.join(sorted(fields))}")
    missing = sorted(required - set(body))
    if missing:
        raise invalid(f"missing field {missing[0]!r}")
    return body


def name_field(value: Any, what: str) -> str:
    """Room names and identities (text.name: they appear in URL paths and logs)."""
    try:
        return text.name(value, what)
    except text.TextError as exc:
        raise invalid(str(exc)) from None


def _integer(value: Any, what: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{what} must be an integer, got {value!r}")
    if value < minimum:
        raise invalid(f"{what} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise invalid(f"{what} must be at most {maximum}, got {value}")
    return value


def _metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise invalid('metadata must be an object of strings, e.g. {"subject": "maths", "grade": "7"}')
    if len(value) > MAX_METADATA_KEYS:
        raise invalid(f"metadata may have at most {MAX_METADATA_KEYS} keys, got {len(value)}")
    for key, item in value.items():
        try:
            text.display_name(key, "a metadata key", MAX_METADATA_KEY)
            text.free_text(item, f"metadata value of {key!r}", MAX_METADATA_VALUE)
        except text.TextError as exc:
            raise invalid(str(exc)) from None
    return dict(value)


def _codecs(value: Any) -> tuple[str, ...] | None:
    """A room's codec policy: names the router forwards, spelt as in SDP (any case), once each."""
    if value is None:
        return None
    known = {name.lower(): name for name in codec_names()}
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise invalid(f'codecs must be a non-empty list of codec names, e.g. ["H264", "opus"]; got {value!r}')
    names = [known.get(v.lower()) for v in value]
    if None in names:
        unknown = next(v for v, n in zip(value, names, strict=True) if n is None)
        raise invalid(f"codec {unknown!r} is not one kelian forwards ({', '.join(known.values())})")
    return tuple(dict.fromkeys(n for n in names if n is not None))


# -- lookups ------------------------------------------------------------------------------------------


def _rooms(request: web.Request) -> Rooms:
    return request.app[appkeys.ROOMS]


def room_of(request: web.Request) -> Room:
    name = request.match_info["room"]
    room = _rooms(request).rooms.get(name)
    if room is None or room.closed:
        raise ClassroomError("not_found", f"no room {name!r}")
    return room


def sessions_of(request: web.Request, room: Room) -> list[Participant]:
    identity = request.match_info["identity"]
    sessions = room.find(identity)
    if not sessions:
        raise ClassroomError("not_found", f"no participant {identity!r} in room {room.name!r}")
    return sessions


# -- rooms --------------------------------------------------------------------------------------------


@endpoint
async def list_rooms(request: web.Request) -> web.Response:
    """Every open room, including those created by someone joining."""
    rooms = [room.info() for room in _rooms(request).rooms.values() if not room.closed]
    return web.json_response({"rooms": rooms})


@endpoint
async def create_room(request: web.Request) -> web.Response:
    """Set a room up ahead of its lesson, with a size limit and the school's metadata."""
    body = await json_object(
        request,
        {
            "name",
            "max_participants",
            "empty_timeout",
            "metadata",
            "codecs",
            "kind",
            "waiting_room",
            "recording",
        },
        required={"name"},
    )
    name = name_field(body["name"], "name")
    max_participants = body.get("max_participants")
    if max_participants is not None:
        max_participants = _integer(max_participants, "max_participants", 1)
    empty_timeout = _integer(
        body.get("empty_timeout", DEFAULT_EMPTY_TIMEOUT), "empty_timeout", 0, MAX_EMPTY_TIMEOUT
    )
    metadata = _metadata(body.get("metadata", {}))
    allowed = _codecs(body.get("codecs"))
    kind = body.get("kind", kinds.DEFAULT)
    if kind not in kinds.BY_NAME:
        raise invalid(f"kind must be one of {', '.join(kinds.BY_NAME)}, got {kind!r}")
    waiting_room = body.get("waiting_room", False)
    if not isinstance(waiting_room, bool):
        raise invalid(f"waiting_room must be true or false, got {waiting_room!r}")
    recording = body.get("recording", default_recording(kind))
    if recording not in ("never", "always"):
        raise invalid(f'recording is "never" or "always", got {recording!r}')
    options = RoomOptions(
        max_participants, float(empty_timeout), metadata, allowed, kind, waiting_room, recording=recording
    )
    try:
        room = _rooms(request).create(name, options)
    except ClassroomError:
        raise ClassroomError("room_exists", f"room {name!r} already exists") from None
    location = f"{PREFIX}/rooms/{quote(name, safe='')}"
    return web.json_response(room.info(detail=True), status=201, headers={hdrs.LOCATION: location})


@endpoint
async def get_room(request: web.Request) -> web.Response:
    return web.json_response(room_of(request).info(detail=True))


@endpoint
async def delete_room(request: web.Request) -> web.Response:
    """End the lesson: every participant is told ("room_closed") and removed."""
    await room_of(request).close()
    return web.Response(status=204)


# -- participants -------------------------------------------------------------------------------------


@endpoint
async def list_participants(request: web.Request) -> web.Response:
    room = room_of(request)
    return web.json_response({"participants": [p.info() for p in room.participants.values()]})


@endpoint
async def get_participant(request: web.Request) -> web.Response:
    """The identity's first session; a box also publishing by WHIP shows both in the room's list."""
    room = room_of(request)
    return web.json_response(sessions_of(request, room)[0].info())


@endpoint
async def remove_participant(request: web.Request) -> web.Response:
    """Every session of the identity is told ("removed") and leaves. Its token stays valid."""
    room = room_of(request)
    sessions_of(request, room)
    await room.remove(request.match_info["identity"])
    return web.Response(status=204)


@endpoint
async def mute_track(request: web.Request) -> web.Response:
    """Stop (or restart) forwarding one track to everyone; the owner's client hears of it too."""
    room = room_of(request)
    body = await json_object(request, {"muted"}, required={"muted"})
    muted = body["muted"]
    if not isinstance(muted, bool):
        raise invalid(f"muted must be true or false, got {muted!r}")
    sessions = sessions_of(request, room)
    track_id = request.match_info["track"]
    producer = room.find_track(track_id, sessions[0].identity)
    if producer is None:
        raise ClassroomError("not_found", f"participant {sessions[0].identity!r} has no track {track_id!r}")
    try:
        info = await room.set_muted(producer, muted)
    except ClassroomError as exc:  # unpublished between the lookup and the mute
        raise ClassroomError("not_found", exc.message) from None
    return web.json_response(info)


# -- tokens -------------------------------------------------------------------------------------------


@endpoint
async def create_token(request: web.Request) -> web.Response:
    """Mint a join token, for school systems that would rather not sign JWTs themselves."""
    body = await json_object(
        request,
        {"room", "identity", "role", "name", "ttl", "grants", "kind", "classroom"},
        required={"room", "identity", "role"},
    )
    room = name_field(body["room"], "room")
    identity = name_field(body["identity"], "identity")
    role = body["role"]
    if not isinstance(role, str):
        raise invalid(f"role must be a string, one of {', '.join(r.value for r in Role)}")
    name = body.get("name")
    if name is not None:
        try:
            text.display_name(name, "name")
        except text.TextError as exc:
            raise invalid(str(exc)) from None
    config = request.app[appkeys.CONFIG]
    ttl = _integer(body.get("ttl", DEFAULT_TTL), "ttl", 1, config.max_token_ttl)
    grants = body.get("grants")
    if grants is not None and not isinstance(grants, dict):
        raise invalid('grants must be an object such as {"publish": false}')
    now = int(time.time())
    try:
        token = mint(
            config.api_key,
            config.api_secret,
            room=room,
            identity=identity,
            role=role,
            name=name,
            ttl=ttl,
            grants=grants,
            now=now,
            kind=body.get("kind"),
            classroom=body.get("classroom"),
        )
    except ValueError as exc:
        raise invalid(str(exc)) from None
    body = {"token": token, "room": room, "identity": identity, "expires_at": now + ttl}
    return web.json_response(body, status=201)


def routes() -> list[web.RouteDef]:
    """The admin routes; register `json_errors` as middleware too so unknown /api paths answer JSON."""
    participant = PREFIX + "/rooms/{room}/participants/{identity}"
    return [
        web.get(PREFIX + "/rooms", list_rooms, allow_head=False),
        web.post(PREFIX + "/rooms", create_room),
        web.get(PREFIX + "/rooms/{room}", get_room, allow_head=False),
        web.delete(PREFIX + "/rooms/{room}", delete_room),
        web.get(PREFIX + "/rooms/{room}/participants", list_participants, allow_head=False),
        web.get(participant, get_participant, allow_head=False),
        web.delete(participant, remove_participant),
        web.post(participant + "/tracks/{track}/mute", mute_track),
        web.post(PREFIX + "/tokens", create_token),
    ]
