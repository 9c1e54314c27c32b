"""Typed keys for what the aiohttp application carries, shared by the request handlers."""

from __future__ import annotations

import weakref

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
