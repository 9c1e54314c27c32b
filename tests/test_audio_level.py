"""The speaker decision on its own: levels in, speakers and forwarded voices out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sfu.audio_level import POWER, AudioLevelObserver, level_dbov


@dataclass
class Stream:
    level_energy: float = 0.0
    level_count: int = 0


@dataclass
class Producer:
    id: str
    kind: str = "audio"
    paused: bool = False
    streams: list[Stream] = field(default_factory=lambda: [Stream()])

    def hear(self, level: int, packets: int = 25) -> None:
        """`packets` packets at -`level` dBov since the last update."""
        self.streams[0].level_energy += POWER[level] * packets
        self.streams[0].level_count += packets


def run(observer: AudioLevelObserver, producers: list[Producer], levels: dict[str, int]) -> list[str]:
    for p in producers:
        if p.id in levels:
            p.hear(levels[p.id])
    speakers: list[Any] = observer.update(producers)  # type: ignore[arg-type]
    return [p.id for p, _ in speakers]


def test_level_of_silence_and_of_a_steady_tone() -> None:
    assert level_dbov(0.0, 0) == -127.0
    assert round(level_dbov(POWER[30] * 10, 10)) == -30


def test_a_speaker_starts_after_some_loudness_and_stops_after_some_quiet() -> None:
    a = Producer("a")
    observer = AudioLevelObserver()
    assert run(observer, [a], {"a": 127}) == []
    # one loud interval moves the smoothed level half way from silence: not yet speaking
    assert run(observer, [a], {"a": 20}) == []
    assert run(observer, [a], {"a": 20}) == ["a"]
    # a short quiet spell keeps the speaker (hysteresis), a long one ends it
    assert run(observer, [a], {"a": 127}) == ["a"]
    assert [run(observer, [a], {"a": 127}) for _ in range(4)][-1] == []


def test_the_dominant_speaker_keeps_the_stage_unless_clearly_outvoiced() -> None:
    a, b = Producer("a"), Producer("b")
    observer = AudioLevelObserver()
    for _ in range(4):
        run(observer, [a, b], {"a": 20, "b": 127})
    for _ in range(4):  # b talks too, a little louder: a stays first
        order = run(observer, [a, b], {"a": 20, "b": 17})
    assert order == ["a", "b"]
    for _ in range(6):  # b is much louder: it takes the stage
        order = run(observer, [a, b], {"a": 20, "b": 5})
    assert order == ["b", "a"]


def test_only_the_loudest_are_forwarded_and_they_are_sticky() -> None:
    voices = [Producer(name) for name in "abcd"]
    observer = AudioLevelObserver()
    levels = {"a": 10, "b": 20, "c": 40, "d": 127}
    for _ in range(4):
        run(observer, voices, levels)
    assert observer.loudest(2) == {"a", "b"}
    levels["c"] = 18  # c gets a little louder than b: not enough to replace it
    for _ in range(4):
        run(observer, voices, levels)
    assert observer.loudest(2) == {"a", "b"}
    levels["c"] = 5  # now clearly louder than the weakest forwarded voice
    for _ in range(6):
        run(observer, voices, levels)
    assert observer.loudest(2) == {"a", "c"}
    assert observer.loudest(1) == {"c"}, "lowering the limit keeps the loudest"
