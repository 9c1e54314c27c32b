"""Lip sync in a recording: a publisher flashes its camera white and beeps its microphone at every
whole second of the wall clock; in the recorded files (aligned by the wall-clock time of their first
frames, from the sender reports), each flash and its beep fall within 45 ms of each other, and the
files span the recorded time."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import av
from classroom_peers import api
from kelian_server import running_server
from library_lessons import record
from sync_media import SECONDS, Beeping, Flashing, beeps, flashes

from recorder.finish import finish
from signaling.client import Client, use_loopback_candidates


async def test_flashes_and_beeps_line_up_in_the_recording(tmp_path: Path) -> None:
    use_loopback_candidates()
    async with running_server("127.0.0.1", recordings=str(tmp_path)) as kelian:
        camera = Flashing()
        body, started, stopped = await record(kelian, camera, SECONDS)
    recorded = stopped - started
    files = {f["kind"]: f for f in body["files"]}
    video, audio = files["video"], files["audio"]
    folder = tmp_path / body["directory"]
    seen = flashes(folder / video["file"], video["first_unix"])
    heard = beeps(folder / audio["file"], audio["first_unix"], since=audio["first_unix"])
    assert len(seen) >= SECONDS - 2 and len(heard) >= SECONDS - 2, (seen, heard)
    # each recorded flash and beep against when it really happened: a flash when its frame was
    # captured, a beep at the whole second; what the files get wrong in sync is the difference
    video_error = [f - min(camera.flashed, key=lambda c: abs(c - f)) for f in seen]
    audio_error = [b - round(b) for b in heard]
    offsets = [round((a - v) * 1000, 1) for v, a in zip(video_error, audio_error, strict=False)]
    assert offsets and all(abs(o) <= 45 for o in offsets), f"audio minus video, ms: {offsets}"
    for name, meta in files.items():
        # from its first frame (the first keyframe after the start, for video) to the stop
        lesson = stopped - meta["first_unix"]
        assert abs(meta["duration"] - lesson) <= 0.01 * lesson, (name, meta["duration"], lesson)
    print(json.dumps({"offsets_ms": offsets, "recorded_s": round(recorded, 2)}))


async def test_a_finished_lesson_plays_as_mp4_and_hls_in_sync(tmp_path: Path) -> None:
    """The finishing job: the lecturer's camera as H.264 and the voices mixed as AAC, in an MP4 that
    starts with its index and in HLS segments, a poster; the flashes and beeps still line up."""
    use_loopback_candidates()
    async with running_server("127.0.0.1", recordings=str(tmp_path)) as kelian:
        camera = Flashing()
        body, _, _ = await record(kelian, camera, SECONDS)
    progress: list[float] = []
    result = finish(tmp_path / body["directory"], tmp_path / "out", progress.append)
    assert progress[-1] == 1.0 and progress == sorted(progress)
    mp4 = tmp_path / "out" / "lesson.mp4"
    assert b"moov" in mp4.read_bytes()[:4096] or mp4.read_bytes().find(b"moov") < mp4.read_bytes().find(
        b"mdat"
    )
    with av.open(str(mp4)) as container:
        kinds = {s.type: s.codec_context.name for s in container.streams}
        assert kinds == {"video": "h264", "audio": "aac"}
        assert abs(container.duration / 1e6 - result["duration"]) < 0.15
    audio_from = next(f["first_unix"] for f in body["files"] if f["kind"] == "audio")
    seen, heard = flashes(mp4, result["starts_at"]), beeps(mp4, result["starts_at"], since=audio_from)
    assert len(seen) >= SECONDS - 2 and len(heard) >= SECONDS - 2
    video_error = [f - min(camera.flashed, key=lambda c: abs(c - f)) for f in seen]
    audio_error = [b - round(b) for b in heard]
    offsets = [round((a - v) * 1000, 1) for v, a in zip(video_error, audio_error, strict=False)]
    print(json.dumps({"mp4_offsets_ms": offsets}))
    assert all(abs(o) <= 45 for o in offsets), f"audio minus video in the MP4, ms: {offsets}"
    playlist = (tmp_path / "out" / "hls" / "index.m3u8").read_text()
    segments = [line for line in playlist.splitlines() if line.endswith(".ts")]
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist and "#EXT-X-ENDLIST" in playlist and segments
    with av.open(str(tmp_path / "out" / "hls" / segments[0])) as segment:
        assert sum(1 for _ in segment.decode(video=0)) > 0
    assert (tmp_path / "out" / "poster.jpg").stat().st_size > 1000


async def test_a_camera_that_leaves_and_comes_back_is_one_lesson(tmp_path: Path) -> None:
    """The lecturer's connection drops mid-recording and joins again: each visit is a file of its
    own, none corrupted, and the finished lesson lays them one after the other on its timeline."""
    use_loopback_candidates()
    async with running_server("127.0.0.1", recordings=str(tmp_path)) as kelian:
        # booked ahead, as a lesson is: the room waits for its lecturer to come back
        assert (await api(kelian, "POST", "/rooms", {"name": "lesson", "empty_timeout": 60}))[0] == 201
        teacher = Client(kelian.url, kelian.token("teacher", "lecturer"))
        try:
            await teacher.connect()
            await teacher.publish(Flashing(), Beeping())
            await asyncio.sleep(0.5)
            await api(kelian, "POST", "/rooms/lesson/recording", {"on": True})
            started = time.time()
            await asyncio.sleep(3)
        finally:
            await teacher.close()  # leaves
        again = Client(kelian.url, kelian.token("teacher", "lecturer"))
        try:
            await again.connect()
            await again.publish(Flashing(), Beeping())
            await asyncio.sleep(3)
            stopped = time.time()
            status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": False})
            assert status == 200
        finally:
            await again.close()
    videos = [f for f in body["files"] if f["kind"] == "video"]
    assert len(videos) == 2 and all(v["holes"] == 0 and v["frames"] > 30 for v in videos), videos
    result = finish(tmp_path / body["directory"], tmp_path / "out")
    assert result["video"] == [v["file"] for v in sorted(videos, key=lambda v: v["first_unix"])]
    with av.open(str(tmp_path / "out" / "lesson.mp4")) as container:
        frames = [f.time for f in container.decode(video=0) if f.time is not None]
    assert frames[-1] - frames[0] > 0.9 * (stopped - started) - 1.0, (
        frames[0],
        frames[-1],
        stopped - started,
    )
    second = min(v["first_unix"] for v in videos if v["first_unix"] > min(x["first_unix"] for x in videos))
    assert any(abs(t + result["starts_at"] - second) < 0.1 for t in frames), "the second visit where it was"
