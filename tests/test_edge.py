"""A live room bigger than one worker (cluster/edge.py): its origin worker holds the lesson, and once
it is busy (here at once: spread_after 0) the front sends further viewers to the other workers, which
serve their media from tracks piped from the origin. Every viewer decodes the lecture wherever it
is served; chat, the count and an invitation to speak cross between them as in a room on one
worker; a viewer invited to speak publishes to the origin, and viewers on every worker receive it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest_asyncio
from browser import JOIN, new_page, wait_frames_decoded
from classroom_peers import api
from cluster_helpers import front_config
from kelian_server import API_KEY, API_SECRET, eventually
from playwright.async_api import Browser

from classroom.tokens import mint
from cluster import front
from cluster.nodes import relay_mark
from cluster.workers import WorkerPool
from loadtest.peer import Peer
from signaling.client import Client, use_loopback_candidates
from signaling.media import video_track

ROOM = "lecture"


@dataclass
class Cluster:
    url: str
    pool: WorkerPool

    async def peer(self, identity: str, role: str) -> Peer:
        token = mint(API_KEY, API_SECRET, room=ROOM, identity=identity, role=role, kind="live")
        peer = Peer(self.url, token)
        await peer.connect()
        return peer


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    config = front_config(tmp_path, spread_after=0)
    runner, pool = await front.start(config, 3)
    try:
        yield Cluster(f"http://127.0.0.1:{config.http_port}", pool)
    finally:
        await front.stop(runner, pool)


def decoding(peer: Peer, kind: str = "video") -> bool:
    tracks = peer.stats()["subscriber"]["tracks"].values()
    probed = [t["probe"] for t in tracks if t["kind"] == kind and t.get("probe")]
    return bool(probed) and all(p["decoded_frames"] > 5 and p["decode_errors"] == 0 for p in probed)


def events(peer: Peer, kind: str) -> list[dict[str, object]]:
    return [e for e in peer.events if e["type"] == kind]


async def test_viewers_on_every_worker_decode_the_lecture_and_take_part(cluster: Cluster) -> None:
    peers: list[Peer] = []
    try:
        teacher = await cluster.peer("teacher", "lecturer")
        peers.append(teacher)
        await teacher.publish(audio=True, simulcast=True)
        viewers = []
        for n in range(4):
            viewer = await cluster.peer(f"v{n}", "viewer")
            peers.append(viewer)
            viewers.append(viewer)
        for viewer in viewers:
            for track in await viewer.wait_for_tracks(2):
                viewer.probe(track["id"])
        assert await eventually(lambda: all(decoding(v) for v in viewers), timeout=20)
        await asyncio.sleep(1.5)  # the workers' next load reports
        assert all(w.transports > 0 for w in cluster.pool.placement.workers), "origin and two edges"

        # the lesson is one: the count, chat both ways
        assert await eventually(
            lambda: all(
                events(v, "participant_count")[-1:] == [{"type": "participant_count", "count": 5}]
                for v in viewers
            ),
            timeout=5,
        )
        await viewers[1].request({"type": "chat", "text": "a question from an edge"})
        assert await eventually(
            lambda: any(
                e["message"]["text"] == "a question from an edge"  # type: ignore[index]
                for e in events(teacher, "chat")
            )
        )
        await teacher.request({"type": "chat", "text": "welcome, everyone"})
        assert await eventually(
            lambda: all(
                any(e["message"]["text"] == "welcome, everyone" for e in events(v, "chat"))  # type: ignore[index]
                for v in viewers
            )
        )

        # a viewer invited to speak publishes to the origin; every viewer receives its voice
        speaker = viewers[2]
        reply = await teacher.request({"type": "invite", "identity": "v2", "to": "speak"})
        assert reply["type"] == "invited"
        await speaker.request({"type": "accept_invitation"})
        await speaker.publish(video=False, audio=True)
        for viewer in (v for v in viewers if v is not speaker):
            assert await eventually(
                lambda viewer=viewer: sum(t["participant"] == speaker.sid for t in viewer.tracks()) == 1,
                timeout=10,
            ), "the speaker's track reached a viewer wherever it is served"
            track = next(t for t in viewer.tracks() if t["participant"] == speaker.sid)
            assert await eventually(
                lambda viewer=viewer, track=track: (
                    viewer.stats()["subscriber"]["tracks"][track["id"]]["packets"] > 20
                ),
                timeout=10,
            )
    finally:
        for peer in peers:
            await peer.close()
    assert await eventually(lambda: not cluster.pool.placement.rooms, timeout=10), (
        f"the room closed: {cluster.pool.placement.rooms}"
    )


async def test_only_the_cluster_may_follow_a_room_or_bring_a_session_of_an_edge(cluster: Cluster) -> None:
    """The link an edge follows a room by, and the marks that make a socket an edge's, are the
    cluster's own: a stranger is refused, and a header it sends makes its socket nothing special."""
    async with aiohttp.ClientSession() as http:
        async with http.get(cluster.url + "/internal/edge/lecture?media=127.0.0.1:9") as r:
            assert r.status == 403
        token = mint(API_KEY, API_SECRET, room=ROOM, identity="v", role="viewer", kind="live")
        headers = {"X-Kelian-Edge": "1", "X-Kelian-Origin": "http://127.0.0.1:9"}
        async with http.ws_connect(cluster.url + "/ws", headers=headers) as ws:
            await ws.send_json({"type": "join", "token": token})
            joined = await ws.receive_json(timeout=10)
            assert joined["type"] == "joined", "served as any viewer"


