"""The front: one HTTP/WebSocket address before every worker of this machine.

    kelian serve --workers N

Each worker (cluster.worker) is a whole kelian server with its own event loop and UDP media port;
a room lives whole on one of them, placed on the least loaded when first needed (cluster.placement).
The front holds what is not a room's: the organisation and the switchover (school/), the library,
the pages; and it passes on what is a room's to the worker that holds it: a participant's WebSocket
(routed by the room in its join token), WHIP and WHEP (by the room in the path), the admin API's
room calls. Media never crosses the front: each worker announces its own media port in its SDP.

A switchover is done here once (modes written, audited, one webhook) and its room side reaches
every worker at once (cluster.lesson_rooms). /metrics gathers every worker's figures under a
``worker`` label; /healthz says how each worker is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import secrets
import socket
import weakref
from collections.abc import Coroutine, Iterator
from typing import Any, NamedTuple

import aiohttp
from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from redis.exceptions import RedisError

from classroom.limits import Refusals
from classroom.tokens import Claims, Role
from school.lesson_rooms import LessonRooms
from signaling import admin, admin_library, admin_school, appkeys, devtoken, openapi, server, ws
from signaling.config import Config
from signaling.limits import ConnectionGate
from signaling.metrics import LessonCollector, RefusalCollector
from signaling.ws import SUBPROTOCOL_MSGPACK, Codec, join_claims

from . import edge
from .lesson_rooms import NODE_OPEN, NODE_SWITCH, NodeLessonRooms, WorkerLessonRooms
from .nodes import RELAYED, NodeInfo, NodeRegistry, relay_mark
from .placement import Worker
from .proxy import client_socket, forward, relay
from .worker import SECRET_HEADER
from .workers import WorkerPool

log = logging.getLogger(__name__)

POOL = web.AppKey("pool", WorkerPool)
SESSION = web.AppKey("session", aiohttp.ClientSession)
HERE = web.AppKey("here", WorkerLessonRooms)
NODES = web.AppKey("nodes", NodeRegistry)
MARK = web.AppKey("relay_mark", str)
TASKS = web.AppKey("tasks", set[asyncio.Task[None]])
STOP = web.AppKey("stop", asyncio.Event)  # set: serve() returns (a drain with "exit")
REFUSALS = web.AppKey("refusals", Refusals)  # the front's own: connections it turned away
DRAIN_DEADLINE = 30.0  # seconds a drain waits for the rooms to move before it counts as done
ROOM = admin.PREFIX + "/rooms/{room}"


def create_front_app(
    config: Config, pool: WorkerPool, registry: NodeRegistry | None = None
) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024, middlewares=[admin.json_errors])
    app[appkeys.CONFIG] = config
    app[POOL] = pool
    app[TASKS] = set()
    app[appkeys.SOCKETS] = weakref.WeakSet()
    app[REFUSALS] = Refusals()
    app[STOP] = asyncio.Event()
    app[MARK] = relay_mark(config.api_secret)
    session = app[SESSION] = aiohttp.ClientSession(
        auto_decompress=False, connector=aiohttp.TCPConnector(limit=0)
    )
    here = app[HERE] = WorkerLessonRooms(pool, session)
    lesson_rooms: LessonRooms = here
    if registry is not None:
        nodes = app[NODES] = registry
        lesson_rooms = NodeLessonRooms(nodes, here, session, config.api_secret)
        pool.placement.on_release.append(
            lambda room: _background(app, nodes.release(room))  # the cluster may place it anew
        )
    schools, hooks = server.add_organisation(app, config, lambda store: lesson_rooms)
    figures = app[appkeys.REGISTRY] = CollectorRegistry()
    figures.register(LessonCollector(schools, hooks))
    figures.register(RefusalCollector(app[REFUSALS]))  # its own connection bounds
    ProcessCollector(registry=figures)

    async def close_session(app: web.Application) -> None:
        await session.close()

    app.on_cleanup.append(close_session)
    app.on_shutdown.append(ws.close_all)  # clients hear 1001 and reconnect, rather than hold the stop
    app.add_routes(
        [
            web.get("/", server.index),
            web.get("/console", server.console),
            web.get("/library", server.library_page),
            web.get("/healthz", healthz),
            web.get("/metrics", metrics),
            web.get("/ws", websocket),
            web.get(edge.LINK, edge_link),
            web.post("/{kind:whip|whep}/{room}", by_room),
            web.route("*", "/{kind:whip|whep}/{room}/{resource}", by_room),
            web.options("/{kind:whip|whep}/{room}", by_room),
            web.get(admin.PREFIX + "/rooms", list_rooms, allow_head=False),
            web.post(admin.PREFIX + "/rooms", create_room),
            web.route("*", ROOM, room_call),
            web.route("*", ROOM + "/{tail:.+}", room_call),
            web.post(admin.PREFIX + "/tokens", admin.create_token),
            web.post(admin.PREFIX + "/node/drain", drain),
            web.post(NODE_OPEN, node_open),
            web.post(NODE_SWITCH, node_switch),
            *admin_school.routes(),
            *admin_library.routes(),
            *openapi.routes(),
            *devtoken.routes(),
        ]
    )
    if (server.WEB / "static").is_dir():
        app.router.add_static("/static", server.WEB / "static")
    return app


# -- a room's calls, to its worker -----------------------------------------------------------------


class Route(NamedTuple):
    url: str  # a worker of this machine, or another node's front
    headers: dict[str, str]  # what that one needs to take it as the cluster's own
    node: NodeInfo | None = None  # the other node that holds the room, if another does


async def target(request: web.Request, room: str, create: bool) -> Route | None:
    """Where a call for `room` goes: this machine's worker that holds it (placed there now if
    `create`), or the front of the node that does (cluster.nodes), with the relay mark; None if no
    one holds it."""
    placement = request.app[POOL].placement
    registry = request.app.get(NODES)
    if registry is not None and not relayed(request):
        holder = await (registry.claim(room) if create else registry.locate(room))
        if holder is None:
            return None
        if holder.id != registry.node.id:
            return Route(holder.url, {RELAYED: request.app[MARK]}, holder)
    worker = placement.place(room) if create else placement.locate(room)
    return None if worker is None else Route(worker.url, {})


def relayed(request: web.Request) -> bool:
    """Sent by another node of the cluster, which found the room is here: serve it, never relay."""
    mark = request.headers.get(RELAYED, "")
    return hmac.compare_digest(mark.encode(), request.app[MARK].encode())


async def by_room(request: web.Request) -> web.Response:
    """WHIP and WHEP: a new session is placed with its room; an existing one is where its room is."""
    room = request.match_info["room"]
    if request.method == "OPTIONS":  # a browser's CORS preflight: the same answer from any worker
        return await forward(request, _any(request).url, request.app[SESSION])
    opening = request.method == "POST" and "resource" not in request.match_info
    to = await target(request, room, opening)
    if to is None:
        return web.Response(status=404, text=f"no session in room {room!r}\n")
    return await forward(request, to.url, request.app[SESSION], to.headers)


@admin.endpoint
async def room_call(request: web.Request) -> web.Response:
    to = await target(request, request.match_info["room"], create=False)
    if to is None:
        return admin.error_response(404, "not_found", f"no room {request.match_info['room']!r}")
    return await forward(request, to.url, request.app[SESSION], to.headers)


@admin.endpoint
async def create_room(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        name = admin.name_field(body["name"], "name")
    except (ValueError, KeyError, TypeError):
        return await forward(
            request, _any(request).url, request.app[SESSION]
        )  # the worker says what is wrong
    placement = request.app[POOL].placement
    existed = placement.locate(name)
    to = await target(request, name, create=True)
    assert to is not None  # placed now
    answer = await forward(request, to.url, request.app[SESSION], to.headers)
    worker = placement.locate(name)
    if answer.status >= 300 and existed is None and worker is not None:
        placement.release(name, worker)
    return answer


@admin.endpoint
async def drain(request: web.Request) -> web.Response:
    """Take this node out of service: no new room comes here, the rooms it holds are given up and
    their clients told to reconnect (they come back through any node, and the cluster places each
    room anew on a node not draining); with "exit", the node stops once its workers hold no room,
    or after "deadline" seconds."""
    body = await admin.json_object(request, {"deadline", "exit"}, required=set())
    deadline = body.get("deadline", DRAIN_DEADLINE)
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not 0 <= deadline <= 3600:
        raise admin.invalid("deadline is a number of seconds from 0 to 3600")
    leave = body.get("exit", False)
    if not isinstance(leave, bool):
        raise admin.invalid("exit is true or false")
    app = request.app
    placement = app[POOL].placement
    registry = app.get(NODES)
    rooms = sorted(placement.rooms)
    if registry is not None:
        await registry.drain(rooms)
    await asyncio.gather(*(_ask_worker(app, w, "/internal/drain") for w in placement.workers if w.alive))
    _background(app, _drained(app, float(deadline), leave))
    return web.json_response({"draining": True, "rooms": rooms}, status=202)


async def _ask_worker(app: web.Application, worker: Worker, path: str) -> None:
    headers = {SECRET_HEADER: app[POOL].secret}
    try:
        async with app[SESSION].post(worker.url + path, headers=headers) as answer:
            await answer.read()
    except (aiohttp.ClientError, OSError):
        pass  # a worker gone already holds nothing


async def _drained(app: web.Application, deadline: float, leave: bool) -> None:
    """Wait until no worker here holds a room (or the deadline), then stop if asked."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    while app[POOL].placement.rooms and loop.time() < until:
        await asyncio.sleep(0.2)
    log.info("drained: %d rooms left", len(app[POOL].placement.rooms))
    if leave:
        app[STOP].set()


