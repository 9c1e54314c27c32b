"""The bounds one client meets before it can hurt anyone else: connections per address and in all, a
join deadline, message and publish rates, tracks per participant, participants per room, and a send
queue after which a client that does not read is cut off instead of waited for."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from kelian_server import Server, eventually, running_server
from test_operations import scrape

from classroom.limits import Refusals, TokenBucket
from signaling.client import ClientError
from signaling.limits import ConnectionGate
from signaling.media import audio_track, video_track


@asynccontextmanager
async def server(**settings: Any) -> AsyncIterator[Server]:
    async with running_server("127.0.0.1", **settings) as instance:
        yield instance


async def ws(url: str, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(url.replace("http", "ws") + "/ws")


async def reply(socket_: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    return json.loads((await socket_.receive(timeout=5)).data)


def test_the_gate_counts_per_address_and_in_all() -> None:
    refusals = Refusals()
    gate = ConnectionGate(total=3, per_address=2, refusals=refusals)
    assert gate.admit("192.0.2.1") and gate.admit("192.0.2.1")
    assert not gate.admit("192.0.2.1"), "a third from one address"
    assert gate.admit("192.0.2.2")
    assert not gate.admit("192.0.2.3"), "a fourth in all"
    gate.release("192.0.2.1")
    assert gate.admit("192.0.2.3") and gate.count == 3
    assert refusals == {"address_limit": 1, "connection_limit": 1}


def test_a_token_bucket_refills_at_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("classroom.limits.time.monotonic", lambda: clock[0])
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock[0] += 1.0
    assert [bucket.take() for _ in range(3)] == [True, True, False]


async def idle_connection(port: int, source: str) -> socket.socket:
    """A TCP connection that sends nothing, from `source` (any 127.x.y.z is this machine)."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def refused(sock: socket.socket) -> bool:
    """Whether the server dropped the connection at once (reset or closed, without a byte)."""
    try:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 10), 5)
    except ConnectionResetError:
        return True
    return data == b""


async def test_idle_connections_are_bounded_per_address_and_in_all() -> None:
    async with server(max_connections=30, max_connections_per_address=20) as kelian:
        port = int(kelian.url.rsplit(":", 1)[1])
        flood = [await idle_connection(port, "127.0.0.2") for _ in range(20)]
        extra = await idle_connection(port, "127.0.0.2")
        assert await refused(extra), "the 21st from one address is refused at once"
        async with aiohttp.ClientSession() as http, http.get(kelian.url + "/healthz") as r:
            assert r.status == 200, "others still get in"
        more = [await idle_connection(port, f"127.0.1.{i}") for i in range(10)]
        late = await idle_connection(port, "127.0.2.1")
        assert await refused(late), "over the total, anyone is refused"
        for sock in [*flood, *more, extra, late]:
            sock.close()
        assert await eventually(lambda: kelian.rooms.refusals["connection_limit"] >= 1)  # type: ignore[attr-defined]
        values = await scrape(kelian.url)
        assert values['kelian_refused_total{reason="address_limit"}'] >= 1
        assert values['kelian_refused_total{reason="connection_limit"}'] >= 1


