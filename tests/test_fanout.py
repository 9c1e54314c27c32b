"""The compiled fan-out (sfu/_fanout.c) against the reference path (Consumer.send), byte for byte.

Two Consumers with the same numbers and SRTP contexts keyed alike get the same packets: one through
Python (`Consumer.send`, its datagrams captured from its transport's sendto), one through the
compiled path (its Sender sends on a real loopback socket, read back here). What reaches the wire,
the Consumers' numbers afterwards and the transport-wide send history must be identical, for every
kind of packet the forwarding path handles and for random bytes.
"""

from __future__ import annotations

import gc
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import require_system
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu import fanout
from sfu.consumer import Consumer
from sfu.plain_transport import PlainRtp
from sfu.producer import TWCC_SLOT, CodecSpec, Producer, ProducerSpec
from sfu.rtp import insert_extension_slot
from sfu.srtp import AEAD_AES_128_GCM, AES128_CM_SHA1_80, SrtpContext, SrtpProfile
from sfu.twcc import HISTORY, SendHistory

VP8 = CodecSpec("VP8", "video", 96, 90000, None, "", 97)
OPUS = CodecSpec("opus", "audio", 111, 48000, 2, "minptime=10;useinbandfec=1", None)
EXAMPLES = settings(max_examples=int(os.environ.get("KELIAN_FUZZ_EXAMPLES") or 200), deadline=None)


@pytest.fixture(autouse=True)
def compiled() -> None:
    if not fanout.COMPILED:
        require_system("cc", "sfu/_fanout.c was not compiled at install (a C compiler and Python's headers)")


@dataclass
class Transport:
    """What a Consumer reads of its WebRtcTransport; `sendto` captures what the reference path sends."""

    srtp_tx: Any
    sender: Any = None
    twcc: SendHistory | None = None
    remote_addr: tuple[str, int] = ("127.0.0.1", 9)
    ext_table: bytes | None = None
    ext_ids: dict[str, int] = field(default_factory=dict)
    sent: list[bytes] = field(default_factory=list)

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append(bytes(data))

    def send_keyframe_request(self, producer: Producer, ssrc: int) -> None:
        pass

    def add_producer(self, producer: Producer) -> None:
        pass


class Pair:
    """A reference Consumer and a compiled one, set up alike."""

    def __init__(
        self,
        codec: CodecSpec,
        profile: SrtpProfile | None,
        twcc: bool,
        out: socket.socket | None = None,  # the compiled one's socket, if shared with other pairs
        **numbers: Any,
    ) -> None:
        key = os.urandom(profile.key_length + profile.salt_length) if profile else b""
        numbers = {"last_seq": 0, "last_ts": 0, **numbers}  # else each starts from its own random ones
        spec = ProducerSpec(codec.kind, "0", codec, codec.payload_type, None)
        producer = Producer(Transport(None), spec)  # type: ignore[arg-type]
        self.stream = producer.streams[0]
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.sink.setblocking(False)
        self.own_out = out is None
        self.out = out or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if self.own_out:
            self.out.bind(("127.0.0.1", 0))
        self.consumers: list[Consumer] = []
        self.transports: list[Transport] = []
        for compiled in (False, True):
            tx = SrtpContext(profile, key, True) if profile else PlainRtp()  # a recorder's or a pipe's
            transport = Transport(tx, twcc=SendHistory() if twcc else None)
            if compiled:
                sender = fanout.Sender(self.out.fileno(), transport.sendto)
                if profile:
                    sender.key(*tx.protect_pointers(), owner=tx)  # type: ignore[union-attr]
                else:
                    sender.key()
                assert sender.point(self.sink.getsockname())
                sender.history = transport.twcc
                transport.sender = sender
            consumer = Consumer(transport, producer, "0")  # type: ignore[arg-type]
            consumer.stream = self.stream
            for name, value in numbers.items():
                setattr(consumer, name, value)
            self.consumers.append(consumer)
            self.transports.append(transport)

    def forward(self, packet: bytes, seq: int, ts: int, twcc_at: int = -1) -> None:
        self.stream.twcc_at, self.stream.sent_at = twcc_at, 1234.5
        for consumer in self.consumers:
            fanout.forward([consumer], packet, seq, ts, twcc_at, 1234.5)

    def received(self) -> list[bytes]:
        got = []
        while True:
            try:
                got.append(self.sink.recv(2048))
            except BlockingIOError:
                return got

    def check(self) -> int:
        """Both paths sent the same datagrams and agree on every number; how many were sent."""
        reference, compiled = self.transports
        wire = self.received()
        assert compiled.sent == [], "the compiled path sent through Python"
        assert wire == reference.sent
        a, b = self.consumers
        for name in (
            "packets",
            "bytes",
            "errors",
            "last_seq",
            "last_ts",
            "sync_seq",
            "seq_delta",
            "ts_delta",
        ):
            assert getattr(a, name) == getattr(b, name), name
        if reference.twcc is not None and compiled.twcc is not None:
            assert reference.twcc.next_seq == compiled.twcc.next_seq
            assert reference.twcc.sent_at == compiled.twcc.sent_at
            assert reference.twcc.sizes == compiled.twcc.sizes
        return len(wire)

    def close(self) -> None:
        self.sink.close()
        if self.own_out:
            self.out.close()


