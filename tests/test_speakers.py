"""Who is speaking: speaker events follow the voice, and only the loudest few voices are forwarded."""

from __future__ import annotations

import fractions
from typing import Any

import numpy as np
from aiortc.mediastreams import AudioStreamTrack
from av import AudioFrame
from kelian_server import Server, eventually

from signaling.client import Client

RATE = 48000
SAMPLES = 960  # 20 ms


class Voice(AudioStreamTrack):
    """A tone while `talking`, silence otherwise: aiortc encodes it and puts its level in each packet."""

    def __init__(self) -> None:
        super().__init__()
        self.talking = False
        self._t = 0

    async def recv(self) -> AudioFrame:
        silence = await super().recv()  # paces at real time and numbers the frames
        t = np.arange(self._t, self._t + SAMPLES) / RATE
        self._t += SAMPLES
        amplitude = 12000 if self.talking else 0
        samples = (amplitude * np.sin(2 * np.pi * 300 * t)).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, silence.pts
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


def speaker_events(client: Client) -> list[list[str]]:
    return [[s["sid"] for s in e["speakers"]] for e in client.events if e["type"] == "active_speakers"]


async def test_speaker_events_follow_who_talks_and_only_the_loudest_are_forwarded(kelian: Server) -> None:
    voices = {name: Voice() for name in ("class-a", "class-b", "class-c")}
    talkers: dict[str, Client] = {}
    listener = kelian.client("teacher", "lecturer")
    try:
        for name, voice in voices.items():
            client = talkers[name] = kelian.client(name, "classroom")
            await client.connect()
            await client.publish(voice, sources=["microphone"])
        sids = {name: c.participant["sid"] for name, c in talkers.items()}
        await listener.connect()
        await listener.wait_for_tracks(3, timeout=10)
        room: Any = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]

        voices["class-a"].talking = True
        assert await eventually(lambda: speaker_events(listener)[-1:] == [[sids["class-a"]]], timeout=5)
        voices["class-a"].talking = False
        voices["class-b"].talking = True
        assert await eventually(lambda: speaker_events(listener)[-1:] == [[sids["class-b"]]], timeout=6), (
            speaker_events(listener)
        )
        voices["class-b"].talking = False
        assert await eventually(lambda: speaker_events(listener)[-1:] == [[]], timeout=6)

        # a room that forwards only the loudest voice: the listener gets class-c's and no other
        room.max_audio_streams = 1
        voices["class-c"].talking = True
        consumers = {c.producer.id: c for c in listener_consumers(room, "teacher")}
        tracks = {name: next(iter(room.find(name)[0].producers.values())).id for name in voices}

        def only_c_flows() -> bool:
            return {name for name, t in tracks.items() if consumers[t].synced} == {"class-c"}

        assert await eventually(only_c_flows, timeout=6)
        sent = {name: consumers[t].packets for name, t in tracks.items()}
        assert await eventually(
            lambda: consumers[tracks["class-c"]].packets > sent["class-c"] + 20, timeout=3
        )
        assert consumers[tracks["class-a"]].packets == sent["class-a"], "a quiet room is not forwarded"
    finally:
        for client in [*talkers.values(), listener]:
            await client.close()


def listener_consumers(room: Any, identity: str) -> list[Any]:
    (participant,) = room.find(identity)
    return list(participant.subscriber.consumers.values())
