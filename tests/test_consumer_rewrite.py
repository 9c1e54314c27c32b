"""Unit tests for the Consumer's header rewrite: keyframe start, continuous sequence numbers,
timestamp deltas, layer switches and NACK answers.

Built on the fake Transport of benchmarks/consumer_cost.py; what the Consumer "sends" is captured
from `srtp_tx.protect_rewritten` (the rewritten header fields) and, in one test, decrypted with a
matching inbound SRTP context to show the bytes on the wire carry the same header.
"""

from __future__ import annotations

import itertools
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# benchmarks/ is not an installed package: make the repository root importable when pytest runs
# from its entry-point script (python -m pytest already has it on sys.path).
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from benchmarks.consumer_cost import FakeTransport, vp8_packets  # noqa: E402
from sfu import codecs  # noqa: E402
from sfu.codecs import TRANSPORT_CC_ID  # noqa: E402
from sfu.consumer import Consumer  # noqa: E402
from sfu.producer import CodecSpec, Producer, ProducerSpec, RtpStream, StreamSpec  # noqa: E402
from sfu.router import Router  # noqa: E402
from sfu.rtp import extensions, rewrite_vp8_picture  # noqa: E402
from sfu.srtp import AEAD_AES_128_GCM, SrtpContext  # noqa: E402
from sfu.twcc import SendHistory  # noqa: E402

VP8 = CodecSpec("VP8", "video", 96, 90000, None, "", 97)
OPUS = CodecSpec("opus", "audio", 111, 48000, 2, "minptime=10;useinbandfec=1", None)
NTP_SECOND = 1 << 32


@dataclass
class Sent:
    packet: bytes  # the Producer's packet, as handed to the SRTP context
    pt: int
    seq: int
    ts: int
    ssrc: int


