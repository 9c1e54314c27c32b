"""kelian's AES-GCM protect (sfu/_srtp.c) against libsrtp's, byte for byte.

An outbound AEAD_AES_128_GCM SrtpContext protects RTP with sfu/_srtp.c where it is built. Its
receivers are libsrtp and the browsers' SRTP, so what it sends must be exactly what libsrtp would
send with the same master key: the same session keys, the same packet index (rollover counter) on
every SSRC, through sequence wraps, retransmissions and jumps, and the same refusals. Each test keys a
context of each kind alike, protects the same packets with both and compares the results; a libsrtp
receiver must also take every packet back.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu import srtp
from sfu.srtp import AEAD_AES_128_GCM, AES128_CM_SHA1_80, SrtpContext, SrtpError

pytestmark = pytest.mark.skipif(
    srtp.GcmProtect is None, reason="sfu/_srtp.c is not built (no OpenSSL headers)"
)


def libsrtp_context(key: bytes, outbound: bool = True) -> SrtpContext:
    """A context that protects with libsrtp, as where sfu/_srtp.c is not built."""
    built, srtp.GcmProtect = srtp.GcmProtect, None
    try:
        return SrtpContext(AEAD_AES_128_GCM, key, outbound)
    finally:
        srtp.GcmProtect = built


def packet(
    seq: int, ssrc: int, payload: bytes, csrcs: int = 0, extension: bytes | None = None, padding: bool = False
) -> bytes:
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension is not None else 0) | csrcs
    header = (
        bytes([first, 96])
        + seq.to_bytes(2, "big")
        + (seq * 3000).to_bytes(4, "big")
        + ssrc.to_bytes(4, "big")
    )
    header += b"".join((0x1000 + i).to_bytes(4, "big") for i in range(csrcs))
    if extension is not None:
        header += b"\xbe\xde" + (len(extension) // 4).to_bytes(2, "big") + extension
    return header + payload + (b"\x00\x00\x03" if padding else b"")


def outcome(context: SrtpContext, data: bytes) -> bytes | str:
    try:
        return bytes(context.protect(data))
    except SrtpError as exc:
        return f"refused {exc.code}"


class Trio:
    """Ours, libsrtp's, and a libsrtp receiver, all keyed alike."""

    def __init__(self) -> None:
        key = os.urandom(28)
        self.ours = SrtpContext(AEAD_AES_128_GCM, key, True)
        assert self.ours._gcm is not None
        self.reference = libsrtp_context(key)
        self.receiver = libsrtp_context(key, outbound=False)
        self.sent = 0

    def protect(self, data: bytes) -> bytes | str:
        got, expected = outcome(self.ours, data), outcome(self.reference, data)
        assert got == expected
        if isinstance(got, bytes):
            self.sent += 1
            try:
                assert bytes(self.receiver.unprotect(got)) == data
            except SrtpError as exc:  # only the receiver's replay check may refuse: a retransmission
                assert exc.code in (9, 10)
        return got


def test_a_stream_through_two_rollovers_with_retransmissions() -> None:
    trio = Trio()
    rng = random.Random(7)
    seq, ssrc = 65_000, 0x1234
    for n in range(140_000):
        seq = (seq + 1) & 0xFFFF
        trio.protect(packet(seq, ssrc, rng.randbytes(rng.randint(0, 40))))
        if n % 997 == 0:  # a NACKed packet sent again on its own SSRC, maybe across the wrap
            trio.protect(packet((seq - rng.randint(0, 1100)) & 0xFFFF, ssrc, b"again"))
    assert trio.sent > 140_000


def test_what_libsrtp_refuses_is_refused_the_same() -> None:
    trio = Trio()
    assert trio.protect(packet(40_000, 1, b"x")) != trio.protect(packet(40_001, 1, b"x"))
    # older than the 1,024-packet window
    assert trio.protect(packet(40_001 - 1024, 1, b"old")) == "refused 10"
    assert isinstance(trio.protect(packet(40_001 - 1023, 1, b"old")), bytes)
    # headers that say more than the packet holds
    short = packet(40_002, 1, b"")[:11]
    assert trio.protect(short) == "refused 2"
    assert trio.protect(packet(40_002, 1, b"", csrcs=3)[:20]) == "refused 2"
    with_extension = packet(40_002, 1, b"", extension=bytes(8))
    assert trio.protect(with_extension[:14]) == "refused 2"
    assert trio.protect(with_extension[:-1]) == "refused 2"
    # and the stream goes on as libsrtp's does
    assert isinstance(trio.protect(packet(40_002, 1, b"after")), bytes)


