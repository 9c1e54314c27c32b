"""The front's relay to a worker: HTTP requests passed on as they are, WebSockets joined end to end.

Written here rather than taken from a reverse proxy (nginx, Envoy) because the route depends on
what only kelian can read: the room in a join message's token. Everything else passes untouched:
methods, bodies, headers (but hop-by-hop ones), several headers of one name (WHIP's Link), statuses,
and the WebSocket's subprotocol, frames and close code.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from signaling.admin import error_response
from signaling.ws import MAX_MESSAGE, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
FORWARDED_FOR = "X-Forwarded-For"


def _headers(source: CIMultiDict[str] | aiohttp.typedefs.LooseHeaders) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in CIMultiDict(source).items() if k.lower() not in HOP_BY_HOP)


async def forward(
    request: web.Request, to: str, session: aiohttp.ClientSession, extra: dict[str, str] | None = None
) -> web.Response:
    """`request` as the server at `to` (a worker, or another node's front) answers it."""
    headers = _headers(request.headers)
    headers[FORWARDED_FOR] = request.remote or ""
    headers.update(extra or {})
    body = await request.read()
    try:
        async with session.request(
            request.method,
            to + request.rel_url.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as answer:
            data = await answer.read()
            return web.Response(status=answer.status, body=data, headers=_headers(answer.headers))
    except (aiohttp.ClientError, OSError):  # the worker died under it: it is being replaced
        message = "the room's worker or node is restarting: try again"
        return error_response(503, "unavailable", message, {"Retry-After": "1"})


async def relay(
    client: web.WebSocketResponse,
    first: aiohttp.WSMessage | None,
    to: str,
    request: web.Request,
    session: aiohttp.ClientSession,
    extra: dict[str, str] | None = None,
    path: str = "/ws",
) -> None:
    """Join `client` (which sent `first`, if anything yet) to a WebSocket of its own at `path` of
    `to` (a worker, or another node's front), until either ends."""
    protocols = (client.ws_protocol,) if client.ws_protocol else ()
    headers = {FORWARDED_FOR: request.remote or ""} | (extra or {})
    try:
        upstream = await session.ws_connect(
            to + path + (f"?{request.query_string}" if request.query_string else ""),
            protocols=protocols,
            headers=headers,
            max_msg_size=MAX_MESSAGE,
            autoping=True,
        )
    except (aiohttp.ClientError, OSError):
        await client.close(code=1013, message=b"try again")  # its worker is restarting
        return
    async with upstream:
        if first is not None:
            await pass_frame(first, upstream)
        down = asyncio.create_task(_pump(upstream, client))
        up = asyncio.create_task(_pump(client, upstream))
        done, pending = await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        code = (upstream.close_code if down in done else client.close_code) or 1000
        if not client.closed:
            await client.close(code=code)
        if not upstream.closed:
            await upstream.close(code=code)


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return
        await pass_frame(message, sink)


async def pass_frame(
    message: aiohttp.WSMessage, sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse
) -> None:
    if sink.closed:
        return
    with contextlib.suppress(ConnectionError):  # the other end went while this was on its way
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)


def client_socket() -> web.WebSocketResponse:
    """The client's end, as the worker's own (signaling.ws): same subprotocols, size and heartbeat."""
    return web.WebSocketResponse(
        protocols=(SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK), max_msg_size=MAX_MESSAGE, heartbeat=20.0
    )
