"""The OpenAPI 3.1 description of every HTTP route kelian serves, at GET /openapi.json.

One Python structure, so the document can be checked against the router in a test (every served route
is described, nothing described is missing) and a school's IT person can load it into any OpenAPI tool
(Swagger UI, Postman, code generators) instead of reading our source.
"""

from __future__ import annotations

from dataclasses import fields
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web

from classroom.tokens import Grants, Role

__all__ = ["DOCUMENT", "routes"]

JSON = "application/json"
ROLES = [role.value for role in Role]

try:
    VERSION = version("kelian")
except PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "0.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


ADMIN = ["admin"]
SECURED: list[dict[str, list[str]]] = [{"apiKey": []}]
UNAUTHORIZED = _error('Missing or wrong API key and secret (`WWW-Authenticate: Basic realm="kelian"`).')
BAD_REQUEST = _error("The body is not valid: the message says which field and why. Nothing was changed.")
ROOM = _path_param("room", "Room name.")
IDENTITY = _path_param("identity", "Participant identity (the `sub` of its token).")
TRACK = _path_param("track", "Track id, e.g. TR_12.")


def _admin(summary: str, description: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An admin operation: Basic auth, and a 401 like every other."""
    return {
        "tags": ADMIN,
        "summary": summary,
        "description": description,
        "security": SECURED,
        "responses": responses | {"401": UNAUTHORIZED},
        **extra,
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


CORS_PREFLIGHT = {
    "tags": ["whip-whep"],
    "summary": "CORS preflight",
    "description": "Lets browser-based WHIP/WHEP clients on other origins post offers and delete sessions.",
    "responses": {"204": {"description": "Allowed methods and headers (Access-Control-*)."}},
}


def _whip_whep(kind: str) -> dict[str, dict[str, Any]]:
    """The routes of one of WHIP or WHEP (whip.py serves both with the same handlers)."""
    session = f"/{kind}/{{room}}/{{resource}}"
    verb = "Publish" if kind == "whip" else "Play"
    post: dict[str, Any] = {
        "tags": ["whip-whep"],
        "summary": f"{verb} with one SDP offer ({kind.upper()})",
        "description": (
            "RFC 9725 WHIP (publish: OBS, GStreamer, classroom encoders)"
            if kind == "whip"
            else "WHEP (play what is published in the room)"
        )
        + ". The session is a participant of the room; DELETE its Location to end it. The codec of each"
        " section is the first of the offer's own list that the room allows.",
        "security": [{"bearerToken": []}],
        "parameters": [ROOM],
        "requestBody": {
            "required": True,
            "content": {"application/sdp": {"schema": {"type": "string", "description": "SDP offer"}}},
        },
        "responses": {
            "201": {
                "description": "The SDP answer.",
                "headers": {
                    "Location": {
                        "description": (
                            f"The session URL, `{session}`: the room name percent-encoded, then a random"
                            " secret that only the session's creator learns."
                        ),
                        "schema": {"type": "string"},
                    },
                },
                "content": {"application/sdp": {"schema": {"type": "string"}}},
            },
            "400": {
                "description": (
                    "The offer could not be used (text/plain reason): malformed, no codec kelian"
                    " forwards, a codec the room's policy refuses, or (WHEP) nothing it can decode."
                )
            },
            "401": {
                "description": "Missing or invalid token (text/plain reason, WWW-Authenticate: Bearer).",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            },
            "403": {"description": "The token is for another room or its role may not do this."},
            "409": {"description": "The room is closing, or (WHEP) nothing is being published."},
            "413": {"description": "The offer is larger than 256 KiB."},
            "415": {"description": "The body is not application/sdp."},
            "503": {
                "description": "The room is full: try again after Retry-After seconds.",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            },
        },
    }
    if kind == "whep":
        post["parameters"] = [
            ROOM,
            {
                "name": "participant",
                "in": "query",
                "required": False,
                "description": "Play only what this identity publishes.",
                "schema": {"type": "string"},
            },
        ]
    sid = _path_param("resource", "The last part of the session's Location.")
    return {
        f"/{kind}/{{room}}": {"post": post, "options": CORS_PREFLIGHT | {"parameters": [ROOM]}},
        session: {
            "options": CORS_PREFLIGHT | {"parameters": [ROOM, sid]},
            "delete": {
                "tags": ["whip-whep"],
                "summary": f"End a {kind.upper()} session",
                "description": (
                    "By the session's own identity or a moderator of the room (Bearer token for the room),"
                    " or the admin API (HTTP Basic)."
                ),
                "security": [{"bearerToken": []}, {"apiKey": []}],
                "parameters": [ROOM, sid],
                "responses": {
                    "200": {"description": "Ended."},
                    "401": {"description": "Missing or invalid credentials (WWW-Authenticate)."},
                    "403": {"description": "Another participant's session, and no moderator's token."},
                    "404": {"description": "No such session."},
                },
            },
            "patch": {
                "tags": ["whip-whep"],
                "summary": "Trickle ICE / ICE restart (not supported)",
                "description": "kelian is ICE-lite with one host candidate: there is nothing to trickle.",
                "parameters": [ROOM, sid],
                "responses": {"405": {"description": "Always, with Allow: DELETE, OPTIONS."}},
            },
        },
    }


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "examples": ["unauthorized", "invalid_request", "not_found", "room_exists"],
                    },
                    "message": {"type": "string", "description": "What went wrong, for a person to read."},
                },
            }
        },
    },
    "Metadata": {
        "type": "object",
        "description": "Up to 32 keys (1-64 characters) with string values (up to 1024 characters).",
        "additionalProperties": {"type": "string", "maxLength": 1024},
        "maxProperties": 32,
        "examples": [{"stage": "primary", "grade": "5", "subject": "maths", "teacher": "Ms Lin"}],
    },
    "RoomCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "description": "No '/', no control characters, no leading or trailing spaces.",
            },
            "max_participants": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "Joins beyond this many are refused (room_full). Null or absent: unlimited.",
            },
            "empty_timeout": {
                "type": "integer",
                "minimum": 0,
                "maximum": 604800,
                "default": 300,
                "description": (
                    "Seconds the room is kept while nobody is in it (from creation, and after the last "
                    "participant leaves). 0: kept until someone has joined, closed when empty again."
                ),
            },
            "metadata": _ref("Metadata"),
            "kind": {
                "type": "string",
                "enum": ["fusion", "dual_teacher", "live"],
                "default": "fusion",
                "description": "The kind of lesson: who watches whom (docs/protocol.md, Room kinds).",
            },
            "waiting_room": {
                "type": "boolean",
                "default": False,
                "description": "Students and viewers wait until a moderator admits them.",
            },
            "codecs": {
                "type": ["array", "null"],
                "items": {"type": "string", "enum": ["opus", "VP8", "H264"]},
                "minItems": 1,
                "uniqueItems": True,
                "description": (
                    'The codecs publishers may send, e.g. ["H264", "opus"] for classroom TVs that'
                    " decode only H.264. An offer whose media has none of them is refused with a"
                    " message saying so. Null or absent: all."
                ),
            },
        },
    },
    "Room": {
        "type": "object",
        "required": [
            "name",
            "participants",
            "max_participants",
            "empty_timeout",
            "metadata",
            "created_at",
            "tracks",
        ],
        "properties": {
            "name": {"type": "string"},
            "participants": {
                "description": "A count in lists; the participants themselves for a single room.",
                "oneOf": [{"type": "integer"}, {"type": "array", "items": _ref("Participant")}],
            },
            "max_participants": {"type": ["integer", "null"]},
            "empty_timeout": {
                "type": "number",
                "description": "0 for a room that exists because someone joined: it closes when empty.",
            },
            "metadata": _ref("Metadata"),
            "created_at": {"type": "integer", "description": "Unix seconds."},
            "tracks": {"type": "integer", "description": "Tracks being published."},
            "codecs": {"type": ["array", "null"], "items": {"type": "string"}},
            "kind": {"type": "string", "enum": ["fusion", "dual_teacher", "live"]},
            "stage": {"type": "array", "items": {"type": "string"}, "description": "Identities on stage."},
            "locked": {"type": "boolean"},
            "waiting_room": {"type": "boolean"},
        },
    },
    "RoomList": {
        "type": "object",
        "required": ["rooms"],
        "properties": {"rooms": {"type": "array", "items": _ref("Room")}},
    },
    "Track": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "examples": ["TR_kqzb12"]},
            "participant": {"type": "string", "description": "sid of the publishing session."},
            "identity": {"type": "string"},
            "kind": {"type": "string", "enum": ["audio", "video"]},
            "source": {"type": "string", "examples": ["camera", "microphone", "screen"]},
            "codec": {"type": "string", "examples": ["opus", "VP8", "H264"]},
            "layers": {"type": "array", "items": {"type": "string"}, "description": "Simulcast rids."},
            "muted": {"type": "boolean"},
        },
    },
    "Participant": {
        "type": "object",
        "properties": {
            "sid": {"type": "string", "description": "Session id: PS_ and 12 random characters."},
            "identity": {"type": "string"},
            "name": {"type": "string"},
            "role": {"type": "string", "enum": ROLES},
            "kind": {"type": "string", "enum": ["websocket", "whip", "whep"]},
            "tracks": {"type": "array", "items": _ref("Track")},
            "quality": {"type": "string", "enum": ["excellent", "good", "poor", "lost"]},
        },
        "additionalProperties": True,
    },
    "ParticipantList": {
        "type": "object",
        "required": ["participants"],
        "properties": {"participants": {"type": "array", "items": _ref("Participant")}},
    },
    "Mute": {
        "type": "object",
        "additionalProperties": False,
        "required": ["muted"],
        "properties": {"muted": {"type": "boolean"}},
    },
    "Grants": {
        "type": "object",
        "description": "Only narrows the role's defaults; asking for more than the role allows is a 400.",
        "properties": {f.name: {"type": "boolean"} for f in fields(Grants)},
    },
    "TokenRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["room", "identity", "role"],
        "properties": {
            "room": {"type": "string", "minLength": 1, "maxLength": 128},
            "identity": {"type": "string", "minLength": 1, "maxLength": 128},
            "role": {"type": "string", "enum": ROLES},
            "name": {"type": "string", "maxLength": 256, "description": "Display name."},
            "ttl": {"type": "integer", "minimum": 1, "default": 3600, "description": "Seconds."},
            "grants": _ref("Grants"),
            "kind": {
                "type": "string",
                "enum": ["fusion", "dual_teacher", "live"],
                "description": "The kind a room created by this token's join gets.",
            },
            "classroom": {"type": "string", "description": "A tutor's classroom: its box's identity."},
        },
    },
    "Token": {
        "type": "object",
        "required": ["token", "room", "identity", "expires_at"],
        "properties": {
            "token": {"type": "string", "description": "JWT for the WebSocket join or WHIP/WHEP."},
            "room": {"type": "string"},
            "identity": {"type": "string"},
            "expires_at": {"type": "integer", "description": "Unix seconds."},
        },
    },
    "DevTokenRequest": {
        "type": "object",
        "required": ["room", "name"],
        "properties": {
            "room": {"type": "string", "maxLength": 64},
            "name": {"type": "string", "maxLength": 64},
            "role": {"type": "string", "default": "lecturer"},
        },
    },
    "DevToken": {
        "type": "object",
        "required": ["token", "identity"],
        "properties": {
            "token": {"type": "string"},
            "identity": {"type": "string", "description": "The name with a random suffix."},
            "room": {"type": "string"},
        },
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "const": "ok"},
            "dev": {"type": "boolean", "description": "Running on generated development credentials."},
            "rooms": {"type": "integer"},
            "transports": {"type": "integer"},
            "media": {
                "type": "object",
                "properties": {"address": {"type": "string"}, "port": {"type": "integer"}},
            },
        },
    },
}

STRING = {"type": "string"}
PATHS: dict[str, dict[str, Any]] = {
    "/": {
        "get": {
            "tags": ["web"],
            "summary": "The classroom web app",
            "description": "Open `/?room=ROOM&token=TOKEN` to join a lesson in a browser.",
            "responses": {"200": {"description": "HTML page.", "content": {"text/html": {}}}},
        }
    },
    "/console": {
        "get": {
            "tags": ["web"],
            "summary": "The switchover console",
            "description": (
                "A page for a school's or district's administrator: the districts, schools and "
                "classrooms with their modes and the lessons in session, a switch online or to in "
                "person per district, school and lesson, and the audit log. It signs in with the API "
                "key and secret and calls the admin API (`/api/v1/...`) from the browser."
            ),
            "responses": {"200": {"description": "HTML page.", "content": {"text/html": {}}}},
        }
    },
    "/library": {
        "get": {
            "tags": ["web"],
            "summary": "The air-classroom library",
            "description": (
                "Open `/library?token=TOKEN` with a join token to browse and play the library's "
                "published lessons and micro-lessons (a teacher's token shows drafts too) on a phone, a "
                "computer or, with `&layout=tv`, a TV driven by its remote. A reviewer signs in with the "
                "API key and secret instead: items by status, the catalogue, the review steps, filing a "
                "recording and cutting micro-lessons, through the admin API (`/api/v1/library...`)."
            ),
            "responses": {"200": {"description": "HTML page.", "content": {"text/html": {}}}},
        }
    },
    "/static/{path}": {
        "get": {
            "tags": ["web"],
            "summary": "Static files of the web app (scripts, styles, translations)",
            "parameters": [_path_param("path", "File path under the static folder.")],
            "responses": {"200": {"description": "The file."}, "404": {"description": "No such file."}},
        }
    },
    "/healthz": {
        "get": {
            "tags": ["operations"],
            "summary": "Liveness and a few gauges",
            "responses": {"200": _json(_ref("Health"), "The node is up.")},
        }
    },
    "/metrics": {
        "get": {
            "tags": ["operations"],
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "tags": ["operations"],
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1 document.", "content": {JSON: {}}}},
        }
    },
    "/ws": {
        "get": {
            "tags": ["signaling"],
            "summary": "The participant WebSocket",
            "description": (
                "Upgrade to a WebSocket (subprotocol `kelian.v1.json` for JSON text frames or "
                "`kelian.v1.msgpack` for msgpack binary frames), then send "
                '`{"type": "join", "token": ...}`, publish with an SDP offer and answer the server\'s '
                "subscriber offers. The messages and events are described in docs/protocol.md."
            ),
            "parameters": [
                {
                    "name": "Sec-WebSocket-Protocol",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "enum": ["kelian.v1.json", "kelian.v1.msgpack"]},
                },
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "description": "`msgpack` for clients that cannot set a subprotocol.",
                    "schema": {"type": "string", "enum": ["msgpack"]},
                },
            ],
            "responses": {
                "101": {"description": "Switching Protocols: the WebSocket is open."},
                "400": {"description": "Not a WebSocket upgrade request."},
            },
        }
    },
    "/dev/token": {
        "post": {
            "tags": ["web"],
            "summary": "Quick join token (development mode only)",
            "description": (
                "Only a server started without KELIAN_API_KEY and KELIAN_API_SECRET (development "
                "credentials) answers; with a configured key and secret this is 404, and tokens come "
                "from POST /api/v1/tokens or the school's own backend."
            ),
            "requestBody": _body(_ref("DevTokenRequest")),
            "responses": {
                "200": _json(_ref("DevToken"), "A token for the room."),
                "400": {"description": "Bad body (text/plain reason)."},
                "404": {"description": "The server runs with a configured key and secret."},
            },
        }
    },
    **_whip_whep("whip"),
    **_whip_whep("whep"),
    "/api/v1/rooms": {
        "get": _admin(
            "List rooms",
            "Every open room, including those that exist because someone joined.",
            {"200": _json(_ref("RoomList"), "The rooms.")},
        ),
        "post": _admin(
            "Create a room",
            "Set a room up before its lesson. It is kept while empty for `empty_timeout` seconds.",
            {
                "201": _json(_ref("Room"), "Created; `participants` is the (empty) list."),
                "400": BAD_REQUEST,
                "409": _error("A room of that name exists."),
            },
            requestBody=_body(_ref("RoomCreate")),
        ),
    },
    "/api/v1/rooms/{room}": {
        "get": _admin(
            "Get a room",
            "The room with its participants listed.",
            {"200": _json(_ref("Room"), "The room."), "404": _error("No such room.")},
            parameters=[ROOM],
        ),
        "delete": _admin(
            "Close a room",
            'Every participant receives `{"type": "disconnected", "reason": "room_closed"}` and is removed.',
            {"204": {"description": "Closed."}, "404": _error("No such room.")},
            parameters=[ROOM],
        ),
    },
    "/api/v1/rooms/{room}/participants": {
        "get": _admin(
            "List participants",
            "Every session in the room (a box on WebSocket and WHIP is listed twice).",
            {"200": _json(_ref("ParticipantList"), "The participants."), "404": _error("No such room.")},
            parameters=[ROOM],
        ),
    },
    "/api/v1/rooms/{room}/participants/{identity}": {
        "get": _admin(
            "Get a participant",
            "The first session of this identity.",
            {
                "200": _json(_ref("Participant"), "The participant."),
                "404": _error("No such room or participant."),
            },
            parameters=[ROOM, IDENTITY],
        ),
        "delete": _admin(
            "Remove a participant",
            'Every session of the identity receives `{"type": "disconnected", "reason": "removed"}` and '
            "leaves. The token is not revoked: use short token lifetimes to keep someone out.",
            {"204": {"description": "Removed."}, "404": _error("No such room or participant.")},
            parameters=[ROOM, IDENTITY],
        ),
    },
    "/api/v1/rooms/{room}/participants/{identity}/tracks/{track}/mute": {
        "post": _admin(
            "Mute or unmute a track",
            "The server stops (or restarts) forwarding the track to everyone, and tells everyone, the "
            'owner included, with a `track_muted` event (`"by": null` for the API).',
            {
                "200": _json(_ref("Track"), "The track, with its new `muted` state."),
                "400": BAD_REQUEST,
                "404": _error("No such room, participant or track."),
            },
            parameters=[ROOM, IDENTITY, TRACK],
            requestBody=_body(_ref("Mute")),
        ),
    },
    "/api/v1/tokens": {
        "post": _admin(
            "Mint a join token",
            "A JWT to join `room` as `identity` in `role`; build a join link as "
            "`http://HOST:8700/?room=ROOM&token=TOKEN`.",
            {"201": _json(_ref("Token"), "The token."), "400": BAD_REQUEST},
            requestBody=_body(_ref("TokenRequest")),
        ),
    },
}


def _lesson_paths() -> dict[str, dict[str, Any]]:
    """The lesson routes (signaling/admin_lesson.py): what a lecturer does over the WebSocket."""
    room, person = "/api/v1/rooms/{room}", "/api/v1/rooms/{room}/participants/{identity}"
    missing = _error("No such room, participant, message or question.")
    boolean, text = {"type": "boolean"}, {"type": "string"}

    def obj(required: list[str], **properties: Any) -> dict[str, Any]:
        schema = {"type": "object", "additionalProperties": False, "properties": properties}
        return _body(schema | ({"required": required} if required else {}))

    def op(
        summary: str, description: str, ok: dict[str, Any], params: list[Any], **extra: Any
    ) -> dict[str, Any]:
        return _admin(
            summary, description, ok | {"400": BAD_REQUEST, "404": missing}, parameters=params, **extra
        )

    done = {"204": {"description": "Done; the participants concerned get their events."}}
    listed = {"200": {"description": "The list.", "content": {JSON: {"schema": {"type": "object"}}}}}
    question = _path_param("question", "Question id, e.g. QU_7.")
    return {
        room + "/stage": {
            "post": op(
                "Bring a participant on stage, or send it back",
                "Every participant watches whoever is on stage (at most four at once) and it may publish;"
                " sent back, it is off stage, its hand down, and back to what its role may do on joining."
                " Everyone gets a `stage` event.",
                {
                    "200": _json(
                        {"type": "object", "properties": {"stage": {"type": "array", "items": STRING}}},
                        "Who is on stage now.",
                    ),
                    "409": _error("Four are on stage already (`stage_full`)."),
                },
                [ROOM],
                requestBody=obj(["identity", "on"], identity=text, on=boolean),
            )
        },
        room + "/tracks/{track}/standby": {
            "post": op(
                "Give a track a standby source",
                "When the track falls silent (a second without a packet) or its publisher leaves, its"
                " subscribers are fed from the standby (same kind and codec) from its next keyframe, with"
                " no renegotiation; when the track flows again, or its publisher publishes it anew, they go"
                " back. Everyone gets `track_failover` events.",
                {
                    "200": _json(
                        {"type": "object", "properties": {"track": text, "standby": text}}, "The standby."
                    )
                },
                [ROOM, TRACK],
                requestBody=obj(["standby"], standby=text),
            ),
            "delete": op(
                "Take a track's standby away",
                "Its subscribers go back to the track, or, if its publisher is gone, lose it.",
                done,
                [ROOM, TRACK],
            ),
        },
        room + "/recording": {
            "post": op(
                "Start or stop recording the room",
                "Every track (VP8, H.264, Opus) into a Matroska file of its own, written as it goes, with a"
                " JSON file beside it (the wall-clock time of its first frame, from the publisher's sender"
                " reports); tracks published later are recorded from then on. In a folder per room under"
                " `--recordings`. With `tracks`, only those: started (or added), or stopped while the rest"
                " go on; a track the room does not publish is refused with 404.",
                {
                    "200": _json(
                        {"type": "object"}, "The recording: its tracks, and its files once stopped."
                    ),
                    "503": _error("The recorder process could not be started (`recorder_unavailable`)."),
                },
                [ROOM],
                requestBody=obj(
                    ["on"],
                    on=boolean,
                    tracks={"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 100},
                ),
            ),
            "get": op(
                "The room's recording",
                "Whether it records, its tracks and the files closed so far.",
                {"200": _json({"type": "object"}, "The recording.")},
                [ROOM],
            ),
        },
        room + "/lock": {
            "post": op(
                "Lock or unlock the room",
                "A locked room refuses joins (`room_locked`) but from its moderators and whoever has been"
                " in it.",
                {"200": _json({"type": "object", "properties": {"locked": boolean}}, "The lock now.")},
                [ROOM],
                requestBody=obj(["locked"], locked=boolean),
            )
        },
        room + "/mute_all": {
            "post": op(
                "Mute everyone but the lecturers",
                "Every microphone (or, with kind video, camera) is muted, as by `track_muted`.",
                {
                    "200": _json(
                        {"type": "object", "properties": {"kind": text, "tracks": {"type": "integer"}}},
                        "How many were muted.",
                    )
                },
                [ROOM],
                requestBody=obj([], kind={"type": "string", "enum": ["audio", "video"], "default": "audio"}),
            )
        },
        room + "/hands": {"get": op("Raised hands", "The queue, first raised first.", listed, [ROOM])},
        room + "/hands/{identity}": {
            "delete": op("Lower a hand", "The participant is told (`hand`).", done, [ROOM, IDENTITY])
        },
        person + "/invite": {
            "post": op(
                "Invite to speak or on stage",
                "The participant gets an `invitation` and accepts or declines in its client.",
                {"202": {"description": "Invited."}},
                [ROOM, IDENTITY],
                requestBody=obj([], to={"type": "string", "enum": ["speak", "stage"], "default": "speak"}),
            )
        },
        person + "/send_back": {
            "post": op(
                "Send back",
                "Off stage, hand down, back to what its role may do on joining.",
                done,
                [ROOM, IDENTITY],
            )
        },
        person + "/permissions": {
            "post": op(
                "Change what a participant may do",
                "Within its token's grants: a track it may no longer publish ends. It gets a"
                " `permissions` event.",
                {
                    "200": _json(
                        {"type": "object", "properties": {"identity": text, "grants": _ref("Grants")}},
                        "Its grants now.",
                    )
                },
                [ROOM, IDENTITY],
                requestBody=obj([], publish=boolean, subscribe=boolean, publish_data=boolean),
            )
        },
        room + "/waiting": {
            "get": op("The waiting room", "Who waits to be admitted, first come first.", listed, [ROOM])
        },
        room + "/waiting/{identity}": {
            "post": op(
                "Admit or turn away",
                "Admitted, the client gets `joined`; turned away, `disconnected` with reason `denied`.",
                done,
                [ROOM, IDENTITY],
                requestBody=obj(["admit"], admit=boolean),
            )
        },
        room + "/chat": {
            "get": op("The chat", "Every message the room keeps (the last 200).", listed, [ROOM]),
            "post": op(
                "Write to the room",
                'A message from the school\'s system (`"from": null`) to everyone.',
                {"201": {"description": "The message.", "content": {JSON: {"schema": {"type": "object"}}}}},
                [ROOM],
                requestBody=obj(["text"], text={"type": "string", "maxLength": 1000}),
            ),
        },
        room + "/chat/{message}": {
            "delete": op(
                "Delete a chat message",
                "Whoever got it gets `chat_deleted`.",
                done,
                [ROOM, _path_param("message", "Message id, e.g. CM_3.")],
            )
        },
        room + "/questions": {
            "get": op("Questions", "Every question the room keeps, with its status.", listed, [ROOM])
        },
        room + "/questions/{question}": {
            "post": op(
                "Answer, dismiss or forward a question",
                "The asker and whoever sees the question get a `question` event.",
                {
                    "200": {
                        "description": "The question now.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
                [ROOM, question],
                requestBody=obj(
                    ["action"],
                    action={"type": "string", "enum": ["answer", "dismiss", "forward"]},
                    text={"type": "string", "maxLength": 1000},
                ),
            )
        },
    }


PATHS.update(_lesson_paths())


def _school_paths() -> dict[str, dict[str, Any]]:
    """The organisation routes (signaling/admin_school.py): records, import, switchover, tokens."""
    string, integer = {"type": "string"}, {"type": "integer"}
    ids = {"type": "array", "items": string}
    mode = {"type": "string", "enum": ["offline", "online"]}
    when = {"type": ["integer", "string"], "description": "Unix seconds, or ISO 8601 with its UTC offset"}
    fields: dict[str, dict[str, Any]] = {
        "district": {"name": string, "mode": mode},
        "school": {"district": string, "name": string, "mode": mode},
        "classroom": {"school": string, "name": string, "box": string},
        "teacher": {"school": string, "name": string},
        "student": {"school": string, "name": string, "classroom": string},
        "lesson": {
            "school": string,
            "title": string,
            "subject": string,
            "room_kind": {"type": "string", "enum": ["fusion", "dual_teacher", "live"]},
            "teacher": string,
            "classrooms": ids,
            "students": ids,
            "starts_at": when,
            "ends_at": when,
            "recording": {"type": "string", "enum": ["never", "always", "online"]},
            "mode": mode,
        },
    }
    parents = {"school": "district", "classroom": "school", "teacher": "school", "student": "school"}
    parents["lesson"] = "school"
    record_id = _path_param("id", "The record's id in the school's own system.")
    missing = _error("No such record.")
    paths: dict[str, dict[str, Any]] = {}
    for kind, props in fields.items():
        plural = kind + "s"
        schema = {"type": "object", "properties": {"id": string} | props}
        one = _json(schema, f"The {kind}.")
        query = []
        if kind in parents:
            query.append(
                {
                    "name": parents[kind],
                    "in": "query",
                    "required": False,
                    "schema": string,
                    "description": f"Only the {plural} of this {parents[kind]}.",
                }
            )
        if kind == "lesson":
            query.append(
                {
                    "name": "at",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "number"},
                    "description": "With school or district: only lessons in session at this Unix time.",
                }
            )
            query.append(
                {
                    "name": "district",
                    "in": "query",
                    "required": False,
                    "schema": string,
                    "description": "The lessons of every school of this district.",
                }
            )
        paths[f"/api/v1/{plural}"] = {
            "get": _admin(
                f"List {plural}",
                f"Every {kind}, by id.",
                {
                    "200": _json(
                        {"type": "object", "properties": {plural: {"type": "array", "items": schema}}},
                        f"The {plural}.",
                    ),
                    "400": BAD_REQUEST,
                },
                parameters=query,
            )
        }
        paths[f"/api/v1/{plural}/{{id}}"] = {
            "get": _admin(
                f"Get a {kind}", f"One {kind}.", {"200": one, "404": missing}, parameters=[record_id]
            ),
            "put": _admin(
                f"Create or replace a {kind}",
                "Written whole; every record it names (its parent, a lesson's classrooms, teacher and"
                " students) must exist.",
                {"200": one, "201": one, "400": BAD_REQUEST},
                parameters=[record_id],
                requestBody=_body(schema),
            ),
            "delete": _admin(
                f"Delete a {kind}",
                "Refused while other records point at it.",
                {
                    "204": {"description": "Deleted."},
                    "404": missing,
                    "409": _error("Other records point at it (`in_use`)."),
                },
                parameters=[record_id],
            ),
        }
    audit = {"type": "object", "description": "The switchover's audit record."}
    paths["/api/v1/import"] = {
        "post": _admin(
            "Import a timetable and roster",
            "JSON lists by kind (`districts`, `schools`, `classrooms`, `teachers`, `students`, `lessons`),"
            " or one kind as `text/csv` (`?kind=lesson`, a header of field names). All rows or none: a"
            " 400 lists every bad row (`problems`: kind, row, id, error).",
            {"200": _json({"type": "object"}, "How many of each kind were written."), "400": BAD_REQUEST},
            requestBody={
                "required": True,
                "content": {JSON: {"schema": {"type": "object"}}, "text/csv": {"schema": string}},
            },
        )
    }
    paths["/api/v1/switchover"] = {
        "post": _admin(
            "Switch a district, a school or lessons online or offline",
            "Writes the modes, opens the online room of every lesson in scope that is in session, tells"
            " every connected client of the scope at once (a `mode` event) and audits it. No media is"
            " renegotiated.",
            {"200": _json(audit, "The audit record."), "400": BAD_REQUEST, "404": missing},
            requestBody=_body(
                {
                    "type": "object",
                    "required": ["mode"],
                    "properties": {
                        "district": string,
                        "school": string,
                        "lessons": ids,
                        "mode": mode,
                        "by": string,
                    },
                }
            ),
        )
    }
    paths["/api/v1/switchovers"] = {
        "get": _admin(
            "The switchover audit",
            "The latest switchovers, newest first.",
            {
                "200": _json(
                    {"type": "object", "properties": {"switchovers": {"type": "array", "items": audit}}},
                    "The audit.",
                ),
                "400": BAD_REQUEST,
            },
            parameters=[{"name": "limit", "in": "query", "required": False, "schema": integer}],
        )
    }
    paths["/api/v1/lessons/{id}/tokens"] = {
        "post": _admin(
            "Join tokens for a lesson's roster",
            "A token and a join link for its teacher (lecturer), each classroom's box and each student.",
            {"201": _json({"type": "object"}, "The tokens."), "404": missing},
            parameters=[record_id],
        )
    }
    return paths


PATHS.update(_school_paths())


def _library_paths() -> dict[str, dict[str, Any]]:
    """The library (signaling/admin_library.py): catalogue, review, micro-lessons; playback."""
    string, number, boolean = {"type": "string"}, {"type": "number"}, {"type": "boolean"}
    item = {"type": "object", "description": "A library item: library/model.py Item."}
    catalogue = {
        "title": string,
        "stage": {"type": "string", "enum": ["primary", "junior", "senior"]},
        "grade": string,
        "subject": string,
        "teacher": string,
        "school": string,
        "date": {"type": "string", "description": "YYYY-MM-DD"},
        "tags": {"type": "array", "items": string},
    }
    item_id = _path_param("item", "Library item id, e.g. LI_x3k...")
    missing = _error("No such item (or recording).")
    query = [
        {"name": name, "in": "query", "required": False, "schema": string}
        for name in ("status", "kind", "stage", "grade", "subject", "teacher", "school", "date", "q")
    ] + [
        {"name": name, "in": "query", "required": False, "schema": {"type": "integer"}}
        for name in ("limit", "offset")
    ]
    listed = _json({"type": "object", "properties": {"items": {"type": "array", "items": item}}}, "Items.")
    people = {
        "tags": ["library"],
        "security": [{"bearerToken": []}],
    }
    return {
        "/api/v1/library": {
            "get": _admin(
                "Search the library",
                "By catalogue field and words of title and tags.",
                {"200": listed, "400": BAD_REQUEST},
                parameters=query,
            ),
            "post": _admin(
                "File a recording",
                "Starts the finishing job (MP4, HLS, poster); the item is `finishing` with a `progress`, then"
                " a `draft` (or `failed` with a `reason`).",
                {"202": _json(item, "The item, finishing."), "400": BAD_REQUEST, "404": missing},
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["recording", "title"],
                        "properties": {"recording": string} | catalogue,
                    }
                ),
            ),
        },
        "/api/v1/library/{item}": {
            "get": _admin(
                "Get an item",
                "Its catalogue, status and progress.",
                {"200": _json(item, "The item."), "404": missing},
                parameters=[item_id],
            ),
            "patch": _admin(
                "Edit an item's catalogue",
                "Only the fields given change.",
                {"200": _json(item, "The item."), "400": BAD_REQUEST, "404": missing},
                parameters=[item_id],
                requestBody=_body({"type": "object", "properties": catalogue}),
            ),
        },
        "/api/v1/library/{item}/review": {
            "post": _admin(
                "A review step",
                "submit (draft or rejected to in review), publish or reject (in review; a rejection needs a"
                " reason; both name the reviewer), withdraw (back to draft).",
                {
                    "200": _json(item, "The item."),
                    "404": missing,
                    "409": _error("A step its state does not allow (`illegal_step`)."),
                },
                parameters=[item_id],
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["action"],
                        "properties": {
                            "action": {"type": "string", "enum": ["submit", "publish", "reject", "withdraw"]},
                            "reviewer": string,
                            "reason": string,
                        },
                    }
                ),
            )
        },
        "/api/v1/library/{item}/micro": {
            "post": _admin(
                "Cut a micro-lesson",
                "At most five minutes of a finished lesson, at keyframes without re-encoding or, with"
                " `exact`, re-encoded to the frame; its own item (a draft), linked to its lesson.",
                {"201": _json(item, "The micro-lesson."), "400": BAD_REQUEST, "404": missing},
                parameters=[item_id],
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["start", "end", "title"],
                        "properties": {"start": number, "end": number, "exact": boolean} | catalogue,
                    }
                ),
            )
        },
        "/api/v1/recordings": {
            "get": _admin(
                "The recordings on disk",
                "Newest first: each recording's `recording` (what POST /api/v1/library files), its room,"
                " its tracks, and whether a lesson was made of it already.",
                {"200": _json({"type": "object"}, "The recordings.")},
            )
        },
        "/library/items": {
            "get": people
            | {
                "summary": "The items the asker may see",
                "description": "With a join token (Bearer or ?token=): published items for students and"
                " viewers, every finished item for teachers.",
                "parameters": query,
                "responses": {"200": listed, "401": _error("No token, or one that does not verify.")},
            }
        },
        "/library/{item}/{name}": {
            "get": people
            | {
                "summary": "Play an item",
                "description": "lesson.mp4 (HTTP range requests), poster.jpg, hls/index.m3u8 and its"
                " segments; students and viewers only published items.",
                "parameters": [item_id, _path_param("name", "lesson.mp4, poster.jpg, hls/...")],
                "responses": {
                    "200": {"description": "The file."},
                    "206": {"description": "The range asked for."},
                    "401": _error("No token, or one that does not verify."),
                    "404": _error("No such file, or not for this viewer."),
                },
            }
        },
    }


PATHS.update(_library_paths())


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "kelian",
        "version": VERSION,
        "description": (
            "Live-classroom media server: the admin REST API for school systems, WHIP/WHEP, the "
            "participant WebSocket and operations endpoints. The admin API is described in docs/api.md."
        ),
    },
    "tags": [
        {"name": "admin", "description": "Rooms, participants and tokens for school systems (Basic auth)."},
        {"name": "signaling", "description": "The participant WebSocket."},
        {"name": "whip-whep", "description": "Publish and play with one HTTP request (Bearer token)."},
        {"name": "web", "description": "The browser app."},
        {"name": "operations", "description": "Health, metrics and this document."},
        {"name": "library", "description": "Recorded lessons and micro-lessons, for people (join token)."},
    ],
    "paths": PATHS,
    "components": {
        "securitySchemes": {
            "apiKey": {
                "type": "http",
                "scheme": "basic",
                "description": "User name: the API key (KELIAN_API_KEY); password: the API secret.",
            },
            "bearerToken": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A join token for the room (POST /api/v1/tokens or `kelian token`).",
            },
        },
        "schemas": SCHEMAS,
    },
}


async def openapi_json(request: web.Request) -> web.Response:
    # any origin may read it: it holds no secrets, and online OpenAPI viewers fetch it from the browser
    return web.json_response(DOCUMENT, headers={"Access-Control-Allow-Origin": "*"})


def routes() -> list[web.RouteDef]:
    return [web.get("/openapi.json", openapi_json)]
