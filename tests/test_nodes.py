"""Many machines on Redis: nodes (each a front and its workers) announce themselves in a real
redis-server; a room belongs to one node, and a participant may reach any node: it is served by the
room's node, relayed there. A node killed outright is gone from the cluster within seconds, and its
rooms open again on a live node when their participants come back."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from browser import JOIN, new_page, wait_frames_decoded
from classroom_peers import api, org
from cluster_helpers import front_config, serve_node
from kelian_server import API_KEY, API_SECRET, eventually
from playwright.async_api import Browser

from classroom.tokens import mint
from cluster import front
from cluster.front import NODES, POOL, STOP
from cluster.nodes import NODE_TTL
from loadtest.peer import Peer
from signaling.client import Client, use_loopback_candidates
from signaling.media import video_track


def token(identity: str, role: str, room: str, kind: str = "fusion") -> str:
    return mint(API_KEY, API_SECRET, room=room, identity=identity, role=role, kind=kind)


@asynccontextmanager
async def node(redis_url: str, folder: Path, **settings: Any) -> AsyncIterator[tuple[str, Any]]:
    """A node in this process (its worker a process of its own): its URL and its front's app."""
    folder.mkdir()
    config = front_config(folder, redis_url=redis_url, **settings)
    runner, pool = await front.start(config, 1)
    try:
        yield f"http://127.0.0.1:{config.http_port}", runner.app
    finally:
        await front.stop(runner, pool)


def frames(peer: Peer) -> int:
    tracks = peer.stats()["subscriber"]["tracks"].values()
    return min((t["frames"] for t in tracks if t["kind"] == "video"), default=0)


async def test_a_participant_reaching_another_node_is_served_by_the_rooms_node(
    redis_url: str, tmp_path: Path
) -> None:
    async with node(redis_url, tmp_path / "a") as (a, app_a), node(redis_url, tmp_path / "b") as (b, app_b):
        nodes = await app_a[NODES].nodes()
        assert set(nodes) == {app_a[NODES].node.id, app_b[NODES].node.id}, nodes
        teacher = Peer(a, token("teacher", "lecturer", "maths"))
        box = Peer(b, token("box", "classroom", "maths"))  # through the other node
        try:
            await teacher.connect()
            await box.connect()
            holder = await app_b[NODES].locate("maths")
            assert holder is not None and holder.id == app_a[NODES].node.id, "the room is on node a"
            assert app_b[POOL].placement.locate("maths") is None, "node b holds nothing of it"
            await teacher.publish(audio=False, simulcast=False)
            await box.publish(audio=False, simulcast=False)
            assert await eventually(lambda: frames(box) > 10 and frames(teacher) > 10), "both ways"
            status = teacher.stats()["subscriber"]["tracks"]
            assert status, "the teacher hears from the box that came by the other node"
        finally:
            await teacher.close()
            await box.close()


async def test_a_live_rooms_viewers_spread_over_three_nodes_all_decode(
    redis_url: str, tmp_path: Path
) -> None:
    """Node a holds the lecture; viewers reaching nodes b and c are served there, as edges of it
    (cluster/edge.py; at once here: spread_after 0): tracks piped from a, signaling a's."""
    async with (
        node(redis_url, tmp_path / "a", spread_after=0) as (a, _),
        node(redis_url, tmp_path / "b", spread_after=0) as (b, app_b),
        node(redis_url, tmp_path / "c", spread_after=0) as (c, app_c),
    ):
        presenter = Peer(a, token("presenter", "lecturer", "talk", "live"))
        viewers = [Peer(url, token(f"v{i}", "viewer", "talk", "live")) for i, url in enumerate([a, b, c] * 2)]
        try:
            await presenter.connect()
            await presenter.publish(audio=True, simulcast=True)
            await asyncio.sleep(1.2)  # node a's load (its transports) reaches the cluster
            for viewer in viewers:
                await viewer.connect()
                for track in await viewer.wait_for_tracks(2):
                    viewer.probe(track["id"])
            assert await eventually(lambda: all(decoding(v) for v in viewers), timeout=20)
            for app in (app_b, app_c):
                assert app[POOL].placement.locate("talk") is None, "the room is a's"
                assert await eventually(lambda app=app: app[POOL].placement.workers[0].transports > 0)
            await viewers[1].request({"type": "chat", "text": "hello from b"})
            assert await eventually(
                lambda: any(
                    e["type"] == "chat" and e["message"]["text"] == "hello from b" for e in presenter.events
                )
            )
            assert await eventually(
                lambda: all(
                    [e["count"] for e in v.events if e["type"] == "participant_count"][-1:] == [7]
                    for v in viewers
                ),
                timeout=5,
            ), "one count for the whole lesson"
        finally:
            for peer in [presenter, *viewers]:
                await peer.close()


