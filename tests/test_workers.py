"""Every core: `kelian serve --workers 2` runs two worker processes behind one front. Rooms are
placed on the least-loaded worker and live whole there; participants, WHEP players and the admin
API reach them through the front's one address; a switchover reaches the lessons of every worker at
once; /metrics and /healthz speak for all; a worker killed is replaced and its rooms can open again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from aiortc import RTCPeerConnection, RTCSessionDescription
from classroom_peers import api, org
from cluster_helpers import front_config
from kelian_server import API_KEY, API_SECRET, eventually, free_tcp_port
from test_whip_whep import bearer, delete, post_offer, whip_publish

from classroom.tokens import mint
from cluster import front
from cluster.placement import SETTLE, Placement, Worker
from cluster.workers import WorkerPool
from loadtest.peer import Peer
from signaling.client import use_loopback_candidates
from signaling.config import Config


@dataclass
class Cluster:
    url: str
    config: Config
    pool: WorkerPool

    def token(self, identity: str, role: str, room: str, **claims: Any) -> str:
        return mint(API_KEY, API_SECRET, room=room, identity=identity, role=role, **claims)

    def worker_of(self, room: str) -> int | None:
        worker = self.pool.placement.locate(room)
        return None if worker is None else worker.index


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    config = front_config(tmp_path)
    runner, pool = await front.start(config, 2)
    try:
        yield Cluster(f"http://127.0.0.1:{config.http_port}", config, pool)
    finally:
        await front.stop(runner, pool)


async def joined(kelian: Cluster, identity: str, role: str, room: str, kind: str = "fusion") -> Peer:
    peer = Peer(kelian.url, kelian.token(identity, role, room, kind=kind))
    await peer.connect()
    return peer


async def test_rooms_are_placed_on_the_least_loaded_worker_and_media_flows(cluster: Cluster) -> None:
    kelian = cluster
    peers = []
    try:
        for room in ("maths", "music"):
            teacher = await joined(kelian, f"{room}-teacher", "lecturer", room)
            box = await joined(kelian, f"{room}-box", "classroom", room)
            peers += [teacher, box]
            await teacher.publish(audio=True, simulcast=False)
            await box.wait_for_tracks(2)
        assert {kelian.worker_of("maths"), kelian.worker_of("music")} == {0, 1}, "one room a worker"
        for box in peers[1::2]:
            assert await eventually(
                lambda box=box: all(
                    t["frames"] > 10
                    for t in box.stats()["subscriber"]["tracks"].values()
                    if t["kind"] == "video"
                )
            )
        ports = {w.media_port for w in kelian.pool.placement.workers}
        assert len(ports) == 2, "each worker its own media port"
        async with aiohttp.ClientSession() as http, http.get(kelian.url + "/healthz") as r:
            status, body = r.status, await r.json()
        assert status == 200 and [w["rooms"] for w in body["workers"]] == [1, 1], body
    finally:
        for peer in peers:
            await peer.close()


async def test_the_admin_api_reaches_rooms_wherever_they_are(cluster: Cluster) -> None:
    kelian = cluster
    for name in ("a", "b", "c"):
        status, body = await api(kelian, "POST", "/rooms", {"name": name, "empty_timeout": 60})  # type: ignore[arg-type]
        assert status == 201, body
    assert sorted(w.index for w in kelian.pool.placement.workers if w.rooms) == [0, 1]
    status, body = await api(kelian, "GET", "/rooms")  # type: ignore[arg-type]
    assert status == 200 and sorted(r["name"] for r in body["rooms"]) == ["a", "b", "c"]
    status, body = await api(kelian, "POST", "/rooms", {"name": "a"})  # type: ignore[arg-type]
    assert status == 409, "a room of that name exists, on its worker"
    for name in ("a", "b"):
        status, body = await api(kelian, "GET", f"/rooms/{name}")  # type: ignore[arg-type]
        assert status == 200 and body["name"] == name
    status, body = await api(kelian, "GET", "/rooms/nowhere")  # type: ignore[arg-type]
    assert status == 404 and body["error"]["code"] == "not_found"
    async with aiohttp.ClientSession() as http, http.get(kelian.url + "/api/v1/rooms/a") as r:
        assert r.status == 401, "strangers learn nothing, not even that a room is placed"
    status, _ = await api(kelian, "DELETE", "/rooms/b")  # type: ignore[arg-type]
    assert status == 204
    assert await eventually(lambda: kelian.worker_of("b") is None), "its worker said it closed"


async def test_a_switchover_reaches_the_lessons_of_every_worker(cluster: Cluster) -> None:
    kelian = cluster
    status, body = await api(kelian, "POST", "/import", org(time.time()))  # type: ignore[arg-type]
    assert status == 200, body
    lessons = ["s1-maths", "s2-maths"]
    status, audit = await api(kelian, "POST", "/switchover", {"district": "d1", "mode": "online"})  # type: ignore[arg-type]
    assert status == 200 and audit["rooms_opened"] == 2, audit
    assert {kelian.worker_of(lesson) for lesson in lessons} == {0, 1}, "the lessons spread over both"
    boxes = []
    try:
        for lesson in lessons:
            status, roster = await api(kelian, "POST", f"/lessons/{lesson}/tokens")  # type: ignore[arg-type]
            entry = next(e for e in roster["tokens"] if e["role"] == "classroom")
            box = Peer(kelian.url, entry["token"])
            await box.connect()
            boxes.append(box)
        status, audit = await api(kelian, "POST", "/switchover", {"district": "d1", "mode": "offline"})  # type: ignore[arg-type]
        assert status == 200 and audit["rooms"] == len(lessons) and audit["clients_told"] == len(boxes), audit
        for box in boxes:
            assert await eventually(lambda box=box: any(e.get("type") == "mode" for e in box.events))
    finally:
        for box in boxes:
            await box.close()


async def test_metrics_speak_for_every_worker(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as http, http.get(cluster.url + "/metrics") as r:
        text = await r.text()
    assert r.status == 200
    workers = {line.split('worker="')[1].split('"')[0] for line in text.splitlines() if 'worker="' in line}
    assert workers == {"front", "0", "1"}, workers
    assert text.count("# TYPE process_cpu_seconds_total") == 1, "one family, a sample per process"


async def test_a_killed_worker_is_replaced_and_its_rooms_open_again(cluster: Cluster) -> None:
    kelian = cluster
    teacher = await joined(kelian, "t", "lecturer", "maths")
    try:
        worker = kelian.pool.placement.locate("maths")
        assert worker is not None
        process = kelian.pool.processes[worker.index]
        os.kill(process.pid, signal.SIGKILL)
        assert await eventually(lambda: kelian.worker_of("maths") is None, timeout=5), "its rooms are free"
        assert await eventually(
            lambda: (
                all(w.alive for w in kelian.pool.placement.workers)
                and len(kelian.pool.placement.workers) == 2
            ),
            timeout=20,
        ), "a fresh worker took its place"
        again = await joined(kelian, "t2", "lecturer", "maths")
        await again.close()
    finally:
        await teacher.close()
    await asyncio.sleep(0)


async def test_kelian_serve_workers_runs_them_and_stops_them(tmp_path: Path) -> None:
    """The command line: `kelian serve --workers 2` answers on one address for two workers, and a
    SIGTERM (docker stop) stops the front and its workers."""
    port = free_tcp_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KELIAN_")}
    env |= {"KELIAN_API_KEY": API_KEY, "KELIAN_API_SECRET": API_SECRET}
    command = ["-m", "signaling", "serve", "--workers", "2", "--http-port", str(port), "--media-port", "0"]
    command += ["--database", str(tmp_path / "kelian.db"), "--recordings", str(tmp_path / "rec")]
    process = await asyncio.create_subprocess_exec(sys.executable, *command, env=env, cwd=tmp_path)
    try:

        async def health() -> dict[str, Any] | None:
            try:
                async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    return dict(await r.json()) if r.status == 200 else None
            except aiohttp.ClientError:
                return None

        body = None
        for _ in range(200):
            if (body := await health()) is not None:
                break
            await asyncio.sleep(0.1)
        assert body is not None and len(body["workers"]) == 2 and all(w["alive"] for w in body["workers"])
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
    assert await health() is None


async def test_whip_and_whep_go_through_the_front(cluster: Cluster) -> None:
    """An encoder publishes by WHIP and a player watches by WHEP, both at the front's address: the
    room is placed on the first, found again for the second and for the session's DELETE."""
    use_loopback_candidates()
    kelian = cluster
    async with aiohttp.ClientSession() as session:
        publisher, whip_location = await whip_publish(kelian, session, room="talk")  # type: ignore[arg-type]
        assert kelian.worker_of("talk") is not None
        player = RTCPeerConnection()
        player.addTransceiver("video", direction="recvonly")
        received: list[Any] = []
        player.on("track", received.append)
        await player.setLocalDescription(await player.createOffer())
        token = kelian.token("player", "viewer", "talk")
        answer = await post_offer(session, f"{kelian.url}/whep/talk", token, player.localDescription.sdp)
        assert answer.status == 201, await answer.text()
        await player.setRemoteDescription(RTCSessionDescription(await answer.text(), "answer"))
        for _ in range(5):
            await asyncio.wait_for(received[0].recv(), 5)
        own = bearer(kelian.token("obs", "lecturer", "talk"))
        assert (await delete(session, kelian.url + whip_location, own)).status == 200
        gone = await delete(session, kelian.url + "/whip/nowhere/abc", own)
        assert gone.status == 404, "no room placed: nothing to end"
        await player.close()
        await publisher.close()


