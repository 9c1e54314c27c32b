"""Recording a room: a recorder process gets every track as plain RTP over loopback and writes each
into a Matroska file of its own, without transcoding; the files decode, last as long as the lesson
recorded, and carry the wall-clock time of their first frame for aligning them."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest_asyncio
from classroom_peers import api, org, peers, room_of
from helpers import send_through_python
from kelian_server import Server, eventually, running_server

from sfu.plain_transport import PlainTransport
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


def sizes(path: Path) -> list[tuple[int, int]]:
    """The picture sizes of a video file, in the order they come, each once a run."""
    runs: list[tuple[int, int]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if not runs or runs[-1] != (frame.width, frame.height):
                runs.append((frame.width, frame.height))
    return runs


async def test_layer_switches_and_lost_packets_leave_a_whole_file(
    recording_server: Server, tmp_path: Path
) -> None:
    """The lecturer's link is congested for a while, so its top simulcast layer stops arriving and
    the recording goes on from the next; it loses packets on the way in, and the loopback to the
    recorder loses some too: the recorder asks for them again, so the file holds both layers
    without a frame given up, and spans the lesson."""
    kelian = recording_server
    async with peers(kelian, ("teacher", "lecturer", {}), kind="fusion") as (teacher,):
        await teacher.publish()  # q, h and f layers and a microphone
        inbound = next(t for t in kelian.node.transports.values() if t.producers)
        camera = next(p for p in inbound.producers.values() if p.kind == "video")
        top = camera.streams[-1]
        deliver, arrived, congested = inbound.on_datagram, 0, False

        def lossy_uplink(data: bytes) -> None:  # every 25th video packet from the lecturer is lost
            nonlocal arrived  # (video only: browsers resend no audio, its decoder hides a loss)
            if 127 < data[0] < 192 and not 192 <= data[1] <= 223:
                ssrc = int.from_bytes(data[8:12], "big")
                if congested and ssrc == top.ssrc:
                    return
                if any(ssrc == s.ssrc for s in camera.streams):
                    arrived += 1
                    if arrived % 25 == 0:
                        return
            deliver(data)

        inbound.on_datagram = lossy_uplink  # type: ignore[method-assign]
        status, _ = await api(kelian, "POST", "/rooms/lesson/recording", {"on": True})
        assert status == 200
        session = kelian.runner.app[appkeys.RECORDINGS].sessions["lesson"]
        assert session.transport is not None
        outbound = session.transport
        send, sent = outbound.sendto, 0

        def lossy_downlink(data: bytes, addr: Any) -> None:  # every 20th to the recorder too
            nonlocal sent
            sent += 1
            if sent % 20 or 192 <= data[1] <= 223:
                send(data, addr)

        outbound.sendto = lossy_downlink  # type: ignore[method-assign]
        send_through_python(outbound)
        video = next(c for c in session.consumers.values() if c.kind == "video")
        assert await eventually(lambda: video.stream is top and video.synced, timeout=5)
        await asyncio.sleep(2)
        congested = True  # the 720p layer no longer gets through
        assert await eventually(lambda: video.stream is not top and video.stream is not None, timeout=5)
        await asyncio.sleep(1.5)
        congested = False
        assert await eventually(lambda: video.stream is top, timeout=5)
        await asyncio.sleep(1.5)
        stopped = time.time()
        status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": False})
        assert status == 200
        assert video.nacks > 0 and video.retransmissions > 0, "the recorder asked, the cache answered"
    assert kelian.node.nacks_sent > 0, "and the server asked the lecturer for what its link lost"
    files = {f["kind"]: f for f in body["files"]}
    for kind, meta in files.items():
        # one packet may be lost as the link congests, its resend with it: at most that frame is given up
        assert meta["holes"] <= (1 if kind == "video" else 0) and meta["recovered"] > 0, (kind, meta)
        path = tmp_path / body["directory"] / meta["file"]
        frames, span, _ = decoded(path)
        assert frames == meta["frames"] and abs(span - meta["duration"]) < 0.1, (kind, frames, span, meta)
        lesson = stopped - meta["first_unix"]
        assert abs(meta["duration"] - lesson) <= 0.01 * lesson, (kind, meta["duration"], lesson)
    runs = sizes(tmp_path / body["directory"] / files["video"]["file"])
    assert runs[0] == runs[-1] == (1280, 720) and (640, 360) in runs, runs
    print(json.dumps({"sizes": runs, "recovered": {k: m["recovered"] for k, m in files.items()}}))


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


async def test_a_recorder_that_cannot_start_is_a_clear_error_and_leaves_nothing(
    recording_server: Server, monkeypatch: Any
) -> None:
    kelian = recording_server
    monkeypatch.setattr("recorder.session.sys.executable", shutil.which("true"))
    async with peers(kelian, ("teacher", "lecturer", {}), kind="fusion") as (teacher,):
        await teacher.publish(audio=False, simulcast=False)
        status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": True})
        assert status == 503 and body["error"]["code"] == "recorder_unavailable", body
        assert "lesson" not in kelian.runner.app[appkeys.RECORDINGS].sessions
        assert not any(isinstance(t, PlainTransport) for t in kelian.node.transports.values())
        monkeypatch.undo()
        status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": True})
        assert status == 200 and body["recording"], "a recorder that can start, starts"


async def test_single_tracks_are_recorded_on_demand(recording_server: Server, tmp_path: Path) -> None:
    """Only the tracks named are recorded; more can be added and some left out while it goes on; a
    track named wrongly is refused and changes nothing."""
    kelian = recording_server
    people = [("teacher", "lecturer", {}), ("box-1", "classroom", {})]
    async with peers(kelian, *people, kind="fusion") as (teacher, box):
        await teacher.publish(audio=True, simulcast=False)
        await box.publish(audio=False, simulcast=False)
        published = {
            (o.identity, p.kind): p.id
            for o in room_of(kelian).participants.values()
            for p in o.producers.values()
        }
        camera, box_camera = published["teacher", "video"], published["box-1", "video"]
        for wrong in (
            {"on": True, "tracks": ["TR_nope"]},
            {"on": True, "tracks": []},
            {"on": True, "tracks": [1]},
        ):
            status, body = await api(kelian, "POST", "/rooms/lesson/recording", wrong)
            assert status in (400, 404) and "lesson" not in kelian.runner.app[appkeys.RECORDINGS].sessions, (
                body
            )
        status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": True, "tracks": [camera]})
        assert status == 200 and body["tracks"] == [camera] and body["only"] == [camera], body
        await asyncio.sleep(1.5)
        status, body = await api(
            kelian, "POST", "/rooms/lesson/recording", {"on": True, "tracks": [box_camera]}
        )
        assert status == 200 and body["tracks"] == sorted([camera, box_camera]), body
        await asyncio.sleep(1.5)
        status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": False, "tracks": [camera]})
        assert status == 200 and body["recording"] and body["tracks"] == [box_camera], body
        await asyncio.sleep(1)
        status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": False})
        assert status == 200 and not body["recording"]
    files = {f["track"]: f for f in body["files"]}
    assert set(files) == {camera, box_camera}, "the microphone was never named"
    for meta in files.values():
        frames, span, _ = decoded(tmp_path / body["directory"] / meta["file"])
        assert frames == meta["frames"] > 10 and abs(span - meta["duration"]) < 0.1, meta
    assert files[camera]["duration"] < files[box_camera]["duration"] + 1.0 < 4.0, files


async def test_a_recording_goes_through_a_mute_and_a_failover(
    recording_server: Server, tmp_path: Path
) -> None:
    """The classroom box's camera is muted a while, then hangs, and the lecturer's laptop stands in
    until it comes back: one file, continuous, its time the lesson's time."""
    kelian = recording_server
    async with peers(kelian, ("teacher", "lecturer", {}), ("box-l", "classroom", {}), kind="fusion") as (
        teacher,
        box,
    ):
        await teacher.publish(audio=False, simulcast=False)
        await box.publish(audio=False, simulcast=False)
        owners = {
            o.identity: [p.id for p in o.producers.values()] for o in room_of(kelian).participants.values()
        }
        (primary,), (standby,) = owners["box-l"], owners["teacher"]
        await teacher.request({"type": "set_standby", "track": primary, "standby": standby})
        status, _ = await api(kelian, "POST", "/rooms/lesson/recording", {"on": True, "tracks": [primary]})
        assert status == 200
        session = kelian.runner.app[appkeys.RECORDINGS].sessions["lesson"]
        await asyncio.sleep(1.5)
        await box.request({"type": "mute", "track": primary, "muted": True})
        await asyncio.sleep(1)
        await box.request({"type": "mute", "track": primary, "muted": False})
        await asyncio.sleep(1.5)
        assert box.publisher is not None
        for stream in box.publisher.video:  # the box's camera hangs
            stream.active = False
        consumer = session.consumers[primary]
        assert await eventually(lambda: consumer.producer.id == standby, timeout=5)
        await asyncio.sleep(1.5)
        for stream in box.publisher.video:  # and comes back
            stream.next_keyframe()
            stream.active = True
        assert await eventually(lambda: consumer.producer.id == primary, timeout=5)
        await asyncio.sleep(1.5)
        stopped = time.time()
        status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": False})
    (meta,) = body["files"]
    frames, span, _ = decoded(tmp_path / body["directory"] / meta["file"])
    assert meta["holes"] == 0 and frames == meta["frames"], meta
    lesson = stopped - meta["first_unix"]
    assert abs(meta["duration"] - lesson) <= 0.01 * lesson, (meta["duration"], lesson)
    assert abs(span - meta["duration"]) < 0.1, (span, meta)
