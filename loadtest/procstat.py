"""What a process spends: CPU time and memory from /proc (Linux), the server's and each load
worker's own, and the server's counters from its /metrics when it is not local."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

__all__ = ["CpuClock", "cpu_seconds", "listening_pid", "metrics_clock", "rss_bytes", "server_metric"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
TCP_LISTEN = "0A"


def cpu_seconds(pid: int | str = "self") -> float:
    """User plus system CPU time the process has used, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def server_metric(url: str, name: str) -> float | None:
    """A counter from the server's /metrics, summed over its samples (a server of several worker
    processes gives one a process), or None if it cannot be read. A server that keeps its metrics
    behind a token (KELIAN_METRICS_TOKEN) is read with the same variable's value."""
    request = urllib.request.Request(url + "/metrics")
    if token := os.environ.get("KELIAN_METRICS_TOKEN"):
        request.add_header("Authorization", f"Bearer {token}")
    total: float | None = None
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith((name + " ", name + "{")):
                    rest = line[len(name) :]
                    rest = rest[rest.index("}") + 1 :] if rest.startswith("{") else rest
                    total = (total or 0.0) + float(rest.split()[0])
    except (OSError, ValueError):
        return None
    return total


class CpuClock:
    """CPU time against wall time from a start: how much of one core a process used. The CPU time is
    the process's from /proc, or what `seconds` reads (a remote server's /metrics)."""

    def __init__(self, pid: int | str = "self", seconds: Callable[[], float] | None = None) -> None:
        self.seconds = seconds or (lambda: cpu_seconds(pid))
        self.cpu0, self.wall0 = self.seconds(), time.monotonic()

    def read(self) -> dict[str, float]:
        cpu, wall = self.seconds() - self.cpu0, time.monotonic() - self.wall0
        return {
            "cpu_seconds": round(cpu, 3),
            "wall_seconds": round(wall, 3),
            "cpu_percent": round(100 * cpu / wall, 1) if wall > 0 else 0.0,
        }


def metrics_clock(url: str) -> CpuClock | None:
    """A CpuClock on the server's ``process_cpu_seconds_total``, or None if its /metrics has none."""

    def seconds() -> float:
        value = server_metric(url, "process_cpu_seconds_total")
        if value is None:
            raise OSError(f"{url}/metrics has no process_cpu_seconds_total")
        return value

    try:
        return CpuClock(seconds=seconds)
    except OSError:
        return None


def listening_pid(port: int) -> int | None:
    """The process that listens on TCP `port`, found through /proc/net/tcp{,6} and /proc/*/fd; None when
    it is not visible (another user's process, or not on this machine)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name)
        except OSError:  # gone, or not ours to read
            continue
    return None
