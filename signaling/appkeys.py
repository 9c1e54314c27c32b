"""Typed keys for what the aiohttp application carries, shared by the request handlers."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from classroom.rooms import Rooms
from library.library import Library
from recorder.recordings import Recordings
from school.schools import Schools
from sfu.node import Node

from .config import Config
from .webhooks import Webhooks

CONFIG = web.AppKey("config", Config)
NODE = web.AppKey("node", Node)
ROOMS = web.AppKey("rooms", Rooms)
REGISTRY = web.AppKey("registry", CollectorRegistry)
SOCKETS = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])
SCHOOLS = web.AppKey("schools", Schools)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
RECORDINGS = web.AppKey("recordings", Recordings)
LIBRARY = web.AppKey("library", Library)
# A socket that is not a plain participant's: the worker of a cluster serves a viewer as an edge,
# or marks a session whose media an edge serves (cluster.edge). None: ws.websocket serves it.
SocketHook = Callable[[web.Request], Awaitable[web.WebSocketResponse | None]]
SOCKET_HOOK: web.AppKey[SocketHook] = web.AppKey("socket_hook")
