"""What the server's bounds refused, and the bounds every room has (Config, docs/security.md)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


class Refusals(Counter[str]):
    """How many times each bound said no, by reason; exported as kelian_refused_total{reason}."""


@dataclass(frozen=True)
class RoomLimits:
    """The server's bounds on every room (Config); a room created with max_participants may set fewer."""

    max_participants: int | None = None
    max_tracks: int | None = None  # published by one participant at once
    refusals: Refusals = field(default_factory=Refusals, compare=False)


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; each request takes one (or `cost`)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self, cost: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True
