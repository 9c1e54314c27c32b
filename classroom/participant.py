"""A participant: a signaling session with an identity, a role and grants, and its media.

A participant has up to two Transports, as mediasoup-client and LiveKit clients do: one it publishes
on (it offers, the server answers) and one it receives on (the server offers whenever what it
watches changes, it answers). WHIP and WHEP sessions are participants with only one of the two and
no signaling channel.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sfu.consumer import Consumer
from sfu.negotiation import SubscriberSlot
from sfu.producer import Producer
from sfu.transport import WebRtcTransport

from .permissions import classroom_of
from .tokens import Claims, Grants, Role

if TYPE_CHECKING:
    from .room import Room

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Subscription:
    """One m-section of a participant's subscriber connection, and the Consumer behind it.

    When the Consumer goes, the section is offered rejected (port 0) and, once the participant has
    answered that offer, its place is free for the next track of the same kind under a new mid
    (JSEP m-section recycling, RFC 8829 section 5.2.2): the offer stays as long as the tracks
    received at once, not as long as every track ever published. The first section is never
    rejected: it carries the BUNDLE transport.
    """

    slot: SubscriberSlot
    consumer: Consumer | None
    producer_id: str
    free: bool = False  # rejected in an answered offer: the next subscription may take its place


@dataclass
class Participant:
    room: Room
    claims: Claims
    send: Send | None  # None for WHIP/WHEP sessions
    kind: str = "websocket"  # websocket | whip | whep
    sid: str = field(default_factory=lambda: f"PS_{secrets.token_urlsafe(9)}")  # unique, not guessable
    resource: str | None = None  # the secret last part of a WHIP/WHEP session's URL
    publisher: WebRtcTransport | None = None
    subscriber: WebRtcTransport | None = None
    producers: dict[str, Producer] = field(default_factory=dict)  # by mid on the publisher transport
    subscriptions: list[Subscription] = field(default_factory=list)
    offer_pending: bool = False  # an offer is out and unanswered
    offered: list[Subscription] = field(default_factory=list)  # what that offer carried
    next_mid: int = 0  # subscriber mids are never used twice, even for a recycled section
    declined: set[str] = field(default_factory=set)  # track ids and participant sids it turned down
    renegotiate: bool = False  # the room changed while the offer was out
    closed: bool = False
    connected: bool = True  # its signaling channel is up (False during the reconnect grace period)
    channel: object | None = None  # the signaling connection that owns it now
    quality: str = "excellent"  # excellent | good | poor | lost, kept by the RoomMonitor
    grace: asyncio.TimerHandle | None = None  # leaves the room when this fires, unless resumed
    # Its media is served by an edge (cluster.edge): this room signals for it, another subscribes it.
    media_elsewhere: bool = False
    # What it may do now: its token's grants narrowed by the lesson (classroom.moderation).
    grants: Grants = field(init=False)

    def __post_init__(self) -> None:
        self.grants = self.room.moderation.grants_of(self.claims)

    @property
    def identity(self) -> str:
        return self.claims.identity

    @property
    def role(self) -> Role:
        return self.claims.role

    @property
    def name(self) -> str:
        return self.claims.name or self.identity

    @property
    def classroom(self) -> str | None:
        """Its token's classroom (a tutor's, a student's); classroom.permissions.classroom_of says
        which classroom it belongs to."""
        return self.claims.classroom

    def info(self, tracks: bool = True) -> dict[str, Any]:
        """As clients see it; without `tracks`, who it is only (the webhooks)."""
        info: dict[str, Any] = {
            "sid": self.sid,
            "identity": self.identity,
            "name": self.name,
            "role": str(self.claims.role),
            "classroom": classroom_of(self),  # a box's own identity, a tutor's or a student's box
            "kind": self.kind,
        }
        if tracks:
            info["tracks"] = [track_info(p, self) for p in self.producers.values()]
            info["quality"] = self.quality
        return info

    async def notify(self, message: dict[str, Any]) -> None:
        if self.send is None or self.closed or not self.connected:
            return
        try:
            await self.send(message)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("participant %s unreachable: %s", self.sid, exc)


def track_info(producer: Producer, owner: Participant) -> dict[str, Any]:
    return {
        "id": producer.id,
        "participant": owner.sid,
        "identity": owner.identity,
        "kind": producer.kind,
        "source": producer.source,
        "codec": producer.codec.name,
        "layers": [s.rid for s in producer.streams if s.rid],
        "muted": producer.paused,
    }
