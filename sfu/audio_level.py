"""Who is speaking: the RFC 6464 audio level every WebRTC publisher puts in its audio packets.

The packet path only adds the level byte to two counters on the stream (no decoding, no objects);
a timer then averages, smooths and decides, off the forwarding path. This is mediasoup's
AudioLevelObserver idea, with the hysteresis meeting products use so that the stage does not jump
to whoever coughs: a speaker must be loud for a while to start and quiet for a while to stop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .producer import Producer

SILENCE_DBOV = -127.0
START_DBOV = -50.0  # smoothed level above which a producer starts speaking
STOP_DBOV = -60.0  # ... and below which it stops: the gap between the two is the hysteresis
SMOOTHING = 0.5  # weight of the newest interval in the moving average
HOLD = 2  # updates a speaker stays quiet before it stops: pauses between words do not count
DOMINANT_MARGIN = 6.0  # dB another speaker must be louder by to take the stage from the current one


def level_dbov(energy: float, count: int) -> float:
    """Mean level in dBov of `count` packets whose linear powers sum to `energy`."""
    if count == 0 or energy <= 0.0:
        return SILENCE_DBOV
    return max(SILENCE_DBOV, 10.0 * math.log10(energy / count))


def power(level: int) -> float:
    """Linear power of one packet's level (0..127, meaning 0 to -127 dBov)."""
    return 10.0 ** (-level / 10.0)


POWER = tuple(power(level) for level in range(128))  # table lookup on the packet path


@dataclass
class _State:
    smoothed: float = SILENCE_DBOV
    speaking: bool = False
    quiet: int = 0  # consecutive updates below STOP_DBOV while speaking


class AudioLevelObserver:
    """Call `update` on a timer with the room's audio producers; it returns the speakers, loudest first."""

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}
        self.dominant: str | None = None  # producer id of the main speaker, kept with a margin
        self.audible: set[str] = set()  # producer ids forwarded when only the loudest few are

    def loudest(self, limit: int) -> set[str]:
        """The `limit` audio producers to forward, from the levels of the last update.

        Sticky like the dominant speaker: a forwarded producer keeps its place until someone not
        forwarded speaks louder than it by DOMINANT_MARGIN, so voices are not cut between words.
        """
        ranked = sorted(self._states.items(), key=lambda item: item[1].smoothed, reverse=True)
        chosen = {pid for pid in self.audible if pid in self._states}
        while len(chosen) > limit:  # the limit was lowered
            chosen.discard(min(chosen, key=lambda p: self._states[p].smoothed))
        for pid, state in ranked:
            if pid in chosen:
                continue
            if len(chosen) < limit:
                chosen.add(pid)
                continue
            weakest = min(chosen, key=lambda p: self._states[p].smoothed)
            if state.speaking and state.smoothed > self._states[weakest].smoothed + DOMINANT_MARGIN:
                chosen.discard(weakest)
                chosen.add(pid)
        self.audible = chosen
        return chosen

    def update(self, producers: Iterable[Producer]) -> list[tuple[Producer, float]]:
        """The speaking producers with their smoothed levels: the dominant speaker first, then by level.

        Two people talking over each other at similar levels must not make the stage flicker, so the
        dominant speaker keeps its place until someone is louder by DOMINANT_MARGIN or it falls silent.
        """
        speakers: list[tuple[Producer, float]] = []
        seen: set[str] = set()
        for producer in producers:
            if producer.kind != "audio":
                continue
            seen.add(producer.id)
            energy, count = 0.0, 0
            for stream in producer.streams:
                energy += stream.level_energy
                count += stream.level_count
                stream.level_energy = 0.0
                stream.level_count = 0
            state = self._states.setdefault(producer.id, _State())
            level = SILENCE_DBOV if producer.paused else level_dbov(energy, count)
            state.smoothed += SMOOTHING * (level - state.smoothed)
            if state.speaking:
                state.quiet = 0 if state.smoothed > STOP_DBOV else state.quiet + 1
                state.speaking = state.quiet < HOLD
            else:
                state.speaking = state.smoothed > START_DBOV
            if state.speaking:
                speakers.append((producer, state.smoothed))
        for gone in set(self._states) - seen:
            del self._states[gone]
            self.audible.discard(gone)
        speakers.sort(key=lambda item: item[1], reverse=True)
        current = next((item for item in speakers if item[0].id == self.dominant), None)
        if speakers and (current is None or speakers[0][1] > current[1] + DOMINANT_MARGIN):
            current = speakers[0]
        self.dominant = current[0].id if current is not None else None
        if current is not None:
            speakers.remove(current)
            speakers.insert(0, current)
        return speakers