async def node_open(request: web.Request) -> web.Response:
    """Another node's switchover: open these lessons' rooms on this node's workers."""
    if not relayed(request):
        raise web.HTTPForbidden(text="for the cluster's nodes only\n")
    body = await request.json()
    return web.json_response({"opened": await request.app[HERE].open(list(body["lessons"]))})


async def node_switch(request: web.Request) -> web.Response:
    """Another node's switchover: tell this node's lesson rooms their new mode."""
    if not relayed(request):
        raise web.HTTPForbidden(text="for the cluster's nodes only\n")
    body = await request.json()
    done = await request.app[HERE].switch(
        str(body["mode"]), dict(body["event"]), set(body["lessons"]), set(body["schools"])
    )
    return web.json_response(dataclasses.asdict(done))


def _background(app: web.Application, work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    tasks = app[TASKS]
    tasks.add(task)
    task.add_done_callback(tasks.discard)


@admin.endpoint
async def list_rooms(request: web.Request) -> web.Response:
    answers = await _everyone(request, "GET", request.rel_url.path_qs)
    rooms = [room for answer in answers for room in answer.get("rooms", [])]
    return web.json_response({"rooms": rooms})


def _any(request: web.Request) -> Worker:
    try:
        return request.app[POOL].placement.least_loaded()
    except LookupError:
        raise web.HTTPServiceUnavailable(text="no worker is running\n") from None


async def _everyone(request: web.Request, method: str, path: str) -> list[dict[str, Any]]:
    session = request.app[SESSION]
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization",)}

    async def ask(worker: Worker) -> dict[str, Any]:
        try:
            async with session.request(method, worker.url + path, headers=headers) as answer:
                result = await answer.json()
        except (aiohttp.ClientError, OSError, ValueError):
            return {}
        return result if isinstance(result, dict) else {}

    live = [w for w in request.app[POOL].placement.workers if w.alive]
    return list(await asyncio.gather(*(ask(w) for w in live)))


# -- participants' sockets ------------------------------------------------------------------------


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Read the join, place its room, and join the socket to one on the room's worker (or, for a
    viewer of a busy room, on an edge: cluster.edge)."""
    config = request.app[appkeys.CONFIG]
    client = client_socket()
    await client.prepare(request)
    request.app[appkeys.SOCKETS].add(client)  # closed on shutdown (signaling.ws.close_all)
    try:
        first = await client.receive(timeout=config.join_timeout)
    except TimeoutError:  # as a worker answers a socket that never joins (signaling.ws)
        codec = Codec(client.ws_protocol == SUBPROTOCOL_MSGPACK)
        await codec.send(client, {"type": "error", "code": "join_timeout", "message": "no join in time"})
        await codec.send(client, {"type": "disconnected", "reason": "join_timeout"})
        await client.close(code=4000, message=b"join_timeout")
        return client
    if first.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return client
    claims = _claims_of(first, client, config)
    try:
        to = await _socket_target(request, claims)
    except (LookupError, web.HTTPServiceUnavailable, OSError, RedisError):
        to = None
    if to is None:
        await client.close(code=1013, message=b"try again")
        return client
    await relay(client, first, to.url, request, request.app[SESSION], to.headers)
    return client


async def _socket_target(request: web.Request, claims: Claims | None) -> Route | None:
    """Where a participant's socket goes: the worker (or node) of its room; a viewer of a room whose
    worker or node is busy (``spread_after`` transports), to the least-loaded worker here, an edge
    of the room; a session an edge brings to its origin, to the room's worker, marked as such."""
    app = request.app
    if claims is None:
        return Route(_any(request).url, {})
    to = await target(request, claims.room, create=True)
    secret = {SECRET_HEADER: app[POOL].secret}
    if to is not None and relayed(request) and request.headers.get(edge.EDGE):
        return Route(to.url, secret | {edge.EDGE: "1"})
    if to is None or claims.role is not Role.VIEWER:
        return to
    after = app[appkeys.CONFIG].spread_after
    placement = app[POOL].placement
    if to.node is not None:  # another node holds the room
        if to.node.load < after:
            return to
        return Route(placement.least_loaded().url, secret | {edge.ORIGIN: to.node.url})
    worker = placement.spread(claims.room, after)
    if worker is None:
        return to
    host, port = request.transport.get_extra_info("sockname")[:2] if request.transport else ("127.0.0.1", 0)
    here = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return Route(worker.url, secret | {edge.ORIGIN: here})