async def test_a_socket_that_does_not_join_is_closed() -> None:
    async with server(join_timeout=1.0) as kelian, aiohttp.ClientSession() as http:
        idle = await ws(kelian.url, http)
        error = await reply(idle)
        assert error == {"type": "error", "code": "join_timeout", "message": "no join in time"}
        assert (await reply(idle)) == {"type": "disconnected", "reason": "join_timeout"}
        assert (await idle.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
        joined = await ws(kelian.url, http)
        await joined.send_json({"type": "join", "token": kelian.token("alice")})
        assert (await reply(joined))["type"] == "joined"
        await asyncio.sleep(1.5)
        await joined.send_json({"type": "ping", "id": "p"})
        while (answer := await reply(joined)).get("id") != "p":
            assert answer["type"] == "participant_count"
        assert answer["type"] == "pong", "a joined socket has no deadline"


async def test_a_message_flood_is_refused_and_then_cut_off() -> None:
    async with server(message_rate=5, message_burst=10) as kelian, aiohttp.ClientSession() as http:
        flooder = await ws(kelian.url, http)
        for _ in range(50):
            await flooder.send_str('{"type": "ping"}')
        answers = [await reply(flooder) for _ in range(11)]
        assert [a["type"] for a in answers].count("pong") == 10
        assert {"type": "error", "code": "rate_limited"}.items() <= answers[-1].items()
        await asyncio.sleep(0.5)
        await flooder.send_str('{"type": "ping"}')
        assert (await reply(flooder))["type"] == "pong", "a pause earns messages back"
        for _ in range(1100):  # not slowing down: past a thousand refusals in a row it is cut off
            await flooder.send_str('{"type": "ping"}')
        seen = []
        for _ in range(50):
            message = await flooder.receive(timeout=5)
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            seen.append(json.loads(message.data))
        assert {"type": "disconnected", "reason": "rate_limited"} in seen
        assert kelian.rooms.refusals["rate_limited"] >= 1000  # type: ignore[attr-defined]


async def test_publishing_in_a_loop_is_rate_limited() -> None:
    async with server() as kelian:
        client = kelian.client("student")
        await client.connect()
        try:
            codes = []
            for _ in range(30):
                try:
                    await client.request({"type": "publish", "sdp": "v=0\r\nnot an offer"})
                except ClientError as exc:
                    codes.append(exc.code)
            assert codes[:20] == ["bad_sdp"] * 20 and set(codes[20:]) == {"rate_limited"}
        finally:
            await client.close()


async def test_tracks_per_participant_and_participants_per_room() -> None:
    async with server(max_tracks=2, max_participants=2) as kelian:
        pc = RTCPeerConnection()
        for track in (video_track(), audio_track(), audio_track()):
            pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        box = kelian.client("box", "classroom")
        await box.connect()
        try:
            with pytest.raises(ClientError) as too_many:
                await box.request({"type": "publish", "sdp": pc.localDescription.sdp})
            assert too_many.value.code == "too_many_tracks" and "at most 2" in too_many.value.message
            room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
            assert not room.router.producers and room.find("box")[0].publisher is None, "nothing half-made"
            await box.publish(video_track(), audio_track())
            second = kelian.client("student")
            await second.connect()
            third = kelian.client("another")
            with pytest.raises(ClientError) as full:
                await third.connect()
            assert full.value.code == "room_full"
            await third.close()
            await second.close()
        finally:
            await box.close()
            await pc.close()


class SilentSocket:
    """A WebSocket client made by hand that joins and then never reads a byte, with a small
    receive buffer: the server's writes to it soon block, as with a client that hung."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    async def join(self, token: str) -> None:
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        await loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(self.sock, request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(self.sock, 1)  # byte by byte: nothing past the headers
        assert head.startswith(b"HTTP/1.1 101")
        payload = json.dumps({"type": "join", "token": token}).encode()
        mask = os.urandom(4)
        frame = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask
        frame += bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await loop.sock_sendall(self.sock, frame)

    def close(self) -> None:
        self.sock.close()


async def test_a_client_that_stops_reading_is_cut_off_and_holds_nobody_up() -> None:
    async with server(send_queue=32, send_timeout=2.0) as kelian:
        silent = SilentSocket(int(kelian.url.rsplit(":", 1)[1]))
        await silent.join(kelian.token("hung-box", "classroom"))
        room = kelian.rooms.get("lesson")  # type: ignore[attr-defined]
        assert await eventually(lambda: bool(room.find("hung-box")))
        teacher = kelian.client("teacher", "lecturer")
        await teacher.connect()
        try:
            pad = "x" * 60_000
            for i in range(200):  # far more than the silent socket's buffers hold
                await asyncio.wait_for(room.broadcast({"type": "note", "i": i, "pad": pad}), 1)
            assert await eventually(lambda: kelian.rooms.refusals["slow_client"] == 1, timeout=10)  # type: ignore[attr-defined]
            late = kelian.client("late-student")
            await asyncio.wait_for(late.connect(), 5)  # joins are not held up by the hung box
            await late.close()

            def notes() -> list[int]:
                return [e["i"] for e in teacher.events if e["type"] == "note"]

            assert await eventually(lambda: len(notes()) == 200), "a reading client gets every one"
            assert notes() == list(range(200)), "in order"
        finally:
            await teacher.close()
            silent.close()
