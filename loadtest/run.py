"""``kelian loadtest``: run a plan (see loadtest.options) and report.

The parent only coordinates: it mints a token for each of the plan's participants, starts a process
for those that only publish and waits until they publish, spreads those that subscribe (publishing or
not) over the workers (spawned, each with its own asyncio loop) and tells them when to start and
end, samples the server's CPU and /metrics around the run, then builds the report from what the
workers send back. Every wait is bounded; a worker that dies before sending its figures is reported
(a warning, and its publishers among those that ended early), not raised.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from contextlib import suppress
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TextIO

from classroom.tokens import mint

from .options import LAYOUTS, Participant, Plan, is_loopback
from .procstat import CpuClock, listening_pid, metrics_clock, rss_bytes, server_metric
from .report import (
    CLIENT_BUSY,
    percentile,
    print_report,
    probe_warnings,
    publisher_problems,
    signaling_figures,
    track_table,
    write_json,
)
from .worker import publishers_main, subscribers_main

__all__ = ["RunError", "run"]

START_TIMEOUT = 60.0  # spawning a worker and importing the media stack
RESULT_TIMEOUT = 60.0  # after the end, for every worker to send its stats
START_DELAY = 0.2  # from telling the workers to go to the first join
STATUS_EVERY = 1.0  # seconds between two status lines
BAR = 20  # characters of the status line's progress bar
TOKEN_TTL_MARGIN = 600
# The server's CPU and packets are measured from SETTLE seconds after the last join (joining is its
# own cost: DTLS handshakes, offers, a keyframe per subscriber), unless that leaves less than
# MIN_MEASURED seconds of the run: then over the whole run.
SETTLE = 3.0
RSS_METRIC = "process_resident_memory_bytes"  # a remote server's memory, from its /metrics
MIN_MEASURED = 3.0


class RunError(RuntimeError):
    """The run could not take place (a worker died, the publishers could not publish...)."""


class Worker:
    def __init__(self, name: str, process: BaseProcess, pipe: Connection, peers: int) -> None:
        self.name, self.process, self.pipe, self.peers = name, process, pipe, peers
        self.progress: dict[str, Any] = {}  # its last progress message
        self.pending: dict[str, Any] | None = None  # a message read while draining progress

    def drain(self) -> None:
        """Keep the last of the progress messages waiting, without blocking; a dead worker is left
        for receive() to report."""
        with suppress(EOFError, OSError):
            while self.pending is None and self.pipe.poll(0):
                message: dict[str, Any] = self.pipe.recv()
                if message.get("event") == "progress":
                    self.progress = message
                else:
                    self.pending = message

    def receive(self, timeout: float, event: str) -> dict[str, Any]:
        message = self._next(timeout, event)
        while message.get("event") == "progress":
            self.progress = message
            message = self._next(timeout, event)
        if message.get("event") != event:
            raise RunError(f"{self.name} sent {message.get('event')!r}, expected {event!r}")
        return message

    def _next(self, timeout: float, event: str) -> dict[str, Any]:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            return pending
        deadline = time.monotonic() + timeout
        while not self.pipe.poll(0.1):
            if not self.process.is_alive() and not self.pipe.poll(0):
                raise RunError(f"{self.name} exited (status {self.process.exitcode}) before {event!r}")
            if time.monotonic() > deadline:
                raise RunError(f"{self.name} sent no {event!r} within {timeout:g} s")
        try:
            message: dict[str, Any] = self.pipe.recv()
        except (EOFError, OSError):  # it died: its end of the pipe is closed
            self.process.join(1)
            raise RunError(f"{self.name} exited (status {self.process.exitcode}) before {event!r}") from None
        return message

    def stop(self) -> None:
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def _peer(plan: Plan, p: Participant) -> dict[str, Any]:
    """A participant as a worker takes it (see loadtest.worker), with its token."""
    ttl = int(plan.duration) + TOKEN_TTL_MARGIN
    who = {"identity": p.identity, "role": p.role, "ttl": ttl, "kind": plan.kind}
    token = mint(plan.api_key, plan.api_secret, room=plan.room, **who)  # type: ignore[arg-type]
    layers = [list(layer) for layer in plan.layers(p)]
    return {"identity": p.identity, "token": token, "camera": p.camera, "layers": layers, "audio": p.audio}


def _results(worker: Worker, warnings: list[str]) -> dict[str, Any] | None:
    """A worker's figures, or None (and a warning) if it died or never sent them."""
    try:
        return worker.receive(RESULT_TIMEOUT, "done") | {"worker": worker.name}
    except RunError as exc:
        warnings.append(f"{exc}: the figures of its {worker.peers} peer(s) are missing")
        return None