async def edge_link(request: web.Request) -> web.StreamResponse:
    """An edge's link to a room of this node (cluster.edge), from a worker here or another node's."""
    if not relayed(request):
        raise web.HTTPForbidden(text="for the cluster's nodes only\n")
    worker = request.app[POOL].placement.place(request.match_info["room"])
    client = web.WebSocketResponse(heartbeat=20.0)
    await client.prepare(request)
    request.app[appkeys.SOCKETS].add(client)
    headers = {SECRET_HEADER: request.app[POOL].secret}
    await relay(client, None, worker.url, request, request.app[SESSION], headers, path=request.path)
    return client


def _claims_of(first: aiohttp.WSMessage, client: web.WebSocketResponse, config: Config) -> Claims | None:
    """What a join's token says, if it verifies here (the worker checks it again, and answers
    anything else itself: a room is placed only for a join that can open it)."""
    binary = client.ws_protocol == SUBPROTOCOL_MSGPACK
    try:
        return join_claims(Codec(binary).decode(first), config)
    except Exception:  # anything a join could hold: the worker answers it
        return None


# -- the machine's state --------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    workers = [
        {
            "worker": w.index,
            "alive": w.alive,
            "rooms": len(w.rooms),
            "transports": w.transports,
            "media": {"port": w.media_port},
        }
        for w in pool.placement.workers
    ]
    config = request.app[appkeys.CONFIG]
    ok = any(w.alive for w in pool.placement.workers)
    return web.json_response(
        {
            "status": "ok" if ok else "no worker",
            "dev": config.dev_credentials,
            "rooms": len(pool.placement.rooms),
            "transports": sum(w.transports for w in pool.placement.workers),
            "workers": workers,
        },
        status=200 if ok else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    """Every worker's figures and the front's, each sample labelled with its ``worker``."""
    unauthorized = await server.metrics_endpoint(request)  # the token check, and the front's own text
    if unauthorized.status != 200:
        return unauthorized
    assert isinstance(unauthorized.body, bytes)
    texts = {"front": unauthorized.body.decode()}
    session = request.app[SESSION]
    headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}

    async def scrape(worker: Worker) -> tuple[str, str]:
        try:
            async with session.get(worker.url + "/metrics", headers=headers) as answer:
                return str(worker.index), await answer.text() if answer.status == 200 else ""
        except (aiohttp.ClientError, OSError):
            return str(worker.index), ""

    live = [w for w in request.app[POOL].placement.workers if w.alive]
    texts.update(await asyncio.gather(*(scrape(w) for w in live)))
    registry = CollectorRegistry()
    registry.register(Gathered(texts))
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


