"""The light peer (loadtest/peer.py) against a real server: simulcast publishing, counting receivers,
layer choice, keyframe requests, NACKs, speaker detection, and junk from the network."""

from __future__ import annotations

import asyncio
import os
import socket
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import numpy as np
import pytest
from av import AudioFrame, VideoFrame
from classroom_peers import connected
from kelian_server import Server, eventually

from loadtest.peer import Layer, Peer, PeerError
from loadtest.rtcp import nack
from sfu import simulcast
from sfu.producer import Producer
from sfu.transport import WebRtcTransport

LAYERS = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}
SMALL = Layer("", 320, 180, 300_000)


def peers(kelian: Server, *names: str, **options: Any) -> AbstractAsyncContextManager[list[Peer]]:
    """Connected peers (identity = name, role lecturer for "teacher", else classroom), closed afterwards;
    `options` go to every Peer."""
    tokens = [kelian.token(n, "lecturer" if n == "teacher" else "classroom") for n in names]
    return connected(kelian, tokens, **options)


def producer_of(kelian: Server, kind: str) -> Producer:
    router = kelian.node.routers["lesson"]
    return next(p for p in router.producers.values() if p.kind == kind)


def server_transport(kelian: Server, peer: Peer, side: str) -> WebRtcTransport:
    room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
    transport = getattr(room.participants[peer.sid], side)
    assert isinstance(transport, WebRtcTransport)
    return transport


def received(peer: Peer, kind: str) -> dict[str, Any]:
    tracks = peer.stats()["subscriber"]["tracks"].values()
    return next(t for t in tracks if t["kind"] == kind and not t["ended"])


async def test_simulcast_publish_makes_three_layers_of_the_right_sizes(kelian: Server) -> None:
    async with peers(kelian, "teacher") as (teacher,):
        reply = await teacher.publish(audio=False)
        assert reply["tracks"][0]["layers"] == ["q", "h", "f"]
        producer = producer_of(kelian, "video")
        assert await eventually(lambda: all(s.width and s.stats.packets > 10 for s in producer.streams))
        assert {s.rid: (s.width, s.height) for s in producer.streams} == LAYERS
        assert len({s.ssrc for s in producer.streams}) == 3
        assert teacher.publisher is not None
        assert teacher.publisher.connection.stats()["srtp_errors"] == 0


async def test_light_subscriber_counts_frames_keyframes_and_latency(kelian: Server) -> None:
    async with peers(kelian, "teacher", "student") as (teacher, student):
        await teacher.publish()
        tracks = await student.wait_for_tracks(2, timeout=5)
        assert {t["kind"] for t in tracks} == {"audio", "video"}
        assert await eventually(lambda: received(student, "video")["frames"] >= 30, timeout=5)
        assert await eventually(lambda: received(student, "video")["latency_ms"] is not None, timeout=3)
        video, audio = received(student, "video"), received(student, "audio")
        assert video["keyframe_size"] == [1280, 720], "no view size asked: the largest layer"
        assert video["keyframes"] >= 1 and video["first_keyframe_ms"] < 1000
        assert video["lost"] == 0 and video["freezes"] == 0
        assert audio["frames"] >= 30 and audio["codec"] == "opus"
        assert 0 <= video["latency_ms"]["p50"] < 100, "one-way latency on loopback, from sender reports"
        published = teacher.stats()["publisher"]["streams"]
        assert published["f"]["packets"] > 0 and published["f"]["clock"]["rate"] == 90000
        assert student.stats()["subscriber"]["connection"]["state"] == "connected"


