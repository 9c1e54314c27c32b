"""What recording and finishing cost, in process: `make bench` prints it.

- The recorder: RTP packets of a ~1 Mbit/s 640x360 VP8 stream (the light peer's clip, as a
  publisher sends it) fed datagram by datagram to recorder.process.Recorder, which reorders,
  depacketizes and writes Matroska as the recorder process does; CPU seconds per second of media,
  as % of a core, and so how many such streams one core records. No sockets: the UDP receive is
  the kernel's, and the same as any peer's.
- The finishing job: a recorded minute (that stream and an Opus track) into MP4, HLS and a poster;
  seconds of lesson finished per second of CPU.
"""

from __future__ import annotations

import asyncio
import json
import struct
import tempfile
import time
from pathlib import Path

from loadtest.clips import audio_clip, video_clip
from recorder.finish import finish
from recorder.process import Recorder
from recorder.track import TrackFile, TrackInfo

from .peer_cost import FPS, LAYER

CLOCK = 90_000


def _video_seconds(seconds: int) -> list[bytes]:
    """`seconds` of the light peer's 640x360 ~1 Mbit/s VP8 clip as RTP (looped: it starts with a
    keyframe, so every loop starts at one)."""
    clip = video_clip(LAYER.width, LAYER.height, LAYER.bitrate, FPS, 2.0, 30)
    out, seq = [], 0
    for n in range(FPS * seconds):
        chunks = clip[n % len(clip)].chunks
        for i, chunk in enumerate(chunks):
            marker = 0x80 if i == len(chunks) - 1 else 0
            header = struct.pack("!BBHII", 0x80, marker | 96, seq & 0xFFFF, n * CLOCK // FPS, 1)
            out.append(header + bytes([0x10 if i == 0 else 0x00]) + chunk)
            seq += 1
    return out


def _feed(track: TrackFile, packets: list[bytes]) -> None:
    for data in packets:
        header = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10:
            header += 4 + 4 * int.from_bytes(data[header + 2 : header + 4], "big")
        seq = int.from_bytes(data[2:4], "big")
        timestamp = int.from_bytes(data[4:8], "big")
        track.on_rtp(seq, timestamp, bool(data[1] & 0x80), data[header:])


def recorder_cost(seconds: int = 20) -> dict[str, float]:
    """The recorder process's own path, datagram by datagram: header, reordering (recorder.reorder),
    depacketizing and Matroska, as recorder.process.Recorder does it."""
    packets = _video_seconds(seconds)
    bits = sum(len(p) for p in packets) * 8 / seconds

    async def record(folder: str) -> float:
        recorder = Recorder(Path(folder))
        command = {"ssrc": 1, "track": "TR_1", "kind": "video", "codec": "VP8", "clock": CLOCK}
        recorder.add(command | {"participant": "teacher", "source": "camera", "file": "camera"})
        started = time.process_time()
        for data in packets:
            recorder.datagram_received(data, ("127.0.0.1", 9))
        recorder.end(1)
        return time.process_time() - started

    with tempfile.TemporaryDirectory() as folder:
        cpu = asyncio.run(record(folder))
    share = cpu / seconds
    return {
        "stream_kbit_s": round(bits / 1000, 1),
        "recorder_core_percent_per_stream": round(100 * share, 3),
        "streams_one_core_records": round(1 / share) if share else 0.0,
    }


def finishing_speed(seconds: int = 60) -> dict[str, float]:
    """A recorded minute (video and audio) finished: seconds of lesson per CPU second and per second."""
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        video = TrackFile(
            TrackInfo(1, "TR_1", "video", "VP8", CLOCK, "teacher", "camera", "lecturer"), directory / "v"
        )
        _feed(video, _video_seconds(seconds))
        video.close()
        audio = TrackFile(
            TrackInfo(2, "TR_2", "audio", "opus", 48_000, "teacher", "microphone", "lecturer"),
            directory / "a",
        )
        frames = audio_clip(2.0, 440.0, False, 8000, 25)
        for n in range(seconds * 50):
            frame = frames[n % len(frames)]
            audio.on_rtp(n & 0xFFFF, n * 960, True, frame.chunks[0])
        audio.close()
        for meta_path, start in (
            (directory / "v.json", 1_800_000_000.0),
            (directory / "a.json", 1_800_000_000.0),
        ):
            meta = json.loads(meta_path.read_text())
            meta["first_unix"] = start  # what the sender reports would have said
            meta_path.write_text(json.dumps(meta))
        wall, cpu = time.perf_counter(), time.process_time()
        result = finish(directory, directory / "out")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "lesson_seconds": result["duration"],
        "finishing_lesson_seconds_per_second": round(result["duration"] / wall, 1),
        "finishing_lesson_seconds_per_cpu_second": round(result["duration"] / cpu, 1),
    }


def run() -> dict[str, float]:
    return recorder_cost() | finishing_speed()


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
