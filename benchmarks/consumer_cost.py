"""In-process cost of the forwarding path: microseconds per packet per Consumer.

A Producer stream fans a 1200-byte VP8 packet out to N Consumers whose Transports have real SRTP
contexts (AEAD_AES_128_GCM, as browsers negotiate) and a send function that only counts (the
reference path, Consumer.send, without the kernel's part). The slope between 1 and N+1 Consumers is
what one more subscriber costs the server per packet. The last two figures send for real, to a
loopback socket: through Python, and through the compiled fan-out that the server uses.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from sfu import codecs
from sfu.consumer import Consumer
from sfu.fanout import Sender
from sfu.pipe import pipe_in, pipe_out
from sfu.plain_transport import PlainRtp
from sfu.producer import CodecSpec, Producer, ProducerSpec
from sfu.router import Router
from sfu.srtp import AEAD_AES_128_GCM, SrtpContext
from sfu.twcc import SendHistory

PACKET_SIZE = 1200


@dataclass
class FakeNode:
    """What a Transport reads from its Node."""

    keyframe_requests: int = 0
    errors: int = 0
    repairs: int = 0

    def retire(self, consumer: Consumer) -> None:
        pass


class FakeTransport:
    """A connected Transport: real SRTP, a sendto that counts instead of sending."""

    def __init__(self, transport_cc: bool = False) -> None:
        key = os.urandom(AEAD_AES_128_GCM.key_length + AEAD_AES_128_GCM.salt_length)
        self.srtp_tx: SrtpContext | None = SrtpContext(AEAD_AES_128_GCM, key, True)
        self.remote_addr = ("127.0.0.1", 9)
        self.sender = None  # no compiled Sender: Consumers send through Python, to sendto below
        self.node = FakeNode()
        self.ext_table: bytes | None = None
        self.ext_ids: dict[str, int] = {}
        self.sent = 0
        self.consumers: dict[int, Consumer] = {}
        self.twcc = SendHistory() if transport_cc else None  # what a Chromium subscriber negotiates

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent += 1

    def send_keyframe_request(self, producer: Producer, ssrc: int) -> None:
        pass

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers[consumer.ssrc] = consumer

    def add_producer(self, producer: Producer) -> None:
        pass


def vp8_packets(count: int) -> list[bytes]:
    """Keyframe-first VP8 packets with increasing sequence numbers and 30 fps timestamps."""
    packets = []
    for i in range(count):
        header = bytes([0x80, 96]) + (i & 0xFFFF).to_bytes(2, "big") + (i // 8 * 3000).to_bytes(4, "big")
        header += (0x1234).to_bytes(4, "big")
        descriptor = bytes([0x90, 0x80, 0x80 | (i >> 8 & 0x7F), i & 0xFF])  # X, S, 15-bit picture id
        frame_tag = bytes([0x00 if i == 0 else 0x01])  # keyframe first, then interframes
        payload = frame_tag + os.urandom(PACKET_SIZE - len(header) - len(descriptor) - 1)
        packets.append(header + descriptor + payload)
    return packets


# A WHEP player's own extension ids (Chromium's recvonly offer), which its Consumers rewrite into.
PLAYER_IDS = {2: codecs.URI_ABS_SEND_TIME, 3: codecs.URI_VIDEO_ORIENTATION, 4: codecs.URI_TRANSPORT_CC}


class SendingTransport(FakeTransport):
    """Sends for real, to a loopback socket nobody reads (the kernel drops what overflows it): through
    Python's socket.sendto, or with `compiled` through the compiled fan-out's Sender (sfu/fanout.py)."""

    def __init__(self, out: socket.socket, sink: Any, transport_cc: bool, compiled: bool) -> None:
        super().__init__(transport_cc)
        self.remote_addr = sink
        self.out = out
        if compiled and Sender is not None:
            assert self.srtp_tx is not None
            self.sender = Sender(out.fileno(), out.sendto)
            self.sender.key(*self.srtp_tx.protect_pointers(), owner=self.srtp_tx)
            self.sender.point(sink)
            self.sender.history = self.twcc

    def sendto(self, data: bytes, addr: Any) -> None:
        self.out.sendto(data, addr)


async def measure(
    consumers: int,
    packets: list[bytes],
    rounds: int = 3,
    transport_cc: bool = True,
    own_ids: bool = False,
    send: str = "",
) -> float:
    """Best-of-`rounds` microseconds per received packet with `consumers` subscribers; with `own_ids`,
    each subscriber chose its own extension ids (a WHEP player), as Consumer.ext_table rewrites. With
    `send` "python" or "compiled", the packets really go out on a loopback socket, that way."""
    spec = ProducerSpec(
        kind="video",
        mid="0",
        codec=CodecSpec("VP8", "video", 96, 90000, None, "", None),
        publisher_payload_type=96,
        publisher_rtx_payload_type=None,
    )
    producer = Producer(FakeTransport(), spec)  # type: ignore[arg-type]
    stream = producer.streams[0]
    stream.ssrc = 0x1234
    out, sink = (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
    )
    out.bind(("127.0.0.1", 0))
    sink.bind(("127.0.0.1", 0))
    transports = [
        SendingTransport(out, sink.getsockname(), transport_cc, send == "compiled")
        if send
        else FakeTransport(transport_cc)
        for _ in range(consumers)
    ]
    made = []
    for transport in transports:
        consumer = Consumer(transport, producer, "0")  # type: ignore[arg-type]
        if own_ids:
            consumer.ext_table = codecs.output_table(PLAYER_IDS, range(1, 12))
        consumer.attach(stream)
        made.append(consumer)
    receive = stream.receive
    receive(packets[0])  # the keyframe: every Consumer syncs
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for packet in packets[1:]:
            receive(packet)
        best = min(best, (time.perf_counter() - start) / (len(packets) - 1) * 1e6)
    out.close()
    sink.close()
    assert all(c.packets >= len(packets) for c in made), "every Consumer forwarded every packet"
    return best


class CapturingPipe(FakeTransport):
    """The origin's end of a pipe: plain RTP (sfu.plain_transport.PlainRtp), datagrams kept."""

    def __init__(self) -> None:
        super().__init__()
        self.srtp_tx = PlainRtp()  # type: ignore[assignment]
        self.datagrams: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.datagrams.append(data)


