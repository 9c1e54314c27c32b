"""Unit tests for sfu.rtp: header layout, RFC 8285 header extensions and keyframe detection.

Packets are built by hand with struct so every offset in the assertions can be checked on paper.
"""

from __future__ import annotations

import struct

import pytest

from sfu.rtp import (
    ONE_BYTE_PROFILE,
    TWO_BYTE_PROFILE,
    RtpError,
    extension_value,
    extensions,
    is_keyframe,
    is_rtcp,
    payload_end,
    payload_offset,
    remap_extension_ids,
    vp8_keyframe_size,
    vp8_picture_fields,
)


def rtp(
    payload: bytes = b"",
    *,
    pt: int = 96,
    seq: int = 1000,
    ts: int = 90000,
    ssrc: int = 0x11223344,
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
    ext: tuple[int, bytes] | None = None,
    padding: int = 0,
) -> bytes:
    """An RTP packet: fixed header, CSRCs, optional (profile, body) extension, payload, padding."""
    first = 0x80 | len(csrcs) | (0x10 if ext is not None else 0) | (0x20 if padding else 0)
    data = struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    data += b"".join(struct.pack("!I", c) for c in csrcs)
    if ext is not None:
        profile, body = ext
        assert len(body) % 4 == 0, "extension bodies are whole 32-bit words"
        data += struct.pack("!HH", profile, len(body) // 4) + body
    data += payload
    if padding:
        data += bytes(padding - 1) + bytes([padding])
    return data


def pad4(body: bytes) -> bytes:
    return body + bytes(-len(body) % 4)


# One-byte form: id 1 (1 byte 0xAA), two padding bytes, id 2 (3 bytes), id 3 (2 bytes), padding.
ONE_BYTE_BODY = pad4(bytes([0x10, 0xAA, 0x00, 0x00, 0x22, 0x01, 0x02, 0x03, 0x31, 0xB0, 0xB1]))
# Two-byte form: id 1 (2 bytes), one padding byte, id 20 (empty), id 3 (1 byte), padding.
TWO_BYTE_BODY = pad4(bytes([1, 2, 0xAB, 0xCD, 0, 20, 0, 3, 1, 0x7F]))


# --- payload_offset / payload_end / is_rtcp ----------------------------------------------------


def test_payload_offset_plain_header() -> None:
    assert payload_offset(rtp(b"xyz")) == 12
    assert payload_offset(rtp()) == 12  # an empty payload is still a valid packet


def test_payload_offset_with_csrcs() -> None:
    data = rtp(b"payload", csrcs=(1, 2, 3))
    assert payload_offset(data) == 12 + 3 * 4
    assert data[payload_offset(data) :] == b"payload"


@pytest.mark.parametrize(
    ("profile", "body"), [(ONE_BYTE_PROFILE, ONE_BYTE_BODY), (TWO_BYTE_PROFILE, TWO_BYTE_BODY)]
)
def test_payload_offset_with_header_extension(profile: int, body: bytes) -> None:
    data = rtp(b"PAYLOAD", ext=(profile, body))
    assert payload_offset(data) == 12 + 4 + len(body)
    with_csrcs = rtp(b"PAYLOAD", csrcs=(7, 8), ext=(profile, body))
    assert payload_offset(with_csrcs) == 12 + 8 + 4 + len(body)
    assert with_csrcs[payload_offset(with_csrcs) :] == b"PAYLOAD"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an RTP packet"),
        (rtp()[:11], "not an RTP packet"),
        (bytes([0x40]) + rtp()[1:], "not an RTP packet"),  # version 1
        (bytes([0x00]) + rtp()[1:], "not an RTP packet"),  # version 0
        (rtp(csrcs=(1, 2))[:-1], "truncated RTP header"),  # CC says 2 CSRCs, 7 bytes follow
        (bytes([0x90]) + rtp()[1:] + b"\xbe\xde", "truncated header extension"),  # X, no room
        (rtp(ext=(ONE_BYTE_PROFILE, ONE_BYTE_BODY))[:-1], "truncated RTP header"),  # length too big
        (rtp(csrcs=(1,), ext=(TWO_BYTE_PROFILE, TWO_BYTE_BODY))[:18], "truncated header extension"),
    ],
)
def test_payload_offset_rejects_truncation(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        payload_offset(data)


def test_payload_end_skips_padding() -> None:
    data = rtp(b"abcd", padding=4)
    assert len(data) == 12 + 4 + 4
    assert payload_end(data) == 16 and data[payload_offset(data) : payload_end(data)] == b"abcd"
    assert payload_end(rtp(b"abcd")) == 16


def test_is_rtcp_demultiplexing() -> None:
    assert not is_rtcp(rtp(pt=96)) and not is_rtcp(rtp(pt=111, marker=True))
    assert is_rtcp(bytes([0x80, 200, 0, 6])) and is_rtcp(bytes([0x81, 205, 0, 2]))
    assert not is_rtcp(b"\x80")


# --- extensions ----------------------------------------------------------------------------


def test_extensions_absent_without_x_bit() -> None:
    assert extensions(rtp(b"\x10\x00")) == []
    assert extension_value(rtp(b"\x10\x00"), 1) is None


def test_extensions_one_byte_form_with_padding() -> None:
    data = rtp(b"payload", ext=(ONE_BYTE_PROFILE, ONE_BYTE_BODY))
    # body starts at 16: [0x10 AA] [00 00 padding] [0x22 01 02 03] [0x31 B0 B1] [00]
    assert extensions(data) == [(1, 17, 1), (2, 21, 3), (3, 25, 2)]
    assert extension_value(data, 1) == b"\xaa"
    assert extension_value(data, 2) == b"\x01\x02\x03"
    assert extension_value(data, 3) == b"\xb0\xb1"
    assert extension_value(data, 4) is None


def test_extensions_one_byte_form_after_csrcs() -> None:
    data = rtp(b"p", csrcs=(0xCAFE,), ext=(ONE_BYTE_PROFILE, pad4(bytes([0x40, 0x7F]))))
    assert extensions(data) == [(4, 21, 1)]
    assert extension_value(data, 4) == b"\x7f"


def test_extensions_one_byte_id_15_stops_parsing() -> None:
    body = pad4(bytes([0x10, 0xAA, 0xF0, 0x20, 0x01]))  # id 15 is reserved: nothing after it counts
    assert extensions(rtp(ext=(ONE_BYTE_PROFILE, body))) == [(1, 17, 1)]


@pytest.mark.parametrize("profile", [TWO_BYTE_PROFILE, TWO_BYTE_PROFILE | 0x000F])  # appbits vary
def test_extensions_two_byte_form(profile: int) -> None:
    data = rtp(b"payload", ext=(profile, TWO_BYTE_BODY))
    # body at 16: [01 02 AB CD] [00] [14 00] [03 01 7F] [00 00]
    assert extensions(data) == [(1, 18, 2), (20, 23, 0), (3, 25, 1)]
    assert extension_value(data, 1) == b"\xab\xcd"
    assert extension_value(data, 20) == b""
    assert extension_value(data, 3) == b"\x7f"


def test_extensions_unknown_profile_is_ignored() -> None:
    assert extensions(rtp(ext=(0x1234, ONE_BYTE_BODY))) == []


@pytest.mark.parametrize(
    "data",
    [
        rtp(ext=(ONE_BYTE_PROFILE, bytes([0x13, 0x01, 0x02, 0x03]))),  # says 4 bytes, 3 in the body
        rtp(ext=(TWO_BYTE_PROFILE, bytes([0x01, 0x05, 0x00, 0x00]))),  # says 5 bytes, 2 in the body
        rtp(ext=(TWO_BYTE_PROFILE, bytes([0x00, 0x00, 0x00, 0x07]))),  # id, no room for the length
        rtp(ext=(ONE_BYTE_PROFILE, ONE_BYTE_BODY))[:-4],  # shorter than the length word says
        bytes([0x90]) + rtp()[1:],  # X bit, no extension header at all
    ],
)
def test_extensions_truncated(data: bytes) -> None:
    with pytest.raises(RtpError, match="truncated header extension"):
        extensions(data)


# --- remap_extension_ids ---------------------------------------------------------------------


def table_with(mapping: dict[int, int], fallback: int = 14) -> bytes:
    table = bytearray(range(256))
    table[0] = fallback
    for old, new in mapping.items():
        table[old] = new
    return bytes(table)


def test_remap_one_byte_ids_through_table() -> None:
    payload = bytes([0x10, 0x22, 0x31, 0xBE, 0xDE, 0x00]) * 4  # looks like extension bytes, must stay
    original = rtp(payload, csrcs=(5,), ext=(ONE_BYTE_PROFILE, ONE_BYTE_BODY))
    buf = bytearray(original)
    remap_extension_ids(buf, table_with({1: 4, 2: 10, 3: 13}))
    assert len(buf) == len(original)
    assert [(eid, n) for eid, _, n in extensions(buf)] == [(4, 1), (10, 3), (13, 2)]
    assert extension_value(buf, 4) == b"\xaa" and extension_value(buf, 10) == b"\x01\x02\x03"
    assert extension_value(buf, 13) == b"\xb0\xb1"
    # only the three element header bytes changed: fixed header, CSRCs, values, payload untouched
    changed = [i for i in range(len(buf)) if buf[i] != original[i]]
    offsets = [o - 1 for _, o, _ in extensions(original)]
    assert changed == offsets
    assert buf[payload_offset(buf) :] == payload


def test_remap_one_byte_id_above_14_falls_back_to_entry_0() -> None:
    buf = bytearray(rtp(b"\x9d\x01\x2a", ext=(ONE_BYTE_PROFILE, ONE_BYTE_BODY)))
    remap_extension_ids(buf, table_with({1: 4, 2: 20, 3: 200}, fallback=9))
    # 20 and 200 do not fit in four bits: both become table[0]; lengths are kept
    assert [(eid, n) for eid, _, n in extensions(buf)] == [(4, 1), (9, 3), (9, 2)]
    assert buf[payload_offset(buf) :] == b"\x9d\x01\x2a"


def test_remap_one_byte_identity_table_changes_nothing() -> None:
    original = rtp(b"data", ext=(ONE_BYTE_PROFILE, ONE_BYTE_BODY))
    buf = bytearray(original)
    remap_extension_ids(buf, table_with({}))
    assert bytes(buf) == original


def test_remap_two_byte_ids_through_table() -> None:
    payload = bytes([1, 2, 20, 3]) * 3
    original = rtp(payload, ext=(TWO_BYTE_PROFILE, TWO_BYTE_BODY))
    buf = bytearray(original)
    table = bytearray(table_with({1: 200, 3: 2}))
    table[20] = 0  # "no mapping": the element falls back to table[0]
    remap_extension_ids(buf, bytes(table))
    assert [(eid, n) for eid, _, n in extensions(buf)] == [(200, 2), (14, 0), (2, 1)]
    assert extension_value(buf, 200) == b"\xab\xcd" and extension_value(buf, 2) == b"\x7f"
    assert len(buf) == len(original) and buf[payload_offset(buf) :] == payload


def test_remap_without_extension_is_a_no_op() -> None:
    original = rtp(bytes([0x10, 0x20, 0x30]))
    buf = bytearray(original)
    remap_extension_ids(buf, table_with({1: 4, 2: 5, 3: 6}))
    assert bytes(buf) == original


# --- is_keyframe: VP8 (RFC 7741) -------------------------------------------------------------

KEY_FRAME_HEADER = b"\x50\x42\x00\x9d\x01\x2a\x80\x02\xe0\x01"  # P bit (bit 0 of byte 0) clear
INTER_FRAME_HEADER = b"\x31\x0b\x00\x11\x22\x33"  # P bit set

# Payload descriptors that start partition 0. The picture-id bytes have their low bit set, so a
# parser that skips too few bytes reads them as "P=1" and misses the keyframe.
VP8_START_DESCRIPTORS = {
    "no X": b"\x10",
    "X, I (7-bit picture id)": b"\x90\x80\x13",
    "X, I (15-bit picture id)": b"\x90\x80\x81\x23",
    "X, I+L (15-bit id, TL0PICIDX)": b"\x90\xc0\x81\x23\x05",
    "X, I+L+T+K": b"\x90\xf0\x81\x23\x05\x61",
    "X, T only": b"\x90\x20\xe1",
    "X, K only": b"\x90\x10\x1f",
    "X, L only": b"\x90\x40\x07",
    "X, nothing": b"\x90\x00",
    "N bit set (non-reference)": b"\x30",
}


@pytest.mark.parametrize("descriptor", VP8_START_DESCRIPTORS.values(), ids=VP8_START_DESCRIPTORS.keys())
def test_vp8_keyframe_start(descriptor: bytes) -> None:
    assert is_keyframe("VP8", rtp(descriptor + KEY_FRAME_HEADER + b"\x00" * 20, marker=False))


@pytest.mark.parametrize("descriptor", VP8_START_DESCRIPTORS.values(), ids=VP8_START_DESCRIPTORS.keys())
def test_vp8_interframe_start(descriptor: bytes) -> None:
    assert not is_keyframe("VP8", rtp(descriptor + INTER_FRAME_HEADER + b"\x00" * 20))


@pytest.mark.parametrize(
    "descriptor",
    [
        b"\x00",  # S clear: continuation of a partition
        b"\x80\x80\x13",  # X, I, S clear
        b"\x11",  # S set but partition index 1
        b"\x94\x80\x13",  # X, S, partition index 4
    ],
)
def test_vp8_non_start_packets_are_not_keyframes(descriptor: bytes) -> None:
    # the bytes after the descriptor look like a keyframe header, but they are mid-frame data
    assert not is_keyframe("VP8", rtp(descriptor + KEY_FRAME_HEADER))


def test_vp8_keyframe_after_csrcs_and_extension() -> None:
    data = rtp(b"\x90\x80\x81\x23" + KEY_FRAME_HEADER, csrcs=(1,), ext=(ONE_BYTE_PROFILE, ONE_BYTE_BODY))
    assert is_keyframe("VP8", data)


def test_vp8_descriptor_without_frame_header_is_not_a_keyframe() -> None:
    assert not is_keyframe("VP8", rtp(b"\x10"))
    assert not is_keyframe("VP8", rtp(b"\x90\x80\x13"))  # descriptor complete, no frame byte


@pytest.mark.parametrize("payload", [b"\x90", b"\x90\x80"], ids=["X without X byte", "I without id"])
def test_vp8_truncated_descriptor_is_not_a_keyframe(payload: bytes) -> None:
    assert not is_keyframe("VP8", rtp(payload))


def test_vp8_padding_is_not_read_as_frame_header() -> None:
    data = rtp(b"\x10", padding=2)  # payload: the descriptor alone; then padding 00 02
    assert data[payload_offset(data) : payload_end(data)] == b"\x10"
    assert not is_keyframe("VP8", data)


# --- is_keyframe: H.264 (RFC 6184) -----------------------------------------------------------

SPS = b"\x67\x42\xc0\x1f\xda\x01\x40\x16\xe8"
PPS = b"\x68\xce\x3c\x80"
SEI = b"\x06\x05\x10\xb6"
IDR = b"\x65\x88\x84\x00\x33\xff"
NON_IDR = b"\x41\x9a\x24\x6c\x41"


def stap_a(*units: bytes) -> bytes:
    return b"\x78" + b"".join(struct.pack("!H", len(u)) + u for u in units)


H264_CASES = {
    "single NAL IDR (5)": (IDR, True),
    "single NAL SPS (7)": (SPS, True),
    "single NAL IDR, nal_ref_idc 1": (b"\x25\x88\x84", True),
    "STAP-A SPS+PPS+IDR": (stap_a(SPS, PPS, IDR), True),
    "STAP-A SPS+PPS": (stap_a(SPS, PPS), True),
    "STAP-A SEI then SPS": (stap_a(SEI, SPS, PPS), True),
    "STAP-A SEI+PPS": (stap_a(SEI, PPS), False),
    "STAP-A non-IDR slices": (stap_a(NON_IDR, NON_IDR), False),
    "STAP-A empty": (b"\x78", False),
    "FU-A start of IDR": (b"\x7c\x85" + IDR[1:], True),
    "FU-A start of SPS": (b"\x7c\x87" + SPS[1:], True),
    "FU-A middle of IDR": (b"\x7c\x05" + IDR[1:], False),
    "FU-A end of IDR": (b"\x7c\x45" + IDR[1:], False),
    "FU-A start of non-IDR": (b"\x5c\x81" + NON_IDR[1:], False),
    "FU-A indicator only": (b"\x7c", False),
    "non-IDR slice (1)": (NON_IDR, False),
    "PPS alone (8)": (PPS, False),
    "SEI alone (6)": (SEI, False),
}


@pytest.mark.parametrize(("payload", "expected"), H264_CASES.values(), ids=H264_CASES.keys())
def test_h264_keyframe(payload: bytes, expected: bool) -> None:
    assert is_keyframe("H264", rtp(payload, pt=102)) is expected
    # the same with CSRCs and a two-byte extension in front
    data = rtp(payload, pt=102, csrcs=(9,), ext=(TWO_BYTE_PROFILE, TWO_BYTE_BODY))
    assert is_keyframe("H264", data) is expected


# --- is_keyframe: other codecs, empty and garbage input ---------------------------------------


def test_audio_packets_always_count_as_keyframes() -> None:
    assert is_keyframe("opus", rtp(b"\xfc\xff\xfe", pt=111))


@pytest.mark.parametrize("codec", ["VP8", "H264", "opus"])
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80",
        b"\x00" * 40,  # version 0
        b"\xff" * 40,  # version 3
        rtp(),  # header only: empty payload
        rtp(padding=3),  # padding only
        bytes([0xA0]) + rtp(b"\x10\x00")[1:-1] + b"\xff",  # padding count larger than the packet
        rtp(csrcs=(1, 2))[:16],  # truncated CSRC list
        bytes([0x90]) + rtp(b"\x10\x00")[1:],  # X bit without a valid extension
    ],
    ids=["empty", "1 byte", "v0", "v3", "no payload", "padding only", "huge padding", "csrc", "ext"],
)
def test_garbage_is_never_a_keyframe(codec: str, data: bytes) -> None:
    assert is_keyframe(codec, data) is False


