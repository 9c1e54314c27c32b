"""RTP payloads back into the frames a container holds: VP8 (RFC 7741) and Opus (RFC 7587).

Written here because no maintained Python library depacketizes RTP without also owning the socket
and the jitter buffer (aiortc's does both, inside its receiver); the recorder needs only the frame
assembly, fed packet by packet from its own socket. A frame with a hole in it is not written: the
caller asks for a keyframe and writes nothing until it comes, so a lost packet never corrupts the
file, it only skips pictures.
"""

from __future__ import annotations

from dataclasses import dataclass


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
