"""WHIP publish and WHEP playback with plain HTTP and aiortc, as OBS or a player would do it: the
session resources, who may end them, and the HTTP details RFC 9725 and RFC 9110 ask for."""

from __future__ import annotations

import asyncio
import base64
import re

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from kelian_server import API_KEY, API_SECRET, Server, eventually
from yarl import URL

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
    return await session.post(URL(url, encoded=True), data=sdp.encode(), headers=headers)


async def publisher_offer(video_codec: str | None = None) -> tuple[RTCPeerConnection, str]:
    """An aiortc publisher's offer: a test pattern (in `video_codec` first, if given) and a tone."""
    pc = RTCPeerConnection()
    video = pc.addTransceiver(video_track(codec=(video_codec or "vp8").lower()), direction="sendonly")
    if video_codec is not None:
        codecs = RTCRtpSender.getCapabilities("video").codecs
        first = [c for c in codecs if c.mimeType.lower() == f"video/{video_codec.lower()}"]
        video.setCodecPreferences(first + [c for c in codecs if c not in first])
    pc.addTransceiver(audio_track(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def whip_publish(
    kelian: Server,
    session: aiohttp.ClientSession,
    room: str = "lesson",
    identity: str = "obs",
    role: str = "lecturer",
    video_codec: str | None = None,
) -> tuple[RTCPeerConnection, str]:
    pc, offer = await publisher_offer(video_codec)
    token = kelian.token(identity, role, room)
    response = await post_offer(session, f"{kelian.url}/whip/{room}", token, offer)
    assert response.status == 201, await response.text()
    assert response.content_type == "application/sdp"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    await pc.setRemoteDescription(RTCSessionDescription(await response.text(), "answer"))
    return pc, response.headers["Location"]


def basic(key: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def delete(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
    async with session.delete(URL(url, encoded=True), headers=headers) as response:
        await response.read()
        return response


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

        assert (await delete(session, kelian.url + whep_location, bearer(token))).status == 200
        assert (await delete(session, kelian.url + whep_location, bearer(token))).status == 404
        refused = await delete(session, kelian.url + whip_location, bearer(token))
        assert refused.status == 403, "a viewer cannot end the lecturer's encoder"
        assert kelian.rooms.rooms["lesson"].find("obs")  # type: ignore[attr-defined]
        own = bearer(kelian.token("obs", "lecturer"))
        assert (await delete(session, kelian.url + whip_location, own)).status == 200
        assert await eventually(lambda: not kelian.node.transports)
        await player.close()
        await publisher.close()


async def test_session_urls_are_secret_unique_and_not_the_sid(kelian: Server) -> None:
    async with aiohttp.ClientSession() as session:
        first, one = await whip_publish(kelian, session, identity="box-1", role="classroom")
        second, two = await whip_publish(kelian, session, identity="box-2", role="classroom")
        secrets = [location.rsplit("/", 1)[1] for location in (one, two)]
        assert all(re.fullmatch(r"[A-Za-z0-9_-]{24}", s) for s in secrets) and secrets[0] != secrets[1]
        room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
        seen_by_everyone = str(room.snapshot())
        assert not any(s in seen_by_everyone for s in secrets), "only the session's creator has its URL"
        sid = room.find("box-1")[0].sid
        assert not re.fullmatch(r"PS_\d+", sid), "session ids are not counted up either"
        admin = basic(API_KEY, API_SECRET)
        assert (await delete(session, f"{kelian.url}/whip/lesson/{sid}", admin)).status == 404
        assert (await delete(session, f"{kelian.url}/whep/lesson/{secrets[0]}", admin)).status == 404
        assert (await delete(session, f"{kelian.url}/whip/other/{secrets[0]}", admin)).status == 404
        assert len(room.participants) == 2
        for pc in (first, second):
            await pc.close()


async def test_who_may_end_a_session(kelian: Server) -> None:
    async with aiohttp.ClientSession() as session:
        pcs = []
        locations = []
        for i in range(3):
            pc, location = await whip_publish(kelian, session, identity=f"box-{i}", role="classroom")
            pcs.append(pc)
            locations.append(kelian.url + location)
        room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]

        async def refused(headers: dict[str, str]) -> aiohttp.ClientResponse:
            response = await delete(session, locations[0], headers)
            assert room.find("box-0"), "still publishing"
            return response

        other_tutor = bearer(kelian.token("tutor-2", "tutor", classroom="box-2"))
        for headers in (bearer(kelian.token("box-1")), bearer(kelian.token("tv", "viewer")), other_tutor):
            assert (await refused(headers)).status == 403
        other_room = await refused(bearer(kelian.token("box-0", room="other")))
        assert other_room.status == 403, "a token for another room"
        nobody = await refused({})
        assert nobody.status == 401 and "Bearer" in nobody.headers["WWW-Authenticate"]
        assert 'Basic realm="kelian"' in nobody.headers["WWW-Authenticate"]
        wrong = await refused(basic(API_KEY, "not the secret"))
        assert wrong.status == 401 and wrong.headers["WWW-Authenticate"] == 'Basic realm="kelian"'

        assert (await delete(session, locations[0], bearer(kelian.token("box-0")))).status == 200
        tutor = bearer(kelian.token("tutor-1", "tutor", classroom="box-1"))
        assert (await delete(session, locations[1], tutor)).status == 200, "its classroom's tutor may"
        assert (await delete(session, locations[2], basic(API_KEY, API_SECRET))).status == 200, "and the API"
        assert await eventually(lambda: not room.participants)
        for pc in pcs:
            await pc.close()


async def test_a_student_publishes_by_whip_only_once_invited(kelian: Server) -> None:
    async with aiohttp.ClientSession() as session:
        pc, offer = await publisher_offer()
        url = f"{kelian.url}/whip/lesson"
        refused = await post_offer(session, url, kelian.token("s1", "student"), offer)
        assert refused.status == 403 and "role student may not publish" in await refused.text()
        await pc.close()
        student = kelian.client("s1", "student")  # joins by WebSocket, then is let speak
        try:
            await student.connect()
            assert not student.grants["publish"]
            room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
            await room.moderation.set_permissions(None, "s1", {"publish": True})
            assert await eventually(lambda: student.grants["publish"])
            pc, location = await whip_publish(kelian, session, identity="s1", role="student")
            assert location
            await pc.close()
        finally:
            await student.close()


async def test_http_details(kelian: Server) -> None:
    async with aiohttp.ClientSession() as session:
        pc, offer = await publisher_offer()
        missing = await post_offer(session, f"{kelian.url}/whip/lesson", None, offer)
        assert missing.status == 401 and missing.headers["WWW-Authenticate"] == 'Bearer realm="kelian"'
        forged = await post_offer(session, f"{kelian.url}/whip/lesson", "e30.e30.c2ln", offer)
        assert forged.status == 401
        assert forged.headers["WWW-Authenticate"] == 'Bearer realm="kelian", error="invalid_token"'
        assert "WWW-Authenticate" in forged.headers["Access-Control-Expose-Headers"]

        token = kelian.token("box", "classroom", room="maths 5a")
        created = await post_offer(session, f"{kelian.url}/whip/maths%205a", token, offer)
        assert created.status == 201, await created.text()
        location = created.headers["Location"]
        assert location.startswith("/whip/maths%205a/") and " " not in location, "a URL curl takes"
        async with session.patch(URL(kelian.url + location, encoded=True), data=b"") as r:
            assert r.status == 405 and r.headers["Allow"] == "DELETE, OPTIONS"
        async with session.options(f"{kelian.url}/whip/lesson") as r:
            assert r.status == 204
            assert "POST" in r.headers["Access-Control-Allow-Methods"]
            assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
            assert "Location" in r.headers["Access-Control-Expose-Headers"]
            assert r.headers["Accept-Post"] == "application/sdp"
        async with session.options(URL(kelian.url + location, encoded=True)) as r:
            assert r.status == 204 and "DELETE" in r.headers["Access-Control-Allow-Methods"]
        assert (await delete(session, kelian.url + location, bearer(token))).status == 200
        await pc.close()


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_the_publishers_first_codec_is_the_one_it_publishes(kelian: Server, codec: str) -> None:
    async with aiohttp.ClientSession() as session:
        pc, _ = await whip_publish(kelian, session, video_codec=codec)
        room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
        assert {p.kind: p.codec.name for p in room.router.producers.values()} == {
            "video": codec,
            "audio": "opus",
        }
        await pc.close()


async def test_a_rooms_codec_policy_refuses_other_codecs_with_a_reason(kelian: Server) -> None:
    async with aiohttp.ClientSession() as session:
        body = {"name": "tv-lesson", "codecs": ["h264", "OPUS"]}
        async with session.post(
            f"{kelian.url}/api/v1/rooms", json=body, headers=basic(API_KEY, API_SECRET)
        ) as r:
            assert r.status == 201
            assert (await r.json())["codecs"] == ["H264", "opus"]
        pc, offer = await publisher_offer("VP8")
        only_vp8 = re.sub(r"m=video (\d+) (\S+) .*", r"m=video \1 \2 97 98", offer)  # aiortc: VP8 97, rtx 98
        token = kelian.token("box", "classroom", room="tv-lesson")
        refused = await post_offer(session, f"{kelian.url}/whip/tv-lesson", token, only_vp8)
        assert refused.status == 400
        assert await refused.text() == "this room allows only H264, opus; the offer sends video (VP8)\n"
        room = kelian.rooms.rooms["tv-lesson"]  # type: ignore[attr-defined]
        assert not room.participants and not room.router.producers, "nothing half-made"
        created = await post_offer(session, f"{kelian.url}/whip/tv-lesson", token, offer)
        assert created.status == 201, "an offer that also lists H.264 publishes H.264"
        assert {p.codec.name for p in room.router.producers.values()} == {"H264", "opus"}
        await pc.close()
        bad = {"name": "x", "codecs": ["AV1"]}
        async with session.post(
            f"{kelian.url}/api/v1/rooms", json=bad, headers=basic(API_KEY, API_SECRET)
        ) as r:
            assert r.status == 400 and "AV1" in (await r.json())["error"]["message"]


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
