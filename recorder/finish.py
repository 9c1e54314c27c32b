"""Finishing a recording: its per-track files into the lesson's playable forms, off the live path.

    python -m recorder.finish RECORDING_DIR [OUT_DIR]

From one recording's folder (a Matroska file and a JSON description per track) it builds, in
OUT_DIR (default RECORDING_DIR/finished):

- ``lesson.mp4``: H.264 and AAC, the moov atom first (fast start), playable by any phone or TV;
  the main video (the lecturer's camera, else the longest video) and every audio track mixed;
- ``hls/index.m3u8`` with MPEG-TS segments of the same packets, for set-top boxes;
- ``poster.jpg``, a picture from a tenth of the way in;
- ``finished.json``: what was built, the duration and the tracks used.

The tracks are laid on one timeline by the wall-clock time of each one's first frame (from the
publishers' sender reports), which is what keeps a lecturer's voice on its lips. Only the video is
transcoded (VP8 to H.264: set-top boxes decode nothing else), once: the HLS segments are the
MP4's packets, remuxed. Mixing keeps at most a few seconds of audio in memory, so a 45-minute lesson
costs what a 5-minute one does. ``progress`` is told the fraction done as it goes.
"""

from __future__ import annotations

import argparse
import fractions
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

RATE = 48_000  # the mix and the AAC output
CHUNK = RATE  # samples the mixer settles at a time: one second
GOP_SECONDS = 2  # a keyframe every two seconds: HLS segments cut there
SEGMENT_SECONDS = 4
POSTER_AT = 0.1  # of the duration


@dataclass
class Track:
    meta: dict[str, Any]
    path: Path

    @property
    def start(self) -> float:
        return float(self.meta["first_unix"])

    @property
    def end(self) -> float:
        return self.start + float(self.meta.get("duration") or 0)


def tracks_of(directory: Path) -> list[Track]:
    """The recording's tracks that have frames and a wall-clock start."""
    found = []
    for sidecar in sorted(directory.glob("*.json")):
        meta = json.loads(sidecar.read_text())
        media = sidecar.with_suffix(".mkv")
        if meta.get("first_unix") is not None and meta.get("frames") and media.exists():
            found.append(Track(meta, media))
    return found


def main_video(tracks: list[Track]) -> list[Track]:
    """The files of the main video, in time order: the lecturer's camera (else the video with the
    most recorded time), all its files: a camera that left and came back is one file a visit."""
    videos = [t for t in tracks if t.meta["kind"] == "video"]
    lecturer = [t for t in videos if t.meta.get("role") == "lecturer" and t.meta.get("source") == "camera"]
    pool = lecturer or videos
    if not pool:
        return []
    spans: dict[tuple[str, str], float] = {}
    for t in pool:
        key = (t.meta["participant"], t.meta["source"])
        spans[key] = spans.get(key, 0.0) + t.end - t.start
    chosen = max(spans, key=lambda k: spans[k])
    return sorted(
        (t for t in pool if (t.meta["participant"], t.meta["source"]) == chosen), key=lambda t: t.start
    )