def _spawn(name: str, target: Any, spec: dict[str, Any], peers: int) -> Worker:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=target, args=(spec, child), name=name, daemon=True)
    process.start()
    child.close()
    return Worker(name, process, parent, peers)


def status_line(elapsed: float, duration: float, expected: int, workers: list[Worker]) -> str:
    """One line of live progress: a bar of the run's time, and the workers' last progress sums."""
    done = min(1.0, max(0.0, elapsed / duration))
    filled = round(done * BAR)
    totals = {
        key: sum(int(w.progress.get(key, 0)) for w in workers) for key in ("joined", "packets", "freezes")
    }
    return (
        f"[{'#' * filled}{'.' * (BAR - filled)}] {min(elapsed, duration):.0f}/{duration:g} s  "
        f"joined {totals['joined']}/{expected}  packets {totals['packets']}  freezes {totals['freezes']}"
    )


def _wait_showing(
    end: float, plan: Plan, start: float, workers: list[Worker], status: TextIO | None, last: bool = True
) -> None:
    """Sleep until `end`, printing a status line about once a second to `status` (if any): overwritten
    in place on a terminal (and ended there if this is the `last` wait of the run), one line each
    otherwise. The workers' progress is read either way: a pipe nobody reads fills in about four
    and a half minutes, and a worker whose send then blocks stops all its peers (`--quiet` runs
    longer than that once lost every subscriber to consent expiry)."""
    tty = status is not None and status.isatty()
    shown = False
    while (left := end - time.time()) > 0:
        time.sleep(min(STATUS_EVERY, left))
        for worker in workers:
            worker.drain()
        if status is None:
            continue
        line = status_line(time.time() - start, plan.duration, plan.subscribers, workers)
        status.write(f"\r{line}\033[K" if tty else line + "\n")
        status.flush()
        shown = True
    if tty and shown and last and status is not None:
        status.write("\n")
        status.flush()


