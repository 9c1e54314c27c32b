"""The kelian process: the media Node and the HTTP/WebSocket signaling server on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import resource
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from classroom.limits import RoomLimits
from classroom.rooms import Rooms
from library.library import Library
from library.store import LibraryStore
from recorder.recordings import Recordings
from school.lesson_rooms import LessonRooms, LocalLessonRooms
from school.redis_store import organisation_store
from school.schools import Schools
from school.store import Store
from sfu.node import Node

from . import (
    admin,
    admin_lesson,
    admin_library,
    admin_school,
    appkeys,
    devtoken,
    logs,
    metrics,
    openapi,
    whip,
    ws,
)
from .config import Config
from .limits import ConnectionGate
from .loop_watch import LoopWatch
from .webhooks import Webhooks

log = logging.getLogger(__name__)
WEB = Path(__file__).parent / "web"


async def healthz(request: web.Request) -> web.Response:
    node: Node = request.app[appkeys.NODE]
    rooms: Rooms = request.app[appkeys.ROOMS]
    return web.json_response(
        {
            "status": "ok",
            "dev": request.app[appkeys.CONFIG].dev_credentials,
            "rooms": len(rooms.rooms),
            "transports": len(node.transports),
            "media": {"address": node.announced_address, "port": node.port},
        }
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus text; behind a bearer token when KELIAN_METRICS_TOKEN is set, since room and
    participant counts say what a school is doing."""
    token = request.app[appkeys.CONFIG].metrics_token
    if token is not None:
        sent = request.headers.get(hdrs.AUTHORIZATION, "").removeprefix("Bearer ").strip().encode()
        if not hmac.compare_digest(sent, token.encode()):
            return web.Response(
                status=401,
                text="GET /metrics needs Authorization: Bearer <KELIAN_METRICS_TOKEN>\n",
                headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="kelian-metrics"'},
            )
    body = generate_latest(request.app[appkeys.REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB / "index.html")


async def console(request: web.Request) -> web.FileResponse:
    """The switchover console: a static page; what it shows comes from the admin API, under the
    key and secret the administrator types, so the page itself needs no authentication."""
    return web.FileResponse(WEB / "console.html")


async def library_page(request: web.Request) -> web.FileResponse:
    """The air-classroom library: a static page like the console. Students, teachers and TVs come
    with a join token in the link and play through /library/...; reviewers sign in with the API key
    and secret and call the admin API, so the page itself needs no authentication."""
    return web.FileResponse(WEB / "library.html")


def add_organisation(
    app: web.Application, config: Config, lesson_rooms: Callable[[Store], LessonRooms]
) -> tuple[Schools, Webhooks]:
    """What a server and a cluster's front both hold: the organisation (SQLite, or Redis with
    --redis-url) with the lessons' rooms as `lesson_rooms` gives them, the webhooks (a switchover is
    one) and the library; opened as the app starts, closed as it ends (after the clean-ups added
    before this call)."""
    store = organisation_store(config.database, config.redis_url)
    schools = app[appkeys.SCHOOLS] = Schools(store, lesson_rooms(store), config.api_key, config.api_secret)
    hooks = app[appkeys.WEBHOOKS] = Webhooks(config.webhook_urls, config.api_secret)

    async def switched(audit: dict[str, Any]) -> None:
        hooks.emit("switchover", **audit)

    schools.on_switch.append(switched)
    shelves = LibraryStore(config.database)
    library = app[appkeys.LIBRARY] = Library(shelves, config.library, config.recordings)

    async def open_state(app: web.Application) -> None:
        await store.open()
        await shelves.open()
        await hooks.start()

    async def close_state(app: web.Application) -> None:
        await library.close()
        await shelves.close()
        await hooks.stop()
        await store.close()

    app.on_startup.append(open_state)
    app.on_cleanup.append(close_state)
    return schools, hooks


def create_app(config: Config, node: Node) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024, middlewares=[admin.json_errors])
    limits = RoomLimits(max_participants=config.max_participants, max_tracks=config.max_tracks)
    rooms = Rooms(node, config.max_audio_streams, limits)
    app[appkeys.CONFIG] = config
    app[appkeys.NODE] = node
    app[appkeys.ROOMS] = rooms
    app[appkeys.SOCKETS] = weakref.WeakSet()
    recordings = app[appkeys.RECORDINGS] = Recordings(rooms, config.recordings, config.auto_record)

    async def stop_recordings(app: web.Application) -> None:
        await recordings.stop_all()  # before the library closes: a finished recording is filed there

    app.on_cleanup.append(stop_recordings)
    schools, hooks = add_organisation(app, config, lambda store: LocalLessonRooms(rooms, store))
    rooms.listeners.append(hooks.emit)
    app[appkeys.REGISTRY] = metrics.registry(node, rooms, schools, hooks)
    watch = LoopWatch(app[appkeys.REGISTRY])
    app.on_startup.append(watch.start)
    app.on_cleanup.append(watch.stop)
    app.on_shutdown.append(ws.close_all)
    app.add_routes(
        [
            web.get("/", index),
            web.get("/console", console),
            web.get("/library", library_page),
            web.get("/healthz", healthz),
            web.get("/metrics", metrics_endpoint),
            web.get("/ws", ws.websocket),
            *whip.routes(),
            *admin.routes(),
            *admin_lesson.routes(),
            *admin_school.routes(),
            *admin_library.routes(),
            *openapi.routes(),
            *devtoken.routes(),
        ]
    )
    if (WEB / "static").is_dir():
        app.router.add_static("/static", WEB / "static")
    return app


