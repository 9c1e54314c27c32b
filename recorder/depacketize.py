"""RTP payloads back into the frames a container holds: VP8 (RFC 7741), H.264 (RFC 6184) and Opus
(RFC 7587).

Written here because no maintained Python library depacketizes RTP without also owning the socket
and the jitter buffer (aiortc's does both, inside its receiver, and its H.264 parser neither checks
a STAP-A's lengths nor follows fragments across packets); the recorder needs only the frame
assembly, fed packet by packet from its own socket. A frame with a hole in it is not written: the
caller asks for a keyframe and writes nothing until it comes, so a lost packet never corrupts the
file, it only skips pictures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class Frame:
    data: bytes
    timestamp: int  # RTP, of the stream
    keyframe: bool


def vp8_payload(payload: bytes) -> tuple[bytes, bool]:
    """The VP8 data of one packet, and whether it starts a frame (S=1, partition 0); ValueError for
    a payload too short for its descriptor."""
    if not payload:
        raise ValueError("empty VP8 payload")
    first = payload[0]
    start = bool(first & 0x10) and first & 0x07 == 0
    i = 1
    if first & 0x80:  # X: extension byte
        if len(payload) < 2:
            raise ValueError("short VP8 descriptor")
        ext = payload[1]
        i = 2
        if ext & 0x80:  # I: PictureID, 7 or 15 bits
            if len(payload) <= i:
                raise ValueError("short VP8 descriptor")
            i += 2 if payload[i] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            i += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            i += 1
    if len(payload) <= i:
        raise ValueError("short VP8 descriptor")
    return payload[i:], start


def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe's header (RFC 6386 9.1), None for an interframe."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little") & 0x3FFF


class Assembler(Protocol):
    holes: int  # frames dropped for a missing or unreadable packet

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes) -> Frame | None:
        """Take the next packet (in arrival order); the frame it completes, if any."""
        ...


class Vp8Assembler:
    """Packets of one VP8 stream, in arrival order, into whole frames."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.timestamp: int | None = None
        self.next_seq: int | None = None
        self.broken = True  # until a frame's first packet: we may join mid-frame
        self.holes = 0  # frames dropped for a missing packet

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes) -> Frame | None:
        try:
            data, start = vp8_payload(payload)
        except ValueError:
            self._drop()
            return None
        if self.next_seq is not None and seq != self.next_seq:
            if ((seq - self.next_seq) & 0xFFFF) >= 0x8000:
                return None  # late or repeated: its frame was settled already
            self._drop()  # a hole: this frame cannot be whole
        self.next_seq = (seq + 1) & 0xFFFF
        if start:
            self.parts, self.timestamp, self.broken = [data], timestamp, False
        elif self.broken or timestamp != self.timestamp:
            self.broken = True
            return None
        else:
            self.parts.append(data)
        if not marker or self.broken:
            return None
        frame = b"".join(self.parts)
        self.parts, self.broken = [], True
        return Frame(frame, timestamp, not frame[0] & 0x01)

    def _drop(self) -> None:
        if self.parts:
            self.holes += 1
        self.parts, self.broken = [], True


class OpusAssembler:
    """One Opus packet is one frame."""

    def __init__(self) -> None:
        self.holes = 0
        self.next_seq: int | None = None

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes) -> Frame | None:
        if self.next_seq is not None and seq != self.next_seq:
            if ((seq - self.next_seq) & 0xFFFF) >= 0x8000:
                return None
            self.holes += 1
        self.next_seq = (seq + 1) & 0xFFFF
        return Frame(payload, timestamp, True) if payload else None


# H.264 NAL unit types (ITU-T H.264 table 7-1) and RFC 6184's packet types
IDR, SEI, SPS, PPS, AUD = 5, 6, 7, 8, 9
STAP_A, FU_A = 24, 28
START_CODE = b"\x00\x00\x00\x01"