def run(plan: Plan, out: TextIO, status: TextIO | None = None) -> dict[str, Any]:
    """Run the plan, print the report to `out` (and write it as JSON if asked); returns the report.

    Unless the plan is quiet, a status line goes to `status` (stderr by default) while it runs."""
    if status is None and not plan.quiet:
        status = sys.stderr
    server_pid = plan.server_pid
    if server_pid is None and is_loopback(plan.host):
        server_pid = listening_pid(plan.port)
    common = {"url": plan.url, "bind": plan.bind, "transport_cc": plan.transport_cc}
    workers: list[Worker] = []
    publisher: Worker | None = None
    published: dict[str, dict[str, str]] = {}
    failures: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    warnings: list[str] = []
    lost: list[str] = []  # identities whose worker sent no figures
    only_publish = [p for p in plan.participants if p.layout is None]
    joining = [p for p in plan.participants if p.layout is not None]
    try:
        if only_publish:
            spec = common | {
                "peers": [_peer(plan, p) for p in only_publish],
                "stop_by": time.time() + START_TIMEOUT + plan.duration + RESULT_TIMEOUT,
            }
            publisher = _spawn("publishers", publishers_main, spec, len(only_publish))
            ready = publisher.receive(START_TIMEOUT, "ready")
            published, failures = ready["tracks"], list(ready["failures"])
            if len(failures) == len(only_publish):
                raise RunError(f"no publisher could publish: {failures[0]['error']}")
        failed = {f["identity"] for f in failures}
        missing = sum(1 for p in only_publish if p.camera is not None and p.identity in failed)
        probing = plan.probes()  # the one subscriber that decodes each track
        peers = [
            _peer(plan, p)
            | {"at": i / plan.join_rate, "size": list(LAYOUTS[str(p.layout)]), "watch": list(p.watch)}
            | {"videos": plan.videos_for(p) - missing}
            | {"probe": [[who, kind] for (who, kind), by in probing.items() if by == p.identity]}
            for i, p in enumerate(joining)
        ]
        for w in range(plan.processes if peers else 0):
            mine = peers[w :: plan.processes]
            workers.append(_spawn(f"worker{w}", subscribers_main, common | {"peers": mine}, len(mine)))
        for worker in workers:
            worker.receive(START_TIMEOUT, "ready")
        start = time.time() + START_DELAY
        end = start + plan.duration
        last_join = start + (peers[-1]["at"] if peers else 0.0)
        # the server is measured once everyone has joined and settled, if that leaves enough of the run
        steady = last_join + SETTLE
        measured_from = steady if end - steady >= MIN_MEASURED else start
        go = {"event": "go", "start_at": start, "end_at": end, "last_join_at": last_join}
        for worker in workers:
            worker.pipe.send(go | {"steady_at": measured_from})
        time.sleep(max(0.0, start - time.time()))
        shown = None if plan.quiet else status
        _wait_showing(measured_from, plan, start, workers, shown, last=False)
        sent0 = server_metric(plan.url, "kelian_packets_sent_total")
        server_clock = CpuClock(server_pid) if server_pid else metrics_clock(plan.url)
        _wait_showing(end, plan, start, workers, shown)
        try:
            server_cpu = server_clock.read() if server_clock else None
        except OSError:  # the remote server's /metrics went away
            server_cpu = None
        sent1 = server_metric(plan.url, "kelian_packets_sent_total")
        rss = rss_bytes(server_pid) if server_pid else server_metric(plan.url, RSS_METRIC)
        for w, worker in enumerate(workers):  # before the publishers stop, so that they see no end
            result = _results(worker, warnings)
            results += [result] if result else []
            lost += [] if result else [p["identity"] for p in peers[w :: plan.processes]]
        for worker in workers:  # every figure is in: now the peers may leave
            with suppress(OSError):
                worker.pipe.send({"event": "close"})
        if publisher is not None:
            with suppress(OSError):  # it may be gone: _results says so
                publisher.pipe.send({"event": "stop"})
            result = _results(publisher, warnings)
            results += [result] if result else []
            lost += [] if result else [p.identity for p in only_publish if p.identity not in failed]
    finally:
        for worker in [*workers, *([publisher] if publisher else [])]:
            with suppress(OSError):
                worker.pipe.close()
            worker.stop()

    forwarded = None if sent0 is None or sent1 is None else int(sent1 - sent0)
    cpu_s = server_cpu["cpu_seconds"] if server_cpu else None
    subscribers = [p for r in results if r["worker"] != "publishers" for p in r["peers"]]
    join_failures = [f for r in results if r["worker"] != "publishers" for f in r["failures"]]
    joined = [float(p["join_ms"]) for p in subscribers if p.get("join_ms") is not None]
    for peer in subscribers:
        published |= peer.get("published") or {}
    failed_or_lost = {f["identity"] for f in [*failures, *join_failures]} | set(lost)
    tracks = track_table(published, subscribers, failed_or_lost)
    publishing = {p.identity for p in plan.participants if p.publishes}
    problems = publisher_problems(
        tracks,
        [*failures, *(f for f in join_failures if f["identity"] in publishing)],
        [i for i in lost if i in publishing],
    )
    worker_rows = []
    for r in results:
        row = {"worker": r["worker"], "peers": len(r["peers"])} | r["cpu"]
        worker_rows.append(row)
        if row["cpu_percent"] > CLIENT_BUSY:
            warnings.append(
                f"{r['worker']} used {row['cpu_percent']:g}% of a core: the clients may be the limit, "
                "not the server (use more --processes or fewer peers)"
            )
    if problems:
        warnings.append(f"{len(problems)} publisher(s) failed or ended early")
    warnings += probe_warnings(tracks)
    report = {
        "run": {
            "url": plan.url,
            "room": plan.room,
            "preset": plan.preset,
            "publishers": plan.publishers,
            "subscribers": plan.subscribers,
            "participants": len(plan.participants),
            "simulcast": plan.simulcast,
            "audio": plan.audio,
            "layout": plan.layout,
            "transport_cc": plan.transport_cc,
            "resolution": "x".join(map(str, plan.resolution)),
            "bitrate_kbps": plan.bitrate // 1000,
            "duration": plan.duration,
            "join_rate": plan.join_rate,
            "processes": len(workers),
        },
        "tracks": tracks,
        "publisher_problems": problems,
        "joins": {
            "expected": plan.subscribers,
            "joined": len(joined),
            "join_ms": {"p50": percentile(joined, 50), "p99": percentile(joined, 99)},
            "failures": join_failures,
            "publisher_failures": failures,
        },
        "signaling": signaling_figures(subscribers),
        "server": {
            "pid": server_pid,
            "source": "/proc" if server_pid else "/metrics" if server_cpu else None,
            "measured_from": round(measured_from - start, 1),
            "measured_seconds": round(end - measured_from, 1),
            "cpu_percent": server_cpu["cpu_percent"] if server_cpu else None,
            "cpu_seconds": cpu_s,
            "rss_mb": None if rss is None else round(rss / 2**20, 1),
            "forwarded_packets": forwarded,
            "forwarded_packets_per_s": round(forwarded / (end - measured_from)) if forwarded else None,
            "forwarded_packets_per_cpu_second": round(forwarded / cpu_s) if forwarded and cpu_s else None,
        },
        "workers": worker_rows,
        "warnings": warnings,
    }
    print_report(report, out)
    if plan.report:
        write_json(plan.report, report)
    return report
