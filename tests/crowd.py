"""Crowds of light peers in worker processes (tests/clients/crowd.py), for the tests that need
many clients or a client to kill: their CPU is not the server's, and SIGKILL takes only them."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

CROWD = Path(__file__).parent / "clients" / "crowd.py"
WORKERS = 2


class Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((line + "\n").encode())
        await self.process.stdin.drain()

    async def expect(self, event: str, timeout: float = 120.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        assert line, f"the worker exited before {event!r}"
        message: dict[str, Any] = json.loads(line)
        assert message["event"] == event, message
        return message


@asynccontextmanager
async def workers(url: str, peers: list[dict[str, Any]], count: int = WORKERS) -> AsyncIterator[list[Worker]]:
    """`count` crowd processes sharing `peers`, each ready (joined, publishing, receiving).

    Peers with the same "group" (a lesson) share a process, so that a stall of that process, which
    delays its senders as much as its receivers, is counted by the receivers it delays."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for n, peer in enumerate(peers):
        groups.setdefault(peer.get("group", n), []).append(peer)
    shares: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    for n, members in enumerate(groups.values()):
        shares[n % count] += members
    started = []
    try:
        for w in range(count):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(CROWD),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            worker = Worker(process)
            started.append(worker)
            await worker.send(json.dumps({"url": url, "peers": shares[w]}))
        await asyncio.gather(*(w.expect("ready") for w in started))
        yield started
    finally:
        for worker in started:
            if worker.process.returncode is None:
                try:
                    await worker.send("close")
                    await asyncio.wait_for(worker.process.wait(), 30)
                except (TimeoutError, ConnectionError):
                    worker.process.kill()
            await worker.process.wait()


async def report(crowd: list[Worker]) -> dict[str, dict[str, Any]]:
    for worker in crowd:
        await worker.send("report")
    reports = await asyncio.gather(*(w.expect("report") for w in crowd))
    return {p["identity"]: p for r in reports for p in r["peers"]}
