"""Recording H.264 (RFC 6184, packetization mode 1): the recorder's depacketizer against a real
libx264 stream packetized by aiortc (single NAL unit, STAP-A and FU-A packets), with lost packets,
left-out markers and garbage; a track's Matroska file (its size and parameter sets, a loss in it);
and whole recordings of an aiortc publisher and of FFmpeg's WHIP muxer, which decode and finish."""

from __future__ import annotations

import asyncio
import fractions
import functools
import sys
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import pytest
from aiortc.codecs.h264 import H264Encoder
from av.video.codeccontext import VideoCodecContext
from classroom_peers import api
from clients.picture import shows_quadrants
from hypothesis import given
from hypothesis import strategies as st
from kelian_server import Server, eventually, running_server
from sync_media import Beeping, Flashing, flashes
from test_interop_ffmpeg import PUBLISHER, p256_certificate

from recorder.depacketize import (
    FU_A,
    IDR,
    PPS,
    SPS,
    STAP_A,
    Frame,
    H264Assembler,
    annexb_units,
    h264_parameter_sets,
)
from recorder.finish import finish
from recorder.track import TrackFile, TrackInfo
from signaling.client import Client, use_loopback_candidates

Packet = tuple[int, bool, bytes]  # RTP timestamp, marker, payload
FPS, GOP, COUNT = 30, 10, 20
TICKS = 90_000 // FPS


def picture(width: int, height: int, i: int) -> np.ndarray:
    """Gradients that move and stripes: pictures that compress to a few kB, as a camera's do."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = (x * 3 + i * 5) % 256
    image[..., 1] = (y * 4 + i * 3) % 256
    image[..., 2] = ((x + y + 7 * i) // 8 % 2) * 200
    return image


@functools.lru_cache(maxsize=8)
def encode(
    width: int = 128, height: int = 96, pix_fmt: str = "yuv420p", params: str = "", count: int = COUNT
) -> tuple[bytes, ...]:
    """Access units (Annex B) from libx264: an IDR every GOP frames, SPS and PPS before each."""
    encoder = cast(VideoCodecContext, av.CodecContext.create("libx264", "w"))
    encoder.width, encoder.height, encoder.pix_fmt = width, height, pix_fmt
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.framerate = fractions.Fraction(FPS, 1)
    encoder.gop_size = GOP
    x264 = ":".join(p for p in ("repeat-headers=1", "scenecut=0", params) if p)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": x264}
    units = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(picture(width, height, i), format="rgb24").reformat(format=pix_fmt)
        frame.pts = i
        units += [bytes(p) for p in encoder.encode(frame)]
    units += [bytes(p) for p in encoder.encode(None)]
    assert len(units) == count
    return tuple(units)


def packetize(units: tuple[bytes, ...] | list[bytes]) -> list[list[Packet]]:
    """Each access unit's packets, as aiortc sends them (its 1300-byte packets), the marker on the last."""
    packer = H264Encoder()
    out = []
    for i, unit in enumerate(units):
        packet = av.Packet(unit)
        packet.pts, packet.time_base = i, fractions.Fraction(1, FPS)
        payloads, timestamp = packer.pack(packet)
        out.append([(timestamp, j == len(payloads) - 1, p) for j, p in enumerate(payloads)])
    return out


def feed(assembler: H264Assembler, packets: list[Packet], seq: int = 65_530) -> tuple[list[Frame], int]:
    """The frames the packets give, in order (sequence numbers from `seq`, through the wrap), and
    the sequence number after the last."""
    frames = []
    for timestamp, marker, payload in packets:
        if (frame := assembler.push(seq, timestamp, marker, payload)) is not None:
            frames.append(frame)
        seq = (seq + 1) & 0xFFFF
    return frames, seq


def nal_units(data: list[bytes] | list[Frame]) -> list[list[bytes]]:
    return [annexb_units(d.data if isinstance(d, Frame) else d) for d in data]


