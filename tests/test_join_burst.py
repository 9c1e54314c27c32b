"""A join burst against a publisher that honours one keyframe request per 500 ms, as many encoders do.

Two hundred subscribers join a lesson within two seconds. Each one's first picture needs a keyframe;
the publisher (an FFmpeg-like encoder) sends one only when asked, and ignores any request that
comes within 500 ms of the last one it honoured; its own keyframes are too far apart to wait for.
Each subscriber's DTLS completes at its own time, some after the keyframe its join asked for went
by. Every subscriber must still show a picture within one request interval and a round trip of its
transport being keyed, and the server must not ask the publisher more often than it answers.

The lesson runs on a simulated clock (the Producer's clock and its timer are replaced) so that the
figures are exact and the test takes no wall-clock time: frames every 33 ms, 40 ms round trip.
"""

from __future__ import annotations

import heapq
import itertools
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

import sfu.producer
from sfu.consumer import Consumer
from sfu.producer import KEYFRAME_REQUEST_INTERVAL, CodecSpec, Producer, ProducerSpec
from sfu.rtp import is_keyframe

VP8 = CodecSpec("VP8", "video", 96, 90000, None, "", None)
FRAME = 1 / 30
RTT = 0.040
PUBLISHER_INTERVAL = 0.5  # the encoder honours at most one request in this long
SUBSCRIBERS = 200
BURST = 2.0  # seconds over which they join


class Clock:
    """Simulated time and timers for the Producer (its monotonic clock and asyncio's call_later)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self.count = 0

    def monotonic(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        self.count += 1
        heapq.heappush(self.timers, (self.now + delay, self.count, callback, args))

    def advance(self, to: float) -> None:
        while self.timers and self.timers[0][0] <= to:
            at, _, callback, args = heapq.heappop(self.timers)
            self.now = at
            callback(*args)
        self.now = to


@dataclass
class Publisher:
    """An encoder that answers a keyframe request at its next frame, unless it honoured one less
    than PUBLISHER_INTERVAL ago; requests reach it half a round trip after the server sends them."""

    clock: Clock
    requests: list[float] = field(default_factory=list)  # when each arrived at the encoder
    honoured: list[float] = field(default_factory=list)
    wants_keyframe: bool = False
    seq: int = 0
    frame: int = 0

    def request(self) -> None:
        self.clock.call_later(RTT / 2, self._arrived)

    def _arrived(self) -> None:
        self.requests.append(self.clock.now)
        if not self.honoured or self.clock.now - self.honoured[-1] >= PUBLISHER_INTERVAL:
            self.honoured.append(self.clock.now)
            self.wants_keyframe = True

    def frame_packets(self) -> list[bytes]:
        key = self.wants_keyframe or self.frame == 0
        self.wants_keyframe = False
        ts = self.frame * 3000
        packets = []
        for i in range(3):
            descriptor = bytes(
                [0x90 if i == 0 else 0x80, 0x80, 0x80 | (self.frame >> 8 & 0x7F), self.frame & 0xFF]
            )
            tag = (b"\x50\x42\x00\x9d\x01\x2a" if key else b"\x31\x0b\x00") if i == 0 else b""
            header = struct.pack("!BBHII", 0x80, (0x80 if i == 2 else 0) | 96, self.seq & 0xFFFF, ts, 0xAAAA)
            packets.append(header + descriptor + tag + bytes(100))
            self.seq += 1
        self.frame += 1
        return packets


@dataclass
class Subscriber:
    """What a Consumer needs of its WebRtcTransport; keyed when its DTLS completes."""

    clock: Clock
    joined: float
    keyed_at: float
    srtp_tx: Any = None
    sender: Any = None
    twcc: Any = None
    remote_addr: tuple[str, int] = ("127.0.0.1", 9)
    ext_table: bytes | None = None
    first_frame: float | None = None
    first_packet: bytes | None = None
    consumer: Consumer | None = None

    def protect_rewritten(self, packet: bytes, *args: Any) -> bytes:
        if self.first_frame is None:
            self.first_frame, self.first_packet = self.clock.now, packet
        return packet

    def sendto(self, data: bytes, addr: Any) -> None:
        pass

    def key(self) -> None:
        """What WebRtcTransport._on_keys does: ready to send, and ask for a keyframe once more."""
        self.srtp_tx = self
        assert self.consumer is not None
        self.consumer.request_keyframe()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(sfu.producer, "monotonic", clock.monotonic)
    monkeypatch.setattr(sfu.producer, "time", SimpleNamespace(monotonic=clock.monotonic))
    monkeypatch.setattr(sfu.producer, "asyncio", SimpleNamespace(get_running_loop=lambda: clock))
    return clock


@dataclass
class Lesson:
    publisher: Publisher
    subscribers: list[Subscriber]
    server_requests: list[float]  # when the server sent the publisher a keyframe request

    def waits(self) -> list[float]:
        """Each subscriber's first picture after its transport was keyed, shortest first."""
        return sorted(s.first_frame - s.keyed_at for s in self.subscribers if s.first_frame is not None)


