"""WHIP publish and WHEP playback with plain HTTP and aiortc, as OBS or a player would do it."""

from __future__ import annotations

import asyncio

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from kelian_server import Server, eventually

from signaling.media import audio_track, video_track


async def post_offer(
    session: aiohttp.ClientSession,
    url: str,
    token: str | None,
    sdp: str,
    content_type: str = "application/sdp",
) -> aiohttp.ClientResponse:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await session.post(url, data=sdp.encode(), headers=headers)


async def whip_publish(
    kelian: Server, session: aiohttp.ClientSession, room: str = "lesson"
) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection()
    pc.addTransceiver(video_track(), direction="sendonly")
    pc.addTransceiver(audio_track(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    token = kelian.token("obs", "lecturer", room)
    response = await post_offer(session, f"{kelian.url}/whip/{room}", token, pc.localDescription.sdp)
    assert response.status == 201, await response.text()
    assert response.content_type == "application/sdp"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    location = response.headers["Location"]
    assert location.startswith(f"/whip/{room}/")
    await pc.setRemoteDescription(RTCSessionDescription(await response.text(), "answer"))
    return pc, location


async def test_whip_publish_and_whep_playback(kelian: Server) -> None:
    async with aiohttp.ClientSession() as session:
        publisher, whip_location = await whip_publish(kelian, session)
        player = RTCPeerConnection()
        player.addTransceiver("video", direction="recvonly")
        player.addTransceiver("audio", direction="recvonly")
        received: list[object] = []
        player.on("track", received.append)
        await player.setLocalDescription(await player.createOffer())
        token = kelian.token("player", "viewer")
        response = await post_offer(session, f"{kelian.url}/whep/lesson", token, player.localDescription.sdp)
        assert response.status == 201, await response.text()
        whep_location = response.headers["Location"]
        await player.setRemoteDescription(RTCSessionDescription(await response.text(), "answer"))
        assert {t.kind for t in received} == {"video", "audio"}  # type: ignore[attr-defined]
        for track in received:
            for _ in range(5):
                await asyncio.wait_for(track.recv(), 5)  # type: ignore[attr-defined]

        auth = {"Authorization": f"Bearer {token}"}
        async with session.delete(kelian.url + whep_location, headers=auth) as r:
            assert r.status == 200
        async with session.delete(kelian.url + whep_location, headers=auth) as r:
            assert r.status == 404
        async with session.delete(kelian.url + whip_location, headers=auth) as r:
            assert r.status == 200
        assert await eventually(lambda: not kelian.node.transports)
        await player.close()
        await publisher.close()


async def test_whep_can_pick_a_participant(kelian: Server) -> None:
    async with aiohttp.ClientSession() as session:
        publisher, _ = await whip_publish(kelian, session)
        player = RTCPeerConnection()
        player.addTransceiver("video", direction="recvonly")
        await player.setLocalDescription(await player.createOffer())
        token = kelian.token("player", "viewer")
        url = f"{kelian.url}/whep/lesson?participant=nobody"
        response = await post_offer(session, url, token, player.localDescription.sdp)
        assert response.status == 409
        assert "nobody" in await response.text()
        response = await post_offer(
            session, f"{kelian.url}/whep/lesson?participant=obs", token, player.localDescription.sdp
        )
        assert response.status == 201
        await player.close()
        await publisher.close()


async def test_whip_options_and_patch(kelian: Server) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.options(f"{kelian.url}/whip/lesson") as r:
            assert r.status == 204
            assert "POST" in r.headers["Access-Control-Allow-Methods"]
            assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
            assert "Location" in r.headers["Access-Control-Expose-Headers"]
            assert r.headers["Accept-Post"] == "application/sdp"
        async with session.options(f"{kelian.url}/whep/lesson") as r:
            assert r.status == 204
        async with session.patch(f"{kelian.url}/whip/lesson/PS_1", data=b"") as r:
            assert r.status == 405
