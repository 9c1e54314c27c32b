"""The air-classroom library: a recorded lesson filed (the finishing job, with progress), searched,
reviewed (illegal steps refused), cut into micro-lessons, and played: only published items for a
student's token, the MP4 with range requests, HLS as playlist and segments."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest_asyncio
from classroom_peers import api
from kelian_server import Server
from library_lessons import fetch, filed, recording


@pytest_asyncio.fixture
async def recorded(tmp_path: Path) -> AsyncIterator[tuple[Server, str]]:
    """A server with a recorded six-second lesson (tests/library_lessons.py); the recording's folder."""
    async with recording(tmp_path) as lesson:
        yield lesson


async def test_a_lesson_is_filed_searched_reviewed_and_played(recorded: tuple[Server, str]) -> None:
    kelian, recording = recorded
    item = await filed(kelian, recording)
    assert 5.0 < item["duration"] < 7.0 and item["kind"] == "lesson" and item["tags"] == ["fractions", "分数"]
    lesson = item["id"]

    for query, found in (
        ("stage=primary&subject=maths", True),
        ("q=fractions", True),
        ("q=分数", True),
        ("stage=senior", False),
        ("q=geometry", False),
    ):
        status, body = await api(kelian, "GET", f"/library?{query}")
        assert status == 200 and ([i["id"] for i in body["items"]] == [lesson]) == found, query

    student = {"Authorization": "Bearer " + kelian.token("ann", "student")}
    teacher = {"Authorization": "Bearer " + kelian.token("wang", "lecturer")}
    assert (await fetch(kelian, f"/library/{lesson}/lesson.mp4", student))[0] == 404, (
        "a draft is not for students"
    )
    assert (await fetch(kelian, f"/library/{lesson}/lesson.mp4", teacher))[0] == 200, "teachers see drafts"
    assert (await fetch(kelian, f"/library/{lesson}/lesson.mp4"))[0] == 401

    async def step(action: str, **fields: str) -> tuple[int, Any]:
        return await api(kelian, "POST", f"/library/{lesson}/review", {"action": action, **fields})

    status, body = await step("publish", reviewer="Li")
    assert (
        status == 409 and body["error"]["code"] == "illegal_step" and "submitted" in body["error"]["message"]
    )
    assert (await step("submit"))[1]["status"] == "in_review"
    status, body = await step("reject", reviewer="Li")
    assert status == 409 and "needs a reason" in body["error"]["message"]
    status, body = await step("reject", reviewer="Li", reason="the sound drops at 2:10")
    assert (status, body["status"], body["reason"]) == (200, "rejected", "the sound drops at 2:10")
    assert (await step("publish", reviewer="Li"))[0] == 409
    assert (await step("submit"))[1]["status"] == "in_review"
    status, body = await step("publish", reviewer="Li")
    assert (status, body["status"], body["reviewer"], body["reason"]) == (200, "published", "Li", None)
    assert (await step("dance"))[0] == 409
    status, body = await step("withdraw", reviewer=42)  # type: ignore[arg-type]
    assert status == 400 and "reviewer must be a non-empty string" in body["error"]["message"]
    assert (await step("withdraw", reason="x" * 1001))[0] == 400

    status, headers, data = await fetch(kelian, f"/library/{lesson}/lesson.mp4", student)
    assert status == 200 and headers["Content-Type"] == "video/mp4" and len(data) > 10_000
    status, headers, part = await fetch(
        kelian, f"/library/{lesson}/lesson.mp4", student | {"Range": "bytes=100-199"}
    )
    assert (
        status == 206 and part == data[100:200] and headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    )
    tv = kelian.token("tv", "viewer")
    status, headers, playlist = await fetch(kelian, f"/library/{lesson}/hls/index.m3u8?token={tv}")
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    segment = next(line for line in playlist.decode().splitlines() if ".ts?" in line)
    assert segment.endswith("?token=" + kelian.token("tv", "viewer")), (
        "a TV sends no header: the URL carries it"
    )
    status, headers, ts = await fetch(kelian, f"/library/{lesson}/hls/{segment}")
    assert status == 200 and headers["Content-Type"] == "video/mp2t" and ts[0] == 0x47  # MPEG-TS sync byte
    assert (await fetch(kelian, f"/library/{lesson}/poster.jpg", student))[0] == 200
    assert (await fetch(kelian, f"/library/{lesson}/../../etc/passwd", student))[0] == 404
    assert (await fetch(kelian, f"/library/{lesson}/finished.json", student))[0] == 404

    status, _, listing = await fetch(kelian, "/library/items", student)
    assert status == 200 and b'"published"' in listing


async def test_micro_lessons_are_cut_at_keyframes_or_to_the_frame(recorded: tuple[Server, str]) -> None:
    kelian, recording = recorded
    lesson = (await filed(kelian, recording))["id"]
    status, quick = await api(
        kelian, "POST", f"/library/{lesson}/micro", {"start": 3.0, "end": 5.0, "title": "片段"}
    )
    assert status == 201, quick
    assert quick["kind"] == "micro" and quick["lesson"] == lesson and quick["status"] == "draft"
    assert quick["subject"] == "maths", "the lesson's catalogue, unless given"
    assert quick["start"] <= 3.0 and quick["start"] >= 3.0 - 2.05, "the keyframe at or before the start"
    assert abs(quick["duration"] - (5.0 - quick["start"])) < 0.2, quick
    status, exact = await api(
        kelian, "POST", f"/library/{lesson}/micro", {"start": 1.5, "end": 2.5, "exact": True, "title": "一秒"}
    )
    assert status == 201 and exact["start"] == 1.5 and abs(exact["duration"] - 1.0) < 0.1, exact
    teacher = {"Authorization": "Bearer " + kelian.token("wang", "lecturer")}
    status, _, _ = await fetch(kelian, f"/library/{exact['id']}/lesson.mp4", teacher)
    assert status == 200
    path = Path(kelian.config.library) / exact["id"] / "lesson.mp4"
    with av.open(str(path)) as clip:
        assert sum(1 for _ in clip.decode(video=0)) >= 25
    for bad in (
        {"start": 0, "end": 400, "title": "x"},
        {"start": 3, "end": 2, "title": "x"},
        {"start": 1, "end": 2},
    ):
        assert (await api(kelian, "POST", f"/library/{lesson}/micro", bad))[0] == 400, bad
    assert (await api(kelian, "POST", "/library/LI_nope/micro", {"start": 0, "end": 1, "title": "x"}))[
        0
    ] == 404
    assert (await api(kelian, "POST", "/library", {"recording": "../etc", "title": "x"}))[0] == 400
    assert (await api(kelian, "POST", "/library", {"recording": "lesson/20200101T000000", "title": "x"}))[
        0
    ] == 404
