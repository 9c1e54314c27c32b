"""A room's recording, seen from the server: a recorder process, a PlainTransport to it, a
Consumer for every track.

The recorder is a member of the room like any subscriber: its Consumers get the publishers' best
layer, keyframe requests, retransmissions and sender reports. It runs as a process of its own
(recorder.process), so that a recorder crash never touches forwarding; if it dies, its transport's
consent lapses and the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

from classroom.errors import ClassroomError
from classroom.participant import Participant
from classroom.room import Room
from sfu.consumer import Consumer
from sfu.plain_transport import PlainTransport
from sfu.producer import Producer

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
RECORDED = {"VP8", "H264", "opus"}  # by producer.codec.name; the recorder writes each as it came


def safe_name(name: str) -> str:
    """A name fit for a file name: what tokens allow is wider than what file systems like."""
    return re.sub(r"[^\w.-]+", "_", name)[:64] or "_"


class RecordingSession:
    def __init__(self, room: Room, directory: Path) -> None:
        self.room = room
        self.started = time.time()
        # a folder of its own: one recording's files, which the finishing job takes together
        self.directory = directory / time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.started))
        self.process: asyncio.subprocess.Process | None = None
        self.transport: PlainTransport | None = None
        self.consumers: dict[str, Consumer] = {}  # by track id, while recorded
        # what is recorded: every track, now and later (None), or only these; `skipped` were stopped
        self.only: set[str] | None = None
        self.skipped: set[str] = set()
        self.visits: dict[str, int] = {}  # files begun per track: a track recorded again gets a new one
        self.files: list[dict[str, Any]] = []
        self.stopped = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, tracks: list[str] | None = None) -> None:
        """Start the recorder process, and record `tracks` (None: the whole room)."""
        self.only = None if tracks is None else set()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "recorder", "--dir", str(self.directory),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), START_TIMEOUT)
            port = int(json.loads(line)["port"]) if line else None
        except TimeoutError:
            raise ClassroomError("recorder_unavailable", "the recorder did not get ready in time") from None
        except (ValueError, KeyError, TypeError):
            port = None
        if port is None:
            raise ClassroomError("recorder_unavailable", f"the recorder did not start: {line[:200]!r}")
        self.transport = PlainTransport(self.room.node, ("127.0.0.1", port))
        self.transport.on_close.append(lambda t: self.stopped.set())
        self._reader = asyncio.create_task(self._read())
        self.room.on_track.append(self.add)
        self.record(tracks)

    def record(self, tracks: list[str] | None) -> None:
        """Record these tracks too (None: the whole room, tracks published later included)."""
        if tracks is None:
            self.only, self.skipped = None, set()
        else:
            self.skipped -= set(tracks)
            if self.only is not None:
                self.only |= set(tracks)
        for owner in list(self.room.participants.values()):
            for producer in list(owner.producers.values()):
                self.add(producer, owner)

    def leave_out(self, tracks: list[str]) -> None:
        """Stop recording these tracks (their files close); the rest go on."""
        self.skipped |= set(tracks)
        for track in tracks:
            if (consumer := self.consumers.pop(track, None)) is not None:
                self.room.router.close_consumer(consumer)

    def wanted(self, producer: Producer) -> bool:
        return producer.id not in self.skipped and (self.only is None or producer.id in self.only)

    def add(self, producer: Producer, owner: Participant) -> None:
        """Record `producer` from now on (a file of its own), if it is one to record."""
        if (
            self.transport is None
            or producer.id in self.consumers
            or producer.codec.name not in RECORDED
            or not self.wanted(producer)
        ):
            return
        visit = self.visits[producer.id] = self.visits.get(producer.id, 0) + 1
        consumer = self.room.router.consume(self.transport, producer, f"{producer.id}.{visit}")
        self.consumers[producer.id] = consumer
        consumer.on_close.append(lambda c: self._send({"cmd": "end", "ssrc": c.ssrc}))
        consumer.on_close.append(lambda c: self._forget(producer.id, c))
        at = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.started))
        parts = [at, owner.identity, producer.source or producer.kind, producer.id]
        name = "-".join(safe_name(part) for part in parts + ([str(visit)] if visit > 1 else []))
        self._send(
            {
                "cmd": "track",
                "ssrc": consumer.ssrc,
                "track": producer.id,
                "kind": producer.kind,
                "codec": producer.codec.name,
                "clock": producer.codec.clock_rate,
                "participant": owner.identity,
                "role": str(owner.role),
                "source": producer.source or producer.kind,
                "file": name,
            }
        )

    def _forget(self, track: str, consumer: Consumer) -> None:
        if self.consumers.get(track) is consumer:  # its publisher left: recorded again if it comes back
            del self.consumers[track]

    def _send(self, command: dict[str, Any]) -> None:
        process = self.process
        if process is None or process.stdin is None or process.returncode is not None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            process.stdin.write((json.dumps(command) + "\n").encode())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "file":
                self.files.append(event)
            elif event.get("event") == "error":
                log.warning("recorder of %s: %s", self.room.name, event.get("message"))
        self.stopped.set()

    async def stop(self) -> list[dict[str, Any]]:
        """End the recording: every file closed; their descriptions."""
        with contextlib.suppress(ValueError):
            self.room.on_track.remove(self.add)
        self._send({"cmd": "stop"})
        process = self.process
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, STOP_TIMEOUT)
        if self.transport is not None:
            self.transport.close("recording stopped")
        return self.files

    def info(self) -> dict[str, Any]:
        return {
            "recording": not self.stopped.is_set(),
            "started_at": round(self.started, 3),
            "directory": f"{self.directory.parent.name}/{self.directory.name}",
            "tracks": sorted(self.consumers),  # being recorded now
            "only": None if self.only is None else sorted(self.only - self.skipped),
            "files": self.files,
        }
