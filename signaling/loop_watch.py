"""How late the event loop runs, and how long the garbage collector stops it: the two pauses that
freeze every subscriber of a process at once.

Everything a worker forwards waits for its one event loop. A callback that runs long (a big
switchover, a blocking call) or a full garbage collection holds every packet in flight: each
subscriber sees the same freeze at the same moment, which no per-link figure explains. These
histograms say so in /metrics (`kelian_event_loop_lag_seconds`, `kelian_gc_pause_seconds`), and the
alert rules in deploy/prometheus watch them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any

from prometheus_client import Histogram
from prometheus_client.registry import CollectorRegistry

PROBE_EVERY = 0.25  # seconds between the loop's wake-ups that measure how late it ran
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LoopWatch:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Histogram(
            "kelian_event_loop_lag_seconds",
            "How late the event loop woke up for a timer: every packet waits as long",
            buckets=BUCKETS,
            registry=registry,
        )
        self.pauses = Histogram(
            "kelian_gc_pause_seconds",
            "Garbage collections, how long each stopped the process",
            ["generation"],
            buckets=BUCKETS,
            registry=registry,
        )
        self._task: asyncio.Task[None] | None = None
        self._collecting = 0.0

    async def start(self, *_: object) -> None:
        gc.callbacks.append(self._collected)
        self._task = asyncio.get_running_loop().create_task(self._probe())

    async def stop(self, *_: object) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._collected)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(PROBE_EVERY)
            self.lag.observe(max(0.0, loop.time() - asked - PROBE_EVERY))

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._collecting = time.perf_counter()
        elif self._collecting:
            spent = time.perf_counter() - self._collecting
            self.pauses.labels(str(info.get("generation", ""))).observe(spent)
            self._collecting = 0.0
