"""The decoding probe of `kelian loadtest` (loadtest/probe.py) on the light publisher's own packets:
valid clips decode, a stream joined mid-way waits for its keyframe, corrupt input counts as errors
and never raises, a probe that falls behind gives up; and who probes what, and how it is reported."""

from __future__ import annotations

import argparse
import threading
from typing import Any

import pytest

from loadtest import probe as probe_module
from loadtest.clips import SIMULCAST_LAYERS, audio_clip, video_clip
from loadtest.options import PROBES_PER_PEER, add_arguments, plan_from_args
from loadtest.outstream import OutStream
from loadtest.peer import AUDIO_AMPLITUDE, AUDIO_FREQUENCY, BURST_FRAMES, CLIP_SECONDS, FPS, KEYFRAME_INTERVAL
from loadtest.probe import MAX_BACKLOG, Probe
from loadtest.report import probe_warnings, track_table

QUARTER = SIMULCAST_LAYERS[0]  # 320x180: the quickest layer to encode and decode
WAIT = 30.0  # seconds for a probe's thread to finish: a bound, never reached when all is well


def packets(kind: str, count: int) -> list[list[bytes]]:
    """The RTP packets of the first `count` frames the light publisher sends, frame by frame."""
    if kind == "video":
        layer = QUARTER
        clip = video_clip(layer.width, layer.height, layer.bitrate, FPS, CLIP_SECONDS, KEYFRAME_INTERVAL)
        stream = OutStream("video", layer, clip, "0", FPS)
    else:
        clip = audio_clip(CLIP_SECONDS, AUDIO_FREQUENCY, False, AUDIO_AMPLITUDE, BURST_FRAMES)
        stream = OutStream("audio", None, clip, "1", FPS)
    frames: list[list[bytes]] = []

    def send(packet: bytes) -> bool:
        frames[-1].append(packet)
        return True

    for n in range(count):
        frames.append([])
        stream.send_frame(n, send)
    return frames


def decode(probe: Probe, frames: list[list[bytes]]) -> dict[str, Any]:
    for frame in frames:
        for packet in frame:
            probe.feed(packet)
    probe.close(WAIT)
    return probe.stats()


def test_the_publishers_video_decodes_at_its_size() -> None:
    stats = decode(Probe("video", "VP8", 90000), packets("video", 40))
    # the last frame stays in the jitter buffer: it is whole only once the next one begins
    assert stats == {"decoded_frames": 39, "decode_errors": 0, "width": 320, "height": 180, "problem": None}


def test_the_publishers_audio_decodes() -> None:
    stats = decode(Probe("audio", "opus", 48000), packets("audio", 40))
    assert stats == {
        "decoded_frames": 39,
        "decode_errors": 0,
        "width": None,
        "height": None,
        "problem": None,
    }


def test_a_stream_joined_mid_way_decodes_from_its_next_keyframe_without_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(probe_module, "NO_FRAME_GRACE", 0.0)
    assert KEYFRAME_INTERVAL == 30
    frames = packets("video", 45)
    stats = decode(Probe("video", "VP8", 90000), frames[5:])  # keyframes at 0 and 30
    assert stats["decoded_frames"] == 14 and stats["decode_errors"] == 0 and stats["problem"] is None
    # frames came, but never a keyframe: nothing decodes, and that is the problem reported
    stats = decode(Probe("video", "VP8", 90000), frames[1:29])
    assert stats["decoded_frames"] == 0 and stats["problem"] == "no frame decoded"
    # no frame at all (a voice the server does not forward) is no decoding problem
    assert Probe("audio", "opus", 48000).stats()["problem"] is None


def test_truncated_and_garbage_packets_count_as_errors_and_never_raise() -> None:
    frames = packets("video", 40)
    header = 12 + 8 + 4  # RTP header, the MID and RID extension block, the VP8 descriptor
    broken = [[p[: header + 3] for p in frame] for frame in frames[10:]]  # each frame cut short
    probe = Probe("video", "VP8", 90000)
    for frame in frames[:10] + broken:
        for packet in frame:
            probe.feed(packet)
    probe.feed(b"\x80")  # not even an RTP header
    probe.feed(b"\x90\x60" + bytes(10))  # an extension block it does not have
    stats = decode(probe, [])
    assert stats["decoded_frames"] == 10
    assert stats["decode_errors"] == 29 + 2  # the cut frames (the last still buffered), the packets
    assert stats["problem"] is None


