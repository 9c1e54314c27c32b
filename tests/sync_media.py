"""A camera that flashes and a microphone that beeps on the wall clock's whole seconds, and the
measures that find the flashes and beeps again in a recorded file: how lip sync is tested."""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

FPS = 30
RATE, SAMPLES = 48_000, 960  # 20 ms of audio a frame
BEEP = 0.06  # seconds of tone after each whole second
SECONDS = 6


class Flashing(MediaStreamTrack):
    """320x240 frames, white for the first frame of every wall-clock second, black otherwise."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.start = time.time()
        self.flashed: list[float] = []  # when each white frame was captured

    async def recv(self) -> av.VideoFrame:
        due = self.start + self.n / FPS
        await asyncio.sleep(max(0.0, due - time.time()))
        now = time.time()
        white = now % 1.0 < 1 / FPS
        if white:
            self.flashed.append(now)
        frame = av.VideoFrame.from_ndarray(
            np.full((240, 320, 3), 255 if white else 0, np.uint8), format="rgb24"
        )
        frame.pts, frame.time_base = int(self.n * 90000 / FPS), fractions.Fraction(1, 90000)
        self.n += 1
        return frame


class Beeping(MediaStreamTrack):
    """Silence, and a 1 kHz tone for BEEP seconds after every wall-clock second."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.start = time.time()

    async def recv(self) -> av.AudioFrame:
        due = self.start + self.n * SAMPLES / RATE
        await asyncio.sleep(max(0.0, due - time.time()))
        begin = time.time()
        t = begin + np.arange(SAMPLES) / RATE
        tone = np.where(t % 1.0 < BEEP, np.sin(2 * math.pi * 1000 * t) * 12000, 0).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts, frame.time_base = self.n * SAMPLES, fractions.Fraction(1, RATE)
        self.n += 1
        return frame


def flashes(path: Path, first_unix: float) -> list[float]:
    """Wall-clock times of the white frames."""
    times = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            luma = frame.to_ndarray(format="gray").mean()
            if luma > 128:
                times.append(first_unix + float(frame.pts * frame.time_base))
    return times


def beeps(path: Path, first_unix: float, since: float = 0.0) -> list[float]:
    """Wall-clock times where the tone starts (5 ms resolution). A tone already sounding when the
    recorded audio begins (at wall-clock `since`) is cut, not a start: it is left out."""
    starts, loud_before = [], False
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            samples = frame.to_ndarray().astype(np.float64)
            samples = samples.mean(axis=0) if samples.ndim > 1 else samples
            step = frame.sample_rate // 200
            for i in range(0, len(samples) - step + 1, step):
                loud = np.sqrt(np.mean(samples[i : i + step] ** 2)) > 0.05 * (
                    32768 if samples.max() > 2 else 1
                )
                at = first_unix + float(frame.pts * frame.time_base) + i / frame.sample_rate
                cut = round(at) < since
                if loud and not loud_before and not cut and (not starts or at - starts[-1] > 0.5):
                    starts.append(at)  # a tone's start, not a dip inside it (lossy codecs make some)
                loud_before = loud
    return starts