def test_an_ssrc_new_after_many() -> None:
    trio = Trio()
    for ssrc in range(1, 40):  # more than the first allocation of the SSRC list
        for seq in (100, 101, 40_000, 40_001, 5):
            trio.protect(packet(seq, ssrc, b"p" * ssrc))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1, 2, 0xFFFFFFFF]),
            st.sampled_from([1, 1, 1, 2, 0, -1, -5, -1023, -1024, -3000, 30_000, 32_767, 32_768, 40_000]),
            st.integers(0, 15),
            st.one_of(st.none(), st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4))),
            st.booleans(),
            st.binary(max_size=300),
        ),
        max_size=80,
    ),
    st.integers(0, 0xFFFF),
)
def test_random_streams_the_same_as_libsrtp(steps: list, start: int) -> None:
    trio = Trio()
    seqs: dict[int, int] = {}
    for ssrc, step, csrcs, extension, padding, payload in steps:
        seqs[ssrc] = (seqs.get(ssrc, start) + step) & 0xFFFF
        trio.protect(packet(seqs[ssrc], ssrc, payload, csrcs, extension, padding))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_the_same_as_libsrtp(data: bytes) -> None:
    Trio().protect(data)  # which compares


def test_the_fanout_protects_with_the_same_state() -> None:
    """The compiled fan-out is handed the same function and session as the Python path, so a
    packet protected by either advances one rollover counter."""
    context = SrtpContext(AEAD_AES_128_GCM, os.urandom(28), True)
    function, session = context.protect_pointers()
    assert (function, session) == context._gcm.pointers()  # type: ignore[union-attr]


def test_only_outbound_gcm_is_ours() -> None:
    key = os.urandom(30)
    assert SrtpContext(AES128_CM_SHA1_80, key, True)._gcm is None
    assert SrtpContext(AEAD_AES_128_GCM, key[:28], False)._gcm is None
    with pytest.raises(ValueError):
        srtp.GcmProtect(bytes(27), 1024)  # type: ignore[misc]
    with pytest.raises(ValueError):
        srtp.GcmProtect(bytes(28), 0)  # type: ignore[misc]


@pytest.mark.parametrize("profile", [AEAD_AES_128_GCM, AES128_CM_SHA1_80], ids=["gcm", "aes-cm"])
def test_unprotect_by_address_the_same_as_through_cffi(
    profile: srtp.SrtpProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sfu/_fanout.c's unprotect (libsrtp called by address) against SrtpContext's staging buffer:
    the same plaintext for RTP and RTCP, and the same refusal, code and all, of what is tampered
    with, replayed, truncated or too big."""
    if srtp.compiled_unprotect is None:
        from helpers import require_system

        require_system("cc", "sfu/_fanout.c was not compiled at install (a C compiler and Python's headers)")
    key = os.urandom(profile.key_length + profile.salt_length)
    sender = SrtpContext(profile, key, True)
    rtp = [bytes([0x80, 96]) + (n).to_bytes(2, "big") + bytes(8) + os.urandom(n % 1300) for n in range(40)]
    datagrams = [bytes(sender.protect(p)) for p in rtp]
    rtcp = [bytes(sender.protect_rtcp(bytes([0x80, 201, 0, 1]) + n.to_bytes(4, "big"))) for n in range(10)]
    tampered = bytearray(datagrams[5])
    tampered[20] ^= 1
    odd = [bytes(tampered), datagrams[3], datagrams[7][:10], datagrams[9] + bytes(2000)]
    results = []
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(srtp, "compiled_unprotect", None)
        receiver = SrtpContext(profile, key, False)
        got: list[bytes | int] = []
        for data, unprotect in [
            *((d, receiver.unprotect) for d in datagrams + odd),
            *((d, receiver.unprotect_rtcp) for d in rtcp + rtcp[:1]),
        ]:
            try:
                got.append(bytes(unprotect(data)))
            except SrtpError as exc:
                got.append(exc.code)
        results.append(got)
    assert results[0] == results[1]
    assert results[0][: len(rtp)] == rtp and all(
        isinstance(r, int) for r in results[0][len(rtp) : len(rtp) + 4]
    )
