"""Media a light peer publishes, prepared once per process: encoded, then cut into RTP payloads.

Encoding is what a load test cannot afford per peer, so every clip is encoded once
(`signaling.media`) and replayed by all the peers of a process; cutting frames into payloads here
too leaves the sender (outstream.py) nothing per frame but headers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from signaling.media import encode_audio, encode_video

MAX_PACKET = 1200  # RTP bytes before SRTP, as browsers keep under a 1280-byte path MTU
RTP_HEADER_SIZE = 12
MAX_EXTENSION = 16  # room kept for the header extension when frames are cut into packets
VP8_DESCRIPTOR = 4  # X=1, I=1 with a 15-bit PictureID
VIDEO_CHUNK = MAX_PACKET - RTP_HEADER_SIZE - MAX_EXTENSION - VP8_DESCRIPTOR


@dataclass(frozen=True)
class Layer:
    """One encoding a publisher sends: a simulcast layer (rid) or, with rid "", the only one."""

    rid: str
    width: int
    height: int
    bitrate: int


# Low to high, as kelian.js sends them: a quarter, half and full resolution.
SIMULCAST_LAYERS = (
    Layer("q", 320, 180, 150_000),
    Layer("h", 640, 360, 500_000),
    Layer("f", 1280, 720, 1_500_000),
)
SINGLE_LAYER = Layer("", 640, 360, 1_000_000)


@dataclass(frozen=True)
class ClipFrame:
    """One encoded frame, already cut into RTP payloads: replaying it costs no codec work."""

    chunks: tuple[bytes, ...]
    keyframe: bool
    level: int  # RFC 6464 audio level, 127 for video


def split(data: bytes, size: int) -> tuple[bytes, ...]:
    """Cut `data` into the fewest pieces of at most `size` bytes, of near-equal length (as libwebrtc
    does, so that no frame ends in a tiny packet)."""
    if not data:
        return (b"",)
    count = math.ceil(len(data) / size)
    step = math.ceil(len(data) / count)
    return tuple(data[i : i + step] for i in range(0, len(data), step))


@functools.lru_cache(maxsize=32)
def video_clip(
    width: int, height: int, bitrate: int, fps: int, seconds: float, keyframe_interval: int
) -> tuple[ClipFrame, ...]:
    """A VP8 test-pattern clip of one layer, encoded and cut once per process."""
    frames = encode_video("vp8", width, height, fps, seconds, bitrate, keyframe_interval)
    return tuple(ClipFrame(split(f.data, VIDEO_CHUNK), f.keyframe, 127) for f in frames)


@functools.lru_cache(maxsize=16)
def audio_clip(
    seconds: float, frequency: float, bursts: bool, amplitude: int, burst_frames: int
) -> tuple[ClipFrame, ...]:
    """An Opus clip of 20 ms frames with their audio levels, encoded once per process."""
    frames = encode_audio(seconds, frequency, bursts, amplitude, burst_frames)
    return tuple(ClipFrame((f.data,), True, f.level) for f in frames)
