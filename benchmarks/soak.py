"""`make soak`: a live lesson for half an hour with participants joining and leaving all the time.

A fresh server process gets a `kelian loadtest --preset live` lecture (a lecturer at 720p simulcast
with a microphone, SUBSCRIBERS viewers: about 70% of a core on the 2-core development machine)
while this process keeps CHURN students coming and going: each joins, receives the lecture for a few
seconds and leaves. Every SAMPLE seconds it prints the server's RSS, open file descriptors, asyncio
tasks, transports and participants, and its CPU since the last sample.

It fails (exit 1) if memory grows after the warm-up: the median RSS of the last samples may exceed
that of the first samples after warm-up by at most --max-growth MB; and if descriptors, tasks or
transports do not come back to where they were once the churn stops. The figures go to
benchmarks/results/<date>-soak.json and docs/performance.md.

    python -m benchmarks.soak [--minutes 30] [--subscribers 150] [--churn 4] [--stay 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import os
import statistics
import sys
import threading
import time
from typing import Any

import aiohttp

from classroom.tokens import mint
from loadtest import run as loadtest_run
from loadtest.peer import Peer
from loadtest.procstat import cpu_seconds, rss_bytes

from . import suite

ROOM = "soak"


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the lesson runs (30)")
    parser.add_argument("--subscribers", type=int, default=150, help="viewers of the lecture (150)")
    parser.add_argument("--churn", type=int, default=4, help="students coming and going at once (4)")
    parser.add_argument("--stay", type=float, default=8.0, help="seconds each of them stays (8)")
    parser.add_argument("--sample", type=float, default=15.0, help="seconds between samples (15)")
    parser.add_argument("--warmup", type=float, default=5.0, help="minutes before memory is judged (5)")
    parser.add_argument("--max-growth", type=float, default=20.0, help="MB of RSS growth allowed (20)")
    return parser.parse_args(argv)


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    values: dict[str, float] = {}
    async with http.get(url + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
    return values


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def student(url: str, n: int, stay: float, done: list[int]) -> None:
    """One student: joins, receives the lecture for `stay` seconds, leaves."""
    token = mint(suite.API_KEY, suite.API_SECRET, room=ROOM, identity=f"student-{n}", role="student", ttl=600)
    peer = Peer(url, token)
    try:
        await peer.connect()
        await peer.wait_for_tracks(1, timeout=10)
        await asyncio.sleep(stay)
        done[0] += 1
    except Exception as exc:  # a failed join is counted, not fatal: the soak goes on
        done[1] += 1
        print(f"  student {n}: {type(exc).__name__}: {exc}", flush=True)
    finally:
        await peer.close()


async def churn(url: str, pid: int, args: argparse.Namespace, seconds: float) -> list[dict[str, Any]]:
    """Students come and go for `seconds` while the server is sampled; then the churn stops and a
    last sample shows whether what it held came back."""
    samples: list[dict[str, Any]] = []
    done = [0, 0]  # students who stayed and left, joins that failed
    numbers = itertools.count()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def lane() -> None:
        while loop.time() < end:
            await student(url, next(numbers), args.stay, done)

    async def sample(http: aiohttp.ClientSession, cpu: list[float]) -> dict[str, Any]:
        metrics = await scrape(http, url)
        now, used = time.monotonic(), cpu_seconds(pid)
        row = {
            "minute": round((now - start) / 60, 2),
            "rss_mb": round(rss_bytes(pid) / 2**20, 1),
            "fds": descriptors(pid),
            "tasks": int(metrics.get("kelian_tasks", -1)),
            "transports": int(sum(v for k, v in metrics.items() if k.startswith("kelian_transports{"))),
            "participants": int(metrics.get("kelian_participants", -1)),
            "cpu_percent": round(100 * (used - cpu[0]) / max(1e-6, now - cpu[1]), 1),
            "students": done[0],
            "failed_joins": done[1],
        }
        cpu[:] = [used, now]
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        return row

    start = time.monotonic()
    async with aiohttp.ClientSession() as http:
        cpu = [cpu_seconds(pid), time.monotonic()]
        lanes = [asyncio.create_task(lane()) for _ in range(args.churn)]
        while loop.time() < end:
            await asyncio.sleep(min(args.sample, max(0.1, end - loop.time())))
            samples.append(await sample(http, cpu))
        await asyncio.gather(*lanes)
        await asyncio.sleep(5)  # the students' transports close, their grace periods need not pass
        samples.append(await sample(http, cpu) | {"after_churn": True})
    return samples


def judge(samples: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """What went wrong, if anything."""
    during = [s for s in samples if not s.get("after_churn")]
    judged = [s for s in during if s["minute"] >= args.warmup] or during[-3:]
    if len(judged) < 2:
        return ["too short to judge (run longer than the warm-up)"]
    first = statistics.median(s["rss_mb"] for s in judged[:3])
    last = statistics.median(s["rss_mb"] for s in judged[-3:])
    problems = []
    if last - first > args.max_growth:
        problems.append(f"RSS grew {last - first:.1f} MB after warm-up ({first:.1f} -> {last:.1f})")
    after = samples[-1]
    base = judged[0]
    for key, slack in (("fds", 64), ("tasks", 64), ("transports", 2 * args.churn + 4)):
        if after[key] > base[key] + slack:
            problems.append(f"{key} did not come back after the churn: {base[key]} -> {after[key]}")
    if after["failed_joins"] > max(1, after["students"] // 100):
        problems.append(f"{after['failed_joins']} of {after['students']} students failed to join")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    seconds = args.minutes * 60
    with suite.server() as (pid, url):
        flags = ["--preset", "live", "--subscribers", str(args.subscribers)]
        plan = suite.plan_for(url, pid, ROOM, flags, steady=seconds + 30)
        reports: list[dict[str, Any]] = []
        lecture = threading.Thread(target=lambda: reports.append(loadtest_run.run(plan, io.StringIO())))
        what = f"{args.minutes:g} min of a live lesson to {args.subscribers} viewers"
        print(f"soak: {what}, {args.churn} students coming and going every {args.stay:g} s", flush=True)
        lecture.start()
        time.sleep(args.subscribers / suite.JOIN_RATE + loadtest_run.SETTLE)  # the viewers join first
        samples = asyncio.run(churn(url, pid, args, seconds))
        lecture.join()
    problems = judge(samples, args)
    report = reports[0] if reports else {}
    tracks = list(report.get("tracks", {}).values())
    result = {
        "args": vars(args),
        "samples": samples,
        "problems": problems,
        "lecture": {
            "joined": report.get("joins", {}).get("joined"),
            "server": report.get("server"),
            "max_loss_percent": max((t["loss_percent"] for t in tracks), default=None),
            "steady_freezes": sum(t["steady_freezes"] for t in tracks),
        },
    }
    with contextlib.suppress(OSError):
        suite.write_results(result, "-soak")
    for problem in problems:
        print(f"soak: FAILED: {problem}", file=sys.stderr)
    if not problems:
        print("soak: memory flat after warm-up; descriptors, tasks and transports came back", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
