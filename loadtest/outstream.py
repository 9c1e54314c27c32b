"""One RTP stream a light peer sends: clip frames packetized in real time, kept for NACKs.

Video is VP8 as RFC 7741 carries it: a four-byte payload descriptor with a 15-bit PictureID before
each payload the clip was cut into (clips.py), the marker on a frame's last packet, and the MID and
RID header extensions that rid simulcast needs. Audio is one Opus frame a packet with its RFC 6464
level, whose extension block is made once per level. The last SEND_CACHE packets are kept so that a
NACK is answered with the same packet again, as a sender without RTX does.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable, Sequence
from typing import Any

from sfu import codecs
from signaling.media import AUDIO_PTIME, next_keyframe

from .clips import ClipFrame, Layer

VIDEO_PT = codecs.VP8.payload_type  # the router's own payload types: the server rewrites nothing
AUDIO_PT = codecs.OPUS.payload_type
VIDEO_CLOCK = codecs.VP8.clock_rate
AUDIO_CLOCK = codecs.OPUS.clock_rate
EXT_AUDIO_LEVEL = codecs.EXTENSION_IDS[codecs.URI_AUDIO_LEVEL]  # and the router's extension ids
EXT_MID = codecs.EXTENSION_IDS[codecs.URI_MID]
EXT_RID = codecs.EXTENSION_IDS[codecs.URI_RID]
RTP_HEADER = struct.Struct("!BBHII")
SEND_CACHE = 512  # sent packets kept per stream for NACKs (~0.5 s of 720p)
SEND_CACHE_MASK = SEND_CACHE - 1


def extension_block(elements: Sequence[tuple[int, bytes]]) -> bytes:
    """An RFC 8285 one-byte-header extension block (0xBEDE), padded to whole words."""
    body = b"".join(bytes([(ext_id << 4) | (len(value) - 1)]) + value for ext_id, value in elements)
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


class OutStream:
    """One RTP stream we send: a simulcast layer, the only video layer, or the audio."""

    __slots__ = (
        "active",
        "bytes",
        "cache",
        "clip",
        "clock",
        "ext",
        "fraction_lost",
        "frames",
        "index",
        "keyframe_requests",
        "keyframes",
        "kind",
        "layer",
        "levels",
        "nacks",
        "packets",
        "picture_id",
        "pt",
        "retransmissions",
        "rtt",
        "seq",
        "ssrc",
        "step",
        "ts_base",
    )

    def __init__(
        self, kind: str, layer: Layer | None, clip: tuple[ClipFrame, ...], mid: str, fps: int
    ) -> None:
        self.kind = kind
        self.layer = layer
        self.clip = clip
        self.ssrc = secrets.randbits(32) or 1
        self.seq = secrets.randbits(16)
        self.ts_base = secrets.randbits(32)
        self.picture_id = secrets.randbits(15)
        self.active = True
        self.index = 0  # the next clip frame
        if kind == "video":
            self.pt, self.clock, self.step = VIDEO_PT, VIDEO_CLOCK, VIDEO_CLOCK / fps
            elements = [(EXT_MID, mid.encode())]
            if layer is not None and layer.rid:
                elements.append((EXT_RID, layer.rid.encode()))
            self.ext = extension_block(elements)
            self.levels: tuple[bytes, ...] = ()
        else:
            self.pt, self.clock, self.step = AUDIO_PT, AUDIO_CLOCK, AUDIO_CLOCK * AUDIO_PTIME
            self.ext = b""
            # the extension differs per frame only by its level byte: one block per level, made here
            self.levels = tuple(
                extension_block(
                    [(EXT_MID, mid.encode()), (EXT_AUDIO_LEVEL, bytes([(0x80 if lv < 127 else 0) | lv]))]
                )
                for lv in range(128)
            )
        self.cache: list[bytes | None] = [None] * SEND_CACHE
        self.packets = self.bytes = self.frames = self.keyframes = 0
        self.keyframe_requests = self.nacks = self.retransmissions = 0
        self.rtt: float | None = None
        self.fraction_lost = 0.0

    @property
    def name(self) -> str:
        if self.kind == "audio":
            return "audio"
        return self.layer.rid if self.layer is not None and self.layer.rid else "video"

    def timestamp(self, n: int) -> int:
        """The RTP timestamp of the kind's n-th frame since publishing began (shared by all layers)."""
        return (self.ts_base + int(n * self.step)) & 0xFFFFFFFF

    def next_keyframe(self) -> None:
        """Jump to the clip's next keyframe: a replayed clip cannot encode one on request."""
        self.index = next_keyframe(self.clip, self.index)

    def send_frame(self, n: int, send: Callable[[bytes], bool]) -> None:
        """Packetize the next clip frame with RTP timestamp of frame `n` and send it."""
        frame = self.clip[self.index]
        self.index = (self.index + 1) % len(self.clip)
        ts = self.timestamp(n)
        cache = self.cache
        if self.kind == "video":
            self.picture_id = pid = (self.picture_id + 1) & 0x7FFF
            pid_bytes = bytes((0x80 | pid >> 8, pid & 0xFF))
            first = b"\x90\x80" + pid_bytes  # X, S, partition 0; I; 15-bit PictureID (RFC 7741 4.2)
            rest = b"\x80\x80" + pid_bytes
            last = len(frame.chunks) - 1
            ext = self.ext
            for i, chunk in enumerate(frame.chunks):
                self.seq = seq = (self.seq + 1) & 0xFFFF
                marker = 0x80 if i == last else 0
                header = RTP_HEADER.pack(0x90, marker | self.pt, seq, ts, self.ssrc)
                packet = header + ext + (first if i == 0 else rest) + chunk
                cache[seq & SEND_CACHE_MASK] = packet
                if send(packet):
                    self.packets += 1
                    self.bytes += len(packet)
        else:
            self.seq = seq = (self.seq + 1) & 0xFFFF
            marker = 0x80 if self.frames == 0 else 0  # the start of a talkspurt
            header = RTP_HEADER.pack(0x90, marker | self.pt, seq, ts, self.ssrc)
            packet = header + self.levels[frame.level] + frame.chunks[0]
            cache[seq & SEND_CACHE_MASK] = packet
            if send(packet):
                self.packets += 1
                self.bytes += len(packet)
        self.frames += 1
        if frame.keyframe and self.kind == "video":
            self.keyframes += 1

    def retransmit(self, lost: Sequence[int], send: Callable[[bytes], bool]) -> None:
        """Answer a NACK from the cache: the same packet again (no RTX was negotiated)."""
        self.nacks += 1
        for seq in lost:
            packet = self.cache[seq & SEND_CACHE_MASK]
            if packet is not None and int.from_bytes(packet[2:4], "big") == seq and send(packet):
                self.retransmissions += 1

    def stats(self, wall: float | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "ssrc": self.ssrc,
            "active": self.active,
            "packets": self.packets,
            "bytes": self.bytes,
            "frames": self.frames,
            "keyframes": self.keyframes,
            "keyframe_requests": self.keyframe_requests,
            "nacks": self.nacks,
            "retransmissions": self.retransmissions,
            "fraction_lost": self.fraction_lost,
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 2),
            # wall-clock time (Unix seconds) at which RTP timestamp `rtp` was captured: the mapping a
            # load tool uses for one-way latency without relying on relayed sender reports
            "clock": None if wall is None else {"wall": wall, "rtp": self.ts_base, "rate": self.clock},
        }
        if self.layer is not None:
            out |= {"rid": self.layer.rid, "width": self.layer.width, "height": self.layer.height}
        return out
