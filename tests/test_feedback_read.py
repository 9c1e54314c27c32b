"""The node's batch read of the feedback socket: sfu/_delay.c's read_feedback against the reference
read (every datagram through datagram_received). The same datagrams, sent to a node of each kind,
leave the same counters, the same estimate and the same errors: transport-cc reports (taken in C),
compounds that hold more than feedback, reports the compiled pass cannot read, what libsrtp refuses
(tampered, replayed), strangers, junk and RTP, in any order."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import estimator_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sfu.node
import sfu.transport
from loadtest.transport_cc import build_feedback
from sfu.node import Node
from sfu.srtp import AEAD_AES_128_GCM, AES128_CM_SHA1_80, SrtpContext, SrtpProfile

NOW = 1000.0  # every estimate is taken at this time.monotonic(), in both nodes
SENT = 600  # packets in the send history, 5 ms apart
PEER_KEY = bytes(range(30))  # the subscriber's key and salt (GCM takes the first 28 bytes)
OUR_KEY = bytes(range(100, 130))


@pytest.fixture(autouse=True)
def compiled() -> None:
    if sfu.node.read_feedback is None:
        from helpers import require_system

        require_system("cc", "sfu/_delay.c was not compiled at install (a C compiler and Python's headers)")


@pytest.fixture(autouse=True)
def fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(monotonic=lambda: NOW)
    monkeypatch.setattr(sfu.node, "time", clock)
    monkeypatch.setattr(sfu.transport, "time", clock)


def key(profile: SrtpProfile, material: bytes) -> bytes:
    return material[: profile.key_length + profile.salt_length]


class Side:
    """One node with one keyed transport-cc transport, its feedback socket a plain loopback socket;
    `compiled` picks the read."""

    def __init__(self, profile: SrtpProfile, compiled: bool, peer: tuple[str, int]) -> None:
        self.compiled = compiled
        self.node = Node()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.node._feedback_socket = self.sock
        self.transport = self.node.create_transport()
        rx = SrtpContext(profile, key(profile, PEER_KEY), outbound=False)
        tx = SrtpContext(profile, key(profile, OUR_KEY), outbound=True)
        self.transport._on_keys(rx, tx, profile)
        self.transport.enable_transport_cc()
        assert self.transport.twcc is not None
        for seq in range(1, SENT + 1):
            self.transport.twcc.sent_at[seq] = 1.0 + 0.005 * seq
            self.transport.twcc.sizes[seq] = 900 + seq % 300
        self.transport.twcc.next_seq = SENT + 1
        self.node.by_addr[peer] = self.transport
        self.python_datagrams = 0  # datagrams that went through datagram_received
        received = self.node.datagram_received

        def counted(data: bytes, addr: Any) -> None:
            self.python_datagrams += 1
            received(data, addr)

        self.node.datagram_received = counted  # type: ignore[method-assign]

    def read(self) -> None:
        async def once() -> None:
            with pytest.MonkeyPatch.context() as m:
                if not self.compiled:
                    m.setattr(sfu.node, "read_feedback", None)
                self.node._read_feedback()
            if self.node._feedback_timer is not None:
                self.node._feedback_timer.cancel()

        asyncio.run(once())

    def state(self) -> tuple[Any, ...]:
        t, n, e = self.transport, self.node, self.transport.bwe
        assert e is not None
        return (
            (
                t.rtcp_in,
                t.rtcp_errors,
                t.srtp_errors,
                t.rtp_in,
                t.unknown_ssrc,
                t.twcc_feedbacks,
                t.twcc_errors,
            ),
            (n.packets_in, n.bytes_in, n.dropped, n.errors, n.feedback_read, n.nacks, n.plis),
            (t.remb_bitrate, *estimator_state(e)),
        )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sides() -> Iterator[Callable[[SrtpProfile], tuple[Side, Side, socket.socket]]]:
    made: list[Any] = []

    def make(profile: SrtpProfile) -> tuple[Side, Side, socket.socket]:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        pair = Side(profile, True, peer.getsockname()), Side(profile, False, peer.getsockname())
        made.extend([peer, *pair])
        return pair[0], pair[1], peer

    yield make
    for thing in made:
        thing.close()


# -- what a subscriber sends ------------------------------------------------------------------------

RR = struct.pack("!BBHI", 0x80, 201, 1, 7)
NACK = struct.pack("!BBHIIHH", 0x81, 205, 3, 7, 0x1234, 5, 0)
REMB = struct.pack("!BBHII4sBBH", 0x8F, 206, 5, 7, 0, b"REMB", 1, 0x0F, 0x4240) + struct.pack("!I", 9)


def report(base: int, count: int, rng: random.Random, lost: float = 0.0) -> bytes:
    """A browser's report on `count` of our packets from `base`, some arriving later than others."""
    arrivals: list[int | None] = []
    for seq in range(base, base + count):
        sent_us = int((1.0 + 0.005 * seq) * 1e6)
        arrivals.append(None if rng.random() < lost else sent_us + 30_000 + rng.randint(0, 20_000) + 40 * seq)
    if all(a is None for a in arrivals):
        arrivals[0] = int((1.0 + 0.005 * base) * 1e6) + 30_000
    return build_feedback(7, 0, base, arrivals, base & 0xFF)


