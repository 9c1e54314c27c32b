"""Quick join for `make serve`: mint a token in development mode, so the demo page needs no backend.

Only a server running on its throwaway development credentials answers; one with a configured key
and secret answers 404, because there minting is the school's backend's job (admin API or its own JWT).
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from . import appkeys
from .tokens import Role, mint

MAX_NAME = 64


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME or "/" in value:
        raise web.HTTPBadRequest(
            text=f'"{key}" must be a non-empty string of at most {MAX_NAME} characters without "/"'
        )
    return value.strip()


async def dev_token(request: web.Request) -> web.Response:
    config = request.app[appkeys.CONFIG]
    if not config.dev_credentials:
        raise web.HTTPNotFound(text="quick join exists only on a server with development credentials")
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be JSON: {room, name}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object: {room, name}")
    room, name = _text(body, "room"), _text(body, "name")
    role = _text(body, "role", Role.LECTURER.value)
    if role not in {r.value for r in Role}:
        raise web.HTTPBadRequest(text=f"unknown role {role!r}")
    identity = f"{name}-{secrets.token_hex(3)}"  # two browsers typing the same name are two people
    token = mint(config.api_key, config.api_secret, room=room, identity=identity, role=role, name=name)
    return web.json_response({"token": token, "identity": identity, "room": room})


def routes() -> list[web.RouteDef]:
    return [web.post("/dev/token", dev_token)]