def run(clock: Clock, joins: list[tuple[float, float]], lead: float, after: float = 2.0) -> Lesson:
    """The publisher sends for `lead` seconds, then subscribers join and get keyed at the (offsets
    from then) in `joins`; the lesson goes on `after` seconds past the last join."""
    publisher = Publisher(clock)
    upstream = SimpleNamespace(
        ext_table=None,
        ext_ids={},
        node=SimpleNamespace(keyframe_requests=0, errors=0, repairs=0),
        send_keyframe_request=lambda producer, ssrc: publisher.request(),
    )
    spec = ProducerSpec("video", "0", VP8, 96, None, feedback=frozenset({"pli"}))
    producer = Producer(upstream, spec)  # type: ignore[arg-type]
    stream = producer.streams[0]
    stream.ssrc = 0xAAAA
    lesson = Lesson(publisher, [], [])
    original = producer.send_keyframe_request

    def counted(s: Any) -> None:
        lesson.server_requests.append(clock.now)
        original(s)

    producer.send_keyframe_request = counted  # type: ignore[method-assign]
    start = clock.now + lead
    lesson.subscribers = [Subscriber(clock, start + joined, start + keyed) for joined, keyed in joins]
    events = sorted(
        [(s.joined, i, "join", s) for i, s in enumerate(lesson.subscribers)]
        + [(s.keyed_at, i, "key", s) for i, s in enumerate(lesson.subscribers)]
    )
    t = clock.now
    end = start + max(joined for joined, _ in joins) + after
    while t < end:
        while events and events[0][0] <= t:
            at, _, what, s = events.pop(0)
            clock.advance(at)
            if what == "join":  # the offer/answer: the Consumer is made and attached, not keyed yet
                s.consumer = Consumer(s, producer, "0")  # type: ignore[arg-type]
                s.consumer.attach(stream)
            else:
                s.key()
        clock.advance(t)
        for packet in publisher.frame_packets():  # arrives half a round trip after the encoder made it
            clock.call_later(RTT / 2, stream.receive, packet)
        t += FRAME
    clock.advance(end)
    return lesson


BOUND = KEYFRAME_REQUEST_INTERVAL + RTT + 2 * FRAME  # a request slot, its round trip, the encoder's frame


def test_two_hundred_joins_in_two_seconds_each_see_a_picture_within_a_request_round_trip(
    clock: Clock,
) -> None:
    rng = random.Random(17)
    joins = []
    for _ in range(SUBSCRIBERS):
        joined = rng.uniform(0, BURST)
        joins.append((joined, joined + rng.uniform(0.02, 0.6)))  # DTLS takes its time
    lesson = run(clock, joins, lead=1.0)  # the first keyframe is long past when the burst starts
    waits = lesson.waits()
    assert len(waits) == SUBSCRIBERS, "every subscriber got a picture"
    assert all(
        s.first_packet is not None and is_keyframe("VP8", s.first_packet) for s in lesson.subscribers
    ), "each started on a keyframe (a fresh one, or the cached picture group's)"
    assert waits[-1] <= BOUND, f"the slowest first picture came {waits[-1]:.3f} s after its DTLS"
    # the server never asks faster than the encoder answers: no request is wasted on its window
    gaps = [b - a for a, b in itertools.pairwise(lesson.server_requests)]
    assert min(gaps) >= KEYFRAME_REQUEST_INTERVAL - 1e-9
    publisher = lesson.publisher
    assert len(publisher.honoured) == len(publisher.requests), "every request reached an encoder ready for it"
    assert len(publisher.honoured) <= (BURST + 2.0) / PUBLISHER_INTERVAL + 1


def test_a_subscriber_keyed_after_its_keyframe_went_by_asks_again(clock: Clock) -> None:
    """Alone, so no one else's request brings a keyframe; after twelve seconds of one picture group
    the cache no longer holds its start, so there is none to replay either: only asking again when
    DTLS completes gets this subscriber a picture before the encoder's own next keyframe."""
    lesson = run(clock, [(0.0, 0.3)], lead=12.0)
    (subscriber,) = lesson.subscribers
    assert lesson.publisher.honoured[0] < subscriber.keyed_at, "its join's keyframe came before its DTLS did"
    (wait,) = lesson.waits()
    assert wait <= BOUND, f"its first picture came {wait:.3f} s after its DTLS"
    assert len(lesson.publisher.honoured) == 2