class CaptureTx:
    """Stands in for the outbound SrtpContext: records the rewrite instead of encrypting."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def protect_rewritten(
        self,
        packet: bytes,
        pt: int,
        seq: int,
        ts: int,
        ssrc: int,
        vp8: tuple[int, int] | None = None,
        twcc_at: int = -1,
        twcc_seq: int = 0,
        ext_table: bytes | None = None,
    ) -> bytes:
        if vp8 is not None:
            out = bytearray(packet)
            rewrite_vp8_picture(out, packet, *vp8)
            packet = bytes(out)
        assert ext_table is None, "these Consumers serve subscribers that took the router's ids"
        self.sent.append(Sent(published(packet), pt, seq, ts, ssrc))
        return b"srtp"


def published(packet: bytes) -> bytes:
    """The packet without the transport-cc slot the Producer adds: what the publisher sent."""
    start = 12 + 4 * (packet[0] & 0x0F)
    if not packet[0] & 0x10 or packet[start : start + 2] != b"\xbe\xde":
        return packet
    words = int.from_bytes(packet[start + 2 : start + 4], "big")
    end = start + 4 + 4 * words
    if packet[end - 4] != (TRANSPORT_CC_ID << 4 | 1):
        return packet
    if words == 1:  # the block was added for the slot alone
        return bytes([packet[0] & ~0x10]) + packet[1:start] + packet[end:]
    head = packet[: start + 2] + (words - 1).to_bytes(2, "big") + packet[start + 4 : end - 4]
    return head + packet[end:]


class CapturingTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.tx = CaptureTx()
        self.srtp_tx = self.tx  # type: ignore[assignment]
        self.keyframe_requests: list[int] = []
        self.datagrams: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        super().sendto(data, addr)
        self.datagrams.append(bytes(data))

    def send_keyframe_request(self, producer: Producer, ssrc: int) -> None:
        self.keyframe_requests.append(ssrc)

    @property
    def out(self) -> list[Sent]:
        """What the Consumer handed to SRTP, in order (the benchmark's `sent` is a count)."""
        return self.tx.sent


def vp8(seq: int, ts: int, ssrc: int, key: bool = False, marker: bool = False, size: int = 40) -> bytes:
    """One VP8 packet starting a frame: keyframe (P=0) or interframe (P=1)."""
    header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 96, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    descriptor = bytes([0x90, 0x80, 0x80 | (seq >> 8 & 0x7F), seq & 0xFF])
    tag = b"\x50\x42\x00\x9d\x01\x2a" if key else b"\x31\x0b\x00"
    return header + descriptor + tag + bytes(range(size))


def producer_with(*rids: str | None, codec: CodecSpec = VP8) -> Producer:
    spec = ProducerSpec(
        kind=codec.kind,
        mid="1",
        codec=codec,
        publisher_payload_type=codec.payload_type,
        publisher_rtx_payload_type=codec.rtx_payload_type,
        streams=[StreamSpec(rid=rid) for rid in rids],
    )
    return Producer(CapturingTransport(), spec)  # type: ignore[arg-type]


def keyframe_requests(producer: Producer) -> list[int]:
    """SSRCs the publisher's Transport was asked to send PLI/FIR for."""
    transport = producer.transport
    assert isinstance(transport, CapturingTransport)
    return transport.keyframe_requests


def subscribe(producer: Producer, stream: RtpStream | None = None) -> tuple[Consumer, CapturingTransport]:
    transport = CapturingTransport()
    consumer = Consumer(transport, producer, "0")  # type: ignore[arg-type]
    consumer.attach(stream or producer.streams[0])
    return consumer, transport


def diffs(values: list[int], bits: int) -> list[int]:
    mask = (1 << bits) - 1
    return [(b - a) & mask for a, b in itertools.pairwise(values)]


# --- starting on a keyframe ---------------------------------------------------------------------


def test_video_waits_for_a_keyframe() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    stream.ssrc = 0xAAAA
    consumer, transport = subscribe(producer)
    assert keyframe_requests(producer) == [0xAAAA]  # attaching asks the publisher for a keyframe
    first_seq = consumer.last_seq
    for seq in range(100, 105):
        stream.receive(vp8(seq, seq * 3000, 0xAAAA))
    assert transport.out == [] and consumer.packets == 0
    stream.receive(vp8(105, 105 * 3000, 0xAAAA, key=True))
    for seq in range(106, 110):
        stream.receive(vp8(seq, seq * 3000, 0xAAAA))
    assert [s.packet[1] for s in transport.out] == [96] * 5
    assert transport.out[0].packet == vp8(105, 105 * 3000, 0xAAAA, key=True)
    assert transport.out[0].seq == (first_seq + 1) & 0xFFFF
    assert consumer.packets == 5 and len(transport.datagrams) == 5


def test_benchmark_packets_start_on_their_keyframe() -> None:
    producer = producer_with(None)
    consumer, transport = subscribe(producer)
    packets = vp8_packets(24)
    for packet in packets[1:8]:  # interframes only
        producer.streams[0].receive(packet)
    assert transport.out == []
    for packet in packets:  # the keyframe, then everything after it
        producer.streams[0].receive(packet)
    assert len(transport.out) == 24 and consumer.packets == 24
    assert consumer.bytes == sum(len(p) + 8 for p in packets)  # each gained a transport-cc slot


def test_audio_needs_no_keyframe() -> None:
    producer = producer_with(None, codec=OPUS)
    _, transport = subscribe(producer)
    assert keyframe_requests(producer) == []
    header = struct.pack("!BBHII", 0x80, 111, 7, 960, 0xBBBB)
    producer.streams[0].receive(header + b"\xfc\xff\xfe")
    assert len(transport.out) == 1 and transport.out[0].pt == 111


def test_nothing_is_sent_before_srtp_keys() -> None:
    producer = producer_with(None)
    consumer, transport = subscribe(producer)
    transport.srtp_tx = None
    producer.streams[0].receive(vp8(1, 0, 0xAAAA, key=True))
    transport.srtp_tx = transport.tx  # type: ignore[assignment]
    producer.streams[0].receive(vp8(2, 0, 0xAAAA))  # the keyframe was not seen: still waiting
    assert transport.out == [] and not consumer.synced
    producer.streams[0].receive(vp8(3, 3000, 0xAAAA, key=True))
    assert len(transport.out) == 1


# --- continuous output ---------------------------------------------------------------------------


def test_sequence_numbers_continue_and_timestamps_keep_their_deltas() -> None:
    producer = producer_with(None)
    consumer, transport = subscribe(producer)
    consumer.last_seq, consumer.last_ts = 0xFFF0, 0xFFFFF000  # both wrap during the test
    consumer.payload_type = 100  # a WHEP player's own payload type
    packets = vp8_packets(64)
    for packet in packets:
        producer.streams[0].receive(packet)
    sent = transport.out
    assert len(sent) == 64
    assert sent[0].seq == 0xFFF1 and sent[0].ts == 0xFFFFF001
    assert diffs([s.seq for s in sent], 16) == [1] * 63
    in_ts = [struct.unpack_from("!I", p, 4)[0] for p in packets]
    assert diffs([s.ts for s in sent], 32) == diffs(in_ts, 32)
    assert {s.ssrc for s in sent} == {consumer.ssrc} and {s.pt for s in sent} == {100}
    assert [s.packet for s in sent] == packets  # the payload goes out unchanged
    assert (consumer.last_seq, consumer.last_ts) == (sent[-1].seq, sent[-1].ts)


def test_incoming_wrap_and_gaps_are_passed_through() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    _, transport = subscribe(producer)
    seqs = [0xFFFC, 0xFFFD, 0xFFFF, 0x0000, 0x0001, 0x0004]  # 0xFFFE, 2 and 3 are lost upstream
    for i, seq in enumerate(seqs):
        stream.receive(vp8(seq, 0xFFFFFF00 + i * 100, 0xAAAA, key=i == 0))
    assert diffs([s.seq for s in transport.out], 16) == [1, 2, 1, 1, 3]  # the subscriber NACKs them
    assert diffs([s.ts for s in transport.out], 32) == [100] * 5


def test_reordered_packets_keep_their_place() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    consumer, transport = subscribe(producer)
    for seq in (10, 11, 13, 12, 14):
        stream.receive(vp8(seq, 9000, 0xAAAA, key=seq == 10))
    base = transport.out[0].seq
    assert [(s.seq - base) & 0xFFFF for s in transport.out] == [0, 1, 3, 2, 4]
    assert consumer.last_seq == (base + 4) & 0xFFFF
    stream.receive(vp8(9, 6000, 0xAAAA))  # older than the keyframe the Consumer started on
    assert len(transport.out) == 5


def test_marker_bit_survives() -> None:
    producer = producer_with(None)
    _, transport = subscribe(producer)
    producer.streams[0].receive(vp8(1, 0, 0xAAAA, key=True, marker=True))
    assert transport.out[0].packet[1] & 0x80


def test_wire_bytes_decrypt_to_the_rewritten_header() -> None:
    key = bytes(range(AEAD_AES_128_GCM.key_length + AEAD_AES_128_GCM.salt_length))
    producer = producer_with(None)
    transport = CapturingTransport()
    transport.srtp_tx = SrtpContext(AEAD_AES_128_GCM, key, True)
    consumer = Consumer(transport, producer, "0")  # type: ignore[arg-type]
    consumer.attach(producer.streams[0])
    consumer.payload_type = 98
    consumer.last_seq, consumer.last_ts = 41, 1_000_000
    packets = [vp8(500 + i, 20_000 + i * 3000, 0xAAAA, key=i == 0, marker=i == 2) for i in range(3)]
    for packet in packets:
        producer.streams[0].receive(packet)
    rx = SrtpContext(AEAD_AES_128_GCM, key, False)
    plain = [rx.unprotect(data) for data in transport.datagrams]
    for i, (packet, data) in enumerate(zip(packets, plain, strict=True)):
        marker_pt, seq, ts, ssrc = struct.unpack_from("!BHII", data, 1)
        assert (marker_pt & 0x7F, seq, ts, ssrc) == (98, 42 + i, 1_000_001 + i * 3000, consumer.ssrc)
        assert bool(marker_pt & 0x80) == (i == 2)
        assert published(data)[0] == packet[0] and published(data)[12:] == packet[12:]


# --- switching streams ---------------------------------------------------------------------------


def two_layer_producer() -> tuple[Producer, RtpStream, RtpStream]:
    producer = producer_with("q", "f")
    q, f = producer.streams
    q.ssrc, f.ssrc = 0x1111, 0x2222
    assert producer.stream_by_rid("q") is q and producer.stream_by_rid("f") is f
    return producer, q, f


def test_switch_continues_sequence_numbers_and_waits_for_the_keyframe() -> None:
    producer, q, f = two_layer_producer()
    consumer, transport = subscribe(producer, q)
    for i in range(10):  # q: seq 5000.., ts 100000..
        q.receive(vp8(5000 + i, 100_000 + i * 3000, 0x1111, key=i == 0))
    last = transport.out[-1]
    # the publisher's reports: f's 7_000_000 was captured half a second after q's 100_000
    q.stats.on_sender_report(1000 * NTP_SECOND, 100_000)
    f.stats.on_sender_report(1000 * NTP_SECOND + NTP_SECOND // 2, 7_000_000)

    consumer.attach(f)
    assert keyframe_requests(producer) == [0x1111, 0x2222]
    assert f.pending == [consumer] and q.consumers == [consumer], "q flows until f's keyframe"
    for i in range(5):  # f runs on its own numbering: interframes are not forwarded yet
        f.receive(vp8(30000 + i, 7_000_000 + i * 3000, 0x2222))
    assert len(transport.out) == 10

    for i in range(5, 12):  # f's keyframe, then more
        f.receive(vp8(30000 + i, 7_000_000 + i * 3000, 0x2222, key=i == 5))
    sent = transport.out
    assert len(sent) == 17
    assert f.consumers == [consumer] and q.consumers == [] and f.pending == []
    assert sent[10].packet[8:12] == b"\x00\x00\x22\x22"  # the first f packet...
    assert sent[10].seq == (last.seq + 1) & 0xFFFF  # ...follows the last q packet: no gap
    assert diffs([s.seq for s in sent], 16) == [1] * 16  # and no repeat anywhere
    # f's keyframe (7_015_000) was captured 2/3 s after q's 100_000, 11/30 s after q's last (127_000)
    assert sent[10].ts == (last.ts + 33_000) & 0xFFFFFFFF
    assert diffs([s.ts for s in sent[10:]], 32) == [3000] * 6
    assert {s.ssrc for s in sent} == {consumer.ssrc}


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def monotonic(self) -> float:
        return self.now


def test_a_switch_keeps_the_time_that_passed_by_when_packets_arrived(monkeypatch: Any) -> None:
    """Without sender reports (or between two publishers, as at a failover), the new source is
    placed by arrival: q stopped, and f's keyframe came 1.5 s after q's last picture, so it goes out
    1.5 s of timestamps later, not a frame later: a player's jitter buffer and a recording keep
    real time."""
    clock = FakeClock()
    monkeypatch.setattr("sfu.stats.time", clock)
    producer, q, f = two_layer_producer()
    consumer, transport = subscribe(producer, q)
    for i in range(10):
        clock.now += 1 / 30
        q.receive(vp8(5000 + i, 100_000 + i * 3000, 0x1111, key=i == 0))
    last = transport.out[-1]
    consumer.attach(f)
    clock.now += 1.5
    f.receive(vp8(30000, 7_000_000, 0x2222, key=True))
    assert transport.out[-1].ts == (last.ts + 135_000) & 0xFFFFFFFF


def test_a_switch_never_goes_back_in_time() -> None:
    """f's keyframe was captured before q's last picture (the reports say so): it goes out one
    tick after that picture, never at or before it."""
    producer, q, f = two_layer_producer()
    consumer, transport = subscribe(producer, q)
    for i in range(10):
        q.receive(vp8(5000 + i, 100_000 + i * 3000, 0x1111, key=i == 0))
    last = transport.out[-1]
    q.stats.on_sender_report(1000 * NTP_SECOND, 100_000)
    f.stats.on_sender_report(1000 * NTP_SECOND, 7_000_000)  # same instant
    consumer.attach(f)
    f.receive(vp8(30000, 7_003_000, 0x2222, key=True))  # = q's 103_000, long sent
    assert transport.out[-1].ts == (last.ts + 1) & 0xFFFFFFFF


def picture_id(packet: bytes) -> int:
    return (packet[14] & 0x7F) << 8 | packet[15]


async def test_switch_continues_the_vp8_picture_id() -> None:
    producer, q, f = two_layer_producer()
    consumer, transport = subscribe(producer, q)
    for i in range(10):  # the test packets carry the sequence number as picture id
        q.receive(vp8(5000 + i, 100_000 + i * 3000, 0x1111, key=i == 0))
    assert consumer.vp8_deltas is None, "no switch yet: picture ids pass through untouched"
    consumer.attach(f)
    for i in range(6):
        f.receive(vp8(30000 + i, 7_000_000 + i * 3000, 0x2222, key=i == 0))
    ids = [picture_id(s.packet) for s in transport.out]
    assert ids == list(range(5000, 5016)), "one run of picture ids across the switch"
    consumer.attach(q)  # and back: still continuous
    for i in range(10, 13):
        q.receive(vp8(5000 + i, 100_000 + i * 3000, 0x1111, key=i == 10))
    assert [picture_id(s.packet) for s in transport.out[16:]] == [5016, 5017, 5018]


def test_switch_at_sequence_wrap() -> None:
    producer, q, f = two_layer_producer()
    consumer, transport = subscribe(producer, q)
    consumer.last_seq = 0xFFFD
    for i in range(2):
        q.receive(vp8(10 + i, i * 3000, 0x1111, key=i == 0))
    consumer.attach(f)
    for i in range(3):
        f.receive(vp8(0xFFFF + i, 90_000 + i * 3000, 0x2222, key=i == 0))
    assert [s.seq for s in transport.out] == [0xFFFE, 0xFFFF, 0x0000, 0x0001, 0x0002]


async def test_switching_back_and_forth() -> None:
    """The second switch to a stream asks for its keyframe through the throttle (a timer)."""
    producer, q, f = two_layer_producer()
    consumer, transport = subscribe(producer, q)
    q_seq, f_seq = 100, 60000
    for _ in range(3):
        q.receive(vp8(q_seq, q_seq * 3000, 0x1111, key=q_seq == 100))
        q_seq += 1
    for layer, ssrc in ((f, 0x2222), (q, 0x1111), (f, 0x2222)):
        consumer.attach(layer)
        seq = f_seq if layer is f else q_seq
        for i in range(4):
            layer.receive(vp8(seq + i, (seq + i) * 3000, ssrc, key=i == 1))
        if layer is f:
            f_seq += 4
        else:
            q_seq += 4
    # 3 from q, then 3 of every 4 (from each keyframe on) after each of three switches
    assert len(transport.out) == 3 + 3 * 3
    assert diffs([s.seq for s in transport.out], 16) == [1] * 11
    assert f.keyframe_pending  # the third switch came within the throttle interval


def test_attaching_the_same_stream_again_changes_nothing() -> None:
    producer, q, _ = two_layer_producer()
    consumer, transport = subscribe(producer, q)
    q.receive(vp8(1, 0, 0x1111, key=True))
    consumer.attach(q)
    q.receive(vp8(2, 3000, 0x1111))
    assert len(transport.out) == 2 and keyframe_requests(producer) == [0x1111]


def test_old_stream_keeps_flowing_until_the_new_keyframe() -> None:
    producer, q, f = two_layer_producer()
    consumer, transport = subscribe(producer, q)
    q.receive(vp8(10, 0, 0x1111, key=True))
    consumer.attach(f)
    q.receive(vp8(11, 3000, 0x1111))
    q.receive(vp8(12, 6000, 0x1111))
    assert len(transport.out) == 3  # q goes on while f has no keyframe
    f.receive(vp8(900, 50_000, 0x2222, key=True))
    q.receive(vp8(13, 9000, 0x1111))  # ...and stops once f has taken over
    assert len(transport.out) == 4
    assert diffs([s.seq for s in transport.out], 16) == [1, 1, 1]


# --- pause / resume --------------------------------------------------------------------------------


async def test_resume_waits_for_a_keyframe_and_continues() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    consumer, transport = subscribe(producer)
    for seq in range(3):
        stream.receive(vp8(seq, seq * 3000, 0xAAAA, key=seq == 0))
    consumer.pause()
    for seq in range(3, 8):
        stream.receive(vp8(seq, seq * 3000, 0xAAAA, key=seq == 5))
    assert len(transport.out) == 3
    consumer.resume()
    stream.receive(vp8(8, 8 * 3000, 0xAAAA))
    stream.receive(vp8(9, 9 * 3000, 0xAAAA, key=True))
    assert len(transport.out) == 4
    assert diffs([s.seq for s in transport.out], 16) == [1, 1, 1]


# --- muting a Producer (the admin API and moderators) --------------------------------------------------


async def test_muted_producer_forwards_nothing_until_unmuted_at_a_keyframe() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    consumer, transport = subscribe(producer)
    for seq in range(3):
        stream.receive(vp8(seq, seq * 3000, 0xAAAA, key=seq == 0))
    producer.pause()
    consumer.resume()  # what Room.answer does after a renegotiation: must not undo the mute
    for seq in range(3, 8):
        stream.receive(vp8(seq, seq * 3000, 0xAAAA, key=seq == 5))
    assert len(transport.out) == 3
    assert stream.stats.packets == 8  # still received: statistics and the NACK cache stay current
    stream.ssrc = 0xAAAA  # learnt by the Transport when the first packet arrived
    stream.last_keyframe_request = 0.0  # the throttle's last request is long past
    requests = len(keyframe_requests(producer))
    producer.resume()
    assert len(keyframe_requests(producer)) == requests + 1  # the picture comes back at once
    stream.receive(vp8(8, 8 * 3000, 0xAAAA))
    stream.receive(vp8(9, 9 * 3000, 0xAAAA, key=True))
    assert len(transport.out) == 4
    assert diffs([s.seq for s in transport.out], 16) == [1, 1, 1]


async def test_unmute_does_not_start_a_consumer_still_waiting_for_its_answer() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    consumer, transport = subscribe(producer)
    consumer.pause()  # the subscriber has not answered the offer that announces this SSRC
    producer.pause()
    producer.resume()
    stream.receive(vp8(0, 0, 0xAAAA, key=True))
    assert (consumer.paused, transport.out) == (True, [])
    consumer.resume()
    stream.receive(vp8(1, 3000, 0xAAAA, key=True))
    assert len(transport.out) == 1


async def test_consumer_of_a_muted_producer_waits_and_is_closed_with_it() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    producer.pause()
    consumer, transport = subscribe(producer)  # a subscriber joining while the track is muted
    stream.receive(vp8(0, 0, 0xAAAA, key=True))
    assert transport.out == [] and not stream.pending and not stream.consumers
    producer.close()
    assert consumer.closed and producer.consumers == []


# --- NACKs -------------------------------------------------------------------------------------------


def test_nack_resends_the_cached_packet_with_its_outgoing_numbers() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    consumer, transport = subscribe(producer)
    consumer.last_seq = 0xFFFD  # outgoing numbers wrap: 0xFFFE, 0xFFFF, 0, 1, ...
    packets = [vp8(300 + i, 40_000 + i * 3000, 0xAAAA, key=i == 0) for i in range(8)]
    for packet in packets:
        stream.receive(packet)
    original = list(transport.out)
    consumer.on_nack([original[1].seq, original[4].seq])
    resent = transport.out[8:]
    assert [(s.seq, s.ts, s.ssrc, s.pt) for s in resent] == [
        (o.seq, o.ts, o.ssrc, o.pt) for o in (original[1], original[4])
    ]
    assert [s.packet for s in resent] == [packets[1], packets[4]]
    assert [s.seq for s in resent] == [0xFFFF, 0x0002]
    assert consumer.retransmissions == 2 and consumer.nacks == 1 and consumer.packets == 8
    assert len(transport.datagrams) == 10


def test_nack_ignores_what_cannot_be_answered() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    consumer, transport = subscribe(producer)
    for i in range(4):
        stream.receive(vp8(300 + i, i * 3000, 0xAAAA, key=i == 0))
    first = transport.out[0].seq
    consumer.on_nack(
        [
            (first - 1) & 0xFFFF,  # before the keyframe this Consumer started on
            (first + 10) & 0xFFFF,  # never received
            (first + 0x4000) & 0xFFFF,  # far ahead: another packet sits in that cache slot
        ]
    )
    assert len(transport.out) == 4 and consumer.retransmissions == 0 and consumer.nacks == 1


def test_nack_for_a_packet_lost_upstream_is_answered_once_it_arrives() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    consumer, transport = subscribe(producer)
    stream.receive(vp8(1, 0, 0xAAAA, key=True))
    stream.receive(vp8(3, 0, 0xAAAA))
    hole = (transport.out[0].seq + 1) & 0xFFFF
    consumer.on_nack([hole])
    assert consumer.retransmissions == 0
    stream.receive(vp8(2, 0, 0xAAAA))  # the publisher's retransmission fills the hole...
    assert transport.out[-1].seq == hole  # ...and is forwarded under the number the subscriber expects
    consumer.on_nack([hole])
    assert consumer.retransmissions == 1 and transport.out[-1].seq == hole


def test_nack_after_a_switch_uses_the_new_stream() -> None:
    producer, q, f = two_layer_producer()
    consumer, transport = subscribe(producer, q)
    for i in range(3):
        q.receive(vp8(10 + i, i * 3000, 0x1111, key=i == 0))
    consumer.attach(f)
    for i in range(3):
        f.receive(vp8(20 + i, i * 3000, 0x2222, key=i == 0))
    q_out = [s.seq for s in transport.out[:3]]
    f_out = [s.seq for s in transport.out[3:]]
    consumer.on_nack(q_out)  # sent from q: mapping them through f's delta would resend wrong data
    assert len(transport.out) == 6
    consumer.on_nack([f_out[1]])
    resent = transport.out[-1]
    assert resent.packet == transport.out[4].packet, "as first sent: f's packet, picture id continued"
    assert resent.packet[8:12] == b"\x00\x00\x22\x22" and resent.seq == f_out[1]


def test_nack_is_answered_as_rtx_once_the_subscriber_took_it() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    consumer, transport = subscribe(producer, stream)
    consumer.rtx_payload_type = 97
    for i in range(3):
        stream.receive(vp8(100 + i, i * 3000, 0xAAAA, key=i == 0))
    first = transport.out[1]
    consumer.on_nack([first.seq])
    rtx = transport.out[-1]
    assert (rtx.pt, rtx.ssrc, rtx.ts) == (97, consumer.rtx_ssrc, first.ts)
    assert rtx.packet[12:14] == first.seq.to_bytes(2, "big"), "the original sequence number leads"
    assert rtx.packet[14:] == first.packet[12:], "then the payload as it was sent"
    consumer.on_nack([first.seq])
    assert transport.out[-1].seq == (rtx.seq + 1) & 0xFFFF, "RTX has its own numbering"
    assert consumer.retransmissions == 2


def test_nack_before_any_media_is_ignored() -> None:
    producer = producer_with(None)
    consumer, transport = subscribe(producer)
    consumer.on_nack([1, 2, 3])
    assert transport.out == [] and consumer.nacks == 1


# --- long runs -----------------------------------------------------------------------------------------


def test_forwarding_continues_past_half_the_sequence_space() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    consumer, transport = subscribe(producer)
    packet = bytearray(vp8(0, 0, 0xAAAA, key=True))
    stream.receive(bytes(packet))
    packet[12:] = vp8(1, 0, 0xAAAA)[12:]  # interframes from here on
    for seq in range(1, 0x8000 + 16):
        struct.pack_into("!HI", packet, 2, seq, seq // 30 * 3000)
        stream.receive(bytes(packet))
    assert consumer.packets == 0x8000 + 16  # about 30 s of 720p video
    last = transport.out[-1]
    consumer.on_nack([last.seq])  # NACKs of recent packets are answered too
    assert consumer.retransmissions == 1


# --- encoders that ignore keyframe requests --------------------------------------------------------


def picture_group(stream: RtpStream, first_seq: int, frames: int, ts0: int = 90_000) -> list[bytes]:
    """A keyframe in two packets, then one packet per interframe, 30 fps; received by `stream`."""
    packets = [vp8(first_seq, ts0, 0xAAAA, key=True), vp8(first_seq + 1, ts0, 0xAAAA, marker=True)]
    packets[1] = packets[1][:12] + bytes([0x80, 0x80]) + packets[1][14:]  # a continuation: no S bit
    packets += [vp8(first_seq + 1 + i, ts0 + i * 3000, 0xAAAA, marker=True) for i in range(1, frames)]
    for packet in packets:
        stream.receive(packet)
    return packets


def test_a_late_subscriber_starts_from_the_cached_picture_group() -> None:
    """FFmpeg's WHIP muxer ignores PLI: past its patience, a subscriber that shows nothing yet gets
    the picture group from the last keyframe, squeezed just before live, then live."""
    producer = producer_with(None)
    stream = producer.streams[0]
    stream.ssrc = 0xAAAA
    gop = picture_group(stream, 100, 10)  # seq 100..110, frames at ts 90000 + 3000 * i
    consumer, transport = subscribe(producer)
    assert keyframe_requests(producer) == [0xAAAA] and stream.replay_at > 0
    stream.receive(vp8(111, 90_000 + 10 * 3000, 0xAAAA))
    assert transport.out == [], "within its patience it waits for the keyframe it asked for"
    stream.replay_at = 1e-9  # patience is over: the next packet starts it
    live = [vp8(112 + i, 90_000 + (11 + i) * 3000, 0xAAAA) for i in range(3)]
    for packet in live:
        stream.receive(packet)
    sent = transport.out
    assert [s.packet for s in sent] == [*gop, vp8(111, 90_000 + 10 * 3000, 0xAAAA), *live]
    assert diffs([s.seq for s in sent], 16) == [1] * (len(sent) - 1)
    # eleven frames replayed one tick apart, then live at its own pace from the last of them
    assert diffs([s.ts for s in sent], 32) == [0, *[1] * 10, 3000, 3000, 3000]
    assert consumer.synced and not stream.pending and stream.replay_at == 0
    assert consumer.packets == len(sent) and consumer.last_seq == sent[-1].seq
    consumer.on_nack([sent[3].seq])  # a repair of a replayed packet keeps its squeezed timestamp
    assert (transport.out[-1].seq, transport.out[-1].ts) == (sent[3].seq, sent[3].ts)


def test_a_publisher_that_answers_in_time_is_not_replayed() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    picture_group(stream, 100, 5)
    _, transport = subscribe(producer)
    stream.receive(vp8(106, 200_000, 0xAAAA, key=True))  # the keyframe it asked for
    stream.replay_at = 1e-9  # even were the deadline past, nobody waits any more
    stream.receive(vp8(107, 203_000, 0xAAAA))
    assert [s.packet for s in transport.out] == [
        vp8(106, 200_000, 0xAAAA, key=True),
        vp8(107, 203_000, 0xAAAA),
    ]


def test_an_incomplete_picture_group_is_not_replayed() -> None:
    producer = producer_with(None)
    stream = producer.streams[0]
    picture_group(stream, 100, 3)  # 100..103
    stream.receive(vp8(105, 99_000, 0xAAAA))  # 104 was lost upstream
    _, transport = subscribe(producer)
    stream.replay_at = 1e-9
    stream.receive(vp8(106, 102_000, 0xAAAA))
    assert transport.out == [] and stream.replay_at == 0, "it waits for the next keyframe instead"
    stream.receive(vp8(107, 105_000, 0xAAAA, key=True))
    assert len(transport.out) == 1


def test_a_subscriber_switching_layers_is_never_replayed() -> None:
    """The old layer keeps its picture on screen until the new layer's keyframe."""
    producer, q, f = two_layer_producer()
    consumer, transport = subscribe(producer, q)
    q.receive(vp8(10, 0, 0x1111, key=True))
    f.receive(vp8(50, 0, 0x2222, key=True))
    consumer.attach(f)
    f.replay_at = 1e-9
    f.receive(vp8(51, 3000, 0x2222))
    assert consumer.stream is q and consumer in f.pending and len(transport.out) == 1


# --- a subscriber's own extension ids --------------------------------------------------------------


def test_a_subscriber_with_its_own_extension_ids_gets_them_on_the_wire() -> None:
    """A WHEP player's offer chose its ids (Chromium: transport-cc 4, video-orientation 3); the
    Consumer rewrites the router's into them after everything else, inside the SRTP staging buffer."""
    key = bytes(range(AEAD_AES_128_GCM.key_length + AEAD_AES_128_GCM.salt_length))
    producer = producer_with(None)
    transport = CapturingTransport()
    transport.srtp_tx = SrtpContext(AEAD_AES_128_GCM, key, True)
    transport.twcc = SendHistory()
    consumer = Consumer(transport, producer, "0")  # type: ignore[arg-type]
    player = {2: codecs.URI_ABS_SEND_TIME, 3: codecs.URI_VIDEO_ORIENTATION, 4: codecs.URI_TRANSPORT_CC}
    consumer.ext_table = codecs.output_table(player, reserved=range(1, 12))
    consumer.attach(producer.streams[0])
    # the publisher sent abs-send-time (router id 2), video orientation (13) and an unknown id 5
    elements = bytes([0x22, 1, 2, 3, 0xD0, 1, 0x50, 9])
    header = struct.pack("!BBHII", 0x90, 96, 7, 9000, 0xAAAA) + b"\xbe\xde\x00\x02" + elements
    packet = header + vp8(7, 9000, 0xAAAA, key=True)[12:]
    producer.streams[0].receive(packet)
    consumer.on_nack([consumer.last_seq])  # a retransmission is rewritten the same way
    assert len(transport.datagrams) == 2
    for data in transport.datagrams:  # a context each: the second is a repeat, which libsrtp refuses
        plain = SrtpContext(AEAD_AES_128_GCM, key, False).unprotect(data)
        found = {ext_id: plain[offset : offset + size] for ext_id, offset, size in extensions(plain)}
        assert found[2] == b"\x01\x02\x03", "abs-send-time kept its id"
        assert found[3] == b"\x01", "video orientation moved from 13 to the player's 3"
        assert 4 in found, "the transport-wide sequence number under the player's 4"
        assert set(found) == {2, 3, 4, 12}, "the unknown element hidden under an id it never offered"


# --- the Router moves a Consumer to another Producer ------------------------------------------------


def test_reassign_continues_the_stream_from_the_new_producers_keyframe() -> None:
    """A standby camera takes over (source failover, stage change): the subscriber sees one stream."""
    router = Router("lesson")
    main, standby = producer_with(None), producer_with(None)
    consumer, transport = subscribe(main)
    main.streams[0].receive(vp8(10, 0, 0xAAAA, key=True))
    main.streams[0].receive(vp8(11, 3000, 0xAAAA))
    router.reassign(consumer, standby)
    assert consumer.producer is standby and consumer in standby.consumers and consumer not in main.consumers
    main.streams[0].receive(vp8(12, 6000, 0xAAAA))  # the old source flows until the new keyframe
    standby.streams[0].receive(vp8(500, 777_000, 0xBBBB))  # not a keyframe: not yet
    standby.streams[0].receive(vp8(501, 780_000, 0xBBBB, key=True))
    standby.streams[0].receive(vp8(502, 783_000, 0xBBBB))
    main.streams[0].receive(vp8(13, 9000, 0xAAAA))  # no longer forwarded
    sent = transport.out
    assert [s.packet[8:12] for s in sent] == [b"\x00\x00\xaa\xaa"] * 3 + [b"\x00\x00\xbb\xbb"] * 2
    assert diffs([s.seq for s in sent], 16) == [1, 1, 1, 1], "one sequence, across the sources"
    assert diffs([s.ts for s in sent], 32)[-1] == 3000 and {s.ssrc for s in sent} == {consumer.ssrc}
    main.close()
    assert not consumer.closed, "the old source's end no longer ends it"


def test_reassign_keeps_kind_and_codec() -> None:
    router = Router("lesson")
    consumer, _ = subscribe(producer_with(None))
    with pytest.raises(ValueError, match="cannot feed a VP8 video Consumer from opus audio"):
        router.reassign(consumer, producer_with(None, codec=OPUS))
