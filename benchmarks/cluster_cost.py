"""What a cluster's failure costs: a node killed outright, and the time until its clients have media
again. `make bench` prints it; `python -m benchmarks.cluster_cost` alone.

A real redis-server and two nodes (`kelian serve --redis-url`, processes of their own) on loopback;
LESSONS lessons, each a classroom box publishing (signaling.client.Client, a pre-encoded 320x180
camera) and a student receiving, all of them given both nodes' URLs and connected through node a.
Node a gets SIGKILL; every client finds out, joins again by itself through node b (resuming, or
publishing again where its session died with node a), and for each student the figure is the time
from the kill to the first picture decoded from its lesson again. Node a's lessons wait for its
announcement to lapse (cluster.nodes.NODE_TTL) before node b may take them; node b's wait only for
the socket they had through node a to be replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from classroom.tokens import mint
from signaling.client import Client, use_loopback_candidates
from signaling.media import video_track

from . import suite
from .suite import API_KEY, API_SECRET, free_port

LESSONS = 8
RECOVERY_LIMIT = 40.0  # seconds a student may take before it counts as not back


def redis_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port(socket.SOCK_STREAM)
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return process, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


async def node(redis_url: str, folder: Path) -> tuple[asyncio.subprocess.Process, str]:
    folder.mkdir()
    port = free_port(socket.SOCK_STREAM)
    env = dict(os.environ, KELIAN_API_KEY=API_KEY, KELIAN_API_SECRET=API_SECRET)
    command = [
        "-m",
        "signaling",
        "serve",
        "--redis-url",
        redis_url,
        "--workers",
        "1",
        "--http-port",
        str(port),
    ]
    command += ["--media-port", "0", "--database", str(folder / "kelian.db"), "--auto-record", "false"]
    command += ["--recordings", str(folder / "rec"), "--library", str(folder / "lib"), "--log-level", "error"]
    process = await asyncio.create_subprocess_exec(sys.executable, *command, env=env, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        await suite.healthy(url, tries=300)
    except RuntimeError:
        process.kill()
        raise RuntimeError("a node did not start") from None
    return process, url


async def _back(student: Client, killed: float) -> float | None:
    """Seconds from the kill to the student's first decoded picture of its lesson again."""
    deadline = killed + RECOVERY_LIMIT
    while time.monotonic() < deadline:
        if student.state == "connected" and student.reconnections and student.tracks:
            track = next(iter(student.tracks.values())).track
            with contextlib.suppress(Exception):
                await asyncio.wait_for(track.recv(), max(0.1, deadline - time.monotonic()))
                return time.monotonic() - killed
        await asyncio.sleep(0.05)
    return None


async def node_failure(lessons: int = LESSONS) -> dict[str, Any]:
    use_loopback_candidates()
    with tempfile.TemporaryDirectory(prefix="kelian-cluster-") as tmp:
        folder = Path(tmp)
        redis, redis_url = redis_server(folder)
        nodes: list[asyncio.subprocess.Process] = []
        clients: list[Client] = []
        try:
            node_a, a = await node(redis_url, folder / "a")
            node_b, b = await node(redis_url, folder / "b")
            nodes += [node_a, node_b]
            students = []
            for n in range(lessons):
                room = f"lesson-{n}"
                box = Client([a, b], mint(API_KEY, API_SECRET, room=room, identity="box", role="classroom"))
                student = Client([a, b], mint(API_KEY, API_SECRET, room=room, identity="kid", role="student"))
                clients += [box, student]
                await box.connect()
                await box.publish(video_track(width=320, height=180, fps=15))
                await student.connect()
                (remote,) = await student.wait_for_tracks(1)
                await asyncio.wait_for(remote.track.recv(), 10)
                students.append(student)
            killed = time.monotonic()
            node_a.send_signal(signal.SIGKILL)
            times = await asyncio.gather(*(_back(s, killed) for s in students))
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.close()
            for process in nodes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(process.wait(), 20)
            redis.terminate()
            redis.wait(timeout=10)
    back = sorted(t for t in times if t is not None)
    return {
        "lessons": lessons,
        "students_back": len(back),
        "back_p50_s": round(statistics.median(back), 2) if back else None,
        "back_max_s": round(back[-1], 2) if back else None,
        "back_s": [round(t, 2) for t in back],
    }