def decode(units: list[bytes]) -> list[Any]:
    """The pictures libavcodec's H.264 decoder makes of the access units."""
    decoder = av.CodecContext.create("h264", "r")
    pictures = []
    for unit in [*units, None]:
        pictures += decoder.decode(None if unit is None else av.Packet(unit))
    return pictures


def flat(units: list[list[Packet]]) -> list[Packet]:
    return [p for packets in units for p in packets]


def numbered(units: list[list[Packet]]) -> list[tuple[int, Packet]]:
    """The packets, each with the index of its access unit."""
    return [(i, p) for i, packets in enumerate(units) for p in packets]


# -- the depacketizer ----------------------------------------------------------------------------


def test_access_units_come_back_whole_from_every_kind_of_packet() -> None:
    units = encode()
    packets = packetize(units)
    kinds = {p[2][0] & 0x1F for p in flat(packets)}
    assert {STAP_A, FU_A} <= kinds and kinds & set(range(1, 24)), kinds  # all three kinds in the stream
    assembler = H264Assembler()
    frames, _ = feed(assembler, flat(packets))
    assert nal_units(frames) == nal_units(list(units)) and assembler.holes == 0
    assert [f.keyframe for f in frames] == [i % GOP == 0 for i in range(COUNT)]
    assert [f.timestamp for f in frames] == [p[0][0] for p in packets]
    assert all(f.data.startswith(b"\x00\x00\x00\x01") for f in frames)
    assert len(decode([f.data for f in frames])) == COUNT


@pytest.mark.parametrize("kept", ["none", "every other"])
def test_a_sender_that_leaves_markers_out_is_read_by_its_timestamps(kept: str) -> None:
    units = encode()
    packets = [
        [(ts, marker and kept == "every other" and i % 2 == 0, payload) for ts, marker, payload in unit]
        for i, unit in enumerate(packetize(units))
    ]
    assembler = H264Assembler()
    frames, seq = feed(assembler, flat(packets))
    # the last unit waits for what comes after it: here a padding packet, later
    last = assembler.push(seq, packets[-1][0][0] + TICKS, False, b"")
    frames += [last] if last is not None else []
    assert nal_units(frames) == nal_units(list(units)) and assembler.holes == 0
    assert len(decode([f.data for f in frames])) == COUNT


@pytest.mark.parametrize(
    ("unit", "lost"),
    [(GOP, 0), (GOP, 2), (GOP, -1), (GOP + 2, 0), (GOP + 2, -1)],
    ids=["keyframe-first", "keyframe-middle", "keyframe-marker", "delta-first", "delta-marker"],
)
def test_a_lost_packet_drops_exactly_its_access_unit(unit: int, lost: int) -> None:
    units = encode()
    packets = packetize(units)
    assert len(packets[unit]) > max(1, lost + 1), "a unit of several packets, the lost one inside"
    gone = packets[unit][lost]
    assembler, frames = H264Assembler(), []
    for seq, packet in enumerate(flat(packets)):
        if packet is not gone and (frame := assembler.push(seq, *packet)) is not None:
            frames.append(frame)
    expected = [u for i, u in enumerate(units) if i != unit]
    assert nal_units(frames) == nal_units(expected) and assembler.holes == 1