def _video_spec() -> ProducerSpec:
    return ProducerSpec(
        kind="video",
        mid="0",
        codec=CodecSpec("VP8", "video", 96, 90000, None, "", None),
        publisher_payload_type=96,
        publisher_rtx_payload_type=None,
    )


def _timed(receive: Any, packets: list[bytes], rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for packet in packets:
            receive(packet)
        best = min(best, (time.perf_counter() - start) / len(packets) * 1e6)
    return best


async def pipe_hop(packets: list[bytes]) -> float:
    """Microseconds a packet costs to cross a pipe (sfu.pipe) to one more Node: the origin's pinned
    Consumer writing it to the pipe, and the edge's mirror taking it in, to one subscriber there,
    less what that subscriber would have cost on the origin. The sendto and recv of the datagram
    are the kernel's, as for any subscriber, and not in it."""
    origin = Producer(FakeTransport(), _video_spec())  # type: ignore[arg-type]
    origin.streams[0].ssrc = 0x1234
    pipe = CapturingPipe()
    description = pipe_out(pipe, origin)  # type: ignore[arg-type]
    origin.streams[0].receive(packets[0])
    sending = _timed(origin.streams[0].receive, packets[1:])
    crossed = pipe.datagrams[len(pipe.datagrams) - (len(packets) - 1) :]
    router = Router("bench")
    mirror = pipe_in(router, FakeTransport(), description)  # type: ignore[arg-type]
    subscriber = FakeTransport(True)
    Consumer(subscriber, mirror, "0").attach(mirror.streams[0])  # type: ignore[arg-type]
    mirror.streams[0].receive(pipe.datagrams[0])
    receiving = _timed(mirror.streams[0].receive, crossed)
    direct = await measure(1, packets)
    return sending + receiving - direct


async def run(extra: int = 50, count: int = 4000) -> dict[str, float]:
    packets = vp8_packets(count)
    one = await measure(1, packets)
    many = await measure(1 + extra, packets)
    plain = await measure(1 + extra, packets, transport_cc=False)
    players = await measure(1 + extra, packets, own_ids=True)
    sent = {way: await measure(1 + extra, packets, send=way) for way in ("python", "compiled")}
    sent_one = {way: await measure(1, packets, send=way) for way in ("python", "compiled")}
    return {
        "us_per_packet_1_consumer": one,
        f"us_per_packet_{1 + extra}_consumers": many,
        "us_per_packet_per_extra_consumer": (many - one) / extra,
        "us_per_packet_per_extra_consumer_without_transport_cc": (plain - one) / extra,
        "us_per_packet_per_extra_whep_player_own_extension_ids": (players - one) / extra,
        "us_per_packet_pipe_hop_to_another_node": await pipe_hop(packets),
        # with the send (loopback, nobody reading): the reference path against the compiled fan-out
        "us_per_packet_per_extra_consumer_sent_through_python": (sent["python"] - sent_one["python"]) / extra,
        "us_per_packet_per_extra_consumer_sent_compiled": (sent["compiled"] - sent_one["compiled"]) / extra,
    }


if __name__ == "__main__":
    print(asyncio.run(run()))
