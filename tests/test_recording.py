"""Recording a room: a recorder process gets every track as plain RTP over loopback and writes each
into a Matroska file of its own, without transcoding; the files decode, last as long as the lesson
recorded, and carry the wall-clock time of their first frame for aligning them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest_asyncio
from classroom_peers import api, org, peers, room_of
from kelian_server import Server, eventually, running_server

from signaling import appkeys
from signaling.client import use_loopback_candidates


@pytest_asyncio.fixture
async def recording_server(tmp_path: Path) -> AsyncIterator[Server]:
    use_loopback_candidates()
    async with running_server("127.0.0.1", recordings=str(tmp_path)) as server:
        yield server


def decoded(path: Path) -> tuple[int, float, tuple[int, int] | None]:
    """Frames decoded, the seconds they span, and the video size (None for audio)."""
    with av.open(str(path)) as container:
        stream = container.streams[0]
        times, size = [], None
        for frame in container.decode(stream):
            times.append(float(frame.pts * stream.time_base))
            if isinstance(frame, av.VideoFrame):
                size = (frame.width, frame.height)
    return len(times), (max(times) - min(times)) if times else 0.0, size


async def test_a_lesson_is_recorded_track_by_track(recording_server: Server, tmp_path: Path) -> None:
    kelian = recording_server
    people = [("teacher", "lecturer", {}), ("box-1", "classroom", {})]
    async with peers(kelian, *people, kind="fusion") as (teacher, box):
        await teacher.publish(audio=True, simulcast=False)
        status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": True})
        assert status == 200 and body["recording"] is True and len(body["tracks"]) == 2, body
        await asyncio.sleep(1)
        await box.publish(audio=False, simulcast=False)  # published later: recorded from then on
        assert await eventually(
            lambda: len(kelian.runner.app[appkeys.RECORDINGS].sessions["lesson"].consumers) == 3
        )
        await asyncio.sleep(3)
        status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": False})
        assert status == 200 and body["recording"] is False
    files = {f["file"]: f for f in body["files"]}
    assert len(files) == 3, body["files"]
    for name, meta in files.items():
        path = tmp_path / body["directory"] / name
        frames, span, size = decoded(path)
        assert frames == meta["frames"] > 0 and meta["holes"] == 0, (name, meta)
        assert abs(span - meta["duration"]) < 0.1, (name, span, meta)
        assert meta["first_unix"] is not None, "aligned from the publisher's sender reports"
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["frames"] == frames and sidecar["track"] == meta["track"]
        if meta["kind"] == "video":
            assert size is not None and size[0] > 0
    teacher_video = next(m for m in files.values() if m["participant"] == "teacher" and m["kind"] == "video")
    box_video = next(m for m in files.values() if m["participant"] == "box-1")
    assert teacher_video["duration"] > 3.5 and 1.5 < box_video["duration"] < teacher_video["duration"]
    assert box_video["first_unix"] > teacher_video["first_unix"] + 0.5, "the box came a second later"
    assert (await api(kelian, "GET", "/rooms/lesson/recording"))[0] == 404


async def test_a_killed_recorder_leaves_playable_files_and_the_lesson_goes_on(
    recording_server: Server, tmp_path: Path
) -> None:
    kelian = recording_server
    async with peers(kelian, ("teacher", "lecturer", {}), ("box-1", "classroom", {}), kind="fusion") as (
        teacher,
        box,
    ):
        await teacher.publish(audio=False, simulcast=False)
        status, _ = await api(kelian, "POST", "/rooms/lesson/recording", {"on": True})
        assert status == 200
        session = kelian.runner.app[appkeys.RECORDINGS].sessions["lesson"]
        await asyncio.sleep(3)
        assert session.process is not None
        os.kill(session.process.pid, signal.SIGKILL)
        await session.process.wait()
        frames = box.stats()["subscriber"]["tracks"]
        before = sum(t["frames"] for t in frames.values())
        assert await eventually(
            lambda: sum(t["frames"] for t in box.stats()["subscriber"]["tracks"].values()) > before + 20
        )
        assert room_of(kelian).find("teacher"), "forwarding never noticed"
    (path,) = (tmp_path / "lesson").glob("*/*.mkv")
    frames, span, size = decoded(path)
    assert frames > 30 and span > 1.0 and size is not None, (frames, span)


async def test_rooms_are_recorded_by_their_policy(tmp_path: Path) -> None:
    """A live room records by default, a fusion room does not; a lesson records while it is online
    (its default policy), so a switchover starts and stops its recording."""
    use_loopback_candidates()
    async with running_server("127.0.0.1", recordings=str(tmp_path), auto_record=True) as kelian:
        recordings = kelian.runner.app[appkeys.RECORDINGS]
        finished: list[dict[str, Any]] = []
        kelian.rooms.listeners.append(  # type: ignore[attr-defined]
            lambda event, **fields: finished.append(fields) if event == "recording_finished" else None
        )
        async with peers(kelian, ("presenter", "lecturer", {}), kind="live") as (presenter,):
            await presenter.publish(audio=True, simulcast=False)
            assert await eventually(lambda: "lesson" in recordings.sessions)
            assert await eventually(lambda: len(recordings.sessions["lesson"].consumers) == 2)
            assert await eventually(lambda: len(list((tmp_path / "lesson").glob("*/*.mkv"))) == 2)
        assert await eventually(lambda: "lesson" not in recordings.sessions), "it ends with its room"
        assert await eventually(lambda: bool(finished)), "the webhooks hear of it"
        assert finished[0]["room"] == "lesson" and len(finished[0]["files"]) == 2

        status, _ = await api(kelian, "POST", "/rooms", {"name": "maths", "kind": "fusion"})
        assert status == 201 and "maths" not in recordings.sessions
        status, _ = await api(
            kelian, "POST", "/rooms", {"name": "talk", "kind": "live", "recording": "never"}
        )
        assert status == 201
        await asyncio.sleep(0.2)
        assert "talk" not in recordings.sessions, "a school may say never"

        await api(kelian, "POST", "/import", org(time.time()))
        status, _ = await api(kelian, "POST", "/switchover", {"school": "s1", "mode": "online"})
        assert await eventually(lambda: "s1-maths" in recordings.sessions), "online: recorded"
        status, _ = await api(kelian, "POST", "/switchover", {"school": "s1", "mode": "offline"})
        assert await eventually(lambda: "s1-maths" not in recordings.sessions), "back in class: not"
