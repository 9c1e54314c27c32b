"""A room: one live lesson, its participants, what they publish and what each of them receives."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sfu import simulcast
from sfu.codecs import RTX_PAYLOAD_TYPES
from sfu.consumer import Consumer
from sfu.negotiation import (
    NegotiationError,
    SubscriberSlot,
    accept_answer,
    answer_publish,
    answer_subscribe_offer,
    answered_codecs,
    answered_rtx,
    answered_transport_cc,
    offer_subscribe,
)
from sfu.node import Node
from sfu.producer import Producer
from sfu.router import Router
from sfu.sdp import MAX_MEDIA_SECTIONS
from sfu.transport import WebRtcTransport

from . import kinds
from .chat import Chat
from .errors import ClassroomError
from .kinds import DEFAULT as DEFAULT_KIND
from .limits import RoomLimits
from .mode import RoomMode
from .moderation import Moderation
from .monitor import RoomMonitor
from .participant import Participant, Send, Subscription, track_info
from .permissions import Action, allowed, authorize
from .tokens import Claims

log = logging.getLogger(__name__)
COUNT_EVERY = 1.0  # seconds between participant_count events, at most
MAX_STAGE = 4  # on stage at once: every participant receives each of them


@dataclass
class RoomOptions:
    """What a school sets up for a lesson before anyone joins (the admin API), kept with the room.

    A room made by a join has ``empty_timeout`` 0: it closes when its last participant leaves, as a room
    always did. A created room stays while empty for ``empty_timeout`` seconds (at creation and after
    its last participant leaves), so a lesson booked a few minutes ahead keeps its settings until the
    classes arrive and a dropped connection does not lose them. A created room with 0 is kept until
    someone has joined and then closes when it is empty again.
    """

    max_participants: int | None = None  # None: unlimited
    empty_timeout: float = 300.0
    metadata: dict[str, str] = field(default_factory=dict)  # stage, grade, subject, teacher...
    # The codecs publishers may send (names as in SDP: "opus", "VP8", "H264"); None: every codec the
    # router forwards. A school whose classroom TVs decode only H.264 sets ("H264", "opus").
    codecs: tuple[str, ...] | None = None
    kind: str = DEFAULT_KIND  # fusion, dual_teacher or live (classroom.kinds)
    # Students and viewers wait until a moderator admits them (classroom.moderation).
    waiting_room: bool = False
    # A lesson of the school's timetable (school.schools): its place in the organisation, the boxes
    # of its classrooms, and its mode (classroom.mode), which a switchover changes.
    lesson: str | None = None
    school: str | None = None
    district: str | None = None
    boxes: tuple[str, ...] = ()
    mode: str = "online"
    recording: str = "never"  # never | always | online: whether the lesson is recorded (RoomMode)


class Room:
    def __init__(
        self,
        name: str,
        node: Node,
        on_empty: Callable[[Room], None],
        options: RoomOptions | None = None,
        max_audio_streams: int = 0,
        limits: RoomLimits | None = None,
        tell: Callable[..., None] | None = None,
    ) -> None:
        self.name = name
        self.node = node
        self.max_audio_streams = max_audio_streams  # loudest audio tracks each subscriber gets; 0: all
        self.limits = limits or RoomLimits()
        self.options = options or RoomOptions(empty_timeout=0.0)
        self.kind = kinds.kind(self.options.kind)
        self.stage: set[str] = set()  # identities on stage: every participant watches them
        self.created_at = time.time()
        self.closed = False  # closing or closed by close(): joins are refused
        self._expiry: asyncio.TimerHandle | None = None  # closes an empty created room
        self._joining = 0  # joins between their first await and taking their place
        self.router: Router = node.router(name)
        self.router.on_failover.append(self._failed_over)
        self.participants: dict[str, Participant] = {}
        self._on_empty = on_empty
        self._tasks: set[asyncio.Task[None]] = set()
        self._count_timer: asyncio.TimerHandle | None = None
        self._count_sent = 0
        self.monitor = RoomMonitor(self)
        self.moderation = Moderation(self)
        self.chat = Chat(self)
        self.mode = RoomMode(self, self.options.mode)
        self.tell = tell or (lambda event, **fields: None)  # what happened: Rooms.tell, the webhooks
        # each track as it is published, with its owner: the recorder takes them (recorder.session)
        self.on_track: list[Callable[[Producer, Participant], None]] = []
        # who publishes what, their roles and grants, or the stage changed: the edges that serve
        # this room's viewers elsewhere follow it (cluster.edge)
        self.on_change: list[Callable[[], None]] = []

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run follow-up signaling from a synchronous SFU callback (a track or transport closing)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- membership ----------------------------------------------------------------------------------

    def _changed(self) -> None:
        for listener in list(self.on_change):
            listener()

    async def join(
        self, claims: Claims, send: Send | None, kind: str = "websocket", sid: str | None = None
    ) -> Participant:
        """`sid`: the one the room's origin gave a session an edge serves (cluster.edge)."""
        self._admit(claims, kind)
        participant = Participant(self, claims, send, kind)
        if sid is not None:
            participant.sid = sid
        self._joining += 1  # replacing the only participant must not close the room under us
        try:
            for other in list(self.participants.values()):
                if other.identity == claims.identity and other.kind == kind:
                    # told, so that a second tab with the same identity stops instead of rejoining
                    await other.notify({"type": "disconnected", "reason": "replaced"})
                    await self.leave(other, reason="the same identity joined again")
            self.participants[participant.sid] = participant
            self.moderation.joined(participant)
        finally:
            self._joining -= 1
            if not self.participants:  # cancelled before it took its place
                self._emptied()
        self.monitor.start()
        await self.broadcast(
            {"type": "participant_joined", "participant": participant.info()},
            skip=participant,
            about=participant,
        )
        self._count_changed()
        self.tell("participant_joined", **self.place(), participant=participant.info(tracks=False))
        await self.mode.joined(participant)
        return participant

    async def leave(self, participant: Participant, reason: str = "left") -> None:
        if participant.closed:
            return
        participant.closed = True
        if participant.grace is not None:
            participant.grace.cancel()
        self.participants.pop(participant.sid, None)
        for transport in (participant.publisher, participant.subscriber):
            if transport is not None:
                transport.close(reason)
        if participant.producers:
            self._changed()
        message = {"type": "participant_left", "sid": participant.sid, "reason": reason}
        await self.broadcast(message, about=participant)
        self.tell(
            "participant_left", **self.place(), participant=participant.info(tracks=False), reason=reason
        )
        await self.moderation.left(participant, reason)
        self._count_changed()
        if not self.participants:
            self.monitor.stop()
            self._emptied()

    async def broadcast(
        self, message: dict[str, Any], skip: Participant | None = None, about: Participant | None = None
    ) -> None:
        """To every participant with a channel but `skip`; with `about`, only to those who hear of
        that participant (the kind's presence rule) and to itself. Sending only queues (signaling/ws
        Outbox): nobody waits on anybody's socket."""
        for target in list(self.participants.values()):
            if target is skip or target.send is None:
                continue
            if about is None or target is about or self.kind.sees(self, target, about):
                await target.notify(message)

    def visible(self, viewer: Participant) -> list[Participant]:
        """The participants `viewer` hears of, itself first."""
        return [viewer] + [
            p for p in self.participants.values() if p is not viewer and self.kind.sees(self, viewer, p)
        ]

    def _count_changed(self) -> None:
        """Tell everyone how many take part, at most once a second: in a live room the viewers hear of
        each other only as this count."""
        if self._count_timer is None and not self.closed:
            self._count_timer = asyncio.get_running_loop().call_later(COUNT_EVERY, self._send_count)

    def _send_count(self) -> None:
        self._count_timer = None
        count = len(self.participants)
        if count != self._count_sent and self.participants:
            self._count_sent = count
            self._spawn(self.broadcast({"type": "participant_count", "count": count}))

    def snapshot(self, viewer: Participant | None = None) -> dict[str, Any]:
        """The room as a joining client sees it: the participants it hears of (all, without a
        viewer), how many take part in all, and the kind. ``max_audio_streams`` tells it that only
        the loudest few voices reach it (0: all), so that silence from a quiet publisher is not taken
        for a fault."""
        shown = self.participants.values() if viewer is None else self.visible(viewer)
        return {
            "name": self.name,
            "kind": self.kind.name,
            "max_audio_streams": self.max_audio_streams,
            "participants": [p.info() for p in shown],
            "participant_count": len(self.participants),
            "stage": sorted(self.stage),
            "locked": self.moderation.locked,
            "waiting_room": self.options.waiting_room,
            "mode": self.mode.mode,
            "lesson": self.options.lesson,
        }

    def place(self) -> dict[str, Any]:
        """Which room, and which lesson of which school it is: what every webhook says."""
        options = self.options
        return {
            "room": self.name,
            "lesson": options.lesson,
            "school": options.school,
            "district": options.district,
        }

    def lesson(self, participant: Participant) -> dict[str, Any]:
        """What a joining or resuming participant learns of the lesson beyond who is in it: its hand,
        its invitation, the hands and the waiting room if it moderates, chat and questions."""
        return self.moderation.state(participant) | self.chat.history(participant)

    def detach(self, participant: Participant, grace: float) -> None:
        """Its signaling channel dropped: keep its media running for `grace` seconds so the client can
        resume (LiveKit and Galène do the same); after that it leaves."""
        if participant.closed or not participant.connected:
            return
        participant.connected = False
        participant.channel = None
        if participant.offer_pending:  # the offer may never have arrived: send a fresh one on resume
            participant.offer_pending = False
            participant.renegotiate = True
        loop = asyncio.get_running_loop()
        participant.grace = loop.call_later(
            grace, lambda: self._spawn(self.leave(participant, reason="disconnected"))
        )

    async def resume(self, participant: Participant, send: Send, channel: object) -> None:
        """A new signaling channel for a participant whose media kept flowing."""
        if participant.grace is not None:
            participant.grace.cancel()
            participant.grace = None
        participant.send = send
        participant.channel = channel
        participant.connected = True
        if participant.offer_pending:  # the old channel was still open: its offer is lost with it
            participant.offer_pending = False
            participant.renegotiate = True

    # -- publishing ----------------------------------------------------------------------------------

    async def publish(
        self, participant: Participant, offer: str, sources: dict[str, str] | None = None
    ) -> str:
        """Answer a publish offer; Producers appear for new sending sections, vanish for dropped ones."""
        if participant.closed:  # removed by a moderator or the admin API while this was on its way
            raise ClassroomError("not_joined", "you are no longer in the room")
        if not allowed(participant, Action.PUBLISH) and participant.claims.grants.publish:
            raise ClassroomError("forbidden", "you may publish when a teacher invites you: raise your hand")
        authorize(participant, Action.PUBLISH)
        fresh = participant.publisher is None
        transport = participant.publisher or self._new_transport(participant, "publisher")
        try:
            answer, specs = answer_publish(offer, transport, sources, self.options.codecs)
        except NegotiationError as exc:
            if fresh:
                transport.close("publish offer refused")
                participant.publisher = None
            raise ClassroomError("bad_sdp", str(exc)) from None
        wanted = {spec.mid: spec for spec in specs}
        limit = self.limits.max_tracks
        if limit is not None and len(wanted) > limit:
            if fresh:
                transport.close("publish offer refused")
            self.limits.refusals["too_many_tracks"] += 1
            raise ClassroomError(
                "too_many_tracks",
                f"one participant may publish at most {limit} tracks, the offer has {len(wanted)}",
            )
        participant.publisher = transport
        for mid, producer in list(participant.producers.items()):
            if mid not in wanted or wanted[mid].codec != producer.codec:
                producer.close()
        added = []
        for mid, spec in wanted.items():
            if mid in participant.producers:
                continue
            # a primary that left while its standby stood in comes back as the same track
            returning = self.router.returning((participant.identity, spec.source, spec.kind))
            producer = Producer(transport, spec, returning)
            transport.add_producer(producer)
            self.router.add_producer(producer)
            participant.producers[mid] = producer
            producer.on_close.append(functools.partial(self._producer_closed, participant))
            producer.on_layers.append(functools.partial(self._layers_changed, participant))
            added.append(producer)
        if added:
            self._changed()
        for producer in added:
            for listener in list(self.on_track):
                listener(producer, participant)
            message = {"type": "track_published", "track": track_info(producer, participant)}
            await self.broadcast(message, about=participant)
            watchers = [
                other
                for other in self.participants.values()
                if other is not participant
                and other.send is not None
                and self.watching(other, producer, participant)
            ]
            for other in watchers:
                self._subscribe(other, producer, participant)
        for other in list(self.participants.values()):
            await self.negotiate(other)
        return answer

    def watching(self, viewer: Participant, producer: Producer, owner: Participant | None = None) -> bool:
        """Whether `viewer` receives `producer` (of `owner`, if the caller knows it): it may receive
        media, its lesson's kind lets it watch the owner, and it has not turned the track (or its
        owner) down."""
        owner = owner or self.owner_of(producer)
        return (
            owner is not None
            and allowed(viewer, Action.SUBSCRIBE)
            and self.kind.watches(self, viewer, owner)
            and producer.id not in viewer.declined
            and owner.sid not in viewer.declined
        )

    def reconcile(self, viewer: Participant) -> None:
        """Make `viewer`'s subscriptions what `watching` says now (after the stage or a role changed):
        tracks it now watches are added, tracks it no longer watches end; the next offer says so."""
        wanted = {
            producer.id: (producer, owner)
            for owner in self.participants.values()
            if owner is not viewer
            for producer in owner.producers.values()
            if self.watching(viewer, producer, owner)
        }
        for subscription in viewer.subscriptions:
            if (
                subscription.consumer is not None
                and subscription.producer_id not in wanted
                and not self.router.stands_in(subscription.producer_id)
            ):
                self.router.close_consumer(subscription.consumer)
        for producer, owner in wanted.values():
            self._subscribe(viewer, producer, owner)

    def check_stage(self, identity: str) -> None:
        """Refuse bringing `identity` on stage unless it is here and the stage has room."""
        if not self.find(identity):
            raise ClassroomError("not_found", f"nobody called {identity!r} is in this room")
        if identity not in self.stage and len(self.stage) >= MAX_STAGE:
            raise ClassroomError(
                "stage_full", f"at most {MAX_STAGE} may be on stage at once: send one back first"
            )

    async def set_stage(self, identity: str, on: bool) -> None:
        """Bring a participant on stage (everyone watches it) or send it back; everyone is told.
        Moderation.stage is the entry point: it also changes what the participant may do."""
        if on:
            self.check_stage(identity)
        if (identity in self.stage) == on:
            return
        announce = {"type": "stage", "identity": identity, "on": not on, "stage": []}

        def change() -> None:
            (self.stage.add if on else self.stage.discard)(identity)
            announce.update(on=on, stage=sorted(self.stage))

        await self.reveal(identity, change, announce, "off_stage")

    async def reveal(
        self, identity: str, change: Callable[[], None], announce: dict[str, Any] | None, gone: str
    ) -> None:
        """Make a `change` to who watches `identity` (the stage, a speaker's permission), then
        bring everyone's subscriptions in line: `announce` goes to all, and whoever starts or stops
        hearing of the participant gets its participant_joined, or participant_left with `gone`."""
        subjects = self.find(identity)
        viewers = [p for p in self.participants.values() if p.send is not None]
        saw = {(v.sid, s.sid) for v in viewers for s in subjects if self.kind.sees(self, v, s)}
        change()
        self._changed()
        for viewer in viewers:
            self.reconcile(viewer)
        if announce is not None:
            await self.broadcast(announce)
        for viewer in viewers:  # who comes into view, or goes out of it
            for subject in subjects:
                sees = self.kind.sees(self, viewer, subject)
                if viewer is subject or ((viewer.sid, subject.sid) in saw) == sees:
                    continue
                if sees:
                    await viewer.notify({"type": "participant_joined", "participant": subject.info()})
                else:
                    await viewer.notify({"type": "participant_left", "sid": subject.sid, "reason": gone})
        for viewer in viewers:
            await self.negotiate(viewer)

    async def set_subscribed(self, participant: Participant, target: str, subscribed: bool) -> list[str]:
        """Subscribe to or turn down a track, or every track of a participant (`target` is a track
        id or a participant sid), as LiveKit's selective subscription; the tracks it names."""
        owner = self.participants.get(target)
        producers = list(owner.producers.values()) if owner is not None else []
        if owner is None:
            producer = self.find_track(target)
            if producer is None:
                raise ClassroomError("not_found", f"no track or participant {target!r} in this room")
            producers, owner = [producer], self.owner_of(producer)
        assert owner is not None
        if subscribed:
            participant.declined.discard(target)
            if not self.kind.watches(self, participant, owner) or not allowed(participant, Action.SUBSCRIBE):
                raise ClassroomError(
                    "forbidden", f"this {self.kind.name} lesson does not let you watch {target!r}"
                )
            for producer in producers:
                participant.declined.discard(producer.id)
                if self.watching(participant, producer):
                    self._subscribe(participant, producer, owner)
            await self.negotiate(participant)
        else:
            participant.declined.add(target)
            for subscription in participant.subscriptions:
                if subscription.consumer is not None and subscription.producer_id in {
                    p.id for p in producers
                }:
                    self.router.close_consumer(subscription.consumer)  # its section goes, then is reused
        return [p.id for p in producers]

    def _layers_changed(self, owner: Participant, producer: Producer) -> None:
        """Tell the publisher which simulcast layers anyone watches; it stops encoding the others."""
        active = [s.rid or str(s.index) for s in producer.streams if not s.paused_upstream]
        self._spawn(owner.notify({"type": "layers", "track": producer.id, "active": active}))

    def set_view(
        self, participant: Participant, track_id: str, width: int, height: int, enabled: bool
    ) -> None:
        """The size a subscriber shows a track at (adaptive stream): its Consumer picks the layer."""
        subscription = next((s for s in participant.subscriptions if s.producer_id == track_id), None)
        if subscription is None or subscription.consumer is None:
            raise ClassroomError("not_found", f"you do not receive a track {track_id!r}")
        consumer = subscription.consumer
        consumer.set_view(width, height, enabled)
        if consumer.transport.state == "connected" and len(consumer.producer.streams) > 1:
            simulcast.allocate(consumer.transport)

    def _producer_closed(self, owner: Participant, producer: Producer) -> None:
        owner.producers.pop(producer.mid, None)
        self._changed()
        if self.router.stands_in(producer.id):
            return  # its standby feeds its subscribers: for them the track goes on (track_failover)
        if not owner.closed or self.participants:
            message = {"type": "track_unpublished", "track": track_info(producer, owner)}
            self._spawn(self.broadcast(message, about=owner))

    # -- failover (sfu.failover) ------------------------------------------------------------------

    def set_standby(self, by: Participant | None, track_id: str, standby_id: str) -> None:
        """`standby_id` stands in for `track_id` when it falls silent or its publisher leaves."""
        authorize(by, Action.STANDBY)
        primary, standby = self.find_track(track_id), self.find_track(standby_id)
        if primary is None or standby is None:
            missing = track_id if primary is None else standby_id
            raise ClassroomError("not_found", f"no track {missing!r} in this room")
        owner = self.owner_of(primary)
        assert owner is not None
        try:
            self.router.set_standby(primary, standby, (owner.identity, primary.source, primary.kind))
        except ValueError as exc:
            raise ClassroomError("bad_message", str(exc)) from None

    def clear_standby(self, by: Participant | None, track_id: str) -> None:
        authorize(by, Action.STANDBY)
        if not self.router.clear_standby(track_id):
            raise ClassroomError("not_found", f"track {track_id!r} has no standby")

    def _failed_over(self, track_id: str, standby_id: str | None) -> None:
        """Everyone hears which source feeds a track now (None: its own again)."""
        message = {"type": "track_failover", "track": track_id, "standby": standby_id}
        self._spawn(self.broadcast(message))

    def unpublish(self, participant: Participant, track_id: str) -> None:
        producer = next((p for p in participant.producers.values() if p.id == track_id), None)
        if producer is None:
            raise ClassroomError("not_found", f"no track {track_id!r} published by you")
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
        if not allowed(participant, Action.SUBSCRIBE) or participant.media_elsewhere:
            return
        for owner in list(self.participants.values()):
            if owner is participant:
                continue
            for producer in owner.producers.values():
                if self.watching(participant, producer, owner):
                    self._subscribe(participant, producer, owner)

    def _subscribe(self, participant: Participant, producer: Producer, owner: Participant) -> None:
        if participant.media_elsewhere:
            return  # its edge subscribes it, to the edge's mirror of the producer
        if any(s.producer_id == producer.id and s.consumer is not None for s in participant.subscriptions):
            return
        if len(participant.subscriptions) >= MAX_MEDIA_SECTIONS and not any(
            s.free and s.slot.kind == producer.kind for s in participant.subscriptions
        ):
            # an offer past the SDP bounds would be refused by the client or by us: say so instead
            self.limits.refusals["too_many_subscriptions"] += 1
            message = {
                "type": "error",
                "code": "too_many_tracks",
                "message": f"this connection receives at most {MAX_MEDIA_SECTIONS} tracks at once;"
                f" {producer.kind} track {producer.id} of {owner.identity} is not sent",
            }
            self._spawn(participant.notify(message))
            return
        transport = participant.subscriber or self._new_transport(participant, "subscriber")
        participant.subscriber = transport
        mid = str(participant.next_mid)
        participant.next_mid += 1
        consumer = self.router.consume(transport, producer, mid)
        consumer.pause()  # until the answer that announces its SSRC is in
        slot = SubscriberSlot(
            mid=mid,
            kind=producer.kind,
            codec=producer.codec,
            payload_type=producer.codec.payload_type,
            ssrc=consumer.ssrc,
            rtx_ssrc=consumer.rtx_ssrc if producer.kind == "video" else None,
            stream_id=owner.sid,
            track_id=producer.id,
            cname=owner.sid,
        )
        subscription = Subscription(slot, consumer, producer.id)
        subscriptions = participant.subscriptions
        place = next((i for i, s in enumerate(subscriptions) if s.free and s.slot.kind == slot.kind), None)
        if place is None:
            subscriptions.append(subscription)
        else:
            subscriptions[place] = subscription
        consumer.on_close.append(lambda c: self._consumer_closed(participant, subscription))
        participant.renegotiate = True

    def _consumer_closed(self, participant: Participant, subscription: Subscription) -> None:
        subscription.consumer = None
        subscription.slot.ssrc = subscription.slot.rtx_ssrc = None
        first = participant.subscriptions[:1] == [subscription]
        subscription.slot.rejected = not first  # offered with port 0 from now on
        if not participant.closed:
            participant.renegotiate = True
            self._spawn(self.negotiate(participant))

    async def negotiate(self, participant: Participant) -> None:
        """Send a new subscriber offer if the room changed and no offer is outstanding."""
        if participant.closed or participant.send is None or participant.offer_pending:
            return
        if not participant.connected:
            return  # resume() asks again
        if not participant.renegotiate or participant.subscriber is None:
            return
        participant.renegotiate = False
        participant.offer_pending = True
        participant.offered = list(participant.subscriptions)
        sdp = offer_subscribe(participant.subscriber, [s.slot for s in participant.offered])
        mids = {s.slot.mid: s.producer_id for s in participant.offered if s.consumer is not None}
        await participant.notify({"type": "offer", "sdp": sdp, "tracks": mids})

    async def answer(self, participant: Participant, sdp: str) -> None:
        """The participant's answer to our last subscriber offer."""
        transport = participant.subscriber
        if transport is None or not participant.offer_pending:
            raise ClassroomError("unexpected", "no subscriber offer is waiting for an answer")
        try:
            answered = accept_answer(sdp, transport, [s.slot.mid for s in participant.offered])
        except NegotiationError as exc:
            raise ClassroomError("bad_sdp", str(exc)) from None
        participant.offer_pending = False
        for subscription in participant.offered:
            if subscription.slot.rejected:
                subscription.free = True  # the participant has seen it rejected: its place may be reused
        with_rtx = answered_rtx(answered)
        kept = answered_codecs(answered)
        if answered_transport_cc(answered):
            transport.enable_transport_cc()
        for subscription in participant.offered:
            consumer = subscription.consumer
            if consumer is None:
                continue
            if subscription.slot.payload_type not in kept.get(subscription.slot.mid, ()):
                await self._unplayable(participant, consumer)
                continue
            if subscription.slot.mid in with_rtx:
                consumer.rtx_payload_type = RTX_PAYLOAD_TYPES.get(consumer.codec_name)
            if consumer.paused:
                consumer.resume()
        await self.negotiate(participant)

    async def _unplayable(self, participant: Participant, consumer: Consumer) -> None:
        """The subscriber's answer turned a track down (a browser without that decoder rejects its
        section): nothing is sent to it, and it hears which track and codec, rather than seeing a
        tile that never starts."""
        producer = consumer.producer
        owner = self.owner_of(producer)
        self.router.close_consumer(consumer)
        if owner is not None:
            message = {
                "type": "track_unsupported",
                "track": track_info(producer, owner),
                "codec": producer.codec.name,
                "message": f"this client cannot receive {producer.codec.name} {producer.kind}",
            }
            await participant.notify(message)

    def play(self, participant: Participant, offer: str, identity: str | None = None) -> str:
        """WHEP: answer a player's offer with what is published now (by `identity`, if given)."""
        producers = [p for p in self.producers(identity) if self.owner_of(p) is not participant]
        if not producers:
            who = f"participant {identity!r}" if identity else "anyone"
            raise ClassroomError("nothing_to_play", f"nothing is being published by {who} in this room")
        transport = participant.subscriber = self._new_transport(participant, "subscriber")
        try:
            return answer_subscribe_offer(
                offer,
                transport,
                producers,
                lambda mid, producer: self.router.consume(transport, producer, mid),
            )
        except NegotiationError as exc:
            raise ClassroomError("bad_sdp", str(exc)) from None

    # -- administration (the admin API and moderators) ------------------------------------------------

    def info(self, detail: bool = False) -> dict[str, Any]:
        """The room as the admin API shows it: participants counted, or listed with ``detail``."""
        participants = [p.info() for p in self.participants.values()]
        timeout = self.options.empty_timeout
        return {
            "name": self.name,
            "participants": participants if detail else len(participants),
            "max_participants": self.options.max_participants,
            "empty_timeout": int(timeout) if float(timeout).is_integer() else timeout,
            "metadata": dict(self.options.metadata),
            "kind": self.kind.name,
            "created_at": int(self.created_at),
            "tracks": len(self.producers()),
            "codecs": list(self.options.codecs) if self.options.codecs is not None else None,
            "stage": sorted(self.stage),
            "locked": self.moderation.locked,
            "waiting_room": self.options.waiting_room,
            "mode": self.mode.mode,
            "recording": self.mode.recording,
            "lesson": self.options.lesson,
            "school": self.options.school,
            "district": self.options.district,
        }

    def find(self, identity: str) -> list[Participant]:
        """Every session of ``identity``: a classroom box may be in the room by WebSocket and by WHIP."""
        return [p for p in self.participants.values() if p.identity == identity]

    def find_track(self, track_id: str, identity: str | None = None) -> Producer | None:
        """The published track ``track_id`` (of ``identity``, if given), or None."""
        return next((p for p in self.producers(identity) if p.id == track_id), None)

    async def remove(self, identity: str, reason: str = "removed") -> int:
        """Send every session of ``identity`` away; how many there were (0: nobody of that name).

        Removal does not revoke the participant's token: a client may join again with it until it
        expires, so a school that wants someone out for good mints short-lived tokens.
        """
        sessions = self.find(identity)
        await self.disconnect(sessions, reason)
        return len(sessions)

    async def close(self, reason: str = "room_closed") -> None:
        """End the lesson: everyone is told why and removed, then the room and its media go."""
        if self.closed:
            return
        self.closed = True
        self._cancel_expiry()
        await self.moderation.turn_away_all(reason)
        await self.disconnect(list(self.participants.values()), reason)
        if not self.participants:
            self._emptied()

    async def disconnect(self, sessions: list[Participant], reason: str) -> None:
        """Tell each session it is being ended (so its client does not reconnect), then end it."""
        message = {"type": "disconnected", "reason": reason}
        await asyncio.gather(*(p.notify(message) for p in sessions))
        for participant in sessions:
            await self.leave(participant, reason=reason)

    async def set_muted(self, producer: Producer, muted: bool, by: str | None = None) -> dict[str, Any]:
        """Mute or unmute a published track for everyone; returns its track info.

        The server stops forwarding, so the mute holds even if the publisher's client ignores it; the
        owner hears of it like everyone else ("track_muted"), so its client can also turn its microphone
        or camera off. ``by`` is the sid of the moderator who did it, None for the admin API.
        """
        owner = self.owner_of(producer)
        if owner is None:
            raise ClassroomError("not_found", f"track {producer.id} is not published in room {self.name}")
        changed = producer.paused != muted
        if muted:
            producer.pause()
        else:
            producer.resume()
        info = track_info(producer, owner)
        if changed:
            await self.broadcast({"type": "track_muted", "track": info, "by": by}, about=owner)
        return info

    def check_join(self, claims: Claims) -> None:
        """Refuse a join (or a wait in the waiting room) of a closed or locked room."""
        if self.closed:
            raise ClassroomError("room_closed", f"room {self.name} has been closed")
        self.mode.check_join(claims)
        self.moderation.check_lock(claims)

    def _admit(self, claims: Claims, kind: str) -> None:
        """Refuse a join the room cannot take; a join that goes ahead stops the empty-room timer."""
        self.check_join(claims)
        identity = claims.identity
        limits = [n for n in (self.options.max_participants, self.limits.max_participants) if n is not None]
        if limits and len(self.participants) >= min(limits):
            limit = min(limits)
            # a session replacing its own identity (a reconnecting box) frees its place as it takes it
            staying = sum(
                1 for p in self.participants.values() if not (p.identity == identity and p.kind == kind)
            )
            if staying >= limit:
                self.limits.refusals["room_full"] += 1
                raise ClassroomError("room_full", f"room {self.name} is full ({limit} participants)")
        self._cancel_expiry()

    def release_if_empty(self) -> None:
        """Close the room if nobody is in it: one opened for an edge that brought nobody (cluster.edge)."""
        if not self.participants:
            self._emptied()

    def _emptied(self) -> None:
        """Nobody is in the room: close it now, or after ``empty_timeout`` for a created room."""
        self._cancel_expiry()
        if self._joining or self.participants:
            return
        if self.closed or self.options.empty_timeout <= 0:
            self.closed = True
            self._on_empty(self)
        else:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(self.options.empty_timeout, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        if not self.participants and not self._joining:
            self.closed = True
            self._spawn(self.moderation.turn_away_all("room_closed"))
            self._on_empty(self)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

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
