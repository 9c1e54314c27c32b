"""Bad input gets a clear error and harms nobody: tokens, SDP, WebSocket messages, UDP junk."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import aiohttp
import jwt
import pytest
from aioice import stun
from aiortc import RTCPeerConnection
from kelian_server import API_KEY, API_SECRET, Server, eventually, lesson

from signaling.client import Client, ClientError
from signaling.media import video_track

GOOD_OFFER_CACHE: dict[str, str] = {}


async def sendonly_offer() -> str:
    if "v" not in GOOD_OFFER_CACHE:
        pc = RTCPeerConnection()
        pc.addTransceiver(video_track(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        GOOD_OFFER_CACHE["v"] = pc.localDescription.sdp
        await pc.close()
    return GOOD_OFFER_CACHE["v"]


async def whip(
    kelian: Server, body: bytes, token: str | None, room: str = "lesson", ctype: str = "application/sdp"
) -> tuple[int, str]:
    headers = {"Content-Type": ctype}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{kelian.url}/whip/{room}", data=body, headers=headers) as r,
    ):
        return r.status, await r.text()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"hello world", "line"),
        (b"v=0\r\no=- 0 0 IN IP4 1.1.1.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF abc\r\n", ""),
        (b"v=0\r\no=- 0 0 IN IP4 1.1.1.1\r\ns=-\r\nt=0 0\r\n", "no usable"),
        (b"\xff\xfe\x00garbage", ""),
    ],
)
async def test_malformed_whip_offer_is_400_with_a_reason(kelian: Server, body: bytes, reason: str) -> None:
    status, text = await whip(kelian, body, kelian.token("obs", "lecturer"))
    assert status == 400
    assert text.strip() and reason.lower() in text.lower()
    assert not kelian.node.transports, "a refused offer leaves no transport behind"


async def test_offer_without_supported_codec_is_refused(kelian: Server) -> None:
    offer = (await sendonly_offer()).replace("VP8/90000", "AV2/90000").replace("H264/90000", "AV3/90000")
    status, text = await whip(kelian, offer.encode(), kelian.token("obs", "lecturer"))
    assert status == 400 and "codec" in text


async def test_whip_content_type_and_size(kelian: Server) -> None:
    token = kelian.token("obs", "lecturer")
    status, _ = await whip(kelian, (await sendonly_offer()).encode(), token, ctype="text/plain")
    assert status == 415
    status, _ = await whip(kelian, b"v=0\r\n" + b"a=x\r\n" * 60000, token)
    assert status == 413


async def test_tokens_are_checked(kelian: Server) -> None:
    offer = (await sendonly_offer()).encode()
    assert (await whip(kelian, offer, None))[0] == 401
    assert (await whip(kelian, offer, "not-a-jwt"))[0] == 401
    wrong_secret = jwt.encode(
        {"iss": API_KEY, "sub": "x", "room": "lesson", "role": "lecturer", "exp": time.time() + 60},
        "another-secret-another-secret-another-secret",
        algorithm="HS256",
    )
    assert (await whip(kelian, offer, wrong_secret))[0] == 401
    expired = kelian.token("obs", "lecturer", ttl=60, now=time.time() - 3600)
    status, text = await whip(kelian, offer, expired)
    assert status == 401 and "expired" in text.lower()
    status, text = await whip(kelian, offer, kelian.token("obs", "lecturer", room="other-room"))
    assert status == 403
    assert not kelian.node.transports


async def test_a_name_that_cannot_be_sent_never_enters_a_room(kelian: Server) -> None:
    """A lone surrogate in a display name, signed with the right secret by a careless integrator: the
    join is refused, and the room goes on taking joins (it once broke every later one)."""
    payload = {"iss": API_KEY, "sub": "evil", "room": "lesson", "role": "student"}
    payload |= {"name": "Li \ud83d", "exp": int(time.time()) + 60}
    forged = jwt.encode(payload, API_SECRET, algorithm="HS256")
    evil = Client(kelian.url, forged)
    with pytest.raises(ClientError) as refused:
        await evil.connect()
    assert refused.value.code == "unauthorized" and "surrogate" in refused.value.message
    await evil.close()
    async with lesson(kelian, video_track()) as live:
        assert [p.identity for p in kelian.rooms.rooms["lesson"].participants.values()] == [  # type: ignore[attr-defined]
            "teacher",
            "student",
        ]
        assert live.tracks


async def test_viewer_may_not_publish(kelian: Server) -> None:
    offer = await sendonly_offer()
    status, text = await whip(kelian, offer.encode(), kelian.token("watcher", "viewer"))
    assert status == 403 and "viewer" in text
    viewer = kelian.client("watcher", "viewer")
    await viewer.connect()
    try:
        with pytest.raises(ClientError) as error:
            await viewer.request({"type": "publish", "sdp": offer})
        assert error.value.code == "forbidden"
        assert (await viewer.request({"type": "ping"}))["type"] == "pong"
    finally:
        await viewer.close()


async def test_bad_websocket_messages_get_errors_and_the_connection_stays(kelian: Server) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{kelian.url}/ws") as ws:

        async def exchange(raw: str | bytes) -> dict[str, object]:
            if isinstance(raw, bytes):
                await ws.send_bytes(raw)
            else:
                await ws.send_str(raw)
            return json.loads((await ws.receive(timeout=5)).data)

        assert (await exchange("{not json"))["code"] == "bad_message"
        deep = await exchange("[" * 100_000)  # no join needed: it raised RecursionError, logged
        assert deep["code"] == "bad_message" and "nested" in str(deep["message"])
        assert (await exchange("[1, 2]"))["code"] == "bad_message"
        assert (await exchange('{"no": "type"}'))["code"] == "bad_message"
        assert (await exchange(b"\x00\x01binary"))["code"] == "bad_message"
        assert (await exchange('{"type": "publish", "sdp": "v=0"}'))["code"] == "not_joined"
        assert (await exchange('{"type": "join", "token": "garbage"}'))["code"] == "unauthorized"
        assert (await exchange('{"type": "join", "token": 5}'))["code"] == "bad_message"
        token = kelian.token("alice")
        joined = await exchange(json.dumps({"type": "join", "token": token, "id": 7}))
        assert joined["type"] == "joined" and joined["id"] == 7
        assert (await exchange('{"type": "dance"}'))["code"] == "unknown_type"
        reply = await exchange(json.dumps({"type": "publish", "sdp": "v=0\r\nnonsense", "id": 8}))
        assert reply["code"] == "bad_sdp" and reply["id"] == 8 and reply["message"]
        assert (await exchange('{"type": "answer", "sdp": "v=0"}'))["code"] in ("unexpected", "bad_sdp")
        assert (await exchange('{"type": "publish", "sdp": "v=0", "sources": [1]}'))["code"] == "bad_message"
        assert (await exchange('{"type": "ping"}'))["type"] == "pong"
        assert not ws.closed


async def test_udp_junk_is_dropped_and_media_keeps_flowing(kelian: Server) -> None:
    async with lesson(kelian) as live:
        remote = live.tracks[0]
        await asyncio.wait_for(remote.track.recv(), 5)
        dropped_before = kelian.node.dropped
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = ("127.0.0.1", kelian.node.port)
        junk = [
            b"",
            b"\x00",
            os.urandom(1200),
            b"\x80\x60" + os.urandom(30),  # RTP-looking, from an unknown address
            b"\x16\xfe\xfd" + os.urandom(60),  # DTLS-looking
            b"\x00\x01\x00\x08" + os.urandom(16),  # truncated STUN
        ]
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes["USERNAME"] = "nosuch:user"
        request.add_message_integrity(b"wrong")
        junk.append(bytes(request))
        for _ in range(20):
            for datagram in junk:
                sock.sendto(datagram, target)
        sock.close()
        for _ in range(30):
            await asyncio.wait_for(remote.track.recv(), 5)
        assert kelian.node.dropped - dropped_before >= 100
        assert kelian.node.errors == 0
        # junk sent from a connected participant's own address is dropped too
        sub = next(t for t in kelian.node.transports.values() if t.consumers)
        assert sub.remote_addr is not None
        sub.on_datagram(b"\x80\x60" + os.urandom(40))
        sub.on_datagram(b"\x80\xc9" + os.urandom(40))
        sub.on_datagram(b"\x17\xfe\xfd" + os.urandom(40))
        assert sub.srtp_errors >= 1 and sub.rtcp_errors >= 1
        await asyncio.wait_for(remote.track.recv(), 5)


async def test_silent_peer_is_closed_after_consent_expires(kelian: Server) -> None:
    """A raw ICE client completes one check, then goes silent: its Transport closes by itself."""
    kelian.node.consent_timeout = 1.0
    status, answer = await whip(kelian, (await sendonly_offer()).encode(), kelian.token("box", "classroom"))
    assert status == 201
    ufrag = next(line.split(":", 1)[1] for line in answer.splitlines() if line.startswith("a=ice-ufrag:"))
    pwd = next(line.split(":", 1)[1] for line in answer.splitlines() if line.startswith("a=ice-pwd:"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{ufrag}:client"
    request.attributes["PRIORITY"] = 12345
    request.attributes["ICE-CONTROLLING"] = 1
    request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity(pwd.encode())
    sock.sendto(bytes(request), ("127.0.0.1", kelian.node.port))
    response = stun.parse_message(await asyncio.get_running_loop().run_in_executor(None, sock.recv, 2048))
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.check_message_integrity(pwd.encode())
    assert response.attributes["XOR-MAPPED-ADDRESS"] == sock.getsockname()
    transport = next(iter(kelian.node.transports.values()))
    assert transport.state == "connecting"
    await eventually(lambda: transport.state == "closed", timeout=6, interval=0.1)
    sock.close()
    assert transport.state == "closed"
    assert "consent" in transport.close_reason


async def test_quick_join_mints_no_admin_and_checks_its_names(kelian: Server) -> None:
    kelian.config.dev_credentials = True
    async with aiohttp.ClientSession() as http:
        for body, status, hint in (
            ({"room": "r", "name": "eve", "role": "admin"}, 400, "only the roles"),
            ({"room": "r", "name": "eve", "role": "recorder"}, 400, "only the roles"),
            ({"room": "r\ud800", "name": "eve"}, 400, "surrogate"),
            ({"room": "r", "name": "a/b"}, 400, "'/'"),
            ({"room": "r", "name": "Li"}, 200, ""),
        ):
            async with http.post(f"{kelian.url}/dev/token", json=body) as r:
                assert r.status == status, (body, await r.text())
                assert hint in await r.text()
    kelian.config.dev_credentials = False
    async with aiohttp.ClientSession() as http, http.post(f"{kelian.url}/dev/token", json={}) as r:
        assert r.status == 404, "only a development server mints"