def stap_a_units(payload: bytes) -> list[bytes]:
    """The NAL units a STAP-A packet aggregates (RFC 6184 5.7.1); ValueError for a size that runs
    past the end, a zero size or no unit at all: a unit cut short would reach the decoder as a
    corrupt slice."""
    units, i = [], 1
    while i < len(payload):
        if i + 2 > len(payload):
            raise ValueError("STAP-A size cut short")
        size = int.from_bytes(payload[i : i + 2], "big")
        i += 2
        if size == 0 or i + size > len(payload):
            raise ValueError(f"STAP-A unit of {size} bytes with {len(payload) - i} left")
        units.append(payload[i : i + size])
        i += size
    if not units:
        raise ValueError("empty STAP-A")
    return units


def fu_a(payload: bytes) -> tuple[int, bool, bool, bytes]:
    """A FU-A packet (RFC 6184 5.8): the header of the NAL unit it carries a piece of, whether the
    piece starts and ends it, and the piece; ValueError for one that cannot be a fragment."""
    if len(payload) < 3:
        raise ValueError("FU-A without a fragment")
    header = payload[1]
    start, end = bool(header & 0x80), bool(header & 0x40)
    if start and end:  # "MUST NOT both be set": a whole unit goes in a packet of its own
        raise ValueError("FU-A both starts and ends its NAL unit")
    if not 1 <= header & 0x1F <= 23:
        raise ValueError(f"FU-A carrying NAL unit type {header & 0x1F}")
    return (payload[0] & 0xE0) | (header & 0x1F), start, end, payload[2:]


def starts_access_unit(payload: bytes) -> bool:
    """Whether a packet's first NAL unit can only open an access unit (H.264 7.4.1.2.3): a
    delimiter, SEI, SPS or PPS, or the first slice of a non-IDR picture (first_mb_in_slice 0, whose
    exp-Golomb code is the single bit 1). H.264 packets carry no start-of-frame bit, so this is how
    a packet after a gap shows whether its unit lost its head with the gap. An IDR slice is not
    taken as an opening: senders put the parameter sets before it, and a keyframe that lost them
    could begin a file that cannot say what it holds, or be decoded with sets that no longer hold."""
    if len(payload) < 2:
        return False
    kind, body = payload[0] & 0x1F, payload[1:]
    if kind == STAP_A:
        if len(payload) < 5:
            return False
        kind, body = payload[3] & 0x1F, payload[4:]
    elif kind == FU_A:
        if len(payload) < 3 or not payload[1] & 0x80:
            return False
        kind, body = payload[1] & 0x1F, payload[2:]
    if kind in (SEI, SPS, PPS, AUD):
        return True
    return kind == 1 and bool(body) and bool(body[0] & 0x80)