async def test_track_settings_choose_the_layer_and_unwatched_layers_pause(
    kelian: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(simulcast, "PAUSE_AFTER", 1.0)
    # Without transport-cc: the view size alone chooses. With it, the estimate, which starts at
    # 1 Mbit/s while the quarter layer flows, would hold the full layer back for seconds as it climbs.
    async with peers(kelian, "teacher", "student", transport_cc=False) as (teacher, student):
        await teacher.publish(audio=False)
        (track,) = await student.wait_for_tracks(1, timeout=5)
        assert await eventually(lambda: received(student, "video")["keyframe_size"] == [1280, 720])

        await student.set_track_settings(track["id"], 320, 180)
        assert await eventually(lambda: received(student, "video")["keyframe_size"] == [320, 180])
        # nobody watches h and f now: the server says so, and the peer stops sending them
        assert teacher.publisher is not None
        streams = {s.name: s for s in teacher.publisher.video}
        assert await eventually(lambda: not streams["h"].active and not streams["f"].active, timeout=5)
        sent = streams["f"].packets
        await asyncio.sleep(0.3)
        assert streams["f"].packets == sent

        await student.set_track_settings(track["id"], 1280, 720)
        assert await eventually(lambda: received(student, "video")["keyframe_size"] == [1280, 720])
        assert streams["f"].active
        assert received(student, "video")["lost"] == 0


async def test_aiortc_subscriber_decodes_the_light_publisher(kelian: Server) -> None:
    viewer = kelian.client("viewer")
    async with peers(kelian, "teacher") as (teacher,):
        await teacher.publish()
        try:
            await viewer.connect()
            tracks = await viewer.wait_for_tracks(2, timeout=5)
            video = next(t for t in tracks if t.track.kind == "video")
            audio = next(t for t in tracks if t.track.kind == "audio")
            frames = [cast(VideoFrame, await asyncio.wait_for(video.track.recv(), 5)) for _ in range(5)]
            assert all((f.width, f.height) == (1280, 720) for f in frames)
            first = frames[0].to_ndarray(format="gray")
            last = frames[-1].to_ndarray(format="gray")
            assert np.abs(first.astype(int) - last.astype(int)).mean() > 1, "the pattern moves"
            sound = [cast(AudioFrame, await asyncio.wait_for(audio.track.recv(), 5)) for _ in range(10)]
            assert max(np.abs(f.to_ndarray()).max() for f in sound) > 2000
        finally:
            await viewer.close()


async def test_tone_bursts_make_a_speaker_and_silence_does_not(kelian: Server) -> None:
    async with peers(kelian, "speaker", "quiet", "listener") as (speaker, quiet, listener):
        # two seconds of tone, two of silence: the server must see the speaker start, then stop
        await speaker.publish(video=False, seconds=4.0, audio_bursts=True, burst_frames=100)
        await quiet.publish(video=False, audio_amplitude=0)

        def speakers() -> list[list[str]]:
            return [
                [s["sid"] for s in e["speakers"]] for e in listener.events if e["type"] == "active_speakers"
            ]

        assert await eventually(lambda: [speaker.sid] in speakers(), timeout=4)
        assert listener.active_speakers == [speaker.sid]
        assert await eventually(lambda: [] in speakers()[speakers().index([speaker.sid]) :], timeout=5)
        assert all(quiet.sid not in sids for sids in speakers())


async def test_pli_makes_the_publisher_send_a_keyframe(kelian: Server) -> None:
    async with peers(kelian, "teacher", "student") as (teacher, student):
        # one keyframe every 5 s in the clip: any other keyframe within the test was asked for
        await teacher.publish(
            audio=False, simulcast=False, layers=[SMALL], seconds=5.0, keyframe_interval=150
        )
        (track,) = await student.wait_for_tracks(1, timeout=5)
        assert await eventually(lambda: received(student, "video")["keyframes"] >= 1)
        assert received(student, "video")["keyframe_size"] == [320, 180]
        assert teacher.publisher is not None
        (stream,) = teacher.publisher.video
        requests, keyframes = stream.keyframe_requests, received(student, "video")["keyframes"]
        await asyncio.sleep(0.6)  # past the server's keyframe-request throttle
        student.request_keyframe(track["id"])
        assert await eventually(lambda: stream.keyframe_requests > requests, timeout=2)
        assert await eventually(lambda: received(student, "video")["keyframes"] > keyframes, timeout=2)
        assert received(student, "video")["plis_sent"] >= 1


async def test_nacks_are_sent_for_gaps_and_answered_from_the_cache(kelian: Server) -> None:
    teacher = Peer(kelian.url, kelian.token("teacher", "lecturer"))
    lossy = Peer(kelian.url, kelian.token("lossy"), loss=0.05)
    try:
        await teacher.connect()
        await teacher.publish(audio=False, simulcast=False, layers=[SMALL])
        await lossy.connect()
        await lossy.wait_for_tracks(1, timeout=5)
        assert await eventually(lambda: received(lossy, "video")["nacks_sent"] >= 3, timeout=5)
        consumer = next(iter(server_transport(kelian, lossy, "subscriber").consumers.values()))
        assert await eventually(lambda: consumer.retransmissions > 0)
        assert await eventually(lambda: received(lossy, "video")["late"] > 0), "retransmissions arrived"

        # the server asks the publisher for a packet again: it comes from the peer's own cache
        assert teacher.publisher is not None
        (stream,) = teacher.publisher.video
        nacks, retransmissions = stream.nacks, stream.retransmissions
        seq = (stream.seq - 3) & 0xFFFF
        server_transport(kelian, teacher, "publisher").send_rtcp(nack(1, stream.ssrc, [seq]))
        assert await eventually(lambda: stream.retransmissions == retransmissions + 1)
        assert stream.nacks == nacks + 1
    finally:
        await lossy.close()
        await teacher.close()


async def test_peer_survives_junk_from_the_network_and_the_server(kelian: Server) -> None:
    async with peers(kelian, "teacher", "student") as (teacher, student):
        await teacher.publish(audio=False, simulcast=False, layers=[SMALL])
        (track,) = await student.wait_for_tracks(1, timeout=5)
        assert await eventually(lambda: received(student, "video")["frames"] >= 5)
        assert student.subscriber is not None and teacher.publisher is not None
        sub, pub = student.subscriber.connection, teacher.publisher.connection
        assert sub.local is not None and sub.remote is not None

        # datagrams from a stranger never reach the parsers
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            for _ in range(5):
                stranger.sendto(os.urandom(100), sub.local)
        assert await eventually(lambda: sub.foreign >= 5)

        # junk as if from the server's address: every demultiplexing branch
        junk = [b"", b"\x00", b"\x01\x01\x00", os.urandom(40), b"\x00\x01\x00\x08" + os.urandom(24)]
        junk += [b"\x16\xfe\xfd" + os.urandom(60), b"\x80\x60" + os.urandom(30), b"\x80\xc8" + os.urandom(30)]
        junk += [b"\xff" * 20, bytes(range(256)) * 8]
        for data in junk:
            for connection in (sub, pub):
                connection.datagram_received(data, connection.remote)

        # malformed RTCP and unknown RTP, properly protected by the server so the parsers see them
        rtcp_junk = [
            b"\x80\xc8\x00\x01" + os.urandom(4),  # a sender report too short for its sender info
            b"\x80\xcc\xff\xff" + os.urandom(8),  # longer than the datagram
            b"\x81\xcd\x00\x02" + os.urandom(8),  # a NACK without FCI, for nobody
            b"\x84\xce\x00\x03" + os.urandom(8) + b"\x00\x00",  # a FIR with half an entry
            b"\x8f\xce\x00\x04" + os.urandom(8) + b"REMB\xff",  # a REMB cut short
            b"\xa0\xc9\x00\x01" + os.urandom(4),  # padding bit with no padding
        ]
        for data in rtcp_junk:
            server_transport(kelian, student, "subscriber").send_rtcp(data)
            server_transport(kelian, teacher, "publisher").send_rtcp(data)
        tx = server_transport(kelian, student, "subscriber").srtp_tx
        assert tx is not None
        sub.datagram_received(tx.protect(b"\x80\x60\x00\x01" + os.urandom(8) + os.urandom(50)), sub.remote)

        # the server refusing requests, and messages the peer cannot use
        with pytest.raises(PeerError) as refused:
            await student.set_track_settings("TR_nothing", 320, 180)
        assert refused.value.code == "not_found"
        await student.send({"type": "no_such_request"})
        assert await eventually(lambda: any(e.get("code") == "unknown_type" for e in student.errors))
        await student._dispatch({"type": "offer", "sdp": "v=0\r\nnonsense", "tracks": {}})
        await student._dispatch({"type": "layers", "track": "TR_x", "active": "all"})
        await teacher._dispatch({"type": "layers", "track": teacher.publisher.video_track, "active": 3})

        frames = received(student, "video")["frames"]
        assert await eventually(lambda: received(student, "video")["frames"] >= frames + 10)
        assert sub.state == pub.state == "connected"
        assert student.stats()["subscriber"]["connection"]["rtcp_errors"] >= 1
        assert student.stats()["subscriber"]["unknown_ssrc"] >= 1
        assert received(student, "video")["track"] == track["id"]


async def test_transport_cc_feedback_reaches_the_servers_estimate(kelian: Server) -> None:
    async with peers(kelian, "teacher", "student") as (teacher, student):
        await teacher.publish(audio=False, simulcast=False, layers=[SMALL])
        await student.wait_for_tracks(1, timeout=5)
        transport = server_transport(kelian, student, "subscriber")
        assert transport.twcc is not None and transport.bwe is not None, "the answer kept transport-cc"
        bwe = transport.bwe
        assert await eventually(lambda: transport.twcc_feedbacks >= 10 and bwe.delivered > 0, timeout=5)
        assert transport.twcc_errors == 0
        assert transport.node.feedback_read >= 10, "the kernel steered feedback to the batch-read socket"
        assert bwe.feedbacks > 0 and bwe.estimate > 0
        assert transport.available_bitrate() == bwe.estimate
        # every packet reported arrived, and the server paired them with what it sent: the delivered
        # rate is about the layer's (300 kbit/s), not zero and not wildly more
        assert 50_000 < bwe.delivered < 3_000_000
        feedback = student.stats()["subscriber"]["transport_cc"]
        assert feedback["feedbacks_sent"] >= transport.twcc_feedbacks
        assert feedback["packets_reported"] > 20 and feedback["lost_reported"] == 0
        assert feedback["bytes_sent"] > 16 * feedback["feedbacks_sent"]


async def test_a_subscriber_without_transport_cc_declines_it(kelian: Server) -> None:
    teacher = Peer(kelian.url, kelian.token("teacher", "lecturer"))
    cheap = Peer(kelian.url, kelian.token("cheap"), transport_cc=False)
    try:
        await teacher.connect()
        await teacher.publish(audio=False, simulcast=False, layers=[SMALL])
        await cheap.connect()
        await cheap.wait_for_tracks(1, timeout=5)
        assert await eventually(lambda: received(cheap, "video")["frames"] >= 5)
        transport = server_transport(kelian, cheap, "subscriber")
        assert transport.twcc is None and transport.bwe is None
        assert cheap.stats()["subscriber"]["transport_cc"] is None
    finally:
        await cheap.close()
        await teacher.close()
