"""What the server's bounds refused, and the bounds every room has (Config, docs/security.md)."""

from __future__ import annotations

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