def decoding(peer: Peer) -> bool:
    tracks = peer.stats()["subscriber"]["tracks"].values()
    probed = [t["probe"] for t in tracks if t["kind"] == "video" and t.get("probe")]
    return bool(probed) and all(p["decoded_frames"] > 5 and p["decode_errors"] == 0 for p in probed)


async def test_a_killed_nodes_rooms_come_back_on_a_live_node(redis_url: str, tmp_path: Path) -> None:
    a, node_a = await serve_node(redis_url, tmp_path / "a")
    b, node_b = await serve_node(redis_url, tmp_path / "b")
    teacher = Peer(a, token("teacher", "lecturer", "maths"))
    try:
        await teacher.connect()
        await teacher.publish(audio=False, simulcast=False)
        node_a.send_signal(signal.SIGKILL)
        await node_a.wait()
        await asyncio.sleep(NODE_TTL)  # its announcement lapses
        again = Peer(b, token("teacher", "lecturer", "maths"))
        box = Peer(b, token("box", "classroom", "maths"))
        try:
            await again.connect()  # back, by the node that lives
            await box.connect()
            await again.publish(audio=False, simulcast=False)
            assert await eventually(lambda: frames(box) > 10, timeout=10), "the lesson goes on at node b"
        finally:
            await again.close()
            await box.close()
    finally:
        await teacher.close()
        for process in (node_a, node_b):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 30)
    assert node_b.returncode == 0


async def test_a_switchover_at_one_node_reaches_the_lessons_of_every_node(
    redis_url: str, tmp_path: Path
) -> None:
    """The organisation lives in Redis, so every node knows the timetable; a switchover asked of
    node b opens the lessons' rooms on whichever nodes the cluster gives them and tells every
    node's clients at once."""
    async with node(redis_url, tmp_path / "a") as (a, app_a), node(redis_url, tmp_path / "b") as (b, app_b):
        status, body = await api(a, "POST", "/import", org(time.time()))
        assert status == 200, body
        status, audit = await api(b, "POST", "/switchover", {"district": "d1", "mode": "online"})
        assert status == 200 and audit["rooms_opened"] == 2, audit
        holders = {(await app_a[NODES].locate(lesson)).id for lesson in ("s1-maths", "s2-maths")}  # type: ignore[union-attr]
        assert holders == {app_a[NODES].node.id, app_b[NODES].node.id}, "one lesson a node"
        boxes = []
        try:
            for lesson, url in (("s1-maths", a), ("s2-maths", b)):
                status, roster = await api(url, "POST", f"/lessons/{lesson}/tokens")
                entry = next(e for e in roster["tokens"] if e["role"] == "classroom")
                box = Peer(url, entry["token"])
                await box.connect()
                boxes.append(box)
            status, audit = await api(a, "POST", "/switchover", {"district": "d1", "mode": "offline"})
            assert status == 200 and (audit["rooms"], audit["clients_told"]) == (2, 2), audit
            for box in boxes:
                assert await eventually(lambda box=box: any(e.get("type") == "mode" for e in box.events))
        finally:
            for box in boxes:
                await box.close()


async def test_a_drained_node_gives_its_rooms_up_and_stops(redis_url: str, tmp_path: Path) -> None:
    """`POST /api/v1/node/drain` on node a: no new room goes there, its rooms are given up and
    their clients' sockets closed without a "disconnected" (so kelian.js reconnects), they come back
    through any node to a lesson placed on node b, and node a stops once it holds nothing."""
    async with node(redis_url, tmp_path / "a") as (a, app_a), node(redis_url, tmp_path / "b") as (b, app_b):
        teacher = Peer(a, token("teacher", "lecturer", "maths"))
        await teacher.connect()
        try:
            assert (await app_a[NODES].locate("maths")).id == app_a[NODES].node.id  # type: ignore[union-attr]
            status, body = await api(a, "POST", "/node/drain", {"deadline": 10, "exit": True})
            assert status == 202 and body["rooms"] == ["maths"], body
            assert await eventually(
                lambda: teacher._channel is not None and teacher._channel.closed, timeout=5
            )
            assert not any(e.get("type") == "disconnected" for e in teacher.events), "told to come back"
            assert await eventually(lambda: app_a[STOP].is_set(), timeout=10), "empty: it stops"
            nodes = await app_b[NODES].nodes()
            assert nodes[app_a[NODES].node.id].draining
            again = Peer(a, token("teacher", "lecturer", "maths"))  # the load balancer's old choice
            box = Peer(b, token("box", "classroom", "maths"))
            try:
                await again.connect()
                await box.connect()
                holder = await app_b[NODES].locate("maths")
                assert holder is not None and holder.id == app_b[NODES].node.id, "placed anew on node b"
                await again.publish(audio=False, simulcast=False)
                assert await eventually(lambda: frames(box) > 10), "the lesson goes on"
            finally:
                await again.close()
                await box.close()
        finally:
            await teacher.close()