def annexb_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream. Emulation prevention keeps 00 00 01 out of every
    NAL unit, so the start codes alone delimit them; zero bytes before a start code are the 4-byte
    code's or trailing padding, never a unit's own last byte (which holds its stop bit)."""
    return [unit.rstrip(b"\x00") for unit in data.split(b"\x00\x00\x01")[1:] if unit.strip(b"\x00")]


def h264_parameter_sets(data: bytes) -> bytes | None:
    """The SPS and PPS NAL units of an access unit (Annex B), as Annex B; None unless it has both."""
    sets = [unit for unit in annexb_units(data) if unit[0] & 0x1F in (SPS, PPS)]
    if {unit[0] & 0x1F for unit in sets} != {SPS, PPS}:
        return None
    return b"".join(START_CODE + unit for unit in sets)


class H264Assembler:
    """Packets of one H.264 stream (RFC 6184, packetization mode 1: single NAL unit, STAP-A and
    FU-A packets), in arrival order, into access units in Annex B.

    An access unit is every NAL unit with one RTP timestamp; the marker bit ends it, and so does
    the next timestamp, for senders that leave the marker out. A gap in the sequence numbers drops
    the unit it cuts (and the next one, when the packet after the gap does not open a unit), and a
    packet it cannot read (STAP-B, MTAP, FU-B, sizes past the end) drops the unit it belongs to;
    `holes` counts the units lost either way, so that the caller asks for a keyframe.
    """

    def __init__(self) -> None:
        self.units: list[bytes] = []  # the NAL units of the access unit in hand
        self.fragment: bytearray | None = None  # a NAL unit whose FU-A fragments are still coming
        self.timestamp: int | None = None  # of the access unit in hand, or of the one skipped
        self.open = False  # an access unit is in hand
        self.broken = False  # the access unit at `timestamp` is lost: its packets are skipped
        self.next_seq: int | None = None
        self.held: Frame | None = None  # finished by the packet that also finished the one returned
        self.holes = 0

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes) -> Frame | None:
        ahead = 0 if self.next_seq is None else (seq - self.next_seq) & 0xFFFF
        if ahead >= 0x8000:
            return None  # late or repeated: its access unit was settled already
        first = self.next_seq is None
        self.next_seq = (seq + 1) & 0xFFFF
        ready = [self.held] if self.held is not None else []
        self.held = None
        if ahead:
            self._gap(timestamp, payload)
        elif timestamp != self.timestamp or not (self.open or self.broken):
            ready += self._finish()  # a new timestamp ends the unit in hand, marker or not
            # the first packet seen may be the middle of a unit: we may join mid-stream
            self._begin(timestamp, broken=first and not starts_access_unit(payload))
        if self.open and payload:  # an empty payload is padding: nothing to take
            try:
                self._take(payload)
            except ValueError:
                self._lose()
        if marker:
            ready += self._finish()
            self.broken = False
        if len(ready) > 1:  # this packet ended its own unit and, by its timestamp, a markerless one
            self.held = ready[1]  # the later one comes out at the next packet
        return ready[0] if ready else None

    def _gap(self, timestamp: int, payload: bytes) -> None:
        """Packets went missing just before this one: the unit in hand lost its tail; this packet's
        unit lost its head, unless it opens one; if neither, whole units went missing."""
        ended = not self.open and not self.broken  # the last unit came whole, to its marker
        if self.open:
            self._lose()
        if timestamp == self.timestamp:
            self.broken, self.open = True, False
            return
        whole = starts_access_unit(payload)
        if not whole or ended:
            self.holes += 1  # this unit's head went, or (it begins where the last ended) units whole
        self._begin(timestamp, broken=not whole)

    def _begin(self, timestamp: int, broken: bool) -> None:
        self.units, self.fragment = [], None
        self.timestamp, self.open, self.broken = timestamp, not broken, broken

    def _take(self, payload: bytes) -> None:
        """One packet's NAL units, or its piece of one, into the unit in hand; ValueError for a
        packet mode 1 does not have or that does not follow from the one before."""
        kind = payload[0] & 0x1F
        if kind == FU_A:
            header, start, end, piece = fu_a(payload)
            if start:
                if self.fragment is not None:
                    raise ValueError("FU-A started before the last one ended")
                self.fragment = bytearray([header])
            elif self.fragment is None or self.fragment[0] & 0x1F != header & 0x1F:
                raise ValueError("FU-A fragment of no NAL unit begun")
            self.fragment += piece
            if end:
                self.units.append(bytes(self.fragment))
                self.fragment = None
            return
        if self.fragment is not None:
            raise ValueError("a fragmented NAL unit cut short")
        if kind == STAP_A:
            self.units += stap_a_units(payload)
        elif 1 <= kind <= 23:
            self.units.append(payload)
        else:  # 0, 30, 31 undefined; STAP-B, MTAP16, MTAP24 and FU-B are interleaved mode only
            raise ValueError(f"RTP H.264 packet type {kind} outside packetization mode 1")

    def _finish(self) -> list[Frame]:
        """The unit in hand as a frame (none if it is empty or a fragment never ended)."""
        if not self.open:
            return []
        if self.fragment is not None:
            self._lose()
            return []
        units, self.units, self.open = self.units, [], False
        if not units:
            return []
        assert self.timestamp is not None
        data = b"".join(START_CODE + unit for unit in units)
        return [Frame(data, self.timestamp, any(unit[0] & 0x1F == IDR for unit in units))]

    def _lose(self) -> None:
        """Drop the unit in hand; the rest of its packets are skipped."""
        if self.open:
            self.holes += 1
        self.units, self.fragment = [], None
        self.open, self.broken = False, True
