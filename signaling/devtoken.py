"""Quick join for `make serve`: mint a token in development mode, so the demo page needs no backend.

Only a server running on its throwaway development credentials answers; one with a configured key
and secret answers 404, because there minting is the school's backend's job (admin API or its own JWT).
Such a server listens on loopback unless told otherwise (Config.dev_on_network), and mints no
admin tokens: quick join is for trying lessons, not for running the server.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from classroom import text
from classroom.tokens import Role, mint

from . import appkeys

MAX_NAME = 64
ROLES = frozenset(r.value for r in Role) - {Role.ADMIN.value, Role.RECORDER.value}


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    try:
        return text.name(value.strip() if isinstance(value, str) else value, f'"{key}"', MAX_NAME)
    except text.TextError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def dev_token(request: web.Request) -> web.Response:
    config = request.app[appkeys.CONFIG]
    if not config.dev_credentials:
        raise web.HTTPNotFound(text="quick join exists only on a server with development credentials")
    try:
        body = text.parse_json(await request.read())
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be JSON: {room, name}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object: {room, name}")
    room, name = _text(body, "room"), _text(body, "name")
    role = _text(body, "role", Role.LECTURER.value)
    if role not in ROLES:
        raise web.HTTPBadRequest(text=f"quick join mints only the roles {', '.join(sorted(ROLES))}")
    identity = f"{name}-{secrets.token_hex(3)}"  # two browsers typing the same name are two people
    token = mint(config.api_key, config.api_secret, room=room, identity=identity, role=role, name=name)
    return web.json_response({"token": token, "identity": identity, "room": room})


def routes() -> list[web.RouteDef]:
    return [web.post("/dev/token", dev_token)]
