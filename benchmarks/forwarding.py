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

from signaling.client import Client, use_loopback_candidates
from signaling.media import video_track
from signaling.tokens import mint

API_KEY, API_SECRET = "APIbench", "bench-secret-bench-secret-bench-secret"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def metric(session: aiohttp.ClientSession, url: str, name: str) -> float:
    async with session.get(url + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


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
            load = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.forwarding", "load", url, str(subscribers - 1)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert load.stdout is not None
            line = await asyncio.get_running_loop().run_in_executor(None, load.stdout.readline)
            if line.strip() != b"ready":
                raise RuntimeError("the load subscribers did not join")
        clients += await join_subscribers(url, 1, first=0)
        await asyncio.sleep(2.0)  # let every Consumer sync on a keyframe
        async with aiohttp.ClientSession() as session:
            sent0 = await metric(session, url, "kelian_packets_sent_total")
            cpu0, t0 = cpu_seconds(process.pid), time.monotonic()
            probe.recording = True
            await asyncio.sleep(seconds)
            probe.recording = False
            cpu1, t1 = cpu_seconds(process.pid), time.monotonic()
            sent1 = await metric(session, url, "kelian_packets_sent_total")
            rss = rss_bytes(process.pid)
        forwarded = sent1 - sent0
        cpu = cpu1 - cpu0
        latencies = sorted(probe.latencies)
        return {
            "subscribers": subscribers,
            "seconds": round(t1 - t0, 2),
            "forwarded_packets_per_s": round(forwarded / (t1 - t0)),
            "server_cpu_percent": round(100 * cpu / (t1 - t0), 1),
            "forwarded_packets_per_cpu_second": round(forwarded / cpu) if cpu > 0 else None,
            "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 3) if latencies else None,
            "latency_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 3) if latencies else None,
            "latency_samples": len(latencies),
            "server_rss_mb": round(rss / 2**20, 1),
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
