"""Across links the test shapes itself: a subscriber behind a 600 kbit/s link, a publisher behind a
lossy one. Chromium runs inside a network namespace; the server, on the near end of the veth pair,
estimates the subscriber's link from Chromium's transport-cc feedback.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from browser import JOIN, chromium, frames_decoded, new_page, wait_frames_decoded
from helpers import free_udp_port
from kelian_server import Server, eventually, running_server
from netns import LossyRelay, Namespace

from loadtest.peer import Peer

SHOW_FULL_SIZE = """async () => {
  const room = window.kelianRoom;
  const track = [...room.participants.values()].flatMap((p) => [...p.tracks.values()])[0];
  await room.setTrackSettings(track.id, { width: 1280, height: 720 });
}"""


@pytest.mark.slow
async def test_a_subscriber_behind_a_slow_link_settles_on_a_layer_that_fits(
    netns: Namespace, tmp_path: Path
) -> None:
    async with (
        running_server(netns.host_ip) as kelian,
        chromium(netns.wrapper("chromium", tmp_path)) as browser,
    ):
        lecturer = Peer(kelian.url, kelian.token("lecturer", "lecturer"), host=netns.host_ip)
        await lecturer.connect()
        await lecturer.publish(audio=False, simulcast=True)
        try:
            page = await new_page(browser, label="classroom")
            await page.goto(kelian.url)
            await page.evaluate(JOIN, [kelian.token("classroom", "classroom"), False])
            await wait_frames_decoded(page, 10)
            await page.evaluate(SHOW_FULL_SIZE)
            consumer = only_consumer(kelian, "classroom")
            assert await eventually(lambda: consumer.stream is not None and consumer.stream.rid == "f", 15), (
                "an open link carries the full layer"
            )

            netns.shape_to_inside("tbf rate 600kbit burst 16kb latency 150ms")
            transport = consumer.transport

            def fits() -> bool:
                stream = consumer.stream
                estimate = transport.available_bitrate()
                return (
                    stream is not None and stream.rid != "f" and estimate is not None and estimate < 700_000
                )

            assert await eventually(fits, timeout=6), (
                f"still on {consumer.stream.rid if consumer.stream else None}, "
                f"estimate {transport.available_bitrate()}"
            )
            assert consumer.stream is not None and consumer.stream.bitrate < 600_000
            # and it keeps decoding on the smaller layer, without the link refilling its queue
            frames = await frames_decoded(page)
            await asyncio.sleep(3)
            assert await frames_decoded(page) > frames + 30
            assert consumer.stream.rid != "f"
        finally:
            await lecturer.close()


def only_consumer(kelian: Server, identity: str):  # type: ignore[no-untyped-def]
    room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
    (participant,) = room.find(identity)
    (consumer,) = participant.subscriber.consumers.values()
    return consumer


PUBLISH_CAMERA = """async (token) => {
  const { Room } = await import("/static/kelian.js");
  const room = new Room({ token });
  window.kelianRoom = room;
  await room.connect();
  await room.publishCamera({ width: 640, height: 360 });
}"""


@pytest.mark.slow
async def test_a_publisher_behind_a_lossy_link_is_repaired_for_everyone(
    netns: Namespace, tmp_path: Path
) -> None:
    port = free_udp_port()
    async with running_server(netns.host_ip, "127.0.0.1", port, announced=netns.host_ip) as kelian:
        # the classroom's uplink drops one packet in twenty (see LossyRelay for why not netem)
        relay = LossyRelay((netns.host_ip, port), ("127.0.0.1", port), netns.inside_ip, loss=0.05)
        await relay.start()
        try:
            async with chromium(netns.wrapper("chromium", tmp_path), secure_origin=kelian.url) as browser:
                page = await new_page(browser, label="classroom")
                await page.goto(kelian.url)
                await page.evaluate(PUBLISH_CAMERA, kelian.token("classroom", "classroom"))
                students = [kelian.client(f"student-{i}") for i in range(2)]
                for student in students:
                    await student.connect()
                try:
                    tracks = [(await s.wait_for_tracks(1, timeout=15))[0] for s in students]
                    decoded = [0, 0]

                    async def decode(i: int) -> None:
                        while True:
                            await asyncio.wait_for(tracks[i].track.recv(), 5)
                            decoded[i] += 1

                    decoders = [asyncio.create_task(decode(i)) for i in range(2)]
                    assert await eventually(lambda: relay.dropped >= 20, timeout=20)
                    before = list(decoded)
                    await asyncio.sleep(2)
                    for task in decoders:
                        assert not task.done(), "a decoder stopped (5 s without a frame)"
                        task.cancel()
                    assert all(after > b + 30 for after, b in zip(decoded, before, strict=True)), (
                        "both students keep decoding through the loss"
                    )
                    node = kelian.node
                    assert node.nacks_sent > 0, "the server asked the classroom for what its link lost"
                    assert node.repairs > 0, "and Chromium resent it as RTX"
                    stream = next(iter(kelian.rooms.rooms["lesson"].router.producers.values())).streams[0]  # type: ignore[attr-defined]
                    assert stream.stats.lost < relay.dropped / 2, "most losses were repaired"
                finally:
                    for student in students:
                        await student.close()
        finally:
            relay.close()
