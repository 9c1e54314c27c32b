"""Chromium publishing through WHIP and playing through WHEP with nothing but `fetch`, from a page on
another origin: how a school's own web player or a plain WHIP page meets kelian, without kelian.js.

Chromium refuses answers that aiortc accepts (moved extension ids, extensions it never offered), so
these are the tests that say WHIP and WHEP work with browsers. The publishers send the quadrant
picture of clients/picture.py, and each test checks that the player shows that picture.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from browser import chromium, new_page
from clients.picture import frame, shows_quadrants, write_y4m
from cluster_helpers import front_config
from helpers import free_tcp_port
from kelian_server import API_KEY, API_SECRET, Server, eventually
from playwright.async_api import Browser, Page

from classroom.tokens import mint
from cluster import front
from signaling.media import EncodedFrame, EncodedTrack, encode_frames

# One WHIP or WHEP exchange as any page would write it: POST the offer, set the answer.
EXCHANGE = """async function exchange(pc, url, token) {
    await pc.setLocalDescription(await pc.createOffer());
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
      body: pc.localDescription.sdp,
    });
    const answer = await response.text();
    if (response.status !== 201) throw new Error(`${response.status}: ${answer}`);
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    return new URL(response.headers.get("Location"), url).href;
  }"""

# The player: recvonly video and audio, the video shown in a <video>.
PLAY = f"""async ([url, token]) => {{
  {EXCHANGE}
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", {{ direction: "recvonly" }});
  pc.addTransceiver("audio", {{ direction: "recvonly" }});
  const video = document.createElement("video");
  video.autoplay = true; video.muted = true; video.playsInline = true;
  document.body.appendChild(video);
  pc.ontrack = (event) => {{
    if (event.track.kind === "video") video.srcObject = new MediaStream([event.track]);
  }};
  window.player = {{ pc, video, location: await exchange(pc, url, token) }};
  return window.player.location;
}}"""

# The publisher: the fake camera and microphone, sendonly, optionally H.264 first or three layers.
PUBLISH = f"""async ([url, token, codec, simulcast]) => {{
  {EXCHANGE}
  const media = await navigator.mediaDevices.getUserMedia({{
    video: {{ width: 1280, height: 720 }}, audio: true,
  }});
  const pc = new RTCPeerConnection();
  pc.addTransceiver(media.getAudioTracks()[0], {{ direction: "sendonly" }});
  const encodings = simulcast
    ? [{{ rid: "q", scaleResolutionDownBy: 4 }}, {{ rid: "h", scaleResolutionDownBy: 2 }}, {{ rid: "f" }}]
    : undefined;
  const camera = media.getVideoTracks()[0];
  const video = pc.addTransceiver(camera, {{ direction: "sendonly", sendEncodings: encodings }});
  if (codec) {{
    const all = RTCRtpSender.getCapabilities("video").codecs;
    const first = all.filter((c) => c.mimeType === `video/${{codec}}`);
    video.setCodecPreferences([...first, ...all.filter((c) => !first.includes(c))]);
  }}
  window.publisher = pc;
  return await exchange(pc, url, token);
}}"""

INBOUND_VIDEO = """async () => {
  const stats = await window.player.pc.getStats();
  let frames = 0, codec = null;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      frames += s.framesDecoded || 0;
      if (s.codecId && stats.get(s.codecId)) codec = stats.get(s.codecId).mimeType;
    }
  });
  return [frames, codec];
}"""

# The current picture, drawn at 160 pixels wide: small enough to hand to Python, large enough to judge.
SNAPSHOT = """() => {
  const video = window.player.video;
  if (!video.videoWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = 160;
  canvas.height = Math.round(160 * video.videoHeight / video.videoWidth);
  const context = canvas.getContext("2d");
  context.drawImage(video, 0, 0, canvas.width, canvas.height);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  return [canvas.width, canvas.height, Array.from(data)];
}"""

# The port of the candidate pair the player's media arrive on: which worker serves it.
REMOTE_PORT = """async () => {
  const stats = await window.player.pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  });
  return pair ? stats.get(pair.remoteCandidateId).port : null;
}"""

END = """async ([location, token]) => {
  const response = await fetch(location, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
  return response.status;
}"""


@pytest_asyncio.fixture
async def other_origin() -> AsyncIterator[str]:
    """An empty page on a port of its own: another origin than kelian's, as a school's site would be."""
    app = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>player</title>", content_type="text/html")

    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def camera_browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """Chromium whose fake camera plays the quadrant picture at 1280x720."""
    clip = write_y4m(tmp_path / "quadrants.y4m", 1280, 720, frames=20, fps=20)
    async with chromium(camera=clip) as instance:
        yield instance


def quadrant_track(codec: str) -> EncodedTrack:
    frames: tuple[EncodedFrame, ...] = encode_frames([frame(640, 360, i) for i in range(60)], codec, fps=30)
    return EncodedTrack("video", frames, 1 / 30)


async def player(browser: Browser, origin: str, kelian: Server, url: str | None = None) -> Page:
    page = await new_page(browser, label="player")
    await page.goto(origin)
    location = await page.evaluate(PLAY, [url or f"{kelian.url}/whep/lesson", kelian.token("tv", "viewer")])
    assert location.startswith(f"{kelian.url}/whep/lesson/")
    return page


async def shows_the_publishers_picture(page: Page, codec: str) -> None:
    """Frames decode in `codec`, and what is on screen is the quadrant picture, moving."""
    for _ in range(150):  # bounded: 15 s
        frames, used = await page.evaluate(INBOUND_VIDEO)
        if frames > 20:
            break
        await asyncio.sleep(0.1)
    assert frames > 20, f"{frames} frames decoded"
    assert used == f"video/{codec}"
    first = await snapshot(page)
    assert shows_quadrants(first), "the player shows the publisher's picture"
    for _ in range(20):  # bounded: about 6 s; a resolution step of the publisher may pause it briefly
        await asyncio.sleep(0.3)
        later = await snapshot(page)
        if np.abs(first.astype(int) - later.astype(int)).mean() > 0.2:
            break
    assert np.abs(first.astype(int) - later.astype(int)).mean() > 0.2, "and it moves"
    assert shows_quadrants(later)


async def snapshot(page: Page) -> np.ndarray:
    width, height, data = await page.evaluate(SNAPSHOT)
    return np.array(data, dtype=np.uint8).reshape(height, width, 4)[..., :3]


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_a_browser_plays_through_whep_with_fetch_alone(
    codec: str, browser: Browser, kelian: Server, other_origin: str
) -> None:
    teacher = kelian.client("teacher", "lecturer")
    await teacher.connect()
    try:
        await teacher.publish(quadrant_track(codec.lower()), video_codec=codec)
        page = await player(browser, other_origin, kelian)
        await shows_the_publishers_picture(page, codec)
        room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
        (session,) = room.find("tv")
        assert session.subscriber is not None and session.subscriber.bwe is not None, (
            "Chromium took transport-cc"
        )
        location = await page.evaluate("window.player.location")
        assert await page.evaluate(END, [location, kelian.token("tv", "viewer")]) == 200
        assert await eventually(lambda: not room.find("tv"))
    finally:
        await teacher.close()


async def test_a_browser_publishing_h264_first_through_whip_gets_h264(
    camera_browser: Browser, kelian: Server, other_origin: str
) -> None:
    publisher = await new_page(camera_browser, label="publisher")
    await publisher.goto(other_origin)
    await publisher.evaluate(
        PUBLISH, [f"{kelian.url}/whip/lesson", kelian.token("box", "classroom"), "H264", False]
    )
    room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
    assert {p.kind: p.codec.name for p in room.router.producers.values()} == {
        "audio": "opus",
        "video": "H264",
    }
    page = await player(camera_browser, other_origin, kelian)
    await shows_the_publishers_picture(page, "H264")


async def test_a_browser_plays_a_three_layer_simulcast_publisher(
    camera_browser: Browser, kelian: Server, other_origin: str
) -> None:
    publisher = await new_page(camera_browser, label="publisher")
    await publisher.goto(other_origin)
    await publisher.evaluate(
        PUBLISH, [f"{kelian.url}/whip/lesson", kelian.token("box", "classroom"), None, True]
    )
    room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
    video = next(p for p in room.router.producers.values() if p.kind == "video")
    assert [s.rid for s in video.streams] == ["q", "h", "f"]
    assert await eventually(lambda: all(s.stats.packets for s in video.streams), timeout=20), (
        "all three layers"
    )
    page = await player(camera_browser, other_origin, kelian)
    await shows_the_publishers_picture(page, "VP8")


async def test_browsers_publish_and_play_through_the_front_of_two_workers(
    camera_browser: Browser, other_origin: str, tmp_path: Path
) -> None:
    """`kelian serve --workers 2`: WHIP and WHEP with fetch alone reach the room's worker through the
    front's one address (the CORS preflight, the Location the answer names, the DELETE), and the
    media go straight to that worker's own port."""
    config = front_config(tmp_path)
    runner, pool = await front.start(config, 2)
    url = f"http://127.0.0.1:{config.http_port}"
    try:
        publisher = await new_page(camera_browser, label="publisher")
        await publisher.goto(other_origin)
        box = mint(API_KEY, API_SECRET, room="lesson", identity="box", role="classroom")
        location = await publisher.evaluate(PUBLISH, [f"{url}/whip/lesson", box, None, False])
        assert location.startswith(f"{url}/whip/lesson/")
        worker = pool.placement.locate("lesson")
        assert worker is not None
        page = await new_page(camera_browser, label="player")
        await page.goto(other_origin)
        tv = mint(API_KEY, API_SECRET, room="lesson", identity="tv", role="viewer")
        played = await page.evaluate(PLAY, [f"{url}/whep/lesson", tv])
        assert played.startswith(f"{url}/whep/lesson/")
        await shows_the_publishers_picture(page, "VP8")
        remote = await page.evaluate(REMOTE_PORT)
        assert remote == worker.media_port, "the media come from the room's worker, not the front"
        assert await page.evaluate(END, [played, tv]) == 200
        assert await publisher.evaluate(END, [location, box]) == 200
        assert await eventually(lambda: pool.placement.locate("lesson") is None, timeout=10)
    finally:
        await front.stop(runner, pool)