def rtp(seq: int, ts: int, payload: bytes, pt: int = 96, marker: bool = False, ext: bytes = b"") -> bytes:
    first = 0x90 if ext else 0x80
    return (
        struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts, 0x1234) + ext + payload
    )


def one_byte_ext(*elements: tuple[int, bytes]) -> bytes:
    body = b"".join(bytes([eid << 4 | (len(v) - 1)]) + v for eid, v in elements)
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


def two_byte_ext(*elements: tuple[int, bytes]) -> bytes:
    body = b"".join(bytes([eid, len(v)]) + v for eid, v in elements)
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0x1000, len(body) // 4) + body


def vp8_payload(picture_id: int, two_bytes: bool = True, tl0: int | None = 7, key: bool = False) -> bytes:
    x = 0x80 | (0x40 if tl0 is not None else 0)
    pid = (
        bytes([0x80 | picture_id >> 8 & 0x7F, picture_id & 0xFF]) if two_bytes else bytes([picture_id & 0x7F])
    )
    tag = b"\x50\x42\x00\x9d\x01\x2a\x80\x02\x68\x01" if key else b"\x31\x0b\x00"
    return bytes([0x90, x]) + pid + (bytes([tl0]) if tl0 is not None else b"") + tag + os.urandom(900)


def with_twcc_slot(packet: bytes) -> tuple[bytes, int]:
    buf = bytearray(packet)
    at = insert_extension_slot(buf, TWCC_SLOT)
    return bytes(buf), at


ROUTER_TO_PLAYER = bytes([0] + [(i + 3) % 15 for i in range(1, 15)] + [0] * 241)  # a WHEP player's own ids

