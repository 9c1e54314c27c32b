"""Finishing copies what TVs decode already: a lecturer camera recorded as H.264 with regular
keyframes (OBS, FFmpeg) goes into the MP4 and HLS as it is, packet for packet, without a second
encoding; one with a keyframe only at its start (a browser's, asked for once) is transcoded, so that
HLS segments can start every few seconds."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import av
from test_recording_speaker import FPS, GREEN, SECONDS, camera, microphone

from recorder.finish import finish


def packets(path: Path) -> list[tuple[int, bool]]:
    """(size, keyframe) of each video packet of a file."""
    with av.open(str(path)) as container:
        return [(p.size, p.is_keyframe) for p in container.demux(video=0) if p.size]


def test_h264_with_regular_keyframes_is_copied_not_transcoded(tmp_path: Path) -> None:
    camera(tmp_path, "teacher", "lecturer", GREEN, codec="H264", gop=FPS)
    microphone(tmp_path, "teacher", "lecturer", [(1.0, 2.0)])
    result = finish(tmp_path, tmp_path / "out")
    assert result["transcoded"] is False and result["main"] == "lecturer", result
    recorded = packets(tmp_path / "teacher-camera.mkv")
    assert packets(tmp_path / "out" / "lesson.mp4") == recorded, "every packet, as it was"
    with av.open(str(tmp_path / "out" / "lesson.mp4")) as mp4:
        assert {s.type: s.codec_context.name for s in mp4.streams} == {"video": "h264", "audio": "aac"}
        assert sum(1 for _ in mp4.decode(video=0)) == len(recorded)
    playlist = (tmp_path / "out" / "hls" / "index.m3u8").read_text()
    assert sum(line.endswith(".ts") for line in playlist.splitlines()) >= SECONDS // 4
    assert (tmp_path / "out" / "poster.jpg").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "finished.json").read_text())["transcoded"] is False


def test_h264_with_one_keyframe_is_transcoded_for_segments(tmp_path: Path) -> None:
    camera(tmp_path, "teacher", "lecturer", GREEN, codec="H264")
    result = finish(tmp_path, tmp_path / "out")
    assert result["transcoded"] is True
    keys = sum(key for _, key in packets(tmp_path / "out" / "lesson.mp4"))
    assert keys >= 2, "a keyframe every two seconds: HLS segments start there"


def test_audio_and_video_are_interleaved_for_players_that_read_front_to_back(tmp_path: Path) -> None:
    """A phone plays the MP4 by range requests as it goes: its audio and video lie side by side in
    the file, second by second, not all the video and then all the audio."""
    camera(tmp_path, "teacher", "lecturer", GREEN)
    microphone(tmp_path, "teacher", "lecturer", [(1.0, 2.0)])
    finish(tmp_path, tmp_path / "out")
    with av.open(str(tmp_path / "out" / "lesson.mp4")) as mp4:
        laid = [(p.pos, p.stream.type) for p in mp4.demux() if p.size and p.pos is not None]
    order = [kind for _, kind in sorted(laid)]
    runs = 1 + sum(a != b for a, b in itertools.pairwise(order))
    assert runs >= 2 * (SECONDS - 1), f"{runs} runs of one kind in the file"
