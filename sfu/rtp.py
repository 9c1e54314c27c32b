"""RTP header access on raw buffers.

The forwarding path never builds packet objects (aiortc's RtpPacket costs more to parse and serialize
than the SRTP crypto, see DESIGN.md): it reads and writes header fields in place with struct. The
helpers here are the only places that know the RTP header layout (RFC 3550 section 5.1) and the
header-extension layouts (RFC 8285).
"""

from __future__ import annotations

from struct import Struct
from typing import Any

SEQ_TS_SSRC = Struct("!HII")  # at offset 2: sequence number, timestamp, SSRC
SEQ_TS = Struct("!HI")  # at offset 2: sequence number, timestamp
PT_SEQ_TS_SSRC = Struct("!BHII")  # at offset 1: marker and payload type, then as above
U8 = Struct("!B")
_HH = Struct("!HH")
U16 = Struct("!H")
U32 = Struct("!I")

RTP_HEADER_SIZE = 12
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE_MASK = 0xFFF0
TWO_BYTE_PROFILE = 0x1000


class RtpError(ValueError):
    """A datagram that claims to be RTP but whose header does not hold together."""


def is_rtcp(data: bytes | bytearray) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192-223 sit where RTP has marker+payload type."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def payload_offset(data: bytes | bytearray) -> int:
    """Offset of the payload, after CSRCs and the header extension; raises RtpError if truncated."""
    n = len(data)
    if n < RTP_HEADER_SIZE or data[0] >> 6 != 2:
        raise RtpError("not an RTP packet")
    offset = RTP_HEADER_SIZE + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        if offset + 4 > n:
            raise RtpError("truncated header extension")
        offset += 4 + 4 * U16.unpack_from(data, offset + 2)[0]
    if offset > n:
        raise RtpError("truncated RTP header")
    return offset


def payload_end(data: bytes | bytearray) -> int:
    """End of the payload, before any padding (RFC 3550 P bit)."""
    end = len(data)
    if data[0] & 0x20:
        end -= data[-1]
    return end


def extensions(data: bytes | bytearray) -> list[tuple[int, int, int]]:
    """Header extension elements as (id, value offset, value length), one-byte or two-byte form.

    Called only off the steady path (learning an SSRC, reading audio levels), so a small list is fine.
    """
    if not data[0] & 0x10:
        return []
    start = RTP_HEADER_SIZE + 4 * (data[0] & 0x0F)
    if start + 4 > len(data):
        raise RtpError("truncated header extension")
    profile, words = _HH.unpack_from(data, start)
    pos = start + 4
    end = pos + 4 * words
    if end > len(data):
        raise RtpError("truncated header extension")
    found: list[tuple[int, int, int]] = []
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            b = data[pos]
            if b == 0:  # padding
                pos += 1
                continue
            ext_id, length = b >> 4, (b & 0x0F) + 1
            if ext_id == 15:
                break
            if pos + 1 + length > end:
                raise RtpError("truncated header extension element")
            found.append((ext_id, pos + 1, length))
            pos += 1 + length
    elif profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        while pos < end:
            ext_id = data[pos]
            if ext_id == 0:
                pos += 1
                continue
            if pos + 2 > end:
                raise RtpError("truncated header extension element")
            length = data[pos + 1]
            if pos + 2 + length > end:
                raise RtpError("truncated header extension element")
            found.append((ext_id, pos + 2, length))
            pos += 2 + length
    return found


def extension_value(data: bytes | bytearray, ext_id: int) -> bytes | None:
    for eid, offset, length in extensions(data):
        if eid == ext_id:
            return bytes(data[offset : offset + length])
    return None


def remap_extension_ids(buf: bytearray | memoryview, table: bytes) -> None:
    """Rewrite extension ids in place through `table` (old id -> new id, 256 entries).

    A publisher picks its own ids in its offer; subscribers get the router's ids. Ids a subscriber
    did not negotiate map to an id it ignores, so no element is removed and the packet keeps its size.
    """
    if not buf[0] & 0x10:
        return
    start = RTP_HEADER_SIZE + 4 * (buf[0] & 0x0F)
    if start + 4 > len(buf):
        raise RtpError("truncated header extension")
    profile, words = _HH.unpack_from(buf, start)
    pos = start + 4
    end = min(pos + 4 * words, len(buf))
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            b = buf[pos]
            if b == 0:
                pos += 1
                continue
            ext_id = b >> 4
            if ext_id == 15:
                return
            new_id = table[ext_id]
            if new_id > 14:  # cannot be expressed in one-byte form: hide the element
                new_id = table[0]
            buf[pos] = (new_id << 4) | (b & 0x0F)
            pos += 2 + (b & 0x0F)
    elif profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        while pos + 1 < end:
            ext_id = buf[pos]
            if ext_id == 0:
                pos += 1
                continue
            buf[pos] = table[ext_id] or table[0]
            pos += 2 + buf[pos + 1]