async def test_kelian_js_in_chromium_watches_the_lecture_from_an_edge(
    cluster: Cluster, browser: Browser
) -> None:
    """A viewer's page, served by a worker that does not hold the room: the SDK cannot tell; its
    offers come from the edge, everything else from the origin, and it decodes the lecturer."""
    use_loopback_candidates()
    lecturer = Client(
        cluster.url, mint(API_KEY, API_SECRET, room=ROOM, identity="t", role="lecturer", kind="live")
    )
    try:
        await lecturer.connect()
        await lecturer.publish(video_track())
        origin = cluster.pool.placement.locate(ROOM)
        assert origin is not None
        page = await new_page(browser, label="viewer")
        await page.goto(cluster.url)
        viewer = mint(API_KEY, API_SECRET, room=ROOM, identity="page", role="viewer", kind="live")
        await page.evaluate(JOIN, [viewer, False])
        await wait_frames_decoded(page, 10)
        edges = [w for w in cluster.pool.placement.workers if w is not origin]
        assert await eventually(lambda: any(w.transports > 0 for w in edges), timeout=5), "served by an edge"
        assert await page.evaluate("window.kelianRoom.state") == "connected"
    finally:
        await lecturer.close()


async def test_an_edge_viewers_bad_messages_earn_errors_and_end_nothing(cluster: Cluster) -> None:
    """Garbage to an edge, about media (answered there) or not (passed to the origin): an error each,
    and the session goes on, on both."""
    teacher = await cluster.peer("teacher", "lecturer")
    try:
        await teacher.publish(audio=False, simulcast=False)
        token = mint(API_KEY, API_SECRET, room=ROOM, identity="v", role="viewer", kind="live")
        async with aiohttp.ClientSession() as http, http.ws_connect(cluster.url + "/ws") as ws:
            await ws.send_json({"type": "join", "token": token, "id": 1})
            seen: list[dict[str, object]] = []

            async def reply_to(request_id: int) -> dict[str, object]:
                for _ in range(50):  # bounded: events come between the replies
                    message = await ws.receive_json(timeout=10)
                    seen.append(message)
                    if message.get("id") == request_id:
                        return message
                raise AssertionError(f"no reply to {request_id}")

            assert (await reply_to(1))["type"] == "joined"
            await ws.send_str("not json at all {")
            bad = [
                {"type": "answer", "sdp": "v=0 garbage", "id": 2},
                {"type": "subscribe", "track": ["a list"], "id": 3},
                {"type": "track_settings", "track": "TR_none", "width": -5, "height": "x", "id": 4},
                {"type": "chat", "text": {"deep": [1, 2, 3]}, "id": 5},
                {"type": "no_such_thing", "id": 6},
            ]
            for message in bad:
                await ws.send_json(message)
                answer = await reply_to(int(message["id"]))  # type: ignore[call-overload]
                assert answer["type"] == "error" and answer["code"] != "internal", answer
            await ws.send_json({"type": "chat", "text": "still here", "id": 7})
            assert (await reply_to(7))["type"] != "error"
            assert await eventually(
                lambda: any(
                    e["type"] == "chat" and e["message"]["text"] == "still here" for e in teacher.events
                )  # type: ignore[index]
            )
            assert any(m["type"] == "error" and "not JSON" in str(m["message"]) for m in seen)
    finally:
        await teacher.close()


async def test_a_room_an_edge_opens_at_its_origin_is_of_its_viewers_kind(cluster: Cluster) -> None:
    """The room's first participant may be an edge's viewer (here: the room's worker just took it,
    another is less loaded): the edge's link opens it at the origin of the kind the viewer's token
    names, as its own join there would; a kind that is none is refused, and nothing opened."""
    viewer = await cluster.peer("first", "viewer")
    try:
        origin = cluster.pool.placement.locate(ROOM)
        assert origin is not None
        others = [w for w in cluster.pool.placement.workers if w is not origin]
        assert await eventually(lambda: any(w.transports > 0 for w in others), timeout=5), "an edge's"
        status, room = await api(cluster.url, "GET", f"/rooms/{ROOM}")
        assert status == 200 and room["kind"] == "live", room
    finally:
        await viewer.close()
    marked = {"X-Kelian-Relayed": relay_mark(API_SECRET)}
    async with aiohttp.ClientSession() as http:
        bad = cluster.url + "/internal/edge/other?media=127.0.0.1:9&kind=dance"
        async with http.ws_connect(bad, headers=marked) as ws:  # the front relays to the worker,
            refused = await ws.receive(timeout=10)  # which refuses it: the link closes unanswered
            assert refused.type == aiohttp.WSMsgType.CLOSE, refused
    assert (await api(cluster.url, "GET", "/rooms/other"))[0] == 404, "the refused link opened nothing"