async def test_a_redis_that_lost_everything_learns_the_rooms_back(redis_url: str, tmp_path: Path) -> None:
    """Redis restarted without persistence: within a heartbeat every node announces itself and
    claims the rooms it holds again, so a participant arriving by another node still finds its
    lesson where it is, not a second copy of it."""
    async with node(redis_url, tmp_path / "a") as (a, app_a), node(redis_url, tmp_path / "b") as (b, app_b):
        teacher = Peer(a, token("teacher", "lecturer", "maths"))
        await teacher.connect()
        try:
            await app_a[NODES].redis.flushdb()
            assert await app_b[NODES].locate("maths") is None
            for _ in range(40):
                holder = await app_b[NODES].locate("maths")
                if holder is not None:
                    break
                await asyncio.sleep(0.1)
            assert holder is not None and holder.id == app_a[NODES].node.id
            box = Peer(b, token("box", "classroom", "maths"))
            await box.connect()
            await box.close()
            assert app_b[POOL].placement.locate("maths") is None, "no second copy on node b"
        finally:
            await teacher.close()


async def test_the_python_client_comes_back_by_itself_when_its_node_dies(
    redis_url: str, tmp_path: Path
) -> None:
    """A classroom box (signaling.client.Client, given the cluster's nodes) and a student, both on
    node a; node a is killed outright: each joins again by itself through node b, the box publishes
    its camera again, and the student sees it."""
    use_loopback_candidates()
    a, node_a = await serve_node(redis_url, tmp_path / "a")
    b, node_b = await serve_node(redis_url, tmp_path / "b")
    box = Client([a, b], token("box", "classroom", "maths"))
    student = Client([a, b], token("student", "student", "maths"))
    try:
        await box.connect()
        await box.publish(video_track())
        await student.connect()
        (first,) = await student.wait_for_tracks(1)
        await asyncio.wait_for(first.track.recv(), 5)
        node_a.send_signal(signal.SIGKILL)
        await node_a.wait()
        assert await eventually(
            lambda: (
                box.state == student.state == "connected" and box.reconnections == student.reconnections == 1
            ),
            timeout=20,
        ), (box.state, student.state)
        assert box.url == student.url == b
        (again,) = await student.wait_for_tracks(1, timeout=10)  # the new session's
        for _ in range(5):
            await asyncio.wait_for(again.track.recv(), 5)
    finally:
        await box.close()
        await student.close()
        for process in (node_a, node_b):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 30)


async def test_kelian_js_follows_its_lesson_to_another_node_by_itself(
    redis_url: str, tmp_path: Path, browser: Browser
) -> None:
    """A student's page in Chromium, served by node a, watching a classroom box; node a is drained:
    the page's SDK reconnects by itself (through node a, which relays it to the lesson placed anew
    on node b) without a reload, and decodes the box's camera again."""
    use_loopback_candidates()
    async with node(redis_url, tmp_path / "a") as (a, _), node(redis_url, tmp_path / "b") as (b, app_b):
        box = Client([a, b], token("box", "classroom", "maths"))
        try:
            await box.connect()
            await box.publish(video_track())
            page = await new_page(browser, label="student")
            await page.goto(a)
            await page.evaluate(JOIN, [token("student", "student", "maths"), False])
            await wait_frames_decoded(page, 10)
            status, _ = await api(a, "POST", "/node/drain", {"deadline": 10})
            assert status == 202
            assert await eventually(lambda: box.reconnections == 1 and box.state == "connected", timeout=15)
            holder = await app_b[NODES].locate("maths")
            assert holder is not None and holder.id == app_b[NODES].node.id
            await page.wait_for_function("window.states.includes('reconnecting')")
            await page.wait_for_function("window.kelianRoom.state === 'connected'", timeout=20_000)
            await wait_frames_decoded(page, 10)  # counted on its new receiving PeerConnection
            assert await page.evaluate("window.notReloaded") is True
        finally:
            await box.close()