KINDS = (
    "report",  # the usual: taken in C
    "lossy",  # a report with losses
    "two",  # two reports in one compound
    "rr first",  # a receiver report then a report: Python's way
    "nack after",  # a report then a NACK: Python's way
    "remb",  # alone
    "unreadable",  # a report whose status chunks run past its end: the reference says why
    "short",  # an RTPFB FMT 15 too short to hold a report
    "overlong",  # a compound whose length field runs past the packet
    "tampered",  # libsrtp refuses it
    "replayed",  # sent again
    "stranger",  # from an address no transport has
    "junk",
    "rtp",  # RTP on the feedback socket
    "empty",
)


def plaintext(kind: str, rng: random.Random) -> bytes:
    base = rng.randint(1, SENT - 60)
    one = report(base, rng.randint(1, 50), rng)
    if kind == "lossy":
        return report(base, rng.randint(5, 50), rng, lost=0.3)
    if kind == "two":
        return one + report(base + 50, rng.randint(1, 9), rng)
    if kind == "rr first":
        return RR + one
    if kind == "nack after":
        return one + NACK
    if kind == "remb":
        return REMB
    if kind == "unreadable":
        return one[:2] + struct.pack("!H", 4) + one[4:12] + struct.pack("!HH", base, 400) + one[16:20]
    if kind == "short":
        return struct.pack("!BBHI", 0x8F, 205, 1, 7)
    if kind == "overlong":
        return one[:2] + struct.pack("!H", len(one) // 4 + 3) + one[4:]
    return one


def datagrams(kinds: list[str], profile: SrtpProfile, seed: int) -> list[tuple[bytes, bool]]:
    """(datagram, from the stranger) for each kind, protected by the subscriber's context."""
    rng = random.Random(seed)
    protector = SrtpContext(profile, key(profile, PEER_KEY), outbound=True)
    out: list[tuple[bytes, bool]] = []
    for kind in kinds:
        if kind == "junk":
            out.append((rng.randbytes(rng.randint(1, 60)), False))
        elif kind == "empty":
            out.append((b"", False))
        elif kind == "rtp":
            out.append((bytes([0x80, 96]) + rng.randbytes(30), False))
        elif kind == "replayed":
            out.append(out[-1] if out else (b"", False))
        else:
            data = bytearray(protector.protect_rtcp(plaintext(kind, rng)))
            if kind == "tampered":
                data[rng.randrange(8, len(data))] ^= 0x10
            out.append((bytes(data), kind == "stranger"))
    return out


def send_both(compiled: Side, reference: Side, peer: socket.socket, batch: list[tuple[bytes, bool]]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        for data, strange in batch:
            for side in (compiled, reference):
                (stranger if strange else peer).sendto(data, side.sock.getsockname())


@pytest.mark.parametrize("profile", [AEAD_AES_128_GCM, AES128_CM_SHA1_80], ids=["gcm", "aes-cm"])
def test_the_usual_reports_are_taken_without_python(
    profile: SrtpProfile, sides: Callable[..., tuple[Side, Side, socket.socket]]
) -> None:
    compiled, reference, peer = sides(profile)
    batch = datagrams(["report"] * 30 + ["lossy"] * 10 + ["two"] * 5, profile, 1)
    send_both(compiled, reference, peer, batch)
    for side in (compiled, reference):
        side.read()
    assert compiled.python_datagrams == 0, "every report went from datagram to estimate in C"
    assert reference.python_datagrams == len(batch)
    assert compiled.state() == reference.state()
    assert compiled.transport.twcc_feedbacks == 50 and compiled.transport.rtcp_in == 45
    assert compiled.node.feedback_read == 45 and compiled.node.packets_in == 45


@pytest.mark.parametrize("profile", [AEAD_AES_128_GCM, AES128_CM_SHA1_80], ids=["gcm", "aes-cm"])
def test_everything_else_goes_the_reference_way(
    profile: SrtpProfile, sides: Callable[..., tuple[Side, Side, socket.socket]]
) -> None:
    compiled, reference, peer = sides(profile)
    kinds = [k for k in KINDS for _ in range(2)]
    batch = datagrams(kinds, profile, 2)
    send_both(compiled, reference, peer, batch)
    for side in (compiled, reference):
        side.read()
    assert compiled.state() == reference.state()
    t = compiled.transport
    assert t.twcc_errors == 4, "the unreadable and short reports, said so by the reference"
    assert t.rtcp_errors >= 4 + 2, "tampered, replayed (and the second replay), overlong"
    assert t.remb_bitrate is not None and compiled.node.dropped >= 2, "REMB read; strangers dropped"
    assert 0 < compiled.python_datagrams < reference.python_datagrams


@settings(
    max_examples=int(os.environ.get("KELIAN_FUZZ_EXAMPLES") or 60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # fixed_time's clock is the same for all
)
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=40), seed=st.integers(0, 2**32))
def test_any_mix_the_same_as_the_reference(kinds: list[str], seed: int) -> None:
    """In any order: what Python's way does to a compound it is handed comes in the datagram's turn,
    so the estimate that follows a mixed batch is the reference's."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        compiled = Side(AEAD_AES_128_GCM, True, peer.getsockname())
        reference = Side(AEAD_AES_128_GCM, False, peer.getsockname())
        try:
            send_both(compiled, reference, peer, datagrams(kinds, AEAD_AES_128_GCM, seed))
            for side in (compiled, reference):
                side.read()
            assert compiled.state() == reference.state()
        finally:
            compiled.close()
            reference.close()


def test_a_transport_without_keys_or_transport_cc_is_left_to_python(
    sides: Callable[..., tuple[Side, Side, socket.socket]],
) -> None:
    compiled, _, peer = sides(AEAD_AES_128_GCM)
    bare = compiled.node.create_transport()
    assert bare.feedback is None
    compiled.node.by_addr[peer.getsockname()] = bare
    batch = datagrams(["report"] * 3, AEAD_AES_128_GCM, 3)
    for data, _ in batch:
        peer.sendto(data, compiled.sock.getsockname())
    compiled.read()
    assert compiled.python_datagrams == 3 and bare.rtcp_in == 0 and bare.twcc_feedbacks == 0


def test_the_address_is_the_socket_modules() -> None:
    """read_feedback formats IPv4 addresses itself: what it hands on is what recvfrom would give,
    for addresses of one, two and three digits."""
    seen: list[Any] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        for host in ("127.0.0.1", "127.10.200.5", "127.255.0.99", "127.1.20.3"):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.bind((host, 0))
                peer.sendto(b"x", sock.getsockname())
                assert sfu.node.read_feedback is not None
                sfu.node.read_feedback(sock.fileno(), {}, 10, NOW, lambda d, a: seen.append(a), print)
                assert seen.pop() == peer.getsockname()


def test_an_ipv6_subscriber() -> None:
    """The address is the socket module's four items for IPv6, so the transport is found."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with sock, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as peer:
        peer.bind(("::1", 0))
        side = Side(AEAD_AES_128_GCM, True, ("::1", 0))
        side.sock.close()
        sock.setblocking(False)
        side.sock = side.node._feedback_socket = sock
        side.node.by_addr = {peer.getsockname(): side.transport}
        for data, _ in datagrams(["report"] * 4, AEAD_AES_128_GCM, 4):
            peer.sendto(data, sock.getsockname())
        side.read()
        assert side.python_datagrams == 0 and side.transport.twcc_feedbacks == 4
