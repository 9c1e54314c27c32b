"""What the light peer (loadtest/) costs per packet, in process and without sockets.

A load test drives hundreds of subscribers from one process, so the receive path decides how many
one core can hold: SRTP unprotect, the sequence accounting and, once per frame, keyframe and latency
bookkeeping; with transport-cc also the arrival record and, every 100 ms, the feedback built from
it (measured per packet, as a subscriber receiving one such stream spends it). The publisher side
(packetize a pre-encoded VP8 frame, protect) is measured too. Real SRTP contexts
(AEAD_AES_128_GCM, as the server negotiates first), a 640x360 ~1 Mbit/s clip.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time

from loadtest.clips import Layer, video_clip
from loadtest.connection import Connection
from loadtest.instream import InStream
from loadtest.outstream import OutStream
from loadtest.subscriber import Subscriber
from loadtest.transport_cc import FEEDBACK_INTERVAL, FeedbackSender
from sfu.codecs import TRANSPORT_CC_ID
from sfu.rtp import insert_extension_slot, one_byte_element
from sfu.srtp import AEAD_AES_128_GCM, SrtpContext

SERVER = ("127.0.0.1", 9)
LAYER = Layer("", 640, 360, 1_000_000)
FPS = 30


def _contexts() -> tuple[SrtpContext, SrtpContext]:
    key = os.urandom(AEAD_AES_128_GCM.key_length + AEAD_AES_128_GCM.salt_length)
    return SrtpContext(AEAD_AES_128_GCM, key, True), SrtpContext(AEAD_AES_128_GCM, key, False)


def _packets(count: int) -> tuple[OutStream, list[bytes]]:
    """`count` plain RTP packets of the clip, as a publishing peer sends them (frames in order)."""
    out = OutStream(
        "video", LAYER, video_clip(LAYER.width, LAYER.height, LAYER.bitrate, FPS, 2.0, 30), "0", FPS
    )
    packets: list[bytes] = []

    def keep(packet: bytes) -> bool:
        packets.append(packet)
        return True

    for n in range(count):  # each frame is at least one packet
        if len(packets) >= count:
            break
        out.send_frame(n, keep)
    return out, packets[:count]


def _numbered(packets: list[bytes]) -> list[bytes]:
    """The packets as the server sends them to a subscriber that took transport-cc."""
    slot = one_byte_element(TRANSPORT_CC_ID, 2)
    out = []
    for seq, packet in enumerate(packets):
        buf = bytearray(packet)
        struct.pack_into("!H", buf, insert_extension_slot(buf, slot), seq & 0xFFFF)
        out.append(bytes(buf))
    return out


async def receive_cost(count: int = 3000, rounds: int = 3, transport_cc: bool = False) -> float:
    """Best-of-`rounds` microseconds per received SRTP packet in a subscriber, datagram to counters;
    with `transport_cc`, feedback is built every FEEDBACK_INTERVAL worth of a ~1 Mbit/s stream."""
    tx, rx = _contexts()
    out, plain = _packets(count * rounds)
    if transport_cc:
        plain = _numbered(plain)
    protected = [tx.protect(p) for p in plain]
    connection = Connection("subscriber", lambda p: None, lambda d: None)
    subscriber = Subscriber(connection, None, transport_cc)
    if transport_cc:
        subscriber.twcc = FeedbackSender(subscriber.ssrc, TRANSPORT_CC_ID)
    connection.on_rtp, connection.on_rtcp = subscriber.on_rtp, subscriber.on_rtcp
    connection.remote, connection.srtp_rx = SERVER, rx
    stream = InStream("TR_1", "0", "video", "VP8", 90000, out.ssrc, subscriber.ssrc, connection.send_rtcp)
    subscriber.streams[out.ssrc] = stream
    received = connection.datagram_received
    packets_per_second = sum(len(f.chunks) for f in out.clip) / (len(out.clip) / FPS)
    per_feedback = max(1, round(packets_per_second * FEEDBACK_INTERVAL))
    best = float("inf")
    for r in range(rounds):
        batch = protected[r * count : (r + 1) * count]  # fresh packets: SRTP refuses replays
        start = time.perf_counter()
        for i, data in enumerate(batch):
            received(data, SERVER)
            if transport_cc and i % per_feedback == per_feedback - 1:
                subscriber.send_feedback()
        best = min(best, (time.perf_counter() - start) / len(batch) * 1e6)
    if stream.packets != len(protected) or connection.errors or connection.srtp_errors:
        raise RuntimeError(f"the subscriber counted {stream.packets} of {len(protected)} packets")
    if transport_cc and (subscriber.twcc is None or subscriber.twcc.reported < len(protected) - per_feedback):
        raise RuntimeError("the subscriber did not report the packets it received")
    return best


async def send_cost(frames: int = 300, rounds: int = 3) -> float:
    """Best-of-`rounds` microseconds per packet a publisher sends: packetize, protect, hand to the socket."""
    tx, _ = _contexts()
    connection = Connection("publisher", lambda p: None, lambda d: None)
    connection.srtp_tx = tx  # no socket: _send_raw drops the datagram, as a full kernel buffer would not
    out = OutStream(
        "video", LAYER, video_clip(LAYER.width, LAYER.height, LAYER.bitrate, FPS, 2.0, 30), "0", FPS
    )
    best = float("inf")
    n = 0
    for _ in range(rounds):
        before = out.packets
        start = time.perf_counter()
        for _ in range(frames):
            out.send_frame(n, connection.send_rtp)
            n += 1
        best = min(best, (time.perf_counter() - start) / (out.packets - before) * 1e6)
    return best


async def run() -> dict[str, float]:
    return {
        "us_per_received_packet": await receive_cost(),
        "us_per_received_packet_with_transport_cc": await receive_cost(transport_cc=True),
        "us_per_sent_packet": await send_cost(),
    }


if __name__ == "__main__":
    for name, value in asyncio.run(run()).items():
        print(f"{name:<42} {value:8.2f} us")
