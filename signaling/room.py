"""Rooms and participants: who is in a lesson, what they publish, what they receive.

A participant has up to two Transports, as mediasoup-client and LiveKit clients do: one it publishes
on (it offers, the server answers) and one it receives on (the server offers whenever the room's
tracks change, it answers). WHIP and WHEP sessions are participants with only one of the two and
no signaling channel.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sfu.consumer import Consumer
from sfu.negotiation import (
    NegotiationError,
    SubscriberSlot,
    accept_answer,
    answer_publish,
    answer_subscribe_offer,
    offer_subscribe,
)
from sfu.node import Node
from sfu.producer import Producer
from sfu.router import Router
from sfu.transport import WebRtcTransport

from .tokens import Claims

log = logging.getLogger(__name__)
_sids = itertools.count(1)

Send = Callable[[dict[str, Any]], Awaitable[None]]


class SignalingError(Exception):
    """A request that cannot be served; `code` goes into the error event or HTTP status mapping."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Subscription:
    slot: SubscriberSlot
    consumer: Consumer | None
    producer_id: str


@dataclass
class Participant:
    room: Room
    claims: Claims
    send: Send | None  # None for WHIP/WHEP sessions
    kind: str = "websocket"  # websocket | whip | whep
    sid: str = field(default_factory=lambda: f"PS_{next(_sids)}")
    publisher: WebRtcTransport | None = None
    subscriber: WebRtcTransport | None = None
    producers: dict[str, Producer] = field(default_factory=dict)  # by mid on the publisher transport
    subscriptions: list[Subscription] = field(default_factory=list)
    offer_pending: bool = False  # an offer is out and unanswered
    renegotiate: bool = False  # the room changed while the offer was out
    closed: bool = False

    @property
    def identity(self) -> str:
        return self.claims.identity

    def info(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "identity": self.identity,
            "name": self.claims.name or self.identity,
            "role": str(self.claims.role),
            "kind": self.kind,
            "tracks": [track_info(p, self) for p in self.producers.values()],
        }

    async def notify(self, message: dict[str, Any]) -> None:
        if self.send is None or self.closed:
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
    }


