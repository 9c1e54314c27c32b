"""A worker: a whole kelian server (rooms, media port) on loopback, behind the front.

    python -m cluster.worker        (started by cluster.workers.WorkerPool, never by hand)

Its configuration comes in the environment (KELIAN_WORKER: the front's Config as JSON, with its own
ports); it listens for HTTP on a loopback port of its own, which only the front reaches, and speaks
to the front on stdout, one JSON object a line: ``ready`` (its ports), ``closed`` (a room of its
ended: the place is free), ``load`` (every second). The front asks it for what the switchover needs
of its rooms on /internal/..., with the cluster's secret in ``X-Kelian-Internal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import os
import signal
import sys
from typing import Any, cast

import aiohttp
from aiohttp import web

from classroom.tokens import KINDS
from school.lesson_rooms import LocalLessonRooms
from signaling import appkeys, server, ws
from signaling.config import Config

from . import edge
from .nodes import RELAYED, relay_mark

SECRET_HEADER = "X-Kelian-Internal"
LOAD_EVERY = 1.0


def tell(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event} | fields), flush=True)


def config_from(raw: str) -> Config:
    fields = json.loads(raw)
    fields["webhook_urls"] = tuple(fields.get("webhook_urls") or ())
    return Config(**fields)


def internal_routes(secret: str) -> list[web.RouteDef]:
    def guarded(handler: Any) -> Any:
        async def check(request: web.Request) -> web.StreamResponse:
            sent = request.headers.get(SECRET_HEADER, "")
            if not hmac.compare_digest(sent.encode(), secret.encode()):
                return web.json_response({"error": "not the front"}, status=403)
            return cast(web.StreamResponse, await handler(request))

        return check

    def lesson_rooms(request: web.Request) -> LocalLessonRooms:
        return cast(LocalLessonRooms, request.app[appkeys.SCHOOLS].lesson_rooms)

    async def open_lessons(request: web.Request) -> web.Response:
        body = await request.json()
        here = lesson_rooms(request)
        opened = await here.open(list(body["lessons"]))
        rooms = here.rooms.rooms
        return web.json_response({"opened": opened, "open": [n for n in body["lessons"] if n in rooms]})

    async def switch(request: web.Request) -> web.Response:
        body = await request.json()
        done = await lesson_rooms(request).switch(
            str(body["mode"]), dict(body["event"]), set(body["lessons"]), set(body["schools"])
        )
        return web.json_response(dataclasses.asdict(done))

    async def drain(request: web.Request) -> web.Response:
        """The node is going away: every socket closes as on a shutdown, without "disconnected", so
        clients reconnect (to another node, the front having given the rooms up); then the rooms
        close, so that none waits here for a session that will resume elsewhere."""
        await ws.close_all(request.app)
        rooms = request.app[appkeys.ROOMS]
        for room in list(rooms.rooms.values()):
            await room.close("moved")
        return web.json_response({"rooms": len(rooms.rooms)})

    return [
        web.post("/internal/lessons/open", guarded(open_lessons)),
        web.post("/internal/lessons/switch", guarded(switch)),
        web.post("/internal/drain", guarded(drain)),
        web.get(edge.LINK, guarded(follow)),
    ]


async def follow(request: web.Request) -> web.StreamResponse:
    """An edge of one of this worker's rooms follows it (cluster.edge); the room opens for it if it
    is not open yet (its first viewer is the edge's)."""
    name = request.match_info["room"]
    kind = request.query.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise web.HTTPBadRequest(text=f"kind: one of {', '.join(KINDS)}\n")
    rooms = request.app[appkeys.ROOMS]
    room = rooms.rooms.get(name)
    if room is None or isinstance(room, edge.EdgeRoom):
        if room is not None:  # an edge here of a room now held here: the front placed it anew
            room.shut()
        room = await rooms.open(name, kind)
    return await edge.follow_origin(request, room, request.app[appkeys.NODE])


def socket_hook(secret: str, edges: edge.Edges) -> appkeys.SocketHook:
    """The front's word on a socket (with the cluster's secret): a viewer to serve as an edge of a
    room held elsewhere, or a session whose media an edge serves."""

    async def hook(request: web.Request) -> web.WebSocketResponse | None:
        sent = request.headers.get(SECRET_HEADER, "")
        if not sent or not hmac.compare_digest(sent.encode(), secret.encode()):
            return None
        origin = request.headers.get(edge.ORIGIN)
        if origin:
            return await edge.serve_viewer(request, edges, origin)
        if request.headers.get(edge.EDGE):
            request[ws.MEDIA_ELSEWHERE] = True
        return None

    return hook


async def run() -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # the front stops us
    config = config_from(os.environ["KELIAN_WORKER"])
    secret = os.environ["KELIAN_INTERNAL_SECRET"]

    def extend(app: web.Application) -> None:
        app.add_routes(internal_routes(secret))
        # one socket to the origin for each viewer it serves as an edge: no pool limit (aiohttp's 100)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        app.on_cleanup.append(lambda app: session.close())
        # the origin's front takes this worker's links and sockets as the cluster's own
        edges = edge.Edges(app[appkeys.ROOMS], session, {RELAYED: relay_mark(config.api_secret)})
        app[appkeys.SOCKET_HOOK] = socket_hook(secret, edges)
        rooms = app[appkeys.ROOMS]
        rooms.listeners.append(
            lambda event, **fields: (
                tell("closed", room=fields.get("room")) if event == "lesson_ended" else None
            )
        )

    runner, node = await server.start(config, extend)
    server.freeze_startup_heap()
    rooms = runner.app[appkeys.ROOMS]
    tell("ready", http=server.bound_port(runner), media=node.port)
    front = os.getppid()
    try:
        while os.getppid() == front:  # a front killed outright takes its workers with it
            await asyncio.sleep(LOAD_EVERY)
            try:
                tell("load", transports=len(node.transports), rooms=sorted(rooms.rooms))
            except BrokenPipeError:  # the same: nobody reads us any more
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (nothing is written to it but at exit)
                break
    finally:
        await server.stop(runner, node)


def main() -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