async def start(
    config: Config, extend: Callable[[web.Application], None] | None = None
) -> tuple[web.AppRunner, Node]:
    """Start the media port and the HTTP server; the caller stops both with `stop`. `extend` adds to
    the app before it starts (a worker's internal routes, cluster.worker)."""
    node = Node(
        host=config.media_host,
        port=config.media_port,
        announced_address=config.candidate_address,
        max_bitrate=config.max_bitrate,
    )
    await node.start()
    logs.quiet_bad_requests()
    app = create_app(config, node)
    if extend is not None:
        extend(app)
    runner = web.AppRunner(app, access_log=None)
    try:
        await runner.setup()  # opens the stores: a database or Redis that cannot be had fails here
        total = min(config.max_connections, descriptor_budget())
        gate = ConnectionGate(total, config.max_connections_per_address, app[appkeys.ROOMS].refusals)
        site = GatedSite(runner, config.http_host, config.http_port, gate)
        await site.start()
    except BaseException:
        await runner.cleanup()
        await node.stop()  # nothing half-started is left behind
        raise
    log.info("signaling on http://%s:%d", config.http_host, bound_port(runner))
    return runner, node


def bound_port(runner: web.AppRunner) -> int:
    """The HTTP port the server listens on (the one the system chose, for port 0)."""
    return int(runner.addresses[0][1])


class GatedSite(web.BaseSite):
    """aiohttp's TCPSite with the ConnectionGate in front of its protocol factory."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, gate: ConnectionGate) -> None:
        super().__init__(runner)
        self._host, self._port, self._gate = host, port, gate

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # set up by runner.setup()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._gate.wrap(server), self._host, self._port, backlog=self._backlog
        )


def descriptor_budget(reserve: int = 512) -> int:
    """Connections the process can hold: its file-descriptor limit (raised to the hard limit) less a
    reserve for media sockets, files and the event loop, so a flood never takes the last one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return max(16, soft - reserve)


async def stop(runner: web.AppRunner, node: Node) -> None:
    """Sockets first (clients hear 1001 and go elsewhere), then media: the reverse would tell each
    client its transports closed, and it would try to rejoin this node on its way out."""
    await runner.cleanup()
    await node.stop()


def freeze_startup_heap() -> None:
    """Put what is alive once the server has started (the imported media stack, some 80,000 objects)
    out of the garbage collector's reach. Every full collection walked all of it: 65 ms on an idle
    core, 300 ms on a busy one, and every packet in flight waited, a freeze each subscriber saw.
    What is made later (sessions, transports) is collected as before. Called by the process that
    serves, not by `start`: a test runner's heap is not the server's to freeze."""
    gc.collect()
    gc.freeze()


async def serve(config: Config) -> None:
    runner, node = await start(config)
    freeze_startup_heap()
    try:
        await asyncio.Event().wait()
    finally:
        await stop(runner, node)
