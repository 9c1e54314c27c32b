"""Each track in its own codec: a room holds VP8 and H.264 publishers at once, every subscriber gets
each track as it was published, and a subscriber that cannot decode one is told and sent nothing."""

from __future__ import annotations

import asyncio

import aiohttp
from kelian_server import Server, eventually
from test_sessions import join

from sfu.sdp import parse, serialize
from signaling.media import video_track


async def test_vp8_and_h264_publishers_reach_a_subscriber_each_in_its_own_codec(kelian: Server) -> None:
    vp8, h264 = kelian.client("box-vp8", "classroom"), kelian.client("box-h264", "classroom")
    student = kelian.client("student")
    try:
        await vp8.connect()
        await vp8.publish(video_track())
        await h264.connect()
        await h264.publish(video_track(codec="h264"), video_codec="H264")
        await student.connect()
        tracks = await student.wait_for_tracks(2, timeout=15)
        assert sorted(t.info["codec"] for t in tracks) == ["H264", "VP8"]
        for track in tracks:
            frames = [await asyncio.wait_for(track.track.recv(), 10) for _ in range(5)]
            assert {(f.width, f.height) for f in frames} == {(640, 360)}  # type: ignore[attr-defined]
    finally:
        for client in (student, h264, vp8):
            await client.close()


async def test_a_subscriber_that_turns_a_codec_down_is_told_and_sent_nothing(kelian: Server) -> None:
    h264 = kelian.client("box-h264", "classroom")
    try:
        await h264.connect()
        await h264.publish(video_track(codec="h264"), video_codec="H264")
        async with aiohttp.ClientSession() as http:
            socket, _ = await join(http, kelian, kelian.token("old-tv", "viewer"))
            offer = await socket.receive_json(timeout=5)
            assert offer["type"] == "offer"
            # what a browser without an H.264 decoder answers: the section rejected with port 0
            answer = parse(offer["sdp"])
            answer.ice_lite = False
            for m in answer.media:
                m.port, m.direction, m.setup, m.candidates, m.ssrcs = 0, "inactive", "active", [], {}
            await socket.send_json({"type": "answer", "sdp": serialize(answer), "id": 2})
            messages = [await socket.receive_json(timeout=5) for _ in range(2)]
            told = next(m for m in messages if m["type"] == "track_unsupported")
            assert told["codec"] == "H264" and told["track"]["identity"] == "box-h264"
            assert "cannot receive H264" in told["message"]
            room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
            (viewer,) = room.find("old-tv")
            producer = next(iter(room.router.producers.values()))
            assert await eventually(lambda: not producer.consumers), "no Consumer sends it anything"
            renegotiated = next((m for m in messages if m["type"] == "offer"), None)
            if renegotiated is None:
                renegotiated = await socket.receive_json(timeout=5)
            assert "a=inactive" in renegotiated["sdp"] and "a=sendonly" not in renegotiated["sdp"]
            assert viewer.subscriptions[0].consumer is None
            await socket.close()
    finally:
        await h264.close()
