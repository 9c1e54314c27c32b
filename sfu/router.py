"""Router: the media of one room, its Producers and the rules that join them to Consumers."""

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
