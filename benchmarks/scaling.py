"""One live lecture on one worker and on two: how much more a machine carries when the room spreads
(cluster/edge.py). `make bench` prints it; `python -m benchmarks.scaling` alone.

`kelian serve` in a process of its own, `--workers 1`, then `--workers 2 --spread-after N/2`: half
the viewers stay on the room's worker, the rest go to the other, an edge fed by one pipe. The same
`kelian loadtest --preset live --subscribers N` goes through the front each time (a 720p simulcast
lecturer with audio, every viewer on its own light client). Each worker's CPU is read from /proc
over the steady part of the run.

What limits a room is the busiest worker's core: one worker carries the lecture with X% of a core;
spread over two, the busiest carries its part with Y%, so the pair takes X/Y times as many viewers
before a core is full (2 at best; the pipe and the edge's own work are what keep it under). That
ratio is the figure, rather than a capacity search, because the load tool shares this machine's two
cores: a search for two workers' limit would find the clients' first (docs/performance.md).
"""

from __future__ import annotations

import io
import sys
import threading
import time
from pathlib import Path
from typing import Any

from loadtest import run as loadtest_run
from loadtest.procstat import CpuClock

from . import suite

VIEWERS = 200  # one worker near two thirds of a core, the clients most of the other
STEADY = 20.0  # seconds measured: the figure is a ratio of two CPU shares, each noisy


def children(pid: int) -> list[int]:
    """The processes `pid` started: a front's workers."""
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(int(child) for child in found)


def lecture(workers: int, viewers: int) -> dict[str, Any]:
    """The live preset to `viewers` through a server of `workers`; each worker's share of a core
    over the steady part, and the viewers' figures."""
    spread = viewers // 2 + 1 if workers > 1 else 1_000_000  # the lecturer's transport, then half
    with suite.server(workers=workers, spread_after=spread) as (pid, url):
        pids = children(pid) if workers > 1 else [pid]
        flags = ["--preset", "live", "--subscribers", str(viewers)]
        plan = suite.plan_for(url, pid, f"scaling-{workers}", flags, STEADY)
        clocks: dict[int, CpuClock] = {}
        steady = plan.duration - STEADY

        def measure() -> None:
            time.sleep(steady)
            clocks.update({p: CpuClock(p) for p in pids})

        watcher = threading.Thread(target=measure, daemon=True)
        watcher.start()
        report = loadtest_run.run(plan, io.StringIO())
        shares = [clocks[p].read()["cpu_percent"] for p in pids] if clocks else []
        watcher.join()
    figures = suite.row("scaling", f"{workers} worker(s)", flags, report)
    return {
        "workers": workers,
        "viewers": viewers,
        "joined": figures["joined"],
        "worker_cpu_percent": shares,
        "busiest_worker_cpu_percent": max(shares, default=None),
        "all_workers_cpu_percent": round(sum(shares), 1),
        "max_loss_percent": figures["max_loss_percent"],
        "steady_freezes": figures["steady_freezes"],
        "video_latency_p50_ms": figures["video_latency_p50_ms"],
        "video_latency_p99_ms": figures["video_latency_p99_ms"],
        "client_cpu_percent": figures["client_cpu_percent"],
        "warnings": figures["warnings"],
    }


def run(viewers: int = VIEWERS) -> dict[str, Any]:
    one, two = lecture(1, viewers), lecture(2, viewers)
    busiest = two["busiest_worker_cpu_percent"]
    return {
        "one_worker": one,
        "two_workers": two,
        # how many more viewers two workers carry before the busiest core is full
        "scaling": round(one["busiest_worker_cpu_percent"] / busiest, 2) if busiest else None,
        # what spreading costs in all: the two workers' CPU against the one's
        "cpu_overhead_percent": round(
            100 * (two["all_workers_cpu_percent"] / one["all_workers_cpu_percent"] - 1), 1
        )
        if one["all_workers_cpu_percent"]
        else None,
    }


if __name__ == "__main__":
    result = run(int(sys.argv[1]) if len(sys.argv) > 1 else VIEWERS)
    for key, value in result.items():
        print(f"{key}: {value}")
