"""The worker processes: started, heard, replaced when one dies, stopped with the front."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import sys
from typing import Any

from signaling.config import Config

from .placement import Placement, Worker

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def worker_config(config: Config, index: int) -> Config:
    """A worker's Config: the front's, on loopback ports of its own. The front owns the public
    address and its per-address limit; the workers see only the front's connections."""
    return dataclasses.replace(
        config,
        http_host="127.0.0.1",
        http_port=0,
        media_port=config.media_port + index if config.media_port else 0,
        max_connections_per_address=config.max_connections,
        workers=1,
    )


class WorkerPool:
    def __init__(self, config: Config, count: int) -> None:
        self.config = config
        self.count = count
        self.secret = secrets.token_urlsafe(24)  # the front's word to its workers, new each run
        self.placement = Placement()
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self._readers: set[asyncio.Task[None]] = set()
        self.stopping = False

    async def start(self) -> None:
        workers = await asyncio.gather(*(self._spawn(i) for i in range(self.count)))
        self.placement.workers = list(workers)

    async def _spawn(self, index: int) -> Worker:
        env = os.environ | {
            "KELIAN_WORKER": json.dumps(dataclasses.asdict(worker_config(self.config, index))),
            "KELIAN_INTERNAL_SECRET": self.secret,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cluster.worker", env=env, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        try:
            while True:
                line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
                if not line:
                    raise RuntimeError(f"worker {index} exited before it was ready")
                event = _event(line)
                if event.get("event") == "ready":
                    break
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        worker = Worker(index, int(event["http"]), int(event["media"]))
        self.processes[index] = process
        reader = asyncio.create_task(self._hear(worker, process))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        log.info("worker %d: http %d, media udp %d", index, worker.http_port, worker.media_port)
        return worker

    async def _hear(self, worker: Worker, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            event = _event(line)
            if event.get("event") == "closed" and isinstance(event.get("room"), str):
                self.placement.release(event["room"], worker)
            elif event.get("event") == "load":
                worker.transports = int(event.get("transports", 0))
                self.placement.reconcile(worker, set(event.get("rooms", ())))
        await process.wait()
        if self.stopping:
            return
        gone = self.placement.lost(worker)
        log.error(
            "worker %d died (exit %s); its rooms %s go elsewhere", worker.index, process.returncode, gone
        )
        try:
            fresh = await self._spawn(worker.index)
        except (RuntimeError, OSError, TimeoutError) as exc:
            log.error("worker %d could not be started again: %s", worker.index, exc)
            return
        self.placement.workers[self.placement.workers.index(worker)] = fresh

    async def stop(self) -> None:
        self.stopping = True
        for process in self.processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for process in self.processes.values():
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
        for reader in list(self._readers):
            reader.cancel()


def _event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}
