"""Router: the media of one room, its Producers and the rules that join them to Consumers.

The Router is the one place that decides which Producer feeds which Consumer: a subscription is
`consume`, its end `close_consumer`, and a source failover, a stage change or a cascade is
`reassign`, which moves a Consumer to another Producer of the same kind and codec while its
subscriber keeps seeing one continuous stream (Consumer.switch_to continues the numbering).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from . import failover, simulcast
from .consumer import Consumer
from .failover import Standby
from .producer import Producer
from .transport import WebRtcTransport


class Router:
    def __init__(self, room: str) -> None:
        self.room = room
        self.producers: dict[str, Producer] = {}
        self.on_producer_close: list[Callable[[Producer], None]] = []
        self.standbys: dict[str, Standby] = {}  # by the primary's track id (sfu.failover)
        # (track id, standby track id or None): a primary's Consumers moved to its standby, or back
        self.on_failover: list[Callable[[str, str | None], None]] = []
        self._watch: asyncio.TimerHandle | None = None
        self.silence = failover.SILENCE

    def add_producer(self, producer: Producer) -> None:
        self.producers[producer.id] = producer
        producer.on_close.append(self._producer_closed)
        standby = self.standbys.get(producer.id)
        if standby is not None and standby.primary is not producer:  # the primary is back
            standby.primary = producer
            standby.packets, standby.last_heard = -1, time.monotonic()

    def _producer_closed(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)
        standby = self.standbys.get(producer.id)
        # before Producer.close ends the Consumers it still has, they move to the standby
        if (
            standby is not None
            and standby.primary is producer
            and not (standby.on_standby or standby.standby.closed)
        ):
            self._fail_over(standby)
        for key, other in list(self.standbys.items()):
            if other.standby is producer:  # the standby is gone: nothing stands in any more
                del self.standbys[key]
        for callback in list(self.on_producer_close):
            callback(producer)

    # -- failover (sfu.failover) ---------------------------------------------------------------

    def set_standby(
        self, primary: Producer, standby: Producer, key: tuple[str, str, str] | None = None
    ) -> None:
        """`standby` stands in for `primary` when it falls silent or leaves; `key` names who may
        publish the primary again under its track id."""
        failover.check(primary, standby)
        old = self.standbys.get(primary.id)
        if old is not None and old.on_standby:
            failover.fail_back(old)
        self.standbys[primary.id] = Standby(primary, standby, key, packets=failover.packets(primary))
        if self._watch is None:
            self._watch = asyncio.get_running_loop().call_later(failover.WATCH, self._look)

    def clear_standby(self, track_id: str) -> bool:
        standby = self.standbys.pop(track_id, None)
        if standby is None:
            return False
        if standby.on_standby and not standby.primary.closed:
            failover.fail_back(standby)
        elif standby.on_standby:
            for consumer in standby.moved:  # nothing left to show: the subscription ends
                consumer.close()
        return True

    def stands_in(self, track_id: str) -> bool:
        """Whether a standby feeds `track_id`'s subscribers while its primary is gone."""
        standby = self.standbys.get(track_id)
        return standby is not None and standby.on_standby and standby.primary.closed

    def returning(self, key: tuple[str, str, str]) -> str | None:
        """The track id a participant publishing `key` (owner, source, kind) takes again: that of its
        primary which left while a standby stood in."""
        for track_id, standby in self.standbys.items():
            if standby.key == key and standby.primary.closed:
                return track_id
        return None

    def _look(self) -> None:
        self._watch = None
        now = time.monotonic()
        for standby in list(self.standbys.values()):
            count = failover.packets(standby.primary)
            if count != standby.packets:
                standby.packets, standby.last_heard = count, now
            silent = standby.primary.closed or now - standby.last_heard > self.silence
            if silent and not standby.on_standby and not standby.standby.closed:
                self._fail_over(standby)
            elif not silent and standby.on_standby and now - standby.last_heard < failover.WATCH * 2:
                failover.fail_back(standby)
                for callback in list(self.on_failover):
                    callback(standby.track_id, None)
        if self.standbys:
            self._watch = asyncio.get_running_loop().call_later(failover.WATCH, self._look)

    def _fail_over(self, standby: Standby) -> None:
        failover.fail_over(standby)
        for callback in list(self.on_failover):
            callback(standby.track_id, standby.standby.id)

    def consume(self, transport: WebRtcTransport, producer: Producer, mid: str) -> Consumer:
        """A Consumer of `producer` on `transport`, forwarding the best layer the publisher sends."""
        consumer = Consumer(transport, producer, mid)
        transport.add_consumer(consumer)
        consumer.attach(producer.best_stream())
        return consumer

    def close_consumer(self, consumer: Consumer) -> None:
        """End a subscription: the Consumer stops and leaves its Producer and Transport."""
        consumer.close()

    def reassign(self, consumer: Consumer, producer: Producer) -> None:
        """Feed `consumer` from `producer` from the new source's next keyframe on; until then the old
        one keeps flowing. The subscriber negotiated one codec for this Consumer, so the new
        Producer must send the same kind in the same codec."""
        if producer.kind != consumer.kind or producer.codec.name != consumer.codec_name:
            raise ValueError(
                f"cannot feed a {consumer.codec_name} {consumer.kind} Consumer from {producer.codec.name}"
                f" {producer.kind}"
            )
        if producer is consumer.producer or producer.closed:
            return
        consumer.move_to(producer)

    def tick(self, now: float, elapsed: float) -> None:
        """Layer bitrates and liveness, then which layers the publishers may stop sending."""
        resting = {s.primary.id for s in self.standbys.values() if s.on_standby}
        for producer in list(self.producers.values()):
            for stream in producer.streams:
                stream.tick(now, elapsed)
            if producer.id in resting:
                continue  # a primary on standby keeps its layers coming: it is how we hear it is back
            if simulcast.update_upstream(producer, now):
                producer.layers_changed()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self.standbys.clear()
        for producer in list(self.producers.values()):
            producer.close()