# -- VP8 picture id, TL0PICIDX and keyframe size ------------------------------------------------------

# A keyframe's frame tag (P bit clear), start code, then width 1280 and height 720 (14 bits, LE).
KEYFRAME_HEADER = bytes([0x50, 0x2A, 0x01, 0x9D, 0x01, 0x2A, 0x00, 0x05, 0xD0, 0x02])


@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        (bytes([0x10]), (0, 0, -1)),  # no extension byte
        (bytes([0x90, 0x80, 0x05]), (14, 1, -1)),  # 7-bit picture id
        (bytes([0x90, 0x80, 0x81, 0x23]), (14, 2, -1)),  # 15-bit picture id
        (bytes([0x90, 0xC0, 0x81, 0x23, 0x07]), (14, 2, 16)),  # and TL0PICIDX
        (bytes([0x90, 0x40, 0x07]), (0, 0, 14)),  # TL0PICIDX alone
    ],
)
def test_vp8_picture_fields(descriptor: bytes, expected: tuple[int, int, int]) -> None:
    assert vp8_picture_fields(rtp(descriptor + KEYFRAME_HEADER)) == expected


def test_vp8_picture_fields_after_extension_and_truncated() -> None:
    packet = rtp(bytes([0x90, 0x80, 0x81, 0x23]) + KEYFRAME_HEADER, ext=(ONE_BYTE_PROFILE, ONE_BYTE_BODY))
    at, length, _ = vp8_picture_fields(packet)
    assert length == 2 and packet[at : at + 2] == bytes([0x81, 0x23])
    with pytest.raises(RtpError):
        vp8_picture_fields(rtp(bytes([0x90, 0x80, 0x81])))  # the second picture-id byte is missing


def test_vp8_keyframe_size() -> None:
    for descriptor in (bytes([0x10]), bytes([0x90, 0xE0, 0x81, 0x23, 0x07, 0x20])):
        assert vp8_keyframe_size(rtp(descriptor + KEYFRAME_HEADER)) == (1280, 720)
    interframe = bytes([0x51]) + KEYFRAME_HEADER[1:]
    assert vp8_keyframe_size(rtp(bytes([0x10]) + interframe)) is None
    assert vp8_keyframe_size(rtp(bytes([0x10]) + KEYFRAME_HEADER[:8])) is None  # truncated
    assert (
        vp8_keyframe_size(rtp(bytes([0x10, 0x50, 0x2A, 0x01, 0, 0, 0, 0, 0, 0, 0]))) is None
    )  # no start code
