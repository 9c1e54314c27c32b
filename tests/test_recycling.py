"""Subscriber m-sections are recycled: tracks that come and go leave the subscriber's offer as large
as the tracks it receives at once, and a track published after hundreds of others still arrives.

Before, each track ever published added a section for good; a student toggling a microphone a few
hundred times pushed a viewer's answer over the size limit, after which nothing new reached it.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from kelian_server import Server, eventually

from signaling.media import audio_track, video_track


async def whip_offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver(audio_track(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def microphones(kelian: Server, count: int) -> None:
    """`count` WHIP sessions in the room, a microphone each (no media flows: the tracks exist)."""
    offer = await whip_offer()
    async with aiohttp.ClientSession() as http:
        for i in range(count):
            token = kelian.token(f"mic-{i}")
            headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
            async with http.post(f"{kelian.url}/whip/lesson", data=offer, headers=headers) as r:
                assert r.status == 201, await r.text()


async def test_tracks_that_come_and_go_do_not_grow_the_subscribers_offer(kelian: Server) -> None:
    viewer = kelian.client("viewer", "viewer")
    await viewer.connect()
    offer = await whip_offer()
    room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
    (participant,) = room.find("viewer")
    token = kelian.token("mic", "classroom")
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(60):  # a microphone switched on and off sixty times
                async with http.post(f"{kelian.url}/whip/lesson", data=offer, headers=headers) as r:
                    assert r.status == 201, await r.text()
                    location = r.headers["Location"]
                assert await eventually(lambda: participant.subscriptions and not participant.offer_pending)
                async with http.delete(kelian.url + location, headers=headers) as r:
                    assert r.status == 200
                await eventually(lambda: not participant.offer_pending)
        assert await eventually(lambda: not participant.offer_pending and not participant.renegotiate)
        assert len(participant.subscriptions) <= 2, [s.slot.mid for s in participant.subscriptions]
        mids = [s.slot.mid for s in participant.subscriptions]
        assert int(max(mids, key=int)) >= 59, "every track had a mid of its own"

        teacher = kelian.client("teacher", "lecturer")  # and a track published after all that arrives
        await teacher.connect()
        await teacher.publish(video_track(), audio_track())
        try:

            def lecturer() -> list[object]:
                return [t for t in viewer.tracks.values() if t.info.get("identity") == "teacher"]

            assert await eventually(lambda: len(lecturer()) == 2, timeout=15)
            for remote in lecturer():
                for _ in range(3):
                    await asyncio.wait_for(remote.track.recv(), 10)  # type: ignore[attr-defined]
            assert len(participant.subscriptions) <= 3
        finally:
            await teacher.close()
    finally:
        await viewer.close()


async def test_seventy_tracks_fit_the_one_set_of_sdp_bounds(kelian: Server) -> None:
    """The Python client's answer for 70 tracks is about 87 kB: the WebSocket's old 64 KiB bound
    refused it while the parser allowed 192 KiB, and the viewer silently got nothing new."""
    await microphones(kelian, 70)
    viewer = kelian.client("viewer", "viewer")
    await viewer.connect()
    try:
        assert len(await viewer.wait_for_tracks(70, timeout=30)) == 70
        (participant,) = kelian.rooms.rooms["lesson"].find("viewer")  # type: ignore[attr-defined]
        assert await eventually(lambda: not participant.offer_pending, timeout=10), "its answer was taken"
        assert all(s.consumer is not None and not s.consumer.paused for s in participant.subscriptions)
    finally:
        await viewer.close()


async def test_past_the_section_bound_a_subscriber_is_told(
    kelian: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("classroom.room.MAX_MEDIA_SECTIONS", 3)
    viewer = kelian.client("viewer", "viewer")
    await viewer.connect()
    try:
        await microphones(kelian, 4)
        assert await eventually(lambda: any(e["type"] == "error" for e in viewer.events))
        errors = [e for e in viewer.events if e["type"] == "error"]
        assert errors[0]["code"] == "too_many_tracks" and "at most 3 tracks" in errors[0]["message"]
        assert kelian.rooms.refusals["too_many_subscriptions"] == 1  # type: ignore[attr-defined]
    finally:
        await viewer.close()
