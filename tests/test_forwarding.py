"""End to end through real UDP on loopback: aiortc publishers and subscribers against a real server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from helpers import send_through_python
from kelian_server import Server, eventually, lesson

from signaling.client import Client, RemoteTrack
from signaling.media import EncodedTrack, audio_track, encode_video, video_track

FRAME_TIMEOUT = 5.0


async def decode_frames(remote: RemoteTrack, count: int) -> list[object]:
    frames = []
    for _ in range(count):
        frames.append(await asyncio.wait_for(remote.track.recv(), FRAME_TIMEOUT))
    return frames


def by_kind(tracks: list[RemoteTrack], kind: str) -> RemoteTrack:
    return next(t for t in tracks if t.track.kind == kind)


async def test_one_publisher_three_subscribers_see_and_hear(kelian: Server) -> None:
    teacher = kelian.client("teacher", "lecturer")
    await teacher.connect()
    reply = await teacher.publish(video_track(), audio_track(), sources=["camera", "microphone"])
    assert {t["kind"] for t in reply["tracks"]} == {"video", "audio"}
    students = [kelian.client(f"student-{i}") for i in range(3)]
    try:
        for s in students:
            await s.connect()
        for s in students:
            tracks = await s.wait_for_tracks(2)
            video = await decode_frames(by_kind(tracks, "video"), 10)
            assert all((f.width, f.height) == (640, 360) for f in video)  # type: ignore[attr-defined]
            # the pattern's bar moves, so consecutive decoded pictures differ
            first = video[0].to_ndarray(format="gray")  # type: ignore[attr-defined]
            last = video[-1].to_ndarray(format="gray")  # type: ignore[attr-defined]
            assert np.abs(first.astype(int) - last.astype(int)).mean() > 1
            audio = await decode_frames(by_kind(tracks, "audio"), 25)
            loudness = max(np.abs(f.to_ndarray()).max() for f in audio)  # type: ignore[attr-defined]
            assert loudness > 2000, "the 440 Hz tone should be audible, not silence"
            assert by_kind(tracks, "video").info["identity"] == "teacher"
    finally:
        for s in students:
            await s.close()
        await teacher.close()


async def test_late_joiner_gets_a_keyframe_at_once(kelian: Server) -> None:
    # a 10 s keyframe interval: without the Consumer's keyframe request the late joiner would wait
    track = EncodedTrack("video", encode_video(seconds=12.0, keyframe_interval=300), 1 / 30)
    teacher = kelian.client("teacher", "lecturer")
    early = kelian.client("early")
    late = kelian.client("late")
    try:
        await teacher.connect()
        await teacher.publish(track)
        await early.connect()
        await decode_frames((await early.wait_for_tracks(1))[0], 30)
        requests_before = track.keyframe_requests
        joined = time.monotonic()
        await late.connect()
        remote = (await late.wait_for_tracks(1))[0]
        await decode_frames(remote, 1)
        waited = time.monotonic() - joined
        assert track.keyframe_requests > requests_before
        assert waited < 1.0, f"late joiner decoded its first frame after {waited:.2f} s"
    finally:
        for c in (late, early, teacher):
            await c.close()


async def test_h264_is_forwarded(kelian: Server) -> None:
    h264 = EncodedTrack("video", encode_video("h264", keyframe_interval=15), 1 / 30)
    async with lesson(kelian, h264, video_codec="H264") as live:
        remote = live.tracks[0]
        frames = await decode_frames(remote, 10)
        assert (frames[-1].width, frames[-1].height) == (640, 360)  # type: ignore[attr-defined]
        assert remote.info["codec"] == "H264"


async def test_tracks_appear_and_vanish_with_renegotiation(kelian: Server) -> None:
    student = kelian.client("student")
    teacher = kelian.client("teacher", "lecturer")
    try:
        await student.connect()  # joins an empty room: gets its tracks by renegotiation later
        await teacher.connect()
        await teacher.publish(video_track())
        remote = (await student.wait_for_tracks(1))[0]
        await decode_frames(remote, 3)
        track_id = remote.id
        await teacher.request({"type": "unpublish", "track": track_id})
        assert await eventually(
            lambda: any(
                e["type"] == "track_unpublished" and e["track"]["id"] == track_id for e in student.events
            )
        ), "no track_unpublished event"

        def offers() -> list[dict[str, Any]]:
            return [e for e in student.events if e["type"] == "offer"]

        await eventually(lambda: len(offers()) >= 2)
        assert "a=inactive" in offers()[-1]["sdp"], "the removed track's section is made inactive"
    finally:
        await teacher.close()
        await student.close()


async def test_participant_events(kelian: Server) -> None:
    a = kelian.client("alice", binary=True)  # msgpack framing
    b = kelian.client("bob")
    try:
        joined = await a.connect()
        assert joined["participant"]["identity"] == "alice"
        await b.connect()
        await eventually(lambda: any(e["type"] == "participant_joined" for e in a.events))
        event = next(e for e in a.events if e["type"] == "participant_joined")
        assert event["participant"]["identity"] == "bob"
        await b.close()
        assert await eventually(lambda: any(e["type"] == "participant_left" for e in a.events))
    finally:
        await a.close()


async def test_nacks_are_answered_from_the_cache(kelian: Server) -> None:
    async with lesson(kelian) as live:
        remote = live.tracks[0]
        await decode_frames(remote, 5)
        # drop every 20th RTP packet the server sends to the student: its receiver NACKs the gaps
        sub = next(t for t in kelian.node.transports.values() if t.consumers)
        real = sub.sendto
        sent = 0

        def lossy(data: bytes, addr: object) -> None:
            nonlocal sent
            sent += 1
            if sent % 20 or 192 <= data[1] <= 223:
                real(data, addr)  # type: ignore[arg-type]

        sub.sendto = lossy  # type: ignore[method-assign]
        send_through_python(sub)
        await decode_frames(remote, 60)
        consumer = next(iter(sub.consumers.values()))
        assert kelian.node.nacks > 0
        assert consumer.retransmissions > 0


async def test_gaps_from_a_publisher_are_nacked_upstream_and_repaired(kelian: Server) -> None:
    async with lesson(kelian) as live:
        remote = live.tracks[0]
        await decode_frames(remote, 5)
        # the publisher's link loses every 20th RTP packet on its way in
        pub = next(t for t in kelian.node.transports.values() if t.producers)
        real = pub.on_datagram
        arrived = 0

        def lossy(data: bytes) -> None:
            nonlocal arrived
            if 127 < data[0] < 192 and not 192 <= data[1] <= 223:
                arrived += 1
                if arrived % 20 == 0:
                    return
            real(data)

        pub.on_datagram = lossy  # type: ignore[method-assign]
        await decode_frames(remote, 60)
        stream = next(iter(pub.producers.values())).streams[0]
        assert kelian.node.nacks_sent > 0, "the server asked the publisher for the lost packets"
        assert stream.stats.lost < arrived // 20, "and most of them came back as repairs"


async def test_receiver_report_statistics(kelian: Server) -> None:
    async with lesson(kelian, video_track(), audio_track()) as live:
        consumers = [c for t in kelian.node.transports.values() for c in t.consumers.values()]
        streams = [
            s for t in kelian.node.transports.values() for p in t.producers.values() for s in p.streams
        ]
        decoders = [asyncio.create_task(decode_frames(t, 400)) for t in live.tracks]
        # RRs and SRs come about once a second, at randomised times: wait for both kinds everywhere
        await eventually(
            lambda: (
                all(c.rtt is not None for c in consumers) and all(s.stats.last_sr_arrival for s in streams)
            ),
            timeout=8,
            interval=0.2,
        )
        for task in decoders:
            task.cancel()
        assert consumers and all(c.rtt is not None and 0 <= c.rtt < 1 for c in consumers)
        assert all(c.packets_lost == 0 for c in consumers)
        assert streams and all(s.stats.packets > 0 and s.stats.lost == 0 for s in streams)
        assert all(s.stats.last_sr_arrival > 0 for s in streams), "publisher sender reports were read"


async def test_keyframe_requests_are_throttled(kelian: Server) -> None:
    teacher = kelian.client("teacher", "lecturer")
    try:
        await teacher.connect()
        await teacher.publish(video_track())
        producer = next(p for t in kelian.node.transports.values() for p in t.producers.values())
        await eventually(lambda: producer.streams[0].ssrc is not None, timeout=4, interval=0.02)
        before = kelian.node.keyframe_requests
        for _ in range(100):  # a hundred subscribers asking at once
            producer.streams[0].request_keyframe()
        assert kelian.node.keyframe_requests - before <= 1
        await asyncio.sleep(0.6)
        assert kelian.node.keyframe_requests - before <= 2, "one more after the 500 ms window, no storm"
    finally:
        await teacher.close()


async def test_client_and_server_agree_on_closing(kelian: Server) -> None:
    teacher: Client = kelian.client("teacher", "lecturer")
    await teacher.connect()
    await teacher.publish(video_track())
    assert kelian.node.transports
    await teacher.close()
    assert await eventually(lambda: not kelian.node.transports)
    assert not kelian.node.routers, "the room's Router closes with its last participant"