class _Endpoint(asyncio.DatagramProtocol):
    """A loopback socket that notes when each packet (numbered by its RTP sequence) arrived."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 16 or 192 <= data[1] <= 223:
            return
        at = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10:  # the header extension the router added (the transport-wide slot)
            at += 4 + 4 * int.from_bytes(data[at + 2 : at + 4], "big")
        self.arrived.setdefault(int.from_bytes(data[at : at + 4], "big"), time.perf_counter())


async def pipe_latency(packets: int = 3000, rate: int = 600) -> dict[str, float]:
    """Added latency of one pipe hop (sfu.pipe), on loopback: a publisher's packets to a subscriber
    on the same Node, and to one on another Node through a pipe, side by side; p50 and p99 of each."""
    from sfu.node import Node
    from sfu.pipe import PipeTransport, pipe_in, pipe_out
    from sfu.plain_transport import PlainTransport
    from sfu.producer import CodecSpec, Producer, ProducerSpec, StreamSpec

    loop = asyncio.get_running_loop()
    origin, edge = Node("127.0.0.1", 0), Node("127.0.0.1", 0)
    await origin.start()
    await edge.start()
    ends = []
    for _ in range(3):
        _, end = await loop.create_datagram_endpoint(_Endpoint, local_addr=("127.0.0.1", 0))
        ends.append(end)
    publisher, near, far = ends
    try:
        address = publisher.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
        ingest = PlainTransport(origin, address)
        spec = ProducerSpec(
            kind="audio",  # every packet forwarded at once: no keyframe to wait for
            mid="0",
            codec=CodecSpec("opus", "audio", 111, 48000, 2, "", None),
            publisher_payload_type=111,
            publisher_rtx_payload_type=None,
            streams=[StreamSpec(ssrc=0x1234)],
        )
        source = Producer(ingest, spec)
        ingest.add_producer(source)
        origin.router("r").add_producer(source)
        mirror = pipe_in(
            edge.router("r"),
            PipeTransport(edge, ("127.0.0.1", origin.port)),
            pipe_out(PipeTransport(origin, ("127.0.0.1", edge.port)), source),
        )
        near_address = near.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
        far_address = far.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
        origin.router("r").consume(PlainTransport(origin, near_address), source, "0")
        edge.router("r").consume(PlainTransport(edge, far_address), mirror, "0")
        sent: dict[int, float] = {}
        for n in range(packets):
            header = bytes([0x80, 111]) + (n & 0xFFFF).to_bytes(2, "big") + (n * 960).to_bytes(4, "big")
            packet = header + (0x1234).to_bytes(4, "big") + n.to_bytes(4, "big") + bytes(100)
            sent[n] = time.perf_counter()
            publisher.transport.sendto(packet, ("127.0.0.1", origin.port))  # type: ignore[union-attr]
            await asyncio.sleep(1 / rate)
        await asyncio.sleep(0.5)
    finally:
        for node in (origin, edge):
            await node.stop()
        for end in ends:
            end.transport.close()  # type: ignore[union-attr]

    def quantiles(arrived: dict[int, float]) -> tuple[float, float]:
        delays = sorted((arrived[n] - sent[n]) * 1e6 for n in arrived if n in sent and n >= 50)
        return statistics.median(delays), delays[int(0.99 * (len(delays) - 1))]

    (near50, near99), (far50, far99) = quantiles(near.arrived), quantiles(far.arrived)
    return {
        "same_node_p50_us": round(near50),
        "same_node_p99_us": round(near99),
        "through_a_pipe_p50_us": round(far50),
        "through_a_pipe_p99_us": round(far99),
        "pipe_hop_added_p50_us": round(far50 - near50),
    }


if __name__ == "__main__":
    print(asyncio.run(pipe_latency()))
    print(asyncio.run(node_failure()))