GARBAGE = [
    b"",  # padding only
    bytes([FU_A]),  # a FU-A without its header
    bytes([FU_A, 0x85]),  # ... or any fragment
    bytes([FU_A, 0xC5, 1, 2]),  # start and end at once
    bytes([FU_A, 0x05, 1, 2]),  # a middle of nothing begun
    bytes([FU_A, 0x9C, 1, 2]),  # a fragment of a fragment
    bytes([STAP_A, 0x00, 0x10, 0x67, 0x42]),  # a size past the end
    bytes([STAP_A, 0x00, 0x00]),  # a unit of no bytes
    bytes([STAP_A, 0x00]),  # a size cut short
    bytes([STAP_A]),  # nothing aggregated
    bytes([25, 0, 0, 0, 2, 0x67, 0x42]),  # STAP-B
    bytes([26, 0, 0, 0, 0, 2, 0, 0, 0x67, 0x42]),  # MTAP16
    bytes([27, 0, 0, 0, 0, 2, 0, 0, 0, 0x67, 0x42]),  # MTAP24
    bytes([29, 0x85, 0, 0, 1, 2]),  # FU-B
    bytes([0, 1, 2]),  # NAL unit type 0
    bytes([30, 1]),  # 30 and 31: undefined
    bytes([31]),
]


def test_garbage_raises_nothing_and_costs_nothing_after() -> None:
    units = encode()
    packets = packetize(units)
    assembler = H264Assembler()
    frames, seq = feed(assembler, flat(packets[:GOP]))
    for i, junk in enumerate(GARBAGE):  # each a packet of its own between two units, as sent
        got, seq = feed(assembler, [(packets[GOP - 1][0][0] + 1 + i, i % 2 == 0, junk)], seq)
        assert got == []
    more, seq = feed(assembler, flat(packets[GOP:]), seq)
    assert nal_units(frames + more) == nal_units(list(units)), "the next keyframe and all after it"

    # inside a unit, a packet it cannot read drops that unit, and only that one
    for junk in GARBAGE[1:]:
        assembler = H264Assembler()
        frames, seq = feed(assembler, flat(packets[:GOP]))
        keyframe = packets[GOP]
        got, seq = feed(assembler, [keyframe[0], (keyframe[0][0], False, junk), *keyframe[1:]], seq)
        assert got == [] and assembler.holes == 1, junk
        more, _ = feed(assembler, flat(packets[GOP + 1 :]), seq)
        assert nal_units(more) == nal_units(list(units[GOP + 1 :])), junk


PAYLOADS = st.one_of(
    st.binary(max_size=24),
    st.builds(
        lambda kind, rest: bytes([kind]) + rest,
        st.sampled_from([1, 5, 7, 8, 24, 25, 26, 27, 28, 29, 0x7C, 0x5C, 0x78]) | st.integers(0, 255),
        st.binary(max_size=24),
    ),
)


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 2), st.booleans(), PAYLOADS),
        max_size=30,
    )
)
def test_any_packets_raise_nothing_and_a_clean_stream_after_them_comes_whole(
    junk: list[tuple[int, int, bool, bytes]],
) -> None:
    units = encode()[:4]
    assembler, seq = H264Assembler(), 7
    for step, ts, marker, payload in junk:
        seq += step  # 0: repeated, more than 1: a gap
        assembler.push(seq & 0xFFFF, 1000 + ts * TICKS, marker, payload)
    seq += 1
    frames, seq = feed(assembler, flat(packetize(units)), seq & 0xFFFF)
    last = assembler.push(seq, 10**9, False, b"")  # whatever the junk left held comes out before
    frames += [last] if last is not None else []
    assert nal_units(frames[-len(units) :]) == nal_units(list(units))


# -- a track's file ------------------------------------------------------------------------------


def info(ssrc: int = 1) -> TrackInfo:
    return TrackInfo(ssrc, "TR_1", "video", "H264", 90_000, "teacher", "camera", "lecturer")


def without_parameter_sets(unit: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + u for u in annexb_units(unit) if u[0] & 0x1F not in (SPS, PPS))


