"""The JS SDK in a real Chromium against a real server: media both ways with Python peers, and the
session surviving a cut WebSocket or a failed media path without a reload.

These drive the SDK (static/kelian.js) directly, so they do not depend on the classroom page's layout.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection
from browser import JOIN, frames_decoded, is_not_black, new_page, screenshot, wait_frames_decoded
from helpers import send_through_python
from kelian_server import Server, eventually
from playwright.async_api import Browser, Page

from classroom.participant import Participant
from signaling.client import Client
from signaling.media import audio_track, video_track

VIDEO_SIZE = """(() => {
  const v = document.getElementById("remote");
  return [v.videoWidth, v.videoHeight];
})()"""


AUDIO_PACKETS = """async () => {
  let packets = 0;
  (await kelianRoom.subscriberPc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") packets += s.packetsReceived;
  });
  return packets;
}"""


async def joined_page(browser: Browser, kelian: Server, identity: str, role: str, publish: bool) -> Page:
    page = await new_page(browser, label=identity)
    await page.goto(kelian.url)  # the join view; the test drives the SDK itself
    await page.evaluate(JOIN, [kelian.token(identity, role), publish])
    return page


def participant(kelian: Server, identity: str) -> Participant:
    room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
    return next(p for p in room.participants.values() if p.identity == identity)


async def state(page: Page) -> Any:
    return await page.evaluate("[window.kelianRoom.state, window.kelianRoom.local.sid, window.notReloaded]")


async def test_python_publisher_plays_in_the_browser(browser: Browser, kelian: Server) -> None:
    teacher = kelian.client("teacher", "lecturer")
    await teacher.connect()
    await teacher.publish(video_track(), audio_track(), sources=["camera", "microphone"])
    try:
        page = await joined_page(browser, kelian, "viewer", "viewer", publish=False)
        decoded = await wait_frames_decoded(page, 30)
        # the element shows the picture a moment after the decoder's first frames
        await page.wait_for_function("document.getElementById('remote')?.videoWidth > 0")
        size = await page.evaluate(VIDEO_SIZE)
        assert size == [640, 360], "the browser decodes the publisher's 640x360 VP8 as sent"
        first = await screenshot(page.locator("#remote"))
        await wait_frames_decoded(page, decoded + 15)
        second = await screenshot(page.locator("#remote"))
        assert is_not_black(first) and is_not_black(second)
        assert np.abs(first.astype(int) - second.astype(int)).mean() > 1, "the picture moves"
        audio = await page.evaluate(AUDIO_PACKETS)
        assert audio > 0, "the tone's Opus packets reach the browser too"
        transport = participant(kelian, "viewer").subscriber
        assert transport is not None and transport.bwe is not None, "Chromium took transport-cc"
        assert await eventually(lambda: transport.twcc_feedbacks > 5, timeout=5)
        assert transport.twcc_errors == 0 and transport.available_bitrate() == transport.bwe.estimate
        assert transport.node.feedback_read >= 5, "Chromium's feedback is steered to the batch-read socket"
        async with aiohttp.ClientSession() as http, http.get(kelian.url + "/metrics") as response:
            text = await response.text()
        assert (
            'kelian_bandwidth_estimate_bits{stat="median"}' in text and "kelian_estimated_links 1.0" in text
        )
    finally:
        await teacher.close()


async def test_browser_camera_is_decoded_by_a_python_subscriber(browser: Browser, kelian: Server) -> None:
    await joined_page(browser, kelian, "classroom-1", "classroom", publish=True)
    student = kelian.client("student")
    await student.connect()
    try:
        tracks = await student.wait_for_tracks(2, timeout=15)
        video = next(t for t in tracks if t.track.kind == "video")
        assert video.info["identity"] == "classroom-1" and video.info["source"] == "camera"
        frames = [await asyncio.wait_for(video.track.recv(), 10) for _ in range(20)]
        assert all((f.width, f.height) == (640, 360) for f in frames)  # type: ignore[attr-defined]
        first = frames[0].to_ndarray(format="gray")  # type: ignore[attr-defined]
        last = frames[-1].to_ndarray(format="gray")  # type: ignore[attr-defined]
        assert first.max() > 40, "Chromium's fake camera draws a bright pattern, not black"
        assert np.abs(first.astype(int) - last.astype(int)).mean() > 0.5, "and it moves"
    finally:
        await student.close()


async def test_a_cut_websocket_resumes_the_session_without_a_reload(browser: Browser, kelian: Server) -> None:
    sender = await joined_page(browser, kelian, "alice", "classroom", publish=True)
    receiver = await joined_page(browser, kelian, "bob", "classroom", publish=True)
    await wait_frames_decoded(receiver, 10)
    await wait_frames_decoded(sender, 10)
    _, sid, _ = await state(sender)
    before = participant(kelian, "alice")
    session = before.channel
    session.request.transport.abort()  # type: ignore[attr-defined]  # the TCP connection is gone

    await sender.wait_for_function("window.states.includes('reconnecting')")
    await sender.wait_for_function("window.kelianRoom.state === 'connected'")
    assert await state(sender) == ["connected", sid, True], "same session, same page: resumed"
    after = participant(kelian, "alice")
    assert after is before and after.channel is not session and after.connected
    # media never stopped: both directions keep decoding
    for page in (sender, receiver):
        await wait_frames_decoded(page, await frames_decoded(page) + 30)
    left = await receiver.evaluate("[...window.kelianRoom.participants.values()].map((p) => p.identity)")
    assert left == ["alice"], "bob never saw alice leave"


async def test_a_failed_media_path_rejoins_with_the_same_identity(browser: Browser, kelian: Server) -> None:
    sender = await joined_page(browser, kelian, "alice", "classroom", publish=True)
    receiver = await joined_page(browser, kelian, "bob", "classroom", publish=False)
    await wait_frames_decoded(receiver, 10)
    old = participant(kelian, "alice")
    assert old.publisher is not None
    old.publisher.close("test: media path lost")  # as if consent checks had stopped

    await sender.wait_for_function("window.states.includes('reconnecting')")
    await sender.wait_for_function("window.kelianRoom.state === 'connected'")
    assert await eventually(lambda: participant(kelian, "alice") is not old, timeout=10)
    new = participant(kelian, "alice")
    assert await eventually(lambda: len(new.producers) == 2, timeout=10), "camera and mic published again"
    state_now = await state(sender)
    assert state_now[0] == "connected" and state_now[2] is True, "no reload"
    # bob receives alice's new camera track
    await wait_frames_decoded(receiver, await frames_decoded(receiver) + 30)
    names = await receiver.evaluate("[...window.kelianRoom.participants.values()].map((p) => p.identity)")
    assert names == ["alice"]


async def test_simulcast_camera_from_the_browser_is_received_as_layers(
    browser: Browser, kelian: Server
) -> None:
    page = await new_page(browser, label="lecturer")
    await page.goto(kelian.url)
    await page.evaluate(JOIN, [kelian.token("lecturer", "lecturer"), False])
    await page.evaluate("kelianRoom.publishCamera({ simulcast: true, width: 1280, height: 720 })")
    producer = next(iter(participant(kelian, "lecturer").producers.values()))
    assert [s.rid for s in producer.streams] == ["q", "h", "f"]
    assert await eventually(lambda: sum(1 for s in producer.streams if s.stats.packets) >= 2, timeout=10), (
        "Chromium sends at least two of the three layers from the start"
    )
    student = kelian.client("student")
    await student.connect()
    try:
        (video,) = await student.wait_for_tracks(1, timeout=15)
        assert video.info["layers"] == ["q", "h", "f"]
        frame = await asyncio.wait_for(video.track.recv(), 10)
        sizes = {(1280 // d, 720 // d) for d in (1, 2, 4)}
        assert (frame.width, frame.height) in sizes  # type: ignore[attr-defined]
    finally:
        await student.close()


async def test_unpublishing_the_first_track_keeps_publishing_working(
    browser: Browser, kelian: Server
) -> None:
    page = await joined_page(browser, kelian, "alice", "classroom", publish=False)
    await page.evaluate("kelianRoom.publishMicrophone()")
    await page.evaluate("kelianRoom.publishCamera({ width: 640, height: 360 })")
    await page.evaluate("kelianRoom.unpublish('microphone')")  # the first, bundle-carrying section
    await page.evaluate("kelianRoom.publishMicrophone()")  # a renegotiation Chromium must accept
    alice = participant(kelian, "alice")
    assert sorted(p.source for p in alice.producers.values()) == ["camera", "microphone"]
    assert await eventually(lambda: all(p.streams[0].stats.packets for p in alice.producers.values()))


async def test_the_same_identity_elsewhere_replaces_the_session_for_good(
    browser: Browser, kelian: Server
) -> None:
    first = await joined_page(browser, kelian, "alice", "student", publish=False)
    await first.evaluate("window.reasons = []; kelianRoom.on('disconnected', (r) => reasons.push(r))")
    second = await joined_page(browser, kelian, "alice", "student", publish=False)
    await first.wait_for_function("window.kelianRoom.state === 'closed'")
    assert await first.evaluate("window.reasons") == ["replaced"]
    assert (await state(second))[0] == "connected"
    room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
    assert [p.identity for p in room.participants.values()] == ["alice"], "no kicking back and forth"


INBOUND_VIDEO = """async () => {
  let out = null;
  (await kelianRoom.subscriberPc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") out = s;
  });
  return out && { nacks: out.nackCount, repaired: out.retransmittedPacketsReceived, lost: out.packetsLost,
                  frames: out.framesDecoded };
}"""


async def test_chromium_repairs_loss_with_rtx_from_the_cache(browser: Browser, kelian: Server) -> None:
    teacher = kelian.client("teacher", "lecturer")
    await teacher.connect()
    await teacher.publish(video_track(), sources=["camera"])
    try:
        page = await joined_page(browser, kelian, "viewer", "viewer", publish=False)
        await wait_frames_decoded(page, 10)
        viewer = participant(kelian, "viewer")
        transport = viewer.subscriber
        assert transport is not None
        (consumer,) = transport.consumers.values()
        assert consumer.rtx_payload_type == 97, "Chromium's answer kept RTX"
        real, sent = transport.sendto, 0

        def lossy(data: bytes, addr: Any) -> None:  # every 20th RTP packet to the viewer is lost
            nonlocal sent
            sent += 1
            if sent % 20 or 192 <= data[1] <= 223:
                real(data, addr)

        transport.sendto = lossy  # type: ignore[method-assign]
        send_through_python(transport)
        await wait_frames_decoded(page, await frames_decoded(page) + 60)
        stats = await page.evaluate(INBOUND_VIDEO)
        assert consumer.retransmissions > 0 and stats["nacks"] > 0
        assert stats["repaired"] > 0, "Chromium took the RTX packets as repairs"
    finally:
        await teacher.close()


async def test_a_browser_gets_a_track_in_a_recycled_section(browser: Browser, kelian: Server) -> None:
    """Video tracks that come and go free their sections; Chromium takes the next track in one of
    them (a new mid in an old place, RFC 8829 5.2.2) and decodes it."""
    page = await joined_page(browser, kelian, "viewer", "viewer", publish=False)
    room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
    (viewer,) = room.find("viewer")
    pc = RTCPeerConnection()
    pc.addTransceiver(video_track(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    await pc.close()
    headers = {
        "Content-Type": "application/sdp",
        "Authorization": f"Bearer {kelian.token('cam', 'classroom')}",
    }
    async with aiohttp.ClientSession() as http:
        for _ in range(10):
            async with http.post(f"{kelian.url}/whip/lesson", data=offer, headers=headers) as r:
                assert r.status == 201, await r.text()
                location = r.headers["Location"]
            assert await eventually(lambda: not viewer.offer_pending and bool(viewer.subscriptions))
            async with http.delete(kelian.url + location, headers=headers) as r:
                assert r.status == 200
            assert await eventually(lambda: not viewer.offer_pending and not viewer.renegotiate)
    recycled = [s.slot.mid for s in viewer.subscriptions]
    assert len(recycled) <= 2, recycled
    teacher = kelian.client("teacher", "lecturer")
    await teacher.connect()
    try:
        await teacher.publish(video_track())
        await wait_frames_decoded(page, 20)
        (live,) = [s for s in viewer.subscriptions if s.consumer is not None]
        assert int(live.slot.mid) >= 10 and len(viewer.subscriptions) <= 2, "in a recycled place"
    finally:
        await teacher.close()


STAGED_FRAMES = """async () => {
  let frames = 0;
  const room = window.kelianRoom;
  const box = [...room.participants.values()].find((p) => p.identity === "box-2");
  const info = box && [...box.tracks.values()].find((t) => t.kind === "video");
  if (!info || !info.track) return 0;
  (await room.subscriberPc.getStats(info.track)).forEach((s) => {
    if (s.type === "inbound-rtp") frames += s.framesDecoded || 0;
  });
  return frames;
}"""


async def test_a_classroom_on_stage_reaches_the_other_classrooms_pages(
    browser: Browser, kelian: Server
) -> None:
    """Dual-teacher: box-1's page shows the lecturer; the lecturer brings box-2 on stage, and box-1's
    page decodes box-2's camera; sent back, box-1 stops receiving it."""
    lecturer = Client(kelian.url, kelian.token("lecturer", "lecturer", kind="dual_teacher"))
    await lecturer.connect()
    try:
        await lecturer.publish(video_track())
        pages = []
        for box in ("box-1", "box-2"):
            page = await new_page(browser, label=box)
            await page.goto(kelian.url)
            await page.evaluate(JOIN, [kelian.token(box, "classroom", kind="dual_teacher"), True])
            pages.append(page)
        await wait_frames_decoded(pages[0], 10)  # the lecture
        assert await pages[0].evaluate(STAGED_FRAMES) == 0, "a classroom does not watch another"
        assert await lecturer.set_stage("box-2", True) == ["box-2"]
        for _ in range(150):  # bounded: 15 s
            if await pages[0].evaluate(STAGED_FRAMES) > 10:
                break
            await asyncio.sleep(0.1)
        assert await pages[0].evaluate(STAGED_FRAMES) > 10, "box-2 on stage plays on box-1's page"
        assert await pages[0].evaluate("window.kelianRoom.stage") == ["box-2"]
        await lecturer.set_stage("box-2", False)
        room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
        (box1,) = room.find("box-1")
        box2_tracks = {p.id for p in room.find("box-2")[0].producers.values()}
        assert await eventually(
            lambda: not any(s.consumer and s.producer_id in box2_tracks for s in box1.subscriptions)
        )
    finally:
        await lecturer.close()