PROFILES = [
    pytest.param(AEAD_AES_128_GCM, id="gcm"),
    pytest.param(AES128_CM_SHA1_80, id="cm"),
    pytest.param(None, id="plain"),
]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("twcc", [False, True], ids=["no-twcc", "twcc"])
def test_vp8_with_and_without_picture_rewrite(profile: SrtpProfile | None, twcc: bool) -> None:
    pair = Pair(
        VP8, profile, twcc, ssrc=0xCAFE, payload_type=100, seq_delta=5000, ts_delta=123456, sync_seq=10
    )
    try:
        for i in range(12):
            if i == 6:  # a layer switch: the picture numbering continues from another layer's
                for consumer in pair.consumers:
                    consumer.vp8_deltas = (300, 9)
            seq, ts = 10 + i, 90000 + 3000 * (i // 3)
            packet, at = with_twcc_slot(
                rtp(seq, ts, vp8_payload(0x7FF0 + i, tl0=(250 + i) & 0xFF, key=i == 0), marker=i % 3 == 2)
            )
            pair.forward(packet, seq, ts, at)
        for two_bytes, tl0 in ((False, None), (False, 3), (True, None)):  # one-byte picture ids, no TL0PICIDX
            packet, at = with_twcc_slot(rtp(30, 99000, vp8_payload(120, two_bytes, tl0)))
            pair.forward(packet, 30, 99000, at)
        assert pair.check() == 15
    finally:
        pair.close()


@pytest.mark.parametrize("profile", PROFILES)
def test_extension_ids_of_a_player_that_chose_its_own(profile: SrtpProfile | None) -> None:
    pair = Pair(OPUS, profile, True, ssrc=77, payload_type=111, ext_table=ROUTER_TO_PLAYER)
    try:
        level, mid = (1, b"\x85"), (4, b"1")
        for seq, ext in enumerate(
            [one_byte_ext(level, mid), two_byte_ext((1, b"\x85"), (20, b"ab")), one_byte_ext((15, b"x"))]
        ):
            packet, at = with_twcc_slot(rtp(seq, 960 * seq, b"\xfc" + os.urandom(80), pt=111, ext=ext))
            pair.forward(packet, seq, 960 * seq, at)
        assert pair.check() == 3
    finally:
        pair.close()


def test_audio_h264_padding_and_a_wrapping_sequence() -> None:
    pair = Pair(OPUS, AEAD_AES_128_GCM, True, ssrc=5, payload_type=111, seq_delta=0x10, sync_seq=0xFFF0)
    try:
        for i in range(40):  # through 0xFFFF to 0x0017, with the sync window sliding (d > 0x4000 later)
            seq = (0xFFF0 + i) & 0xFFFF
            padded = rtp(seq, (0xFFFFF000 + 960 * i) & 0xFFFFFFFF, b"\xfc\x01\x02" + bytes(5) + b"\x06")
            padded = bytes([padded[0] | 0x20]) + padded[1:]  # P bit: six bytes of padding at the end
            pair.forward(padded, seq, (0xFFFFF000 + 960 * i) & 0xFFFFFFFF)
        h264 = rtp(0x30, 1000, bytes([0x7C, 0x85]) + os.urandom(1000), pt=102)  # FU-A start of an IDR
        pair.forward(h264, 0x30, 1000)
        far = (0xFFF0 + 0x4100) & 0xFFFF  # far ahead: the window slides with the stream
        pair.forward(rtp(far, 2000, b"\xfc"), far, 2000)
        assert pair.check() == 42
        assert pair.consumers[1].sync_seq == (far - 0x1000) & 0xFFFF
    finally:
        pair.close()


def test_a_packet_from_before_the_switch_point_is_not_sent() -> None:
    pair = Pair(VP8, AEAD_AES_128_GCM, False, ssrc=9, payload_type=96, sync_seq=1000)
    try:
        pair.forward(rtp(999, 0, vp8_payload(1)), 999, 0)  # the old source's numbering
        pair.forward(rtp(1000, 0, vp8_payload(2)), 1000, 0)
        assert pair.check() == 1
    finally:
        pair.close()


def test_what_srtp_refuses_is_counted_the_same() -> None:
    pair = Pair(VP8, AEAD_AES_128_GCM, True, ssrc=9, payload_type=96)
    try:
        pair.forward(rtp(1, 0, bytes(1500)), 1, 0)  # too large for the staging buffer and a trailer
        assert pair.check() == 0
        assert pair.consumers[0].errors == pair.consumers[1].errors == 1
    finally:
        pair.close()


@EXAMPLES
@given(
    body=st.binary(min_size=12, max_size=1400),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    sync=st.integers(0, 0xFFFF),
    deltas=st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
    vp8=st.none() | st.tuples(st.integers(0, 0x7FFF), st.integers(0, 0xFF)),
    remap=st.booleans(),
    twcc_at=st.integers(-1, 40),
)
def test_random_bytes_the_same_on_both_paths(
    body: bytes,
    seq: int,
    ts: int,
    sync: int,
    deltas: tuple[int, int],
    vp8: tuple[int, int] | None,
    remap: bool,
    twcc_at: int,
) -> None:
    """Whatever got past libsrtp's unprotect: the compiled path never crashes and sends what the
    reference path sends."""
    packet = bytes([0x80 | body[0] & 0x3F]) + body[1:]  # version 2; anything else as it came
    table = ROUTER_TO_PLAYER if remap else None
    pair = Pair(VP8, AEAD_AES_128_GCM, True, ssrc=3, payload_type=96, sync_seq=sync, seq_delta=deltas[0],
                ts_delta=deltas[1], vp8_deltas=vp8, ext_table=table)  # fmt: skip
    try:
        pair.forward(packet, seq, ts, twcc_at if twcc_at + 2 <= len(packet) else -1)
        pair.check()
    finally:
        pair.close()


def test_a_fan_out_goes_in_batches_with_python_and_refusals_between() -> None:
    """One forward() to 46 subscribers: runs longer than a batch on one socket, Consumers that send
    through Python between them, a subscriber on another socket, and one whose address the kernel
    refuses (the loopback broadcast address, without SO_BROADCAST: nothing is sent). Each subscriber
    gets the reference's bytes, each number agrees, and only the refused one counts an error."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        out.bind(("127.0.0.1", 0))
        numbers = {"ssrc": 0xBEEF, "payload_type": 96, "seq_delta": 7, "ts_delta": 11}
        pairs = [Pair(VP8, AEAD_AES_128_GCM, True, out, **numbers) for _ in range(44)]
        apart = Pair(VP8, AEAD_AES_128_GCM, True, **numbers)  # its own socket
        refused = Pair(VP8, AEAD_AES_128_GCM, True, out, **numbers)
        try:
            assert refused.transports[1].sender.point(("127.255.255.255", 9))
            compiled = [p.consumers[1] for p in pairs]
            reference = [p.consumers[0] for p in [*pairs, apart, refused]]
            order = [
                *compiled[:10],
                refused.consumers[1],
                *compiled[10:20],
                *reference[:5],
                *compiled[20:40],
                apart.consumers[1],
                *compiled[40:],
                *reference[5:],
            ]
            for i in range(3):
                packet, at = with_twcc_slot(rtp(100 + i, 3000 * i, vp8_payload(40 + i, key=i == 0)))
                for pair in [*pairs, apart, refused]:  # what the reference path reads of its stream
                    pair.stream.twcc_at, pair.stream.sent_at = at, 1234.5
                fanout.forward(order, packet, 100 + i, 3000 * i, at, 1234.5)
            for pair in [*pairs, apart]:
                assert pair.check() == 3
            assert refused.received() == [] and refused.consumers[1].errors == 3
            assert refused.consumers[1].packets == 0 and refused.consumers[0].packets == 3
        finally:
            for pair in [*pairs, apart, refused]:
                pair.close()


def test_an_address_the_sender_cannot_express_goes_through_python() -> None:
    pair = Pair(VP8, AEAD_AES_128_GCM, False, ssrc=9, payload_type=96)
    try:
        reference, compiled = pair.transports
        assert not compiled.sender.point(("not an address", 5000))
        pair.forward(rtp(1, 0, vp8_payload(1)), 1, 0)
        assert pair.received() == [] and compiled.sent == reference.sent != []
    finally:
        pair.close()


def test_an_ipv6_address() -> None:
    with (
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as out,
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sink,
    ):
        out.bind(("::1", 0))
        sink.bind(("::1", 0))
        sink.settimeout(2)
        sender = fanout.Sender(out.fileno(), lambda data, addr: None)
        sender.key()
        assert sender.point(sink.getsockname()) and sender.point(("::1", sink.getsockname()[1]))
        assert not sender.point(("127.0.0.1", 5)), "an IPv4 address on an IPv6 socket is not guessed at"
        assert sender.point(("::1", sink.getsockname()[1]))
        spec = ProducerSpec("audio", "0", OPUS, 111, None)
        producer = Producer(Transport(None), spec)  # type: ignore[arg-type]
        consumer = Consumer(Transport(None, sender=sender), producer, "0")  # type: ignore[arg-type]
        fanout.forward([consumer], rtp(1, 0, b"\xfc"), 1, 0, -1, 0.0)
        assert sink.recv(100)[12:] == b"\xfc"


def test_consumers_come_and_go_without_leaks() -> None:
    """Consumer subclasses the compiled Forward: its references are collected like a Python object's."""
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(200):
        pair = Pair(VP8, AEAD_AES_128_GCM, True, ssrc=1, payload_type=96)
        pair.close()
    del pair
    gc.collect()
    assert len(gc.get_objects()) - before < 200


def test_the_history_must_be_whole() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        sender = fanout.Sender(out.fileno(), print)
        history = SendHistory()
        history.sizes = history.sizes[: HISTORY // 2]
        with pytest.raises(TypeError):
            sender.history = history
        assert sender.history is None


def test_a_sender_needs_a_socket() -> None:
    with open(os.devnull, "rb") as not_a_socket, pytest.raises(OSError):
        fanout.Sender(not_a_socket.fileno(), print)


@EXAMPLES
@given(
    body=st.binary(min_size=2, max_size=300),
    first=st.integers(0, 0xFF),
    extension=st.sampled_from([b"", "one", "two", "odd"]),
    remap=st.booleans(),
    pt=st.integers(0, 127),
)
def test_router_terms_the_same_as_the_reference(
    body: bytes, first: int, extension: Any, remap: bool, pt: int
) -> None:
    """The receive path's step before the fan-out, compiled, against rtp.router_terms: the same
    bytes and the same slot offset for headers with no extension, one-byte, two-byte and unknown
    profiles, CSRCs, and anything random."""
    from sfu._fanout import router_terms as compiled
    from sfu.rtp import router_terms as reference

    ext = {
        "one": one_byte_ext((1, b"\x85"), (4, b"1")),
        "two": two_byte_ext((1, b"\x85"), (20, b"ab")),
        "odd": struct.pack("!HH", 0x1234, 1) + b"abcd",
    }.get(extension, b"")
    head = bytes([(first & 0xEF) | (0x10 if ext else 0)]) + body[:1]
    packet = head + body[1:11].ljust(10, b"\0") + bytes(4 * (first & 0x0F)) * (first & 0x01) + ext + body[11:]
    table = ROUTER_TO_PLAYER if remap else None
    for candidate in (packet, body, packet[: len(packet) // 2]):
        if len(candidate) < 2:
            continue
        assert compiled(candidate, pt, table, TWCC_SLOT) == reference(candidate, pt, table, TWCC_SLOT)
