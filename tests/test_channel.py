"""The participant WebSocket channel (signaling/channel.py) shared by the aiortc client and the light
peer: replies matched by id, events in order, and nothing the server sends ends the session."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import aiohttp
import msgpack
import pytest

from signaling.channel import Channel, RequestError, ws_url


class FakeSocket:
    """Frames queued by the test as if from the server; what the channel sends, decoded."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[aiohttp.WSMessage | None] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    def __aiter__(self) -> FakeSocket:
        return self

    async def __anext__(self) -> aiohttp.WSMessage:
        message = await self.incoming.get()
        if message is None:
            raise StopAsyncIteration
        return message

    def text(self, data: str) -> None:
        self.incoming.put_nowait(aiohttp.WSMessage(aiohttp.WSMsgType.TEXT, data, None))

    def binary(self, data: bytes) -> None:
        self.incoming.put_nowait(aiohttp.WSMessage(aiohttp.WSMsgType.BINARY, data, None))

    async def send_str(self, data: str) -> None:
        self.sent.append(json.loads(data))

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(msgpack.unpackb(data, raw=False))

    async def close(self) -> None:
        self.closed = True
        self.incoming.put_nowait(None)


def open_channel(binary: bool = False) -> tuple[Channel, FakeSocket, list[dict[str, Any]]]:
    socket = FakeSocket()
    events: list[dict[str, Any]] = []

    async def on_event(message: dict[str, Any]) -> None:
        if message["type"] == "boom":
            raise KeyError("a handler bug")
        events.append(message)

    channel = Channel(cast(aiohttp.ClientWebSocketResponse, socket), on_event, binary=binary)
    return channel, socket, events


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_ws_url() -> None:
    assert ws_url("http://127.0.0.1:7880/") == "ws://127.0.0.1:7880/ws"
    assert ws_url("https://example.test") == "wss://example.test/ws"


async def test_replies_resolve_requests_and_events_come_in_order() -> None:
    channel, socket, events = open_channel()
    request = asyncio.create_task(channel.request({"type": "ping"}))
    await settle()
    assert socket.sent == [{"type": "ping", "id": 1}]
    socket.text('{"type":"participant_joined","participant":{}}')
    socket.text('{"type":"pong","id":1}')
    assert await request == {"type": "pong", "id": 1}
    assert events == [{"type": "participant_joined", "participant": {}}]
    socket.text('{"type":"pong","id":1}')  # a reply nobody waits for any more is an event
    await settle()
    assert events[-1] == {"type": "pong", "id": 1}
    await channel.close()


async def test_an_error_reply_raises_with_its_code_and_message() -> None:
    channel, socket, _ = open_channel()
    request = asyncio.create_task(channel.request({"type": "mute", "track": "TR_9"}))
    await settle()
    socket.text('{"type":"error","code":"not_found","message":"no track","id":1}')
    with pytest.raises(RequestError) as refused:
        await request
    assert (refused.value.code, refused.value.message) == ("not_found", "no track")
    await channel.close()


async def test_bad_frames_and_failing_handlers_are_counted_not_fatal() -> None:
    channel, socket, events = open_channel()
    for junk in ("not json", "[1, 2]", '{"no":"type"}', '{"type":7}', '{"type":"boom"}'):
        socket.text(junk)
    socket.binary(b"\xc1")  # never valid msgpack
    socket.text('{"type":"still_reading"}')
    await settle()
    assert channel.bad_messages == 6
    assert events == [{"type": "still_reading"}]
    await channel.close()


async def test_msgpack_framing() -> None:
    channel, socket, _ = open_channel(binary=True)
    request = asyncio.create_task(channel.request({"type": "ping"}))
    await settle()
    assert socket.sent == [{"type": "ping", "id": 1}]
    socket.binary(msgpack.packb({"type": "pong", "id": 1}))
    assert await request == {"type": "pong", "id": 1}
    await channel.close()


async def test_a_closed_socket_fails_the_waiting_requests() -> None:
    channel, socket, _ = open_channel()
    request = asyncio.create_task(channel.request({"type": "ping"}))
    await settle()
    socket.incoming.put_nowait(None)  # the server went away
    with pytest.raises(ConnectionError):
        await request
    await channel.close()
    assert socket.closed and channel.closed
    with pytest.raises(ConnectionError):
        await channel.send({"type": "leave"})
