"""The end-to-end part of `make bench`: a fixed list of `kelian loadtest` runs, each against a fresh
server process, and the layer-switch probe.

Every load goes through the tool schools size their servers with (loadtest.run), so what `make bench`
prints is what `kelian loadtest` reports: forwarded packets per server CPU-second, the server's CPU
and memory from /proc (measured once everyone has joined and settled), latency from relayed sender
reports, time to first frame, loss. A case is a list of `kelian loadtest` flags; its duration is its
joins at JOIN_RATE, the settling time, then STEADY seconds of measurement.

The layer-switch probe is an aiortc client that decodes, so "switched" means a frame of the new size
came out of its decoder; it runs beside a small live load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from classroom.tokens import mint
from loadtest import run as loadtest_run
from loadtest.options import Plan, add_arguments, plan_from_args
from loadtest.report import percentile
from signaling.client import Client, RemoteTrack, use_loopback_candidates

RESULTS_DIR = Path(__file__).parent / "results"  # benchmarks/plot.py draws a file of it
API_KEY, API_SECRET = "APIbench", "bench-secret-bench-secret-bench-secret"
JOIN_RATE = 25.0  # subscribers per second
STEADY = 10.0  # seconds measured after the joins have settled
SIZES = ((320, 180), (640, 360), (1280, 720))  # the light publisher's simulcast layers
SWITCHES = 20

# (table, label, flags): the fixed suite
# Subscribers that decline transport-cc, as the aiortc clients of the first forwarding benchmark did:
# the forwarding path alone. The simulcast cases show what transport-cc feedback adds.
ONE_LAYER = ["--preset", "live", "--no-simulcast", "--no-audio"]
FORWARDING = [
    ("forwarding", f"{n}", [*ONE_LAYER, "--no-transport-cc", "--subscribers", str(n)])
    for n in (1, 10, 50, 200)
] + [("forwarding", f"{n}, transport-cc", [*ONE_LAYER, "--subscribers", str(n)]) for n in (50, 200)]
SIMULCAST = [
    (
        "simulcast",
        f"full, {'transport-cc' if tcc else 'no transport-cc'}, {n}",
        ["--preset", "live", "--no-audio", "--subscribers", str(n), *([] if tcc else ["--no-transport-cc"])],
    )
    for n in (50, 200)
    for tcc in (True, False)
] + [
    (
        "simulcast",
        "mixed, transport-cc",
        ["--preset", "live", "--no-audio", "--subscribers", "50", "--layout", "mixed"],
    ),
]
SCALING = [("live", f"{n}", ["--preset", "live", "--subscribers", str(n)]) for n in (10, 25, 50, 100, 150)]
# The three lessons. Dual-teacher at 10 and 100 classrooms: a box's offer (offer secs) must be the
# same size at both; live at 300: a viewer's join must send the other viewers nothing ("joined evts",
# participant_joined events to all subscribers, counts only the presenter's own).
LESSONS = [
    ("lessons", "dual-teacher, 10 boxes", ["--preset", "dual-teacher", "--subscribers", "10"]),
    ("lessons", "dual-teacher, 100 boxes", ["--preset", "dual-teacher", "--subscribers", "100"]),
    ("lessons", "fusion, 16 boxes", ["--preset", "fusion", "--boxes", "16"]),
    ("lessons", "live, 300 viewers", ["--preset", "live", "--subscribers", "300"]),
]
# Forwarding with the room recorded (its recorder a process of its own) against the same case not
# recorded, the "live, 50" row above: recording must cost forwarding nothing measurable.
RECORDED = [("recording", "live, 50 viewers, recorded", ["--preset", "live", "--subscribers", "50"])]
CASES = [*FORWARDING, *SIMULCAST, *SCALING, *LESSONS, *RECORDED]


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def server(record: bool = False, workers: int = 1, spread_after: int = 200) -> Iterator[tuple[int, str]]:
    """A kelian server in its own process (so /proc counts nothing of the clients): pid and URL.
    With `record`, it records its live rooms (as it does by default), into a temporary folder; with
    more `workers`, a front and its workers (their pids are the front's children), sharing a
    database file, a live room's viewers spreading to another worker past `spread_after`."""
    http_port, media_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    env = dict(os.environ, KELIAN_API_KEY=API_KEY, KELIAN_API_SECRET=API_SECRET)
    media = tempfile.TemporaryDirectory(prefix="kelian-bench-")
    database = ":memory:" if workers == 1 else f"{media.name}/kelian.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "signaling", "serve", "--database", database,
         "--auto-record", "true" if record else "false", "--recordings", media.name,
         "--library", f"{media.name}/library", "--workers", str(workers),
         "--spread-after", str(spread_after), "--http-port", str(http_port),
         "--media-port", str(media_port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"
    try:
        asyncio.run(healthy(url))
        yield process.pid, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        media.cleanup()


async def healthy(url: str, tries: int = 100) -> None:
    """Wait until the server at `url` answers /healthz (every 0.1 s, `tries` times)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(tries):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/healthz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not start")


def loadtest_plan(url: str, pid: int, room: str, flags: list[str]) -> Plan:
    """`kelian loadtest <flags>` against the benchmark's server, as the command line would plan it."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--url", url, "--room", room, "--api-key", API_KEY, "--api-secret", API_SECRET]
    argv += ["--server-pid", str(pid), "--join-rate", str(JOIN_RATE)]
    return plan_from_args(parser.parse_args([*argv, *flags]))


def write_results(report: dict[str, Any], suffix: str = "") -> None:
    """benchmarks/results/<date><suffix>.json: one file per day, a later run that day overwrites it."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{datetime.date.today().isoformat()}{suffix}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


def plan_for(url: str, pid: int, room: str, flags: list[str], steady: float = STEADY) -> Plan:
    """The `kelian loadtest` plan of a case, lasting its joins, the settling time and `steady` s."""
    plan = loadtest_plan(url, pid, room, ["--quiet", "--duration", "3600", *flags])
    joins = max(0, plan.subscribers - 1) / JOIN_RATE
    return dataclasses.replace(plan, duration=round(joins + loadtest_run.SETTLE + steady, 1))


def row(table: str, label: str, flags: list[str], report: dict[str, Any]) -> dict[str, Any]:
    """A case's figures, taken from its `kelian loadtest` report."""
    tracks = list(report["tracks"].values())
    video = [t for t in tracks if t["kind"] == "video"]
    server = report["server"]
    return {
        "table": table,
        "case": label,
        "flags": flags,
        "subscribers": report["run"]["subscribers"],
        "publishers": report["run"]["publishers"],
        "joined": report["joins"]["joined"],
        "forwarded_packets_per_s": server["forwarded_packets_per_s"],
        "server_cpu_percent": server["cpu_percent"],
        "forwarded_packets_per_cpu_second": server["forwarded_packets_per_cpu_second"],
        "server_rss_mb": server["rss_mb"],
        "measured_seconds": server["measured_seconds"],
        "video_latency_p50_ms": _spread(video, "latency_ms", "p50"),
        "video_latency_p99_ms": _spread(video, "latency_ms", "p99"),
        "first_frame_p50_ms": _spread(video, "first_frame_ms", "p50"),
        "first_frame_p99_ms": _spread(video, "first_frame_ms", "p99"),
        "max_loss_percent": max((t["loss_percent"] for t in tracks), default=0.0),
        "freezes": sum(t["freezes"] for t in tracks),
        "steady_freezes": sum(t["steady_freezes"] for t in tracks),
        "client_cpu_percent": max((w["cpu_percent"] for w in report["workers"]), default=0.0),
        "join_p99_ms": report["joins"]["join_ms"]["p99"],
        "offer_sections_p50": report["signaling"]["offer_sections"]["p50"],
        "participant_joined_events": report["signaling"]["events"].get("participant_joined", 0),
        "warnings": report["warnings"],
    }  # fmt: skip


def _spread(tracks: list[dict[str, Any]], figure: str, q: str) -> float | None:
    """The tracks' p50 figures' median, or their p99 figures' 99th percentile."""
    return percentile([t[figure][q] for t in tracks if t[figure][q] is not None], 50 if q == "p50" else 99)


def run_case(table: str, label: str, flags: list[str]) -> dict[str, Any]:
    with server(record=table == "recording") as (pid, url):
        plan = plan_for(url, pid, f"bench-{table}", flags)
        return row(table, label, flags, loadtest_run.run(plan, io.StringIO()))


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


async def switch_times(url: str, room: str, switches: int) -> list[float]:
    """Seconds from asking for the other layer to decoding its first frame, `switches` times."""
    use_loopback_candidates()
    probe = Client(url, mint(API_KEY, API_SECRET, room=room, identity="switch-probe", role="student"))
    await probe.connect()
    try:
        (track,) = await probe.wait_for_tracks(1, timeout=60)  # the run has no audio: its one video
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


def layer_switches(switches: int = SWITCHES) -> dict[str, Any]:
    """The switch probe beside a live run of ten light subscribers (no audio: one video track)."""
    with server() as (pid, url):
        plan = plan_for(
            url, pid, "bench-switch", ["--preset", "live", "--no-audio", "--subscribers", "10"], 30
        )

        async def both() -> list[float]:
            load = asyncio.create_task(asyncio.to_thread(loadtest_run.run, plan, io.StringIO()))
            try:
                return await switch_times(url, plan.room, switches)
            finally:
                await load

        times = asyncio.run(both())
    p50, p99 = percentile(times, 50), percentile(times, 99)
    return {
        "switches": switches,
        "failed": switches - len(times),
        "p50_ms": None if p50 is None else round(1000 * p50, 1),
        "p99_ms": None if p99 is None else round(1000 * p99, 1),
    }
