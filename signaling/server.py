"""The kelian process: the media Node and the HTTP/WebSocket signaling server on one event loop."""

from __future__ import annotations

import asyncio
import hmac
import logging
import weakref
from pathlib import Path

from aiohttp import hdrs, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sfu.node import Node

from . import admin, appkeys, devtoken, logs, metrics, openapi, whip, ws
from .config import Config
from .room import Rooms

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


def create_app(config: Config, node: Node) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024, middlewares=[admin.json_errors])
    rooms = Rooms(node, config.max_audio_streams)
    app[appkeys.CONFIG] = config
    app[appkeys.NODE] = node
    app[appkeys.ROOMS] = rooms
    app[appkeys.REGISTRY] = metrics.registry(node, rooms)
    app[appkeys.SOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(ws.close_all)
    app.add_routes(
        [
            web.get("/", index),
            web.get("/healthz", healthz),
            web.get("/metrics", metrics_endpoint),
            web.get("/ws", ws.websocket),
            *whip.routes(),
            *admin.routes(),
            *openapi.routes(),
            *devtoken.routes(),
        ]
    )
    if (WEB / "static").is_dir():
        app.router.add_static("/static", WEB / "static")
    return app


async def start(config: Config) -> tuple[web.AppRunner, Node]:
    """Start the media port and the HTTP server; the caller stops both with `stop`."""
    node = Node(
        host=config.media_host,
        port=config.media_port,
        announced_address=config.candidate_address,
        max_bitrate=config.max_bitrate,
    )
    await node.start()
    logs.quiet_bad_requests()
    runner = web.AppRunner(create_app(config, node), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.http_host, config.http_port)
    await site.start()
    log.info("signaling on http://%s:%d", config.http_host, config.http_port)
    return runner, node


async def stop(runner: web.AppRunner, node: Node) -> None:
    """Sockets first (clients hear 1001 and go elsewhere), then media: the reverse would tell each
    client its transports closed, and it would try to rejoin this node on its way out."""
    await runner.cleanup()
    await node.stop()


async def serve(config: Config) -> None:
    runner, node = await start(config)
    try:
        await asyncio.Event().wait()
    finally:
        await stop(runner, node)
