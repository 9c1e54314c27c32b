"""What a room tells its participants on a timer: who is speaking, and how good each link is.

Both are read from state the media plane already keeps (audio-level sums, receiver statistics,
receiver reports), so the monitor costs nothing per packet. Events go out only on change: a quiet
lesson sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sfu.audio_level import AudioLevelObserver

if TYPE_CHECKING:
    from .room import Participant, Room

TICK = 0.5  # seconds between speaker decisions
QUALITY_TICKS = 4  # connection quality every this many ticks (2 s): loss needs packets to mean anything


def rate_link(loss: float, rtt: float | None, alive: bool) -> str:
    """LiveKit-style four grades from loss fraction and round-trip time (seconds)."""
    if not alive:
        return "lost"
    if loss > 0.10 or (rtt is not None and rtt > 0.5):
        return "poor"
    if loss > 0.02 or (rtt is not None and rtt > 0.2):
        return "good"
    return "excellent"


@dataclass
class _Counts:
    expected: int = 0
    received: int = 0


class RoomMonitor:
    def __init__(self, room: Room) -> None:
        self.room = room
        self.speakers = AudioLevelObserver()
        self._last_speakers: list[str] = []
        self._counts: dict[int, _Counts] = {}  # id(RtpStream) -> counters at the last quality tick
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(TICK)
            tick += 1
            with contextlib.suppress(Exception):  # telemetry must never end the room's timer
                await self.update_speakers()
                if tick % QUALITY_TICKS == 0:
                    await self.update_quality()

    async def update_speakers(self) -> None:
        room = self.room
        owners = {id(p): owner for owner in room.participants.values() for p in owner.producers.values()}
        speakers = [
            (owners[id(producer)], level)
            for producer, level in self.speakers.update(room.router.producers.values())
            if id(producer) in owners
        ]
        if room.max_audio_streams:
            self.select_audio(room.max_audio_streams)
        sids = [owner.sid for owner, _ in speakers]
        last = self._last_speakers
        if sids[:1] == last[:1] and set(sids) == set(last):
            return  # only the order of the others moved: not worth a message
        self._last_speakers = sids
        message = {
            "type": "active_speakers",
            "speakers": [{"sid": owner.sid, "level": round(level, 1)} for owner, level in speakers],
        }
        await room.broadcast(message)

    def select_audio(self, limit: int) -> None:
        """Forward each subscriber only the `limit` loudest audio tracks (its own never reach it)."""
        audible = self.speakers.loudest(limit)
        for participant in self.room.participants.values():
            transport = participant.subscriber
            if transport is None:
                continue
            for consumer in transport.consumers.values():
                if consumer.kind == "audio":
                    consumer.set_view(0, 0, consumer.producer.id in audible)

    async def update_quality(self) -> None:
        updates: list[dict[str, Any]] = []
        changed: dict[str, Participant] = {}
        live: set[int] = set()
        for participant in list(self.room.participants.values()):
            loss, rtt, alive = self._measure(participant, live)
            quality = rate_link(loss, rtt, alive)
            if quality != participant.quality:
                participant.quality = quality
                changed[participant.sid] = participant
                updates.append(
                    {
                        "sid": participant.sid,
                        "quality": quality,
                        "loss": round(loss, 3),
                        "rtt": None if rtt is None else round(rtt, 3),
                        "bitrate": None
                        if participant.subscriber is None
                        else participant.subscriber.available_bitrate(),
                    }
                )
        for gone in set(self._counts) - live:
            del self._counts[gone]
        room = self.room
        for target in list(room.participants.values()) if updates else []:
            # each hears of the links of those it hears of (a live room's viewers: the presenters')
            mine = [
                u
                for u in updates
                if u["sid"] == target.sid or room.kind.sees(room, target, changed[u["sid"]])
            ]
            if mine and target.send is not None:
                await target.notify({"type": "connection_quality", "updates": mine})

    def _measure(self, participant: Participant, live: set[int]) -> tuple[float, float | None, bool]:
        """Worst loss over the last interval on either direction, worst RTT, and whether media flows."""
        alive = participant.connected
        loss = 0.0
        rtts: list[float] = []
        for transport in (participant.publisher, participant.subscriber):
            if transport is not None and transport.state in ("new", "closed"):
                alive = False
        for producer in participant.producers.values():
            if producer.paused:
                continue
            flowing = started = False
            for stream in producer.streams:
                stats = stream.stats
                if not stats.packets:
                    continue
                started = True
                live.add(id(stream))
                before = self._counts.setdefault(id(stream), _Counts())
                expected = stats.expected - before.expected
                received = stats.packets - before.received
                before.expected, before.received = stats.expected, stats.packets
                flowing = flowing or received > 0
                if expected > 0:
                    loss = max(loss, max(0, expected - received) / expected)
            if started and not flowing:
                alive = False  # it was sending and has stopped: the publisher's uplink is gone
        if participant.subscriber is not None:
            for consumer in participant.subscriber.consumers.values():
                loss = max(loss, consumer.fraction_lost)
                if consumer.rtt is not None:
                    rtts.append(consumer.rtt)
        return loss, max(rtts) if rtts else None, alive
