"""Source failover: a primary Producer with a standby, and the switch between them.

A lesson must survive its source failing: when the lecturer's classroom box drops, the classrooms
keep seeing the lecturer from a standby (the lecturer's laptop; later, any Producer, such as a
replayed lesson). The Router watches each primary: silent for longer than ``silence`` seconds, or
gone, and every Consumer of it moves to the standby, from the standby's next keyframe (asked for at
once); flowing again, or published anew by the same participant under the same track id, and they
move back the same way. A move is Consumer.move_to: no renegotiation, and the subscriber's stream
continues (sequence numbers, timestamps, VP8 picture ids), so it sees one track throughout.

The watch runs on a timer of its own, every WATCH seconds, and only while there is a standby: it
reads each primary's packet counters, never anything on the forwarding path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .consumer import Consumer
from .producer import Producer

SILENCE = 1.0  # seconds without a packet from the primary before its Consumers move
WATCH = 0.1  # seconds between looks at the primaries


class FailoverError(ValueError):
    """A standby that cannot stand in: another kind or codec, or the primary itself."""


@dataclass
class Standby:
    primary: Producer
    standby: Producer
    key: tuple[str, str, str] | None = None  # (owner, source, kind): who may publish the primary anew
    on_standby: bool = False
    moved: list[Consumer] = field(default_factory=list)  # Consumers of the primary, on the standby now
    packets: int = -1  # the primary's packet count at the last look
    last_heard: float = field(default_factory=time.monotonic)

    @property
    def track_id(self) -> str:
        """The track the subscribers see: the primary's id, which a returning primary takes again."""
        return self.primary.id


def check(primary: Producer, standby: Producer) -> None:
    if primary is standby:
        raise FailoverError("a track cannot stand in for itself")
    if primary.kind != standby.kind or primary.codec.name != standby.codec.name:
        raise FailoverError(
            f"a {standby.codec.name} {standby.kind} track cannot stand in for {primary.codec.name}"
            f" {primary.kind}: subscribers negotiated one codec"
        )
    if primary.closed or standby.closed:
        raise FailoverError("both tracks must be published")


def packets(producer: Producer) -> int:
    return sum(stream.stats.packets for stream in producer.streams)


def fail_over(standby: Standby) -> None:
    """Every Consumer of the primary to the standby, from its next keyframe."""
    moved = [c for c in list(standby.primary.consumers) if not c.closed]
    for consumer in moved:
        consumer.move_to(standby.standby)
    standby.moved += moved
    standby.on_standby = True


def fail_back(standby: Standby) -> None:
    """The Consumers that moved go back to the primary (a returning one: a new Producer, same id)."""
    for consumer in standby.moved:
        if not consumer.closed:
            consumer.move_to(standby.primary)
    standby.moved = []
    standby.on_standby = False