def test_a_probe_that_falls_behind_gives_up_instead_of_queueing(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    class Stuck:
        """A decoder slower than the stream: it holds its first frame until released."""

        def decode(self, frame: object) -> list[object]:
            release.wait(WAIT)
            return []

    monkeypatch.setattr(probe_module, "get_decoder", lambda parameters: Stuck())
    probe = Probe("audio", "opus", 48000)
    for frame in packets("audio", MAX_BACKLOG + 20):
        probe.feed(frame[0])
    assert probe.stats()["problem"] == "fell behind"
    assert MAX_BACKLOG <= probe.taken <= MAX_BACKLOG + 1, "frames past the bound were not kept"
    release.set()
    probe.close(WAIT)
    assert probe.handled == probe.taken, "what it had taken is done with, without decoding"


def test_a_codec_without_decoder_is_a_problem_not_an_error() -> None:
    probe = Probe("video", "VP9", 90000)
    for frame in packets("video", 3):
        for packet in frame:
            probe.feed(packet)
    assert probe.stats()["problem"] == "no decoder for VP9" and probe.taken == 0


def _plan(*args: str) -> Any:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return plan_from_args(parser.parse_args(["--api-key", "k", "--api-secret", "s", *args]))


def test_each_track_is_probed_by_the_first_subscriber_that_receives_it() -> None:
    assert _plan("--subscribers", "3").probes() == {
        ("publisher0", "video"): "subscriber0",
        ("publisher0", "audio"): "subscriber0",
    }
    # dual-teacher: box0 does not watch box1's camera, but hears it; the lecturer comes first anyway
    plan = _plan("--preset", "dual-teacher", "--subscribers", "2")
    assert plan.probes() == {
        ("lecturer", "video"): "box0",
        ("lecturer", "audio"): "box0",
        ("box0", "video"): "lecturer",
        ("box0", "audio"): "lecturer",
        ("box1", "video"): "lecturer",
        ("box1", "audio"): "lecturer",
    }
    # a lecturer watching many classrooms decodes a sample of them; the rest are counted, not decoded
    many = _plan("--preset", "dual-teacher", "--subscribers", "30").probes()
    assert sum(1 for viewer in many.values() if viewer == "lecturer") == PROBES_PER_PEER
    assert ("box29", "video") not in many and many[("lecturer", "video")] == "box0"


def test_the_report_takes_each_tracks_probe_and_warns_about_failed_ones() -> None:
    published = {"V": {"publisher": "p0", "kind": "video"}, "A": {"publisher": "p0", "kind": "audio"}}
    good = {"decoded_frames": 90, "decode_errors": 0, "width": 1280, "height": 720, "problem": None}
    silent = {"decoded_frames": 0, "decode_errors": 0, "width": None, "height": None}
    subscribers = [
        {
            "identity": "s0",
            "subscriber": {
                "tracks": {
                    "V": {"kind": "video", "probe": good},
                    "A": {"kind": "audio", "probe": silent | {"problem": "no frame decoded"}},
                }
            },
        },
        {"identity": "s1", "subscriber": {"tracks": {"V": {"kind": "video", "probe": None}}}},
    ]
    tracks = track_table(published, subscribers)
    assert tracks["V"]["probe"] == {
        "subscriber": "s0",
        "decoded_frames": 90,
        "decode_errors": 0,
        "size": "1280x720",
        "problem": None,
    }
    assert tracks["A"]["probe"]["size"] is None
    assert probe_warnings(tracks) == [
        "audio track A of p0: s0 decoded 0 frame(s) with 0 error(s) (no frame decoded)"
    ]
    tracks["V"]["probe"]["decode_errors"] = 2
    assert len(probe_warnings(tracks)) == 2
