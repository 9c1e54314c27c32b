"""Router: the media of one room, its Producers and the rules that join them to Consumers.

The Router is the one place that decides which Producer feeds which Consumer: a subscription is
`consume`, its end `close_consumer`, and a source failover, a stage change or a cascade is
`reassign`, which moves a Consumer to another Producer of the same kind and codec while its
subscriber keeps seeing one continuous stream (Consumer.switch_to continues the numbering).
"""

from __future__ import annotations

from collections.abc import Callable

from . import simulcast
from .consumer import Consumer
from .producer import Producer
from .transport import WebRtcTransport


class Router:
    def __init__(self, room: str) -> None:
        self.room = room
        self.producers: dict[str, Producer] = {}
        self.on_producer_close: list[Callable[[Producer], None]] = []

    def add_producer(self, producer: Producer) -> None:
        self.producers[producer.id] = producer
        producer.on_close.append(self._producer_closed)

    def _producer_closed(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)
        for callback in list(self.on_producer_close):
            callback(producer)

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
        for producer in list(self.producers.values()):
            for stream in producer.streams:
                stream.tick(now, elapsed)
            if simulcast.update_upstream(producer, now):
                producer.layers_changed()

    def close(self) -> None:
        for producer in list(self.producers.values()):
            producer.close()
