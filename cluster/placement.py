"""Which worker holds which room: one room, one worker, chosen least-loaded when it is first needed.

The front is the only one that places (workers create only the rooms they are sent), so a room can
never open on two workers at once; a worker says when a room of its own has closed, and the place is
free again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

SETTLE = 5.0  # seconds a placed room has to open on its worker before a load report may free it


@dataclass(eq=False)
class Worker:
    index: int
    http_port: int
    media_port: int
    rooms: set[str] = field(default_factory=set)
    transports: int = 0  # from its latest load report
    alive: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def load(self) -> tuple[int, int]:
        """What "least loaded" compares: media transports first (what costs CPU), then rooms."""
        return self.transports, len(self.rooms)


class Placement:
    def __init__(self) -> None:
        self.workers: list[Worker] = []
        self.rooms: dict[str, Worker] = {}
        self.placed_at: dict[str, float] = {}
        self.on_release: list[Callable[[str], None]] = []  # a room no worker here holds any more

    def locate(self, room: str) -> Worker | None:
        return self.rooms.get(room)

    def place(self, room: str) -> Worker:
        """The worker of `room`: where it is, or the least-loaded live worker, which takes it."""
        worker = self.rooms.get(room)
        if worker is not None and worker.alive:
            return worker
        worker = self.least_loaded()
        worker.rooms.add(room)
        self.rooms[room] = worker
        self.placed_at[room] = time.monotonic()
        return worker

    def least_loaded(self) -> Worker:
        live = [w for w in self.workers if w.alive]
        if not live:
            raise LookupError("no worker is running")
        return min(live, key=lambda w: w.load)

    def spread(self, room: str, after: int) -> Worker | None:
        """Where a new viewer of `room` goes if not to the room's own worker: once that one carries
        `after` transports, the least-loaded worker, if it is another (an edge, cluster.edge).
        Counted at once, so that a burst of joins spreads before the next load reports."""
        origin = self.rooms.get(room)
        if origin is None:
            return None
        worker = self.least_loaded() if origin.transports >= after else origin
        worker.transports += 1
        return None if worker is origin else worker

    def release(self, room: str, worker: Worker) -> None:
        """`worker` closed `room` (or never opened it): the room may go anywhere next time."""
        worker.rooms.discard(room)
        if self.rooms.get(room) is worker:
            del self.rooms[room]
            self.placed_at.pop(room, None)
            for callback in self.on_release:
                callback(room)

    def reconcile(self, worker: Worker, held: set[str]) -> None:
        """`worker` holds `held` now: a room placed there a while ago that it does not hold never
        opened (a join it refused), and is free again."""
        settled = time.monotonic() - SETTLE
        for room in list(worker.rooms - held):
            if self.placed_at.get(room, 0.0) < settled:
                self.release(room, worker)

    def lost(self, worker: Worker) -> list[str]:
        """`worker` died: its rooms are free again (their participants reconnect); which they were."""
        worker.alive = False
        gone = sorted(worker.rooms)
        for room in gone:
            self.release(room, worker)
        return gone