@pytest.mark.parametrize(
    ("pix_fmt", "params"),
    [("yuv420p", ""), ("yuv420p", "cqm=jvt"), ("yuv444p", "")],
    ids=["baseline", "high-with-scaling-lists", "high-4:4:4"],
)
def test_a_track_file_starts_at_a_keyframe_with_its_parameter_sets(
    tmp_path: Path, pix_fmt: str, params: str
) -> None:
    """66x50 is cropped from whole macroblocks (80x64): the file says 66x50. The first keyframe came
    without its SPS and PPS (as from a sender that gives them out of band): the file waits, asking
    for a keyframe, and begins at the next one."""
    units = list(encode(66, 50, pix_fmt, params))
    assert h264_parameter_sets(units[0]) and h264_parameter_sets(units[GOP]), "repeated at each IDR"
    units[0] = without_parameter_sets(units[0])
    assert h264_parameter_sets(units[0]) is None and any(u[0] & 0x1F == IDR for u in annexb_units(units[0]))
    track = TrackFile(info(), tmp_path / "camera")
    asked = []
    for seq, (i, (ts, marker, payload)) in enumerate(numbered(packetize(units))):
        asked.append((i, track.on_rtp(seq, ts, marker, payload)))
    meta = track.close()
    assert any(wanted for i, wanted in asked if i < GOP), "asked for a keyframe until one began the file"
    assert not any(wanted for i, wanted in asked if i > GOP), "none once the keyframe came"
    assert meta["frames"] == COUNT - GOP and meta["holes"] == 0 and meta["codec"] == "H264"
    with av.open(str(tmp_path / "camera.mkv")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (66, 50)
        sps = next(u for u in annexb_units(units[GOP]) if u[0] & 0x1F == SPS)
        extradata = stream.codec_context.extradata or b""
        assert extradata[0] == 1 and sps in extradata, "avcC, with the sender's SPS"
        pictures = list(container.decode(stream))
    assert len(pictures) == meta["frames"] and {(p.width, p.height) for p in pictures} == {(66, 50)}
    span = float(pictures[-1].time or 0) - float(pictures[0].time or 0)
    assert abs(span - meta["duration"]) < 0.01 and abs(span - (COUNT - GOP - 1) / FPS) < 0.01


def test_a_keyframe_ffmpeg_cannot_read_begins_no_file(tmp_path: Path) -> None:
    """Parameter sets that say nothing FFmpeg can use: a ValueError (the recorder reports it and asks
    for another keyframe), no file, and the next keyframe begins it."""
    nonsense = [bytes([0x67, 0xFF, 0xFF]), bytes([0x68, 0xFF]), bytes([0x65, 0x88, 0x84, 0x21])]
    stap = bytes([STAP_A]) + b"".join(len(u).to_bytes(2, "big") + u for u in nonsense)
    track = TrackFile(info(), tmp_path / "camera")
    with pytest.raises(ValueError, match="cannot read"):
        track.on_rtp(0, 0, True, stap)
    assert track.container is None and not (tmp_path / "camera.mkv").exists()
    for seq, packet in enumerate(flat(packetize(encode())), start=1):
        track.on_rtp(seq, *packet)
    assert track.close()["frames"] == COUNT


def test_after_a_lost_packet_the_file_goes_on_from_the_next_keyframe(tmp_path: Path) -> None:
    units = encode()
    packets = packetize(units)
    gone = packets[3][0]  # a delta frame's first packet: frames 3 to 9 would show it missing
    track = TrackFile(info(), tmp_path / "camera")
    asked = []
    for seq, (i, packet) in enumerate(numbered(packets)):
        if packet is not gone:
            asked.append((i, track.on_rtp(seq, *packet)))
    meta = track.close()
    assert meta["holes"] == 1 and meta["frames"] == COUNT - (GOP - 3)
    assert any(wanted for i, wanted in asked if 3 <= i < GOP), "a keyframe was asked for"
    assert not any(wanted for i, wanted in asked if i > GOP), "none once the keyframe came"
    with av.open(str(tmp_path / "camera.mkv")) as container:
        pictures = list(container.decode(video=0))
    assert len(pictures) == meta["frames"]
    assert [round(float(p.time or 0) * FPS) for p in pictures] == [*range(3), *range(GOP, COUNT)]


# -- whole recordings ----------------------------------------------------------------------------


def check_video_file(folder: Path, files: list[dict[str, Any]]) -> tuple[dict[str, Any], np.ndarray]:
    """The recorded H.264 video: it decodes to as many 320x240 frames as its sidecar says, spanning
    its duration, and has a wall-clock start; its description and its last picture."""
    (meta,) = [f for f in files if f["kind"] == "video"]
    assert meta["codec"] == "H264" and meta["first_unix"] is not None and meta["holes"] == 0, meta
    with av.open(str(folder / meta["file"])) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        pictures = list(container.decode(stream))
        times = [float(p.time or 0) for p in pictures]
    assert len(pictures) == meta["frames"] and len(pictures) > 30, (len(pictures), meta)
    assert {(p.width, p.height) for p in pictures} == {(320, 240)}
    assert abs(max(times) - min(times) - meta["duration"]) < 0.1, (times[0], times[-1], meta)
    return meta, pictures[-1].to_ndarray(format="rgb24")


async def recorded(kelian: Server, seconds: float) -> dict[str, Any]:
    """`seconds` of the room's two tracks recorded; the recording as the admin API describes it."""
    status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": True})
    assert status == 200 and len(body["tracks"]) == 2, body
    await asyncio.sleep(seconds)
    status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": False})
    assert status == 200
    return body


async def test_an_h264_publisher_is_recorded_and_finished(tmp_path: Path) -> None:
    use_loopback_candidates()
    async with running_server("127.0.0.1", recordings=str(tmp_path)) as kelian:
        teacher = Client(kelian.url, kelian.token("teacher", "lecturer"))
        try:
            await teacher.connect()
            await teacher.publish(Flashing(), Beeping(), video_codec="H264")
            body = await recorded(kelian, 3)
        finally:
            await teacher.close()
    folder = tmp_path / body["directory"]
    meta, _ = check_video_file(folder, body["files"])
    assert flashes(folder / meta["file"], meta["first_unix"]), "the camera's white flashes"
    result = finish(folder, tmp_path / "out")
    with av.open(str(tmp_path / "out" / "lesson.mp4")) as container:
        assert {s.type: s.codec_context.name for s in container.streams} == {"video": "h264", "audio": "aac"}
        assert sum(1 for _ in container.decode(video=0)) > 30
    assert result["video"] and result["audio"]


async def test_an_ffmpeg_whip_publisher_is_recorded(tmp_path: Path) -> None:
    """FFmpeg's WHIP muxer ignores keyframe requests: the recording begins at a keyframe it sent by
    itself (one a second here), which carries its SPS and PPS in band; the recorded file is one the
    finishing job copies as it is."""
    use_loopback_candidates()
    cert, key = p256_certificate(tmp_path)
    async with running_server("127.0.0.1", recordings=str(tmp_path / "rec")) as kelian:
        command = [sys.executable, str(PUBLISHER), f"{kelian.url}/whip/lesson"]
        command += [kelian.token("encoder", "lecturer"), str(cert), str(key), "5", "25"]
        encoder = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            room = kelian.rooms.get("lesson")  # type: ignore[attr-defined]
            assert await eventually(lambda: len(room.router.producers) == 2, timeout=15)
            body = await recorded(kelian, 3)
        finally:
            out, err = await encoder.communicate()
    assert encoder.returncode == 0 and out.startswith(b"published"), err.decode(errors="replace")[-2000:]
    folder = tmp_path / "rec" / body["directory"]
    meta, picture = check_video_file(folder, body["files"])
    assert shows_quadrants(picture), "the encoder's picture"
    # a keyframe a second: finishing copies the recorded packets into the MP4, no second encoding
    result = finish(folder, tmp_path / "out")
    assert result["transcoded"] is False, result
    with av.open(str(tmp_path / "out" / "lesson.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == meta["frames"]