def test_a_room_placed_for_a_join_that_never_opened_it_is_freed() -> None:
    placement = Placement()
    worker = Worker(0, 1, 2)
    placement.workers = [worker]
    assert placement.place("locked") is worker and placement.place("open") is worker
    placement.reconcile(worker, {"open"})
    assert placement.locate("locked") is worker, "a join may still be on its way"
    placement.placed_at["locked"] -= SETTLE + 1
    placement.placed_at["open"] -= SETTLE + 1
    placement.reconcile(worker, {"open"})
    assert placement.locate("locked") is None and placement.locate("open") is worker


async def test_a_join_the_front_cannot_read_is_answered_by_a_worker(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(cluster.url + "/ws") as ws:
        await ws.send_str('{"type": "join", "token": "not a token"}')
        answer = await ws.receive_json(timeout=5)
    assert answer["type"] == "error" and answer["code"] == "unauthorized", answer
    assert not cluster.pool.placement.rooms, "nothing placed for it"


async def test_the_fronts_own_refusals_are_counted(tmp_path: Path) -> None:
    """The front turns connections away itself (its per-address bound): /metrics says so, under
    worker="front", as a single process would say it."""
    config = front_config(tmp_path, max_connections_per_address=2)
    runner, pool = await front.start(config, 2)
    url = f"http://127.0.0.1:{config.http_port}"
    try:
        held = [await asyncio.open_connection("127.0.0.1", config.http_port) for _ in range(2)]
        refused = await asyncio.open_connection("127.0.0.1", config.http_port)
        assert await refused[0].read() == b"", "the third from one address is closed at once"
        for _, writer in [*held, refused]:
            writer.close()
        async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as r:
            text = await r.text()
        line = next(x for x in text.splitlines() if x.startswith("kelian_refused_total{") and "front" in x)
        assert 'reason="address_limit"' in line and float(line.split()[-1]) >= 1, line
    finally:
        await front.stop(runner, pool)