class Room:
    def __init__(self, name: str, node: Node, on_empty: Callable[[Room], None]) -> None:
        self.name = name
        self.node = node
        self.router: Router = node.router(name)
        self.participants: dict[str, Participant] = {}
        self._on_empty = on_empty
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run follow-up signaling from a synchronous SFU callback (a track or transport closing)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- membership ----------------------------------------------------------------------------------

    async def join(self, claims: Claims, send: Send | None, kind: str = "websocket") -> Participant:
        participant = Participant(self, claims, send, kind)
        for other in list(self.participants.values()):
            if other.identity == claims.identity and other.kind == kind:
                await self.leave(other, reason="the same identity joined again")
        self.participants[participant.sid] = participant
        await self.broadcast(
            {"type": "participant_joined", "participant": participant.info()}, skip=participant
        )
        return participant

    async def leave(self, participant: Participant, reason: str = "left") -> None:
        if participant.closed:
            return
        participant.closed = True
        self.participants.pop(participant.sid, None)
        for transport in (participant.publisher, participant.subscriber):
            if transport is not None:
                transport.close(reason)
        await self.broadcast({"type": "participant_left", "sid": participant.sid, "reason": reason})
        if not self.participants:
            self._on_empty(self)

    async def broadcast(self, message: dict[str, Any], skip: Participant | None = None) -> None:
        targets = [p for p in self.participants.values() if p is not skip and p.send is not None]
        await asyncio.gather(*(p.notify(message) for p in targets))

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "participants": [p.info() for p in self.participants.values()]}

    # -- publishing ----------------------------------------------------------------------------------

    async def publish(
        self, participant: Participant, offer: str, sources: dict[str, str] | None = None
    ) -> str:
        """Answer a publish offer; Producers appear for new sending sections, vanish for dropped ones."""
        if not participant.claims.grants.publish:
            raise SignalingError("forbidden", f"role {participant.claims.role} may not publish")
        fresh = participant.publisher is None
        transport = participant.publisher or self._new_transport(participant, "publisher")
        try:
            answer, specs = answer_publish(offer, transport, sources)
        except NegotiationError as exc:
            if fresh:
                transport.close("publish offer refused")
                participant.publisher = None
            raise SignalingError("bad_sdp", str(exc)) from None
        participant.publisher = transport
        wanted = {spec.mid: spec for spec in specs}
        for mid, producer in list(participant.producers.items()):
            if mid not in wanted or wanted[mid].codec != producer.codec:
                producer.close()
        added = []
        for mid, spec in wanted.items():
            if mid in participant.producers:
                continue
            producer = Producer(transport, spec)
            transport.add_producer(producer)
            self.router.add_producer(producer)
            participant.producers[mid] = producer
            producer.on_close.append(functools.partial(self._producer_closed, participant))
            added.append(producer)
        for producer in added:
            await self.broadcast({"type": "track_published", "track": track_info(producer, participant)})
            for other in list(self.participants.values()):
                if other is not participant and other.send is not None and other.claims.grants.subscribe:
                    self._subscribe(other, producer, participant)
        for other in list(self.participants.values()):
            await self.negotiate(other)
        return answer

    def _producer_closed(self, owner: Participant, producer: Producer) -> None:
        owner.producers.pop(producer.mid, None)
        if not owner.closed or self.participants:
            message = {"type": "track_unpublished", "track": track_info(producer, owner)}
            self._spawn(self.broadcast(message))

    def unpublish(self, participant: Participant, track_id: str) -> None:
        producer = next((p for p in participant.producers.values() if p.id == track_id), None)
        if producer is None:
            raise SignalingError("not_found", f"no track {track_id!r} published by you")
        producer.close()

    def producers(self, identity: str | None = None) -> list[Producer]:
        return [
            producer
            for p in self.participants.values()
            if identity is None or p.identity == identity
            for producer in p.producers.values()
        ]

    def owner_of(self, producer: Producer) -> Participant | None:
        return next((p for p in self.participants.values() if producer in p.producers.values()), None)

    # -- subscribing ---------------------------------------------------------------------------------

    def subscribe_all(self, participant: Participant) -> None:
        """Consumers for everything already published, for a participant that just joined."""
        if not participant.claims.grants.subscribe:
            return
        for owner in list(self.participants.values()):
            if owner is participant:
                continue
            for producer in owner.producers.values():
                self._subscribe(participant, producer, owner)

    def _subscribe(self, participant: Participant, producer: Producer, owner: Participant) -> None:
        if any(s.producer_id == producer.id for s in participant.subscriptions):
            return
        transport = participant.subscriber or self._new_transport(participant, "subscriber")
        participant.subscriber = transport
        mid = str(len(participant.subscriptions))
        consumer = self.router.consume(transport, producer, mid)
        consumer.pause()  # until the answer that announces its SSRC is in
        slot = SubscriberSlot(
            mid=mid,
            kind=producer.kind,
            codec=producer.codec,
            payload_type=producer.codec.payload_type,
            ssrc=consumer.ssrc,
            stream_id=owner.sid,
            track_id=producer.id,
            cname=owner.sid,
        )
        subscription = Subscription(slot, consumer, producer.id)
        participant.subscriptions.append(subscription)
        consumer.on_close.append(lambda c: self._consumer_closed(participant, subscription))
        participant.renegotiate = True

    def _consumer_closed(self, participant: Participant, subscription: Subscription) -> None:
        subscription.consumer = None
        subscription.slot.ssrc = None
        if not participant.closed:
            participant.renegotiate = True
            self._spawn(self.negotiate(participant))

    async def negotiate(self, participant: Participant) -> None:
        """Send a new subscriber offer if the room changed and no offer is outstanding."""
        if participant.closed or participant.send is None or participant.offer_pending:
            return
        if not participant.renegotiate or participant.subscriber is None:
            return
        participant.renegotiate = False
        participant.offer_pending = True
        sdp = offer_subscribe(participant.subscriber, [s.slot for s in participant.subscriptions])
        await participant.notify({"type": "offer", "sdp": sdp})

    async def answer(self, participant: Participant, sdp: str) -> None:
        """The participant's answer to our last subscriber offer."""
        transport = participant.subscriber
        if transport is None or not participant.offer_pending:
            raise SignalingError("unexpected", "no subscriber offer is waiting for an answer")
        try:
            accept_answer(sdp, transport, [s.slot.mid for s in participant.subscriptions])
        except NegotiationError as exc:
            raise SignalingError("bad_sdp", str(exc)) from None
        participant.offer_pending = False
        for subscription in participant.subscriptions:
            if subscription.consumer is not None and subscription.consumer.paused:
                subscription.consumer.resume()
        await self.negotiate(participant)

    def play(self, participant: Participant, offer: str, identity: str | None = None) -> str:
        """WHEP: answer a player's offer with what is published now (by `identity`, if given)."""
        producers = [p for p in self.producers(identity) if self.owner_of(p) is not participant]
        if not producers:
            who = f"participant {identity!r}" if identity else "anyone"
            raise SignalingError("nothing_to_play", f"nothing is being published by {who} in this room")
        transport = participant.subscriber = self._new_transport(participant, "subscriber")
        try:
            return answer_subscribe_offer(
                offer,
                transport,
                producers,
                lambda mid, producer: self.router.consume(transport, producer, mid),
            )
        except NegotiationError as exc:
            raise SignalingError("bad_sdp", str(exc)) from None

    # -- transports ----------------------------------------------------------------------------------

    def _new_transport(self, participant: Participant, role: str) -> WebRtcTransport:
        transport = self.node.create_transport()
        transport.on_close.append(lambda t: self._transport_closed(participant, role, t))
        return transport

    def _transport_closed(self, participant: Participant, role: str, transport: WebRtcTransport) -> None:
        if getattr(participant, role) is not transport:
            return  # refused before it was used: nobody needs to hear of it
        setattr(participant, role, None)
        if role == "subscriber":
            participant.subscriptions.clear()
            participant.offer_pending = False
        if participant.closed:
            return
        if participant.send is None:  # a WHIP/WHEP session is its transport
            self._spawn(self.leave(participant, reason=transport.close_reason))
        else:
            message = {"type": "transport_closed", "transport": role, "reason": transport.close_reason}
            self._spawn(participant.notify(message))


class Rooms:
    """The rooms of this node, created on first join and closed when the last participant leaves."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.rooms: dict[str, Room] = {}

    def get(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, self.node, self._empty)
        return room

    def _empty(self, room: Room) -> None:
        if self.rooms.get(room.name) is room and not room.participants:
            del self.rooms[room.name]
            self.node.close_router(room.name)

    def find_session(self, sid: str) -> Participant | None:
        for room in self.rooms.values():
            if sid in room.participants:
                return room.participants[sid]
        return None