def is_keyframe(codec: str, data: bytes | bytearray) -> bool:
    """Whether this packet starts a decodable picture: a Consumer switches sources only there."""
    try:
        offset = payload_offset(data)
    except RtpError:
        return False
    end = payload_end(data)
    if offset >= end:
        return False
    if codec == "VP8":
        return _vp8_keyframe(data, offset, end)
    if codec == "H264":
        return _h264_keyframe(data, offset, end)
    return True


def _vp8_keyframe(data: bytes | bytearray, offset: int, end: int) -> bool:
    """RFC 7741: start of partition 0 with the P bit of the VP8 frame header clear."""
    d = data[offset]
    if not d & 0x10 or d & 0x07:  # S bit and partition index 0
        return False
    pos = offset + 1
    if d & 0x80:  # X: extension byte
        if pos >= end:
            return False
        x = data[pos]
        pos += 1
        if x & 0x80:  # I: picture id, one or two bytes
            if pos >= end:
                return False
            pos += 2 if data[pos] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            pos += 1
        if x & 0x30:  # T or K: TID/KEYIDX byte
            pos += 1
    return pos < end and not data[pos] & 0x01


def _h264_keyframe(data: bytes | bytearray, offset: int, end: int) -> bool:
    """RFC 6184: an IDR slice or an SPS, alone, in a STAP-A, or at the start of an FU-A."""
    nal = data[offset] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24:  # STAP-A: walk the aggregated NAL units
        pos = offset + 1
        while pos + 2 < end:
            if data[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + U16.unpack_from(data, pos)[0]
        return False
    if nal == 28 and offset + 1 < end:  # FU-A: start bit and type of the fragmented unit
        fu = data[offset + 1]
        return bool(fu & 0x80) and fu & 0x1F in (5, 7)
    return False


def vp8_picture_fields(data: bytes | bytearray) -> tuple[int, int, int]:
    """Where a VP8 payload descriptor keeps its PictureID and TL0PICIDX (RFC 7741 4.2).

    Returns (picture-id offset, picture-id bytes 0/1/2, TL0PICIDX offset or -1). A Consumer that
    switched layers rewrites these two counters so the subscriber's decoder sees one stream.
    """
    offset = payload_offset(data)
    end = payload_end(data)
    if offset >= end or not data[offset] & 0x80:  # no X: neither field
        return 0, 0, -1
    pos = offset + 2
    if pos > end:
        raise RtpError("truncated VP8 payload descriptor")
    x = data[offset + 1]
    pid_at = pid_len = 0
    if x & 0x80:
        if pos >= end:
            raise RtpError("truncated VP8 picture id")
        pid_at, pid_len = pos, 2 if data[pos] & 0x80 else 1
        pos += pid_len
    tl0_at = -1
    if x & 0x40:
        if pos >= end:
            raise RtpError("truncated VP8 TL0PICIDX")
        tl0_at = pos
    if pid_at + pid_len > end:
        raise RtpError("truncated VP8 picture id")
    return pid_at, pid_len, tl0_at


def vp8_keyframe_size(data: bytes | bytearray) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe's first packet (RFC 6386 9.1), else None.

    The server decodes nothing, but it must know what size each simulcast layer really is to give a
    subscriber the smallest one that fills its view: three header bytes at each keyframe tell it.
    """
    try:
        if not is_keyframe("VP8", data):
            return None
        offset = payload_offset(data)
        end = payload_end(data)
    except RtpError:
        return None
    d = data[offset]
    pos = offset + 1
    if d & 0x80:
        x = data[pos]
        pos += 1
        if x & 0x80:
            pos += 2 if data[pos] & 0x80 else 1
        if x & 0x40:
            pos += 1
        if x & 0x30:
            pos += 1
    # frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height, little-endian
    if pos + 10 > end or data[pos + 3 : pos + 6] != b"\x9d\x01\x2a":
        return None
    width = (data[pos + 6] | data[pos + 7] << 8) & 0x3FFF
    height = (data[pos + 8] | data[pos + 9] << 8) & 0x3FFF
    return (width, height) if width and height else None


def rewrite_vp8_picture(out: Any, packet: bytes | bytearray, pid_delta: int, tl0_delta: int) -> None:
    """Write `packet`'s PictureID + pid_delta and TL0PICIDX + tl0_delta into `out` (its copy).

    A malformed descriptor is left as it is: the subscriber's decoder judges the payload, not us.
    """
    try:
        pid_at, pid_len, tl0_at = vp8_picture_fields(packet)
    except RtpError:
        return
    # pack_into, because `out` may be a cffi buffer, which takes no int item assignment
    if pid_len == 2:
        pid = (((packet[pid_at] & 0x7F) << 8 | packet[pid_at + 1]) + pid_delta) & 0x7FFF
        U16.pack_into(out, pid_at, 0x8000 | pid)
    elif pid_len == 1:
        U8.pack_into(out, pid_at, (packet[pid_at] + pid_delta) & 0x7F)
    if tl0_at >= 0:
        U8.pack_into(out, tl0_at, (packet[tl0_at] + tl0_delta) & 0xFF)


def one_byte_element(ext_id: int, size: int) -> bytes:
    """A zeroed one-byte-form element padded to whole words, for insert_extension_slot."""
    element = bytes([ext_id << 4 | (size - 1)]) + bytes(size)
    return element + bytes(-len(element) % 4)


def insert_extension_slot(buf: bytearray, element: bytes) -> int:
    """Insert `element` (from one_byte_element) in place; the offset of its value, or -1.

    Used once per received packet so that each Consumer only writes its transport-wide sequence
    number at a known offset. The element goes after the existing ones (padding may precede it,
    which RFC 8285 allows); a packet without extensions gets a block; the rare two-byte form is left
    alone.
    """
    start = RTP_HEADER_SIZE + 4 * (buf[0] & 0x0F)
    if not buf[0] & 0x10:
        if start > len(buf):
            raise RtpError("truncated RTP header")
        buf[0] |= 0x10
        buf[start:start] = _HH.pack(ONE_BYTE_PROFILE, len(element) >> 2) + element
        return start + 5
    if start + 4 > len(buf):
        raise RtpError("truncated header extension")
    profile, words = _HH.unpack_from(buf, start)
    end = start + 4 + 4 * words
    if profile != ONE_BYTE_PROFILE or end > len(buf):
        return -1
    buf[end:end] = element
    U16.pack_into(buf, start + 2, words + (len(element) >> 2))
    return end + 1


def extension_offset(data: bytes | bytearray, ext_id: int) -> int:
    """Where the value of element `ext_id` starts, or -1."""
    try:
        return next((offset for eid, offset, _ in extensions(data) if eid == ext_id), -1)
    except RtpError:
        return -1


def split_compound(data: bytes) -> list[bytes]:
    """The RTCP packets of a compound packet, by their length fields (RFC 3550 6.1)."""
    packets = []
    pos = 0
    while pos + 4 <= len(data):
        end = pos + 4 * (U16.unpack_from(data, pos + 2)[0] + 1)
        if end > len(data):
            raise RtpError("truncated RTCP packet")
        packets.append(data[pos:end])
        pos = end
    return packets


def router_terms(packet: bytes, pt: int, ext_table: bytes | None, slot: bytes) -> tuple[bytes, int]:
    """A publisher's packet in router terms, and where its transport-wide slot is (-1: none).

    The router's payload type, its extension ids (through `ext_table`, if the publisher chose
    others), and `slot` (one_byte_element) inserted for each subscriber's transport-wide number. A
    header that does not hold together keeps its payload type rewrite only. The reference of
    sfu/_fanout.c's `router_terms`, which the receive path uses where it was compiled.
    """
    buf = bytearray(packet)
    buf[1] = (buf[1] & 0x80) | pt
    try:
        if ext_table is not None:
            remap_extension_ids(buf, ext_table)
        at = insert_extension_slot(buf, slot)
    except RtpError:  # libsrtp refuses such headers first; this is for what gets past it anyway
        at = -1
    return bytes(buf), at
