"""Media for clients that must not spend CPU on encoding: clips encoded once, replayed as av.Packets.

aiortc's RTCRtpSender packetizes an av.Packet without touching the codec, so a classroom box
replaying a clip, a test or a load-test publisher costs almost nothing per frame. aiortc ignores
keyframe requests for such tracks, so the track itself jumps to the next keyframe when asked.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from av.audio.codeccontext import AudioCodecContext
from av.video.codeccontext import VideoCodecContext

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_PTIME = 0.02


@dataclass(frozen=True)
class EncodedFrame:
    data: bytes
    keyframe: bool
    # RFC 6464 audio level of the frame's samples, 0 (loudest) to 127 (silent), measured once when the
    # clip is encoded so that a replaying publisher can fill the ssrc-audio-level extension for free.
    level: int = 127


class Frame(Protocol):
    """What a replaying sender needs to know of a clip's frame to find a keyframe."""

    @property
    def keyframe(self) -> bool: ...


def next_keyframe(frames: Sequence[Frame], index: int) -> int:
    """The first keyframe at or after `index` in a looping clip (`index` if it has none): where a
    replaying sender jumps when asked for a keyframe, since it cannot encode one."""
    n = len(frames)
    for step in range(n):
        i = (index + step) % n
        if frames[i].keyframe:
            return i
    return index


def audio_level(pcm: np.ndarray) -> int:
    """RFC 6464 level (-dBov, 0..127) of int16 samples: the RMS against full scale, as browsers send."""
    if pcm.size == 0:
        return 127
    rms = float(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))))
    if rms < 1.0:
        return 127
    return min(127, max(0, round(-20.0 * math.log10(rms / 32767.0))))


def _test_pattern(width: int, height: int, index: int) -> np.ndarray:
    """A moving gradient with a sweeping bar: cheap to make, never black, and visibly moving."""
    x = np.arange(width, dtype=np.uint16)
    y = np.arange(height, dtype=np.uint16)[:, None]
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[..., 0] = ((x + index * 4) % 256).astype(np.uint8)
    frame[..., 1] = ((y + index * 2) % 256).astype(np.uint8)
    frame[..., 2] = 128
    bar = (index * 8) % width
    frame[:, bar : bar + max(4, width // 40)] = 255
    return frame


@functools.lru_cache(maxsize=16)
def encode_video(
    codec: str = "vp8",
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    seconds: float = 2.0,
    bitrate: int = 1_000_000,
    keyframe_interval: int = 30,
) -> tuple[EncodedFrame, ...]:
    """Encode a test pattern once (cached per process); `codec` is "vp8" or "h264"."""
    count = max(1, int(seconds * fps))
    images = [_test_pattern(width, height, i) for i in range(count)]
    return encode_frames(images, codec, fps, bitrate, keyframe_interval)


def encode_frames(
    images: Sequence[np.ndarray],
    codec: str = "vp8",
    fps: int = 30,
    bitrate: int = 1_000_000,
    keyframe_interval: int = 30,
) -> tuple[EncodedFrame, ...]:
    """Encode RGB pictures (height, width, 3) of one size; `codec` is "vp8" or "h264" (baseline)."""
    name = {"vp8": "libvpx", "h264": "libx264"}[codec]
    height, width = images[0].shape[:2]
    encoder = cast(VideoCodecContext, av.CodecContext.create(name, "w"))
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = fractions.Fraction(1, fps)
    encoder.framerate = fractions.Fraction(fps, 1)
    encoder.bit_rate = bitrate
    encoder.gop_size = keyframe_interval
    if codec == "h264":
        encoder.options = {"profile": "baseline", "tune": "zerolatency", "preset": "ultrafast"}
        encoder.profile = "Baseline"
    else:
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    frames: list[EncodedFrame] = []
    for i, image in enumerate(images):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        frame.time_base = encoder.time_base
        if i % keyframe_interval == 0:
            frame.pict_type = av.video.frame.PictureType.I
        for packet in encoder.encode(frame):
            frames.append(EncodedFrame(bytes(packet), bool(packet.is_keyframe)))
    for packet in encoder.encode(None):
        frames.append(EncodedFrame(bytes(packet), bool(packet.is_keyframe)))
    if not frames or not frames[0].keyframe:
        raise RuntimeError(f"{name} produced no leading keyframe")
    return tuple(frames)


@functools.lru_cache(maxsize=8)
def encode_audio(
    seconds: float = 2.0,
    frequency: float = 440.0,
    bursts: bool = False,
    amplitude: int = 8000,
    burst_frames: int = 25,
) -> tuple[EncodedFrame, ...]:
    """Opus frames of 20 ms: a tone, or tone bursts with silence between (for speaker detection).

    Bursts alternate `burst_frames` frames of tone and as many of silence (0.5 s each by default);
    `amplitude` 0 gives a silent clip, which a speaker detector must never pick. Each frame carries
    the RFC 6464 level of its samples.
    """
    encoder = cast(AudioCodecContext, av.CodecContext.create("libopus", "w"))
    encoder.sample_rate = AUDIO_RATE
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.bit_rate = 64000
    encoder.time_base = fractions.Fraction(1, AUDIO_RATE)
    samples = int(AUDIO_RATE * AUDIO_PTIME)
    frames: list[EncodedFrame] = []
    for i in range(int(seconds / AUDIO_PTIME)):
        t = (np.arange(samples) + i * samples) / AUDIO_RATE
        loud = not bursts or (i // max(1, burst_frames)) % 2 == 0
        wave = (np.sin(2 * math.pi * frequency * t) * (amplitude if loud else 0)).astype(np.int16)
        level = audio_level(wave)
        pcm = np.repeat(wave[None, :], 2, axis=0).T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = i * samples
        frame.time_base = encoder.time_base
        frames.extend(EncodedFrame(bytes(p), True, level) for p in encoder.encode(frame))
    return tuple(frames)


class EncodedTrack(MediaStreamTrack):
    """Replays encoded frames in real time, looping, with timestamps that keep increasing."""

    def __init__(self, kind: str, frames: tuple[EncodedFrame, ...], frame_duration: float) -> None:
        super().__init__()
        self.kind = kind
        self._frames = frames
        self._duration = frame_duration
        self._clock = VIDEO_CLOCK if kind == "video" else AUDIO_RATE
        self._time_base = fractions.Fraction(1, self._clock)
        self._index = 0
        self._sent = 0
        self._start: float | None = None
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        """Jump to the next keyframe of the clip (the sender cannot re-encode)."""
        self.keyframe_requests += 1
        self._index = next_keyframe(self._frames, self._index)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise ConnectionError("track ended")
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._sent * self._duration
        if due > now:
            await asyncio.sleep(due - now)
        frame = self._frames[self._index]
        self._index = (self._index + 1) % len(self._frames)
        packet = av.Packet(frame.data)
        packet.pts = int(self._sent * self._duration * self._clock)
        packet.time_base = self._time_base
        self._sent += 1
        return packet


def video_track(fps: int = 30, **kwargs: object) -> EncodedTrack:
    return EncodedTrack("video", encode_video(fps=fps, **kwargs), 1 / fps)


def audio_track(**kwargs: object) -> EncodedTrack:
    return EncodedTrack("audio", encode_audio(**kwargs), AUDIO_PTIME)
