"""End-to-end forwarding over loopback: one ~1 Mbit/s VP8 publisher to N subscribers.

The server runs as its own process (`python -m signaling serve`), so its CPU time is read from
/proc/<pid>/stat and nothing of the clients is counted. The clients share one uvloop process and
never decode: the subscribers' aiortc receivers are replaced by a hook that timestamps each packet,
and the publisher replays a clip encoded once. Latency is matched per packet by payload bytes
(the SFU rewrites headers, never payloads), from the publisher handing a packet to SRTP to the
subscriber holding it decrypted; it includes both clients' SRTP and event-loop time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from loadtest.procstat import cpu_seconds, rss_bytes, server_metric
from loadtest.report import percentile
from signaling.client import Client, use_loopback_candidates
from signaling.media import video_track
from signaling.tokens import mint

API_KEY, API_SECRET = "APIbench", "bench-secret-bench-secret-bench-secret"
KEY_BYTES = 48  # VP8 payload descriptor + picture id + data: unique per packet within a run


class Probe:
    """Send and receive times of packets, keyed by their payload."""

    def __init__(self) -> None:
        self.sent: dict[bytes, float] = {}
        self.latencies: list[float] = []
        self.received = 0
        self.recording = False

    ORIGINAL = (RTCDtlsTransport._send_rtp, RTCRtpReceiver._handle_rtp_packet)

    @classmethod
    def uninstall(cls) -> None:
        """Give aiortc back its own methods: later benchmarks in this process decode again."""
        RTCDtlsTransport._send_rtp, RTCRtpReceiver._handle_rtp_packet = cls.ORIGINAL  # type: ignore[method-assign]

    def install(self) -> None:
        probe = self
        original_send = RTCDtlsTransport._send_rtp

        async def send_rtp(transport: RTCDtlsTransport, data: bytes) -> None:
            if probe.recording and 128 <= data[0] < 192 and not 192 <= data[1] <= 223:
                offset = 12 + 4 * (data[0] & 0x0F)
                if data[0] & 0x10:
                    offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
                probe.sent[data[offset : offset + KEY_BYTES]] = time.perf_counter()
            await original_send(transport, data)

        async def handle_rtp(receiver: RTCRtpReceiver, packet: RtpPacket, arrival_time_ms: int) -> None:
            now = time.perf_counter()
            probe.received += 1
            sent = probe.sent.get(packet.payload[:KEY_BYTES])
            if sent is not None and probe.recording:
                probe.latencies.append(now - sent)

        RTCDtlsTransport._send_rtp = send_rtp  # type: ignore[method-assign]
        RTCRtpReceiver._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]


async def start_load(*args: str) -> subprocess.Popen[bytes]:
    """`python -m <args>`: load subscribers in a process of their own; returns once it prints ready.

    Closing its stdin (communicate) tells it to leave."""
    load = subprocess.Popen([sys.executable, "-m", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert load.stdout is not None
    line = await asyncio.get_running_loop().run_in_executor(None, load.stdout.readline)
    if line.strip() != b"ready":
        load.kill()
        raise RuntimeError("the load subscribers did not join")
    return load


async def measure(url: str, pid: int, seconds: float) -> dict[str, Any]:
    """Packets the server forwarded and the CPU it used over `seconds`, and its memory after."""
    sent0 = server_metric(url, "kelian_packets_sent_total") or 0.0
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    sent1 = server_metric(url, "kelian_packets_sent_total") or 0.0
    forwarded, cpu, wall = sent1 - sent0, cpu1 - cpu0, t1 - t0
    return {
        "seconds": round(wall, 2),
        "forwarded_packets_per_s": round(forwarded / wall),
        "server_cpu_percent": round(100 * cpu / wall, 1),
        "forwarded_packets_per_cpu_second": round(forwarded / cpu) if cpu > 0 else None,
        "server_rss_mb": round(rss_bytes(pid) / 2**20, 1),
    }


def free_port(kind: int) -> int:
    import socket

    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_server() -> tuple[subprocess.Popen[bytes], str]:
    import socket

    http_port, media_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    env = dict(os.environ, KELIAN_API_KEY=API_KEY, KELIAN_API_SECRET=API_SECRET)
    process = subprocess.Popen(
        [sys.executable, "-m", "signaling", "serve", "--http-port", str(http_port),
         "--media-port", str(media_port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/healthz") as r:
                    if r.status == 200:
                        return process, url
            await asyncio.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start")


async def join_subscribers(url: str, count: int, first: int = 1) -> list[Client]:
    """`count` subscribers joining in batches of ten, as classrooms do; each has its track on return."""
    clients: list[Client] = []
    for i in range(first, first + count, 10):
        batch = [
            Client(url, mint(API_KEY, API_SECRET, room="bench", identity=f"s{j}", role="student"))
            for j in range(i, min(i + 10, first + count))
        ]
        clients += batch
        await asyncio.gather(*(c.connect() for c in batch))
        await asyncio.gather(*(c.wait_for_tracks(1, timeout=30) for c in batch))
    return clients


async def load_process(url: str, count: int) -> None:
    """The subscribers other than the probe, in a process of their own so their packets do not queue
    behind the probe's in one event loop (that would be the client's latency, not the server's)."""
    use_loopback_candidates()
    Probe().install()  # count, do not decode
    clients = await join_subscribers(url, count, first=1)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 5)


async def run_case(subscribers: int, seconds: float = 10.0, bitrate: int = 1_100_000) -> dict[str, Any]:
    probe = Probe()
    probe.install()
    process, url = await start_server()
    clients: list[Client] = []
    load: subprocess.Popen[bytes] | None = None
    try:
        publisher = Client(url, mint(API_KEY, API_SECRET, room="bench", identity="teacher", role="lecturer"))
        clients.append(publisher)
        await publisher.connect()
        await publisher.publish(video_track(width=640, height=360, bitrate=bitrate, seconds=4.0))
        if subscribers > 1:
            load = await start_load("benchmarks.forwarding", "load", url, str(subscribers - 1))
        clients += await join_subscribers(url, 1, first=0)
        await asyncio.sleep(2.0)  # let every Consumer sync on a keyframe
        probe.recording = True
        server = await measure(url, process.pid, seconds)
        probe.recording = False
        latencies = probe.latencies
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        return {
            "subscribers": subscribers,
            **server,
            "latency_p50_ms": None if p50 is None else round(1000 * p50, 3),
            "latency_p99_ms": None if p99 is None else round(1000 * p99, 3),
            "latency_samples": len(latencies),
        }
    finally:
        Probe.uninstall()
        if load is not None:
            with contextlib.suppress(Exception):
                load.communicate(timeout=20)
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


async def run(counts: tuple[int, ...] = (1, 10, 50), seconds: float = 10.0) -> list[dict[str, Any]]:
    use_loopback_candidates()
    return [await run_case(n, seconds) for n in counts]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "load":
        import uvloop

        uvloop.run(load_process(sys.argv[2], int(sys.argv[3])))