def _audio(track: Track, t0: float) -> Iterator[tuple[int, np.ndarray]]:
    """(sample offset on the lesson's timeline, mono int16 samples at RATE) of one audio track."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    offset = round((track.start - t0) * RATE)
    with av.open(str(track.path)) as container:
        for frame in container.decode(audio=0):
            if frame.time is None:
                continue
            at = offset + round(frame.time * RATE)
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1)
                yield at, samples
                at += len(samples)


def mixed(tracks: list[Track], t0: float, total: int) -> Iterator[np.ndarray]:
    """The audio tracks summed, one CHUNK at a time, from sample 0 to `total`."""
    sources = [_audio(t, t0) for t in tracks]
    heads: list[tuple[int, np.ndarray] | None] = [next(s, None) for s in sources]
    for chunk_start in range(0, total, CHUNK):
        chunk_end = min(total, chunk_start + CHUNK)
        buf = np.zeros(chunk_end - chunk_start, dtype=np.int32)
        for i, source in enumerate(sources):
            while (head := heads[i]) is not None and head[0] < chunk_end:
                at, samples = head
                lo, hi = max(at, chunk_start), min(at + len(samples), chunk_end)
                if hi > lo:
                    buf[lo - chunk_start : hi - chunk_start] += samples[lo - at : hi - at]
                if at + len(samples) > chunk_end:  # the rest belongs to the next chunk
                    heads[i] = (chunk_end, samples[chunk_end - at :])
                    break
                heads[i] = next(source, None)
        yield np.clip(buf, -32768, 32767).astype(np.int16)


def finish(
    directory: Path, out: Path | None = None, progress: Callable[[float], None] | None = None
) -> dict[str, Any]:
    out = out or directory / "finished"
    out.mkdir(parents=True, exist_ok=True)
    tracks = tracks_of(directory)
    videos = main_video(tracks)
    audios = [t for t in tracks if t.meta["kind"] == "audio"]
    if not videos and not audios:
        raise ValueError(f"no recorded track in {directory}")
    used = videos + audios
    t0 = min(t.start for t in used)
    duration = max(t.end for t in used) - t0
    mp4 = av.open(str(out / "lesson.mp4"), "w", format="mp4", options={"movflags": "+faststart"})
    poster_written = False
    try:
        vstream = astream = None  # every stream before the first packet: the muxer writes its header then
        if videos:
            vstream = mp4.add_stream("libx264", rate=30)
            vstream.width, vstream.height = _video_size(videos[0])
            vstream.pix_fmt = "yuv420p"
            vstream.codec_context.options = {"preset": "veryfast", "crf": "23"}
            vstream.codec_context.gop_size = 30 * GOP_SECONDS
            vstream.time_base = fractions.Fraction(1, 90_000)
            # the encoder counts in 90 kHz too: frames captured a few ms apart never share a tick
            vstream.codec_context.time_base = fractions.Fraction(1, 90_000)
        if audios:
            astream = mp4.add_stream("aac", rate=RATE, layout="mono")
        if videos:
            poster_written = _video(videos, t0, duration, mp4, vstream, out / "poster.jpg", progress)
        if audios:
            _mix(audios, t0, duration, mp4, astream, progress)
    finally:
        mp4.close()
    to_hls(out / "lesson.mp4", out / "hls")
    result = {
        "starts_at": round(t0, 6),  # the wall-clock time of the lesson's 0
        "duration": round(duration, 3),
        "mp4": "lesson.mp4",
        "hls": "hls/index.m3u8",
        "poster": "poster.jpg" if poster_written else None,
        "video": [t.meta["file"] for t in videos],
        "audio": [t.meta["file"] for t in audios],
    }
    (out / "finished.json").write_text(json.dumps(result, indent=1))
    if progress is not None:
        progress(1.0)
    return result


def _video_size(track: Track) -> tuple[int, int]:
    with av.open(str(track.path)) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
    return (width - width % 2) or 2, (height - height % 2) or 2  # 4:2:0 wants even sizes


def _video(
    tracks: list[Track],
    t0: float,
    duration: float,
    container: Any,
    stream: Any,
    poster: Path,
    progress: Callable[[float], None] | None,
) -> bool:
    """Transcode the main video, file after file on the lesson's timeline (a gap between them
    holds the last picture); whether a poster was taken."""
    width, height = stream.width, stream.height
    poster_due, poster_taken, last_pts = duration * POSTER_AT, False, -1
    for track in tracks:
        offset = track.start - t0
        with av.open(str(track.path)) as source:
            for frame in source.decode(video=0):
                if frame.time is None:
                    continue
                at = offset + frame.time
                pts = round(at * 90_000)
                if pts <= last_pts:
                    continue
                last_pts = pts
                if (frame.width, frame.height) != (width, height):  # another layer or camera: scaled
                    frame = frame.reformat(width=width, height=height, format="yuv420p")
                if not poster_taken and at >= poster_due:
                    frame.to_image().save(poster, quality=85)
                    poster_taken = True
                frame.pts, frame.time_base = pts, fractions.Fraction(1, 90_000)
                container.mux(stream.encode(frame))
                if progress is not None and duration > 0:
                    progress(min(0.5, 0.5 * at / duration))
    container.mux(stream.encode(None))
    return poster_taken


def _mix(
    tracks: list[Track],
    t0: float,
    duration: float,
    container: Any,
    stream: Any,
    progress: Callable[[float], None] | None,
) -> None:
    total = round(duration * RATE)
    at = 0
    for chunk in mixed(tracks, t0, total):
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, at, fractions.Fraction(1, RATE)
        at += len(chunk)
        container.mux(stream.encode(frame))
        if progress is not None and total:
            progress(0.5 + 0.5 * at / total)
    container.mux(stream.encode(None))


def to_hls(mp4: Path, folder: Path) -> None:
    """The MP4's packets, as they are, into MPEG-TS segments and a playlist (no second encoding)."""
    folder.mkdir(exist_ok=True)
    options = {
        "hls_time": str(SEGMENT_SECONDS),
        "hls_playlist_type": "vod",
        "hls_segment_filename": str(folder / "segment%05d.ts"),
    }
    with (
        av.open(str(mp4)) as source,
        av.open(str(folder / "index.m3u8"), "w", format="hls", options=options) as hls,
    ):
        streams = {
            s.index: hls.add_stream_from_template(s) for s in source.streams if s.type in ("video", "audio")
        }
        for packet in source.demux(*[source.streams[i] for i in streams]):
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            hls.mux(packet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recorder.finish")
    parser.add_argument("recording", help="a recording's folder")
    parser.add_argument("out", nargs="?", help="where to put the lesson (default: <recording>/finished)")
    parser.add_argument("--progress", action="store_true", help='print {"progress": x} lines as it goes')
    args = parser.parse_args(argv)
    said = [0.0]

    def tell(done: float) -> None:
        if done - said[0] >= 0.02 or done == 1.0:  # a line every 2%: enough for a progress bar
            said[0] = done
            print(json.dumps({"progress": round(done, 3)}), flush=True)

    result = finish(
        Path(args.recording), Path(args.out) if args.out else None, tell if args.progress else None
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
