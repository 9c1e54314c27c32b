"""One recorded track: its frames, as they come, into a Matroska file of its own (PyAV, no transcoding).

A file per track, because tracks come and go during a lesson (a classroom joins late, a publisher
reconnects) and a Matroska file cannot take a stream once it has begun; the finishing job puts them
together, aligned by the wall-clock time of each file's first frame, which the publisher's sender
reports give (written beside the file as JSON, so a crash loses none of it). Matroska is written as
it goes: a recorder killed mid-lesson leaves a file that plays up to its last cluster.

A video file starts at a keyframe and, after a frame lost for good, skips to the next keyframe: the
frames between would show the lost one's absence until then.
"""

from __future__ import annotations

import fractions
import io
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from .depacketize import (
    Assembler,
    Frame,
    H264Assembler,
    OpusAssembler,
    Vp8Assembler,
    h264_parameter_sets,
    vp8_size,
)

NTP_EPOCH = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48000, 0, 0)  # RFC 7845 5.1
CODECS = {"VP8": "vp8", "H264": "h264", "opus": "opus"}  # by SDP name (producer.codec.name)
ASSEMBLERS: dict[str, type[Assembler]] = {"VP8": Vp8Assembler, "H264": H264Assembler, "opus": OpusAssembler}


@dataclass
class TrackInfo:
    ssrc: int
    track: str
    kind: str  # audio | video
    codec: str  # VP8 | H264 | opus
    clock: int
    participant: str
    source: str
    role: str = ""


@dataclass
class TrackFile:
    info: TrackInfo
    path: Path  # without suffix: .mkv for the media, .json beside it
    assembler: Assembler = field(init=False)
    container: Any = None  # av.container.OutputContainer, once the first frame (a keyframe) came
    stream: Any = None
    first: int | None = None  # unwrapped RTP timestamp of the first frame written
    last: int = 0  # unwrapped, of the latest
    high: int | None = None  # the highest unwrapped timestamp seen
    frames: int = 0
    waiting: bool = field(init=False)  # for a keyframe, before any frame is written (video)
    sender_report: tuple[float, int] | None = None  # (Unix time, RTP timestamp) from the latest SR
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.assembler = ASSEMBLERS[self.info.codec]()
        self.waiting = self.info.kind == "video"
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
        holes = self.assembler.holes
        frame = self.assembler.push(seq, timestamp, marker, payload)
        if self.assembler.holes > holes and self.info.kind == "video":
            self.waiting = True  # the frames after a lost one are written from the next keyframe on
        if frame is None:
            return self.waiting and self.assembler.holes > 0
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
        if self.waiting:
            if not frame.keyframe:
                return True  # a video file starts at a keyframe, and goes on after a loss at one: ask
            if self.container is None and not self._open(frame):
                return True
            self.waiting = False
        elif self.container is None:
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

    def _open(self, frame: Frame) -> bool:
        """Begin the file with `frame` (a keyframe, for video); False if it cannot begin one."""
        if self.info.codec == "H264":
            parameter_sets = h264_parameter_sets(frame.data)
            if parameter_sets is None:
                # The file's header needs the parameter sets (Matroska's avcC CodecPrivate), so it
                # waits for a keyframe that carries them, asking again for one. WebRTC senders put
                # them in band before each IDR, as WebRTC's own receivers want them (aiortc and
                # FFmpeg's WHIP muxer do: tests/test_recording_h264.py); a sender that gave them
                # only out of band (sprop-parameter-sets in its SDP fmtp, which kelian keeps in
                # producer.codec.fmtp but does not pass to the recorder) is not recorded.
                return False
            # The stream is made from the keyframe as FFmpeg's H.264 demuxer reads it: that gives its
            # size from the SPS (cropping, every profile's chroma format and scaling lists) and a
            # codec context that is never opened. A stream added by codec name would come with an
            # encoder (libx264), which the file's header opens, and whose own parameter sets would
            # then replace the sender's.
            try:
                probe = av.open(io.BytesIO(frame.data), format=CODECS["H264"])
            except av.error.FFmpegError as exc:  # not all of them are ValueErrors, which the caller expects
                raise ValueError(f"an H.264 keyframe FFmpeg cannot read: {exc}") from exc
            with probe:
                template = probe.streams.video[0]
                if not template.codec_context.width or not template.codec_context.height:
                    raise ValueError("an H.264 keyframe whose size FFmpeg cannot read")
                stream = self._create().add_stream_from_template(template, opaque=True)
            # as Annex B: the Matroska muxer writes them as avcC and turns each packet's start codes
            # into the NAL unit lengths that go with it
            stream.codec_context.extradata = parameter_sets
        else:
            stream = self._create().add_stream(CODECS[self.info.codec], rate=self.info.clock)
            if self.info.kind == "video":
                stream.width, stream.height = vp8_size(frame.data) or (0, 0)
            else:
                stream.codec_context.extradata = OPUS_HEAD
        stream.time_base = fractions.Fraction(1, self.info.clock)
        self.stream = stream
        return True

    def _create(self) -> Any:
        """The Matroska file, opened for writing."""
        # each packet reaches the file as it is muxed, in clusters of at most a second: a recorder
        # killed mid-lesson loses at most the frame in hand
        options = {"flush_packets": "1", "cluster_time_limit": "1000"}
        self.container = av.open(str(self.path) + ".mkv", "w", format="matroska", options=options)
        return self.container

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
