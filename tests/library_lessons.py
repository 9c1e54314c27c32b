"""A recorded lesson filed into the library, for the library's tests (tests/test_library.py, the API;
tests/test_library_page.py, the page): a real recording of a Client publishing a camera that flashes
and a microphone that beeps (tests/sync_media.py), so that the finishing job, the cuts and playback
all work on what a classroom would record, not on a synthetic file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from classroom_peers import api
from kelian_server import Server, running_server
from sync_media import Beeping, Flashing

from signaling.client import Client, use_loopback_candidates

CATALOGUE = {
    "title": "分数的意义",
    "stage": "primary",
    "grade": "5",
    "subject": "maths",
    "teacher": "王老师",
    "school": "s1",
    "date": "2026-09-01",
    "tags": ["fractions", "分数"],
}
RECORDED_SECONDS = 6


class Chalkboard(Flashing):
    """The camera on the wall clock as Flashing's, showing a green board with lines of chalk and a
    yellow dot crossing it, so that posters and the player show a picture a person recognises (the
    page's screenshots), not a black frame."""

    async def recv(self) -> av.VideoFrame:
        frame = await super().recv()
        image = np.empty((240, 320, 3), np.uint8)
        image[:] = (34, 84, 61)
        image[40:44, 30:290] = image[80:84, 30:230] = image[120:124, 30:260] = (220, 230, 225)
        x = 20 + (self.n * 4) % 280
        image[170:200, x : x + 30] = (250, 204, 21)
        out = av.VideoFrame.from_ndarray(image, format="rgb24")
        out.pts, out.time_base = frame.pts, frame.time_base
        return out


@asynccontextmanager
async def recording(tmp_path: Path, camera: type[Flashing] = Flashing) -> AsyncIterator[tuple[Server, str]]:
    """A server with a recorded six-second lesson (the teacher's `camera` and a beeping microphone);
    the recording's folder name."""
    use_loopback_candidates()
    async with running_server(
        "127.0.0.1", recordings=str(tmp_path / "rec"), library=str(tmp_path / "lib")
    ) as kelian:
        body, _, _ = await record(kelian, camera())
        yield kelian, body["directory"]


async def record(
    kelian: Server, camera: Flashing, seconds: float = RECORDED_SECONDS
) -> tuple[dict[str, Any], float, float]:
    """A teacher publishes `camera` and a beeping microphone; `seconds` of it are recorded. The
    recording as the admin API describes it once stopped, and when it started and stopped."""
    teacher = Client(kelian.url, kelian.token("teacher", "lecturer"))
    try:
        await teacher.connect()
        await teacher.publish(camera, Beeping())
        await asyncio.sleep(0.5)
        status, _ = await api(kelian, "POST", "/rooms/lesson/recording", {"on": True})
        assert status == 200
        started = time.time()
        await asyncio.sleep(seconds)
        stopped = time.time()
        status, body = await api(kelian, "POST", "/rooms/lesson/recording", {"on": False})
        assert status == 200
    finally:
        await teacher.close()
    return body, started, stopped


async def fetch(
    kelian: Server, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(kelian.url + path, headers=headers or {}) as r:
        return r.status, dict(r.headers), await r.read()


async def finished(kelian: Server, item_id: str) -> dict[str, Any]:
    """The item once its finishing job has ended (bounded: at most a minute), checking that its
    progress only ever went forward."""
    seen: list[float] = []
    for _ in range(600):
        _, now = await api(kelian, "GET", f"/library/{item_id}")
        seen.append(now["progress"])
        if now["status"] != "finishing":
            assert seen == sorted(seen)
            return dict(now)
        await asyncio.sleep(0.1)
    raise AssertionError("the finishing job did not end")


async def filed(kelian: Server, recording: str, **fields: Any) -> dict[str, Any]:
    """The recording filed with CATALOGUE (`fields` instead where given), finished: a draft."""
    status, item = await api(kelian, "POST", "/library", {"recording": recording, **CATALOGUE, **fields})
    assert status == 202 and item["status"] == "finishing", item
    done = await finished(kelian, item["id"])
    assert done["status"] == "draft" and done["progress"] == 1.0, done
    return done


async def review(kelian: Server, item_id: str, *actions: str, **fields: str) -> dict[str, Any]:
    """Take the review steps in turn through the admin API; the item after the last."""
    item: dict[str, Any] = {}
    for action in actions:
        status, item = await api(kelian, "POST", f"/library/{item_id}/review", {"action": action, **fields})
        assert status == 200, item
    return item
