"""A real Chromium driven by playwright, for tests of the web pages.

The system's chromium (Debian package), never a downloaded one; fake camera and microphone (a moving
test pattern and a beep), permission prompts answered yes, autoplay allowed, loopback only. Each test
gets its own browser process with a fresh temporary profile, and each ``new_page`` its own context
(cookies, localStorage), so two pages are two people.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import pytest_asyncio
from helpers import require_system

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page

log = logging.getLogger("browser")

CHROMIUM_ARGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 15_000  # default for every playwright wait and action on a page


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless system Chromium with fake media devices; skipped (failed in CI) without it."""
    async with chromium() as instance:
        yield instance


@asynccontextmanager
async def chromium(
    wrapper: Path | None = None, secure_origin: str | None = None, camera: Path | None = None
) -> AsyncIterator[Browser]:
    """The system Chromium, started directly or through `wrapper` (a script that runs it, with its
    arguments, inside a network namespace, say). Cameras need a secure page: `secure_origin` makes
    a plain-http origin other than localhost count as one. `camera` is a .y4m clip the fake camera
    plays instead of its own pattern."""
    executable = shutil.which("chromium")
    if executable is None:
        require_system("chromium", "chromium is not installed (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        require_system("playwright", "the playwright package is not installed (pip install -e '.[dev]')")
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=wrapper or executable,
            headless=True,
            args=CHROMIUM_ARGS
            + ([f"--unsafely-treat-insecure-origin-as-secure={secure_origin}"] if secure_origin else [])
            + ([f"--use-file-for-fake-video-capture={camera}"] if camera else []),
            timeout=30_000,
        )
        try:
            yield instance
        finally:
            await instance.close()


async def new_page(
    browser: Browser,
    *,
    locale: str = "en-US",
    label: str = "page",
    init_script: str | None = None,
    viewport: dict[str, int] | None = None,
) -> Page:
    """A page in a context of its own; its console and uncaught errors go to the test's log."""
    context = await browser.new_context(locale=locale, viewport=viewport or VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    if init_script is not None:
        await context.add_init_script(init_script)
    page = await context.new_page()
    page.on("console", lambda message: log.warning("[%s] console.%s: %s", label, message.type, message.text))
    page.on("pageerror", lambda error: log.warning("[%s] uncaught: %s", label, error))
    return page


# Join with the SDK; optionally publish the fake camera and microphone; show remote video in <video>s.
JOIN = """async ([token, publish]) => {
  const { Room } = await import("/static/kelian.js");
  const room = new Room({ token });
  window.kelianRoom = room;
  window.states = [];
  window.notReloaded = true;  // gone if the page were reloaded
  room.on("state", (s) => states.push(s));
  room.on("track_subscribed", (participant, info, track) => {
    if (info.kind !== "video") return;
    let video = document.getElementById("remote");
    if (!video) {
      video = document.createElement("video");
      video.id = "remote"; video.autoplay = true; video.muted = true; video.playsInline = true;
      video.style.width = "640px"; video.style.height = "360px";
      document.body.appendChild(video);
    }
    video.srcObject = new MediaStream([track]);
  });
  await room.connect();
  if (publish) {
    await room.publishCamera({ width: 640, height: 360 });
    await room.publishMicrophone();
  }
  return room.local.sid;
}"""


# -- pictures ---------------------------------------------------------------------------------------------


def decode_png(data: bytes) -> np.ndarray:
    """An RGB array (height, width, 3) of a PNG, decoded with PyAV."""
    with av.open(io.BytesIO(data), format="png_pipe") as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


async def screenshot(locator: Locator) -> np.ndarray:
    """What the element looks like on screen now, as an RGB array."""
    return decode_png(await locator.screenshot(animations="disabled"))


def middle(image: np.ndarray, margin: float = 0.25) -> np.ndarray:
    """The central part of a picture, away from the name label and badges drawn over a video's edges."""
    height, width = image.shape[:2]
    dy, dx = int(height * margin), int(width * margin)
    return image[dy : height - dy, dx : width - dx]


def is_not_black(image: np.ndarray, level: int = 40, share: float = 0.25) -> bool:
    """Whether at least ``share`` of the middle of the picture has a channel brighter than ``level``."""
    bright = middle(image).max(axis=2) > level
    return bool(bright.mean() >= share)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of the middles of two pictures of the same element (0 to 255)."""
    if a.shape != b.shape:
        return 255.0
    return float(np.abs(middle(a).astype(np.int16) - middle(b).astype(np.int16)).mean())


def save_screenshot_dir() -> Path | None:
    """The folder named by KELIAN_SCREENSHOTS (created), where tests save pictures for the docs."""
    folder = os.environ.get("KELIAN_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- WebRTC statistics ------------------------------------------------------------------------------------

_FRAMES_DECODED = """async () => {
    const pc = window.kelianRoom && window.kelianRoom.subscriberPc;
    if (!pc) return 0;
    let frames = 0;
    (await pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
    });
    return frames;
}"""


async def frames_decoded(page: Page) -> int:
    """Video frames decoded so far on the page's receiving PeerConnection (window.kelianRoom)."""
    return int(await page.evaluate(_FRAMES_DECODED))


async def wait_frames_decoded(page: Page, above: int, timeout_ms: float = TIMEOUT_MS) -> int:
    """Wait until more than ``above`` video frames have been decoded; how many there are then."""
    # Polled from here: wait_for_function takes the Promise an async predicate returns as truthy.
    deadline = time.monotonic() + timeout_ms / 1000
    for _ in range(int(timeout_ms / 100) + 1):
        frames = await frames_decoded(page)
        if frames > above or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert frames > above, f"{frames} video frames decoded, expected more than {above}"
    return frames
