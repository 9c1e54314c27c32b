"""Simulcast from Chromium: each subscriber gets the layer that fits the size it shows the track at."""

from __future__ import annotations

import asyncio
import time

import pytest
from browser import new_page
from kelian_server import Server, eventually
from playwright.async_api import Browser

from sfu import simulcast
from signaling.client import Client, RemoteTrack

PUBLISH = """async (token) => {
  const { Room } = await import("/static/kelian.js");
  const room = new Room({ token });
  window.kelianRoom = room;
  await room.connect();
  await room.publishCamera({ simulcast: true, width: 1280, height: 720 });
}"""

LAYERS = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}


async def frame_size(track: RemoteTrack, timeout: float = 10) -> tuple[int, int]:
    frame = await asyncio.wait_for(track.track.recv(), timeout)
    return frame.width, frame.height  # type: ignore[attr-defined]


async def decodes(track: RemoteTrack, size: tuple[int, int], timeout: float = 20) -> bool:
    """Whether frames of `size` arrive within `timeout` (frames of the old size may come first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await frame_size(track) == size:
            return True
    return False


async def test_each_subscriber_decodes_the_layer_that_fits_its_view(browser: Browser, kelian: Server) -> None:
    page = await new_page(browser, label="lecturer")
    await page.goto(kelian.url)
    await page.evaluate(PUBLISH, kelian.token("lecturer", "lecturer"))
    room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
    producer = next(iter(room.router.producers.values()))
    assert await eventually(lambda: all(s.width for s in producer.streams), timeout=20), (
        "Chromium ramps up to all three layers on loopback"
    )
    assert {s.rid: (s.width, s.height) for s in producer.streams} == LAYERS

    clients: list[Client] = []
    try:
        tracks: dict[str, RemoteTrack] = {}
        for rid, (width, height) in LAYERS.items():
            client = kelian.client(f"view-{rid}")
            clients.append(client)
            await client.connect()
            (track,) = await client.wait_for_tracks(1, timeout=15)
            await client.set_track_settings(track.id, width, height)
            tracks[rid] = track
        for rid, track in tracks.items():
            assert await decodes(track, LAYERS[rid]), f"the {rid} view decodes {LAYERS[rid]}"

        # the thumbnail is put on the big screen, and the big screen becomes a thumbnail
        await clients[0].set_track_settings(tracks["q"].id, 1280, 720)
        await clients[2].set_track_settings(tracks["f"].id, 320, 180)
        assert await decodes(tracks["q"], LAYERS["f"])
        assert await decodes(tracks["f"], LAYERS["q"])
        consumers = [c for c in producer.consumers]
        assert all(c.errors == 0 for c in consumers)
    finally:
        for client in clients:
            await client.close()


async def test_layers_nobody_watches_are_paused_at_the_publisher_and_come_back(
    browser: Browser, kelian: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(simulcast, "PAUSE_AFTER", 1.0)
    page = await new_page(browser, label="lecturer")
    await page.goto(kelian.url)
    await page.evaluate(PUBLISH, kelian.token("lecturer", "lecturer"))
    room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
    producer = next(iter(room.router.producers.values()))
    assert await eventually(lambda: all(s.width for s in producer.streams), timeout=20)
    h, f = producer.streams[1], producer.streams[2]

    student = kelian.client("student")
    await student.connect()
    try:
        (track,) = await student.wait_for_tracks(1, timeout=15)
        await student.set_track_settings(track.id, 320, 180)
        assert await decodes(track, LAYERS["q"])
        assert await eventually(lambda: h.paused_upstream and f.paused_upstream, timeout=10)
        await page.wait_for_function(
            "kelianRoom.publisherPc.getSenders()[0].getParameters().encodings.map((e) => e.active).join()"
            " === 'true,false,false'"
        )
        sent = f.stats.packets
        await asyncio.sleep(1.5)
        assert f.stats.packets - sent < 10, "Chromium stopped encoding the full layer"

        await student.set_track_settings(track.id, 1280, 720)  # full screen: the layer comes back
        assert not f.paused_upstream
        assert await decodes(track, LAYERS["f"])
    finally:
        await student.close()
