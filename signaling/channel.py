"""The client end of a participant's WebSocket: requests with ids and their replies, the rest events.

The aiortc client (signaling/client.py) and the light load-test peer (loadtest/peer.py) speak the
same protocol (docs/protocol.md): a request carries an `id` that its reply carries back, an `error`
reply refuses it, and everything else the server sends is an event, which may arrive between a
request and its reply. That matching, the framing (JSON, or msgpack with `binary`) and the rule that
no message the server sends may end the session live here once, for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgpack

log = logging.getLogger(__name__)

HEARTBEAT = 20.0  # seconds between WebSocket pings, well under any proxy's idle timeout
Message = dict[str, Any]
EventHandler = Callable[[Message], Awaitable[None]]


class RequestError(Exception):
    """The server refused a request (an `error` reply), or what it sent cannot be used."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def ws_url(url: str) -> str:
    """The participant WebSocket of a server given by its HTTP(S) base URL."""
    return url.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"


class Channel:
    """One open participant WebSocket and the task that reads it.

    Replies resolve the request that waits for them; every other message goes to `on_event`, awaited
    in order, one at a time. Frames that are not a message (bad JSON or msgpack, not an object, no
    `type`) and handlers that raise are counted in `bad_messages` and skipped.
    """

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        on_event: EventHandler,
        *,
        binary: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.on_event = on_event
        self.on_close = on_close  # the socket ended, and not by close(): the network or the server
        self.binary = binary
        self._closing = False
        self.bad_messages = 0
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls,
        session: aiohttp.ClientSession,
        url: str,
        on_event: EventHandler,
        *,
        binary: bool = False,
        timeout: float = 10.0,
        on_close: Callable[[], None] | None = None,
    ) -> Channel:
        """Connect to the server at HTTP base `url` with the kelian subprotocol and start reading."""
        protocol = "kelian.v1.msgpack" if binary else "kelian.v1.json"
        ws = await asyncio.wait_for(
            session.ws_connect(ws_url(url), protocols=(protocol,), heartbeat=HEARTBEAT), timeout
        )
        return cls(ws, on_event, binary=binary, on_close=on_close)

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def request(self, message: Message, timeout: float = 10.0) -> Message:
        """Send `message` with a fresh id and wait for its reply; RequestError if it is an error."""
        request_id = next(self._ids)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.send(message | {"id": request_id})
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)
        if reply.get("type") == "error":
            raise RequestError(str(reply.get("code", "error")), str(reply.get("message", "")))
        return reply

    async def send(self, message: Message) -> None:
        """Send without waiting for anything back (answers, leave, and requests' own frames)."""
        if self._ws.closed:
            raise ConnectionError("signaling is not connected")
        if self.binary:
            await self._ws.send_bytes(msgpack.packb(message, use_bin_type=True))
        else:
            await self._ws.send_str(json.dumps(message, separators=(",", ":")))

    async def close(self, timeout: float = 2.0) -> None:
        """Close the socket (waiting at most `timeout` for the server) and stop reading."""
        self._closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), timeout)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader

    def _decode(self, msg: aiohttp.WSMessage) -> Message | None:
        try:
            if msg.type == aiohttp.WSMsgType.TEXT:
                message = json.loads(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                message = msgpack.unpackb(msg.data, raw=False)
            else:
                return None
        except Exception:  # msgpack raises several types of its own for bad input
            return None
        if isinstance(message, dict) and isinstance(message.get("type"), str):
            return message
        return None

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
                message = self._decode(msg)
                if message is None:
                    self.bad_messages += 1
                    continue
                request_id = message.get("id")
                future = self._pending.get(request_id) if isinstance(request_id, int) else None
                if future is not None:
                    if not future.done():
                        future.set_result(message)
                    continue
                try:
                    await self.on_event(message)
                except Exception:  # a message we cannot use must not end the session
                    self.bad_messages += 1
                    log.warning("signaling message %r not handled", message["type"], exc_info=True)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("signaling connection closed"))
            if self.on_close is not None and not self._closing:
                self.on_close()
