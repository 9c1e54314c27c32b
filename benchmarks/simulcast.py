"""Simulcast end to end over loopback: one three-layer publisher to N subscribers that ask for
different sizes, and how long a subscriber waits for the layer it asks for.

The server runs as its own process and its CPU is read from /proc, as in forwarding.py. The
publisher and the load subscribers are light peers (loadtest.peer: no decoding, transport-cc
feedback like a browser's); the load runs in a process of its own. The layer-switch probe is an
aiortc client that decodes, so "switched" means a frame of the new size came out of the decoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from typing import Any

import aiohttp

from loadtest.peer import Peer
from loadtest.report import percentile
from signaling.client import Client, RemoteTrack, use_loopback_candidates
from signaling.tokens import mint

from .forwarding import API_KEY, API_SECRET, measure, start_load, start_server

SIZES = ((320, 180), (640, 360), (1280, 720))
ROOM = "simulcast"


def token(identity: str, role: str = "student") -> str:
    return mint(API_KEY, API_SECRET, room=ROOM, identity=identity, role=role)


async def load_process(url: str, count: int, mixed: bool, transport_cc: bool) -> None:
    """`count` light subscribers asking for the large layer, or (mixed) a third each for the small,
    medium and large one; sending transport-cc feedback as browsers do, or not."""
    peers = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for i in range(count):
            peer = Peer(url, token(f"load-{i}"), session=session, transport_cc=transport_cc)
            await peer.connect()
            peers.append(peer)
        for i, peer in enumerate(peers):
            (track,) = await peer.wait_for_tracks(1, timeout=30)
            width, height = SIZES[i % 3] if mixed else SIZES[2]
            await peer.set_track_settings(track["id"], width, height)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
        for peer in peers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(peer.close(), 5)


async def decoded_size(track: RemoteTrack, size: tuple[int, int], timeout: float = 5.0) -> bool:
    """Whether a frame of `size` is decoded within `timeout`; a stall counts as a failed switch."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            frame: Any = await asyncio.wait_for(track.track.recv(), remaining)
        except TimeoutError:
            return False
        if (frame.width, frame.height) == size:
            return True
    return False


async def switch_times(url: str, switches: int) -> list[float]:
    """Seconds from asking for the other layer to decoding its first frame, `switches` times."""
    probe = Client(url, token("probe"))
    await probe.connect()
    try:
        (track,) = await probe.wait_for_tracks(1, timeout=15)
        await probe.set_track_settings(track.id, *SIZES[0])
        await decoded_size(track, SIZES[0], timeout=10)
        times = []
        for i in range(switches):
            size = SIZES[2] if i % 2 == 0 else SIZES[0]
            start = time.perf_counter()
            await probe.set_track_settings(track.id, *size)
            if await decoded_size(track, size):
                times.append(time.perf_counter() - start)
            await asyncio.sleep(0.6)  # past the keyframe-request throttle, as a person resizing would be
        return times
    finally:
        await probe.close()


async def run_case(
    subscribers: int = 50,
    mixed: bool = False,
    transport_cc: bool = True,
    seconds: float = 10.0,
    switches: int = 20,
) -> dict[str, Any]:
    use_loopback_candidates()
    process, url = await start_server()
    publisher = Peer(url, token("lecturer", "lecturer"))
    load: subprocess.Popen[bytes] | None = None
    try:
        await publisher.connect()
        await publisher.publish(audio=False, simulcast=True)
        mode = ("mixed" if mixed else "full", "tcc" if transport_cc else "no-tcc")
        load = await start_load("benchmarks.simulcast", "load", url, str(subscribers), *mode)
        await asyncio.sleep(3.0)  # every Consumer on its layer
        server = await measure(url, process.pid, seconds)
        times = await switch_times(url, switches)
        p50, p99 = percentile(times, 50), percentile(times, 99)
        return {
            "subscribers": subscribers,
            "views": "mixed" if mixed else "full",
            "transport_cc": transport_cc,
            **server,
            "layer_switches": len(times),
            "layer_switches_failed": switches - len(times),
            "layer_switch_p50_ms": None if p50 is None else round(1000 * p50, 1),
            "layer_switch_p99_ms": None if p99 is None else round(1000 * p99, 1),
        }
    finally:
        if load is not None:
            with contextlib.suppress(Exception):
                load.communicate(timeout=30)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(publisher.close(), 5)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    import uvloop

    if len(sys.argv) == 6 and sys.argv[1] == "load":
        uvloop.run(load_process(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "mixed", sys.argv[5] == "tcc"))
    else:
        print(uvloop.run(run_case(mixed="mixed" in sys.argv)))
