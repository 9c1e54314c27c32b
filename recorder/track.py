"""One recorded track: its frames, as they come, into a Matroska file of its own (PyAV, no transcoding).

A file per track, because tracks come and go during a lesson (a classroom joins late, a publisher
reconnects) and a Matroska file cannot take a stream once it has begun; the finishing job puts them
together, aligned by the wall-clock time of each file's first frame, which the publisher's sender
reports give (written beside the file as JSON, so a crash loses none of it). Matroska is written as
it goes: a recorder killed mid-lesson leaves a file that plays up to its last cluster.
"""

from __future__ import annotations

import fractions
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from .depacketize import Frame, OpusAssembler, Vp8Assembler, vp8_size

NTP_EPOCH = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48000, 0, 0)  # RFC 7845 5.1
CODECS = {"VP8": "vp8", "opus": "opus"}


@dataclass
class TrackInfo:
    ssrc: int
    track: str
    kind: str  # audio | video
    codec: str  # VP8 | opus
    clock: int
    participant: str
    source: str
    role: str = ""


@dataclass
class TrackFile:
    info: TrackInfo
    path: Path  # without suffix: .mkv for the media, .json beside it
    assembler: Vp8Assembler | OpusAssembler = field(init=False)
    container: Any = None  # av.container.OutputContainer, once the first frame (a keyframe) came
    stream: Any = None
    first: int | None = None  # unwrapped RTP timestamp of the first frame written
    last: int = 0  # unwrapped, of the latest
    high: int | None = None  # the highest unwrapped timestamp seen
    frames: int = 0
    sender_report: tuple[float, int] | None = None  # (Unix time, RTP timestamp) from the latest SR
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.assembler = Vp8Assembler() if self.info.codec == "VP8" else OpusAssembler()
        self.meta = {
            "track": self.info.track,
            "participant": self.info.participant,
            "role": self.info.role,
            "source": self.info.source,
            "kind": self.info.kind,
            "codec": self.info.codec,
            "clock": self.info.clock,
            "file": self.path.name + ".mkv",
            "first_rtp": None,
            "first_unix": None,  # the wall-clock time of the first frame, from a sender report
            "frames": 0,
            "holes": 0,
        }
        self._save_meta()

    def on_rtp(self, seq: int, timestamp: int, marker: bool, payload: bytes) -> bool:
        """Take a packet; whether a keyframe is wanted (a frame was lost, or none came yet)."""
        frame = self.assembler.push(seq, timestamp, marker, payload)
        if frame is None:
            return self.container is None and self.info.kind == "video" and self.assembler.holes > 0
        return self._write(frame)

    def on_sender_report(self, ntp: int, rtp: int) -> None:
        self.sender_report = ((ntp >> 32) - NTP_EPOCH + (ntp & 0xFFFFFFFF) / 2**32, rtp)
        if self.first is not None and self.meta["first_unix"] is None:
            self._stamp_first()

    def _unwrap(self, timestamp: int) -> int:
        """A 32-bit RTP timestamp as a number that keeps rising past the wrap (13 hours at 90 kHz)."""
        if self.high is None:
            self.high = timestamp
            return timestamp
        delta = (timestamp - self.high) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 1 << 32
        at = self.high + delta
        self.high = max(self.high, at)
        return at

    def _write(self, frame: Frame) -> bool:
        if self.container is None:
            if not frame.keyframe:
                return True  # a video file starts at a keyframe: ask for one
            self._open(frame)
        at = self._unwrap(frame.timestamp)
        if self.first is None:
            self.first = at
            self.meta["first_rtp"] = frame.timestamp
            if self.sender_report is not None:
                self._stamp_first()
        if at <= self.last and self.frames:
            return False  # not after the last one written: a container wants rising times
        packet = av.Packet(frame.data)
        packet.stream = self.stream
        packet.pts = packet.dts = at - self.first
        packet.time_base = fractions.Fraction(1, self.info.clock)  # the muxer rescales to its own
        if frame.keyframe:
            packet.is_keyframe = True
        self.container.mux(packet)
        self.last = at
        self.frames += 1
        return False

    def _open(self, frame: Frame) -> None:
        # each packet reaches the file as it is muxed, in clusters of at most a second: a recorder
        # killed mid-lesson loses at most the frame in hand
        options = {"flush_packets": "1", "cluster_time_limit": "1000"}
        self.container = av.open(str(self.path) + ".mkv", "w", format="matroska", options=options)
        stream = self.container.add_stream(CODECS[self.info.codec], rate=self.info.clock)
        if self.info.kind == "video":
            stream.width, stream.height = vp8_size(frame.data) or (0, 0)
        else:
            stream.codec_context.extradata = OPUS_HEAD
        stream.time_base = fractions.Fraction(1, self.info.clock)
        self.stream = stream

    def _stamp_first(self) -> None:
        assert self.sender_report is not None and self.first is not None
        unix, rtp = self.sender_report
        offset = (self.meta["first_rtp"] - rtp + 2**31) % 2**32 - 2**31  # signed: RTP ticks after the SR
        self.meta["first_unix"] = round(unix + offset / self.info.clock, 6)
        self._save_meta()

    def close(self) -> dict[str, Any]:
        if self.container is not None:
            self.container.close()
        self.meta["frames"] = self.frames
        self.meta["holes"] = self.assembler.holes
        span = self.last - self.first if self.first is not None else 0
        self.meta["duration"] = round(span / self.info.clock, 3)
        self._save_meta()
        return self.meta

    def _save_meta(self) -> None:
        Path(str(self.path) + ".json").write_text(json.dumps(self.meta, indent=1))