class Gathered(Collector):
    """Metric families of several processes' exposition texts, merged by name, labelled by source."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for source, text in self.texts.items():
            for family in text_string_to_metric_families(text):
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type)
                merged.samples += [
                    Sample(s.name, s.labels | {"worker": source}, s.value, s.timestamp, s.exemplar)
                    for s in family.samples
                ]
        yield from families.values()


# -- running it -----------------------------------------------------------------------------------


async def start(config: Config, workers: int) -> tuple[web.AppRunner, WorkerPool]:
    pool = WorkerPool(config, workers)
    registry = None
    if config.redis_url:
        node = NodeInfo(f"{socket.gethostname()}-{secrets.token_hex(3)}", "")
        registry = NodeRegistry(
            config.redis_url,
            node,
            load=lambda: sum(w.transports for w in pool.placement.workers),
            held=lambda: sorted(pool.placement.rooms),
        )
    app = create_front_app(config, pool, registry)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()  # the database first: made (and in WAL mode) before the workers open it
    try:
        await pool.start()
        total = min(config.max_connections, server.descriptor_budget())
        gate = ConnectionGate(total, config.max_connections_per_address, app[REFUSALS])
        site = server.GatedSite(runner, config.http_host, config.http_port, gate)
        await site.start()
        if registry is not None:
            host = config.announced_address or config.candidate_address
            registry.node.url = config.node_url or f"http://{host}:{server.bound_port(runner)}"
            await registry.start()
    except BaseException:
        if registry is not None:
            await registry.stop()
        await pool.stop()
        await runner.cleanup()
        raise
    log.info("front on http://%s:%d, %d workers", config.http_host, server.bound_port(runner), workers)
    return runner, pool


async def stop(runner: web.AppRunner, pool: WorkerPool) -> None:
    app: web.Application = runner.app
    registry = app.get(NODES)
    if registry is not None:
        await registry.stop()  # out of the cluster first: no node sends anything more here
    tasks = app[TASKS]
    await runner.cleanup()
    await pool.stop()
    for task in list(tasks):
        task.cancel()


async def serve(config: Config, workers: int) -> None:
    runner, pool = await start(config, workers)
    server.freeze_startup_heap()  # its relayed messages wait for a full collection as media would
    try:
        await runner.app[STOP].wait()
    finally:
        await stop(runner, pool)
