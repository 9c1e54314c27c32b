"""Finishing a recording: its per-track files into the lesson's playable forms, off the live path.

    python -m recorder.finish RECORDING_DIR [OUT_DIR]

From one recording's folder (a Matroska file and a JSON description per track) it builds, in
OUT_DIR (default RECORDING_DIR/finished):

- ``lesson.mp4``: H.264 and AAC, the moov atom first (fast start), playable by any phone or TV;
  the main video and every audio track mixed. The main video is the lecturer's camera; without one
  (a fusion class, a recording of classroom boxes) it follows the active speaker among the cameras,
  as meeting recorders' speaker view does; with a single camera, that camera (else the video with
  the most recorded time);
- ``hls/index.m3u8`` with MPEG-TS segments of the same packets, for set-top boxes;
- ``poster.jpg``, a picture from a tenth of the way in;
- ``finished.json``: what was built, the duration, the tracks used, which main video (``main``) and,
  for the speaker view, who is shown from when (``speakers``).

The tracks are laid on one timeline by the wall-clock time of each one's first frame (from the
publishers' sender reports), which is what keeps a lecturer's voice on its lips. Only the video is
transcoded, and only where set-top boxes need it (they decode H.264 alone, and HLS cuts at
keyframes): VP8, and H.264 with keyframes too rare to cut at; H.264 from an encoder with a regular
keyframe is copied as it is. The HLS segments are the MP4's packets, remuxed. Mixing keeps at
most a few seconds of audio in memory, so a 45-minute lesson costs what a 5-minute one does; the
speaker view keeps one loudness figure per participant and half second (a few kilobytes for a
lesson). ``progress`` is told the fraction done as it goes.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import fractions
import heapq
import itertools
import json
import math
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.frame import PictureType

RATE = 48_000  # the mix and the AAC output
CHUNK = RATE  # samples the mixer settles at a time: one second
GOP_SECONDS = 2  # a keyframe every two seconds: HLS segments cut there
SEGMENT_SECONDS = 4
POSTER_AT = 0.1  # of the duration
MAX_COPIED_GOP = 4.0  # seconds between keyframes at most, for H.264 to be copied rather than transcoded

# The speaker view (no lecturer camera), with the hysteresis of the live stage (sfu/audio_level.py):
WINDOW = 0.5  # seconds: loudness is the RMS level of each participant's microphone over windows this long
SPEECH_DBOV = -50.0  # a window louder than this is someone speaking (the live START_DBOV)
MARGIN_DB = 6.0  # a new speaker must be louder than the one shown by this much (DOMINANT_MARGIN) ...
HOLD_WINDOWS = 3  # ... in this many windows in a row (1.5 s): a cough or an "mm" does not switch
SILENCE_DBOV = -127.0
Span = tuple[float, str]  # (seconds on the lesson's timeline, participant shown from then on)


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
    """The files of the main video, in time order: the lecturer's camera, else the lecturer's other
    video (a lecture given by its slides), else the video with the most recorded time; all its
    files: a camera that left and came back is one file a visit."""
    videos = [t for t in tracks if t.meta["kind"] == "video"]
    lecturer = [t for t in videos if t.meta.get("role") == "lecturer"]
    pool = [t for t in lecturer if t.meta.get("source") == "camera"] or lecturer or videos
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


def speaker_cameras(tracks: list[Track]) -> list[Track]:
    """The camera files the speaker view chooses from, in time order: every camera's, when there is
    no lecturer video to show and more than one participant had a camera (with one, following the
    voices would only ever show that one: main_video's rule stands). Screens are left out: a shared
    screen is shown for what it shows, not for who talks over it."""
    if any(t.meta["kind"] == "video" and t.meta.get("role") == "lecturer" for t in tracks):
        return []
    cameras = [t for t in tracks if t.meta["kind"] == "video" and t.meta.get("source") == "camera"]
    if len({t.meta["participant"] for t in cameras}) < 2:
        return []
    return sorted(cameras, key=lambda t: t.start)


def loudness(tracks: list[Track], t0: float, windows: int) -> dict[str, np.ndarray]:
    """Each participant's microphone level in dBov per WINDOW of the lesson (SILENCE_DBOV where it
    had none), from its decoded audio. Only the sums of squares per window are kept, never the
    samples, so a 45-minute lesson costs a few thousand numbers a participant; a participant with
    several files (visits) gets them summed into the same windows."""
    size = round(WINDOW * RATE)
    energy: dict[str, np.ndarray] = {}
    count: dict[str, np.ndarray] = {}
    for track in tracks:
        if track.meta.get("source") == "screen":  # a shared video's sound is nobody speaking
            continue
        who = track.meta["participant"]
        sums = energy.setdefault(who, np.zeros(windows))
        counts = count.setdefault(who, np.zeros(windows))
        for at, samples in _audio(track, t0):
            index = (at + np.arange(len(samples))) // size
            inside = (index >= 0) & (index < windows)
            if not inside.any():
                continue
            index, values = index[inside], samples[inside].astype(np.float64)
            sums += np.bincount(index, weights=values * values, minlength=windows)
            counts += np.bincount(index, minlength=windows)
    levels = {}
    for who, sums in energy.items():
        power = np.divide(sums, count[who] * 32768.0**2, out=np.zeros(windows), where=count[who] > 0)
        with np.errstate(divide="ignore"):
            levels[who] = np.maximum(SILENCE_DBOV, 10.0 * np.log10(power))
    return levels


def on_camera(cameras: list[Track], t0: float, windows: int) -> dict[str, np.ndarray]:
    """For each participant with a camera, whether it had one in each WINDOW (any part of it)."""
    present: dict[str, np.ndarray] = {}
    for track in cameras:
        seen = present.setdefault(track.meta["participant"], np.zeros(windows, dtype=bool))
        # a file, even of one frame at the lesson's very end, covers a window at least
        first = min(windows - 1, max(0, math.floor((track.start - t0) / WINDOW)))
        last = min(windows, math.ceil((track.end - t0) / WINDOW))
        seen[first : max(first + 1, last)] = True
    return present


def speaker_spans(levels: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> list[Span]:
    """Who the picture shows from when: the active speaker among those on camera, with hysteresis.

    Someone else takes the picture when their level has been above SPEECH_DBOV and louder than the
    one shown by MARGIN_DB for HOLD_WINDOWS windows in a row; the switch is then dated back to the
    first of those windows (finishing knows what comes next, a live stage does not), so the picture
    changes as the new speaker starts rather than 1.5 s into their sentence. Through silence, or two
    people talking over each other, the picture stays. A speaker without a camera then is no
    candidate (the picture stays on who it shows); when the one shown leaves the cameras, the picture
    goes at once to whoever of those on camera speaks, else speaks the most in the lesson.
    """
    windows = max((len(p) for p in present.values()), default=0)
    silent = np.full(windows, SILENCE_DBOV)
    level = {who: levels.get(who, silent) for who in present}
    speaking = {who: int(np.count_nonzero(level[who] > SPEECH_DBOV)) for who in present}
    changes: list[tuple[int, str]] = []
    shown: str | None = None
    challenger, since = None, 0
    for w in range(windows):
        candidates = [who for who in present if present[who][w]]
        if not candidates:
            challenger = None
            continue
        if shown not in candidates:
            shown = max(candidates, key=lambda who: (level[who][w] > SPEECH_DBOV, speaking[who]))
            changes.append((w, shown))
            challenger = None
            continue
        loudest = max(candidates, key=lambda who: level[who][w])
        db = level[loudest][w]
        if loudest == shown or db <= SPEECH_DBOV or db < level[shown][w] + MARGIN_DB:
            challenger = None
            continue
        if loudest != challenger:
            challenger, since = loudest, w
        if w - since + 1 >= HOLD_WINDOWS:
            shown, challenger = loudest, None
            changes.append((since, shown))
    spans: list[Span] = []
    for w, who in changes:
        if spans and spans[-1][0] == w * WINDOW:
            spans.pop()  # chosen at once, then dated back over by a speaker: the speaker's
        if not spans or spans[-1][1] != who:
            spans.append((w * WINDOW, who))
    return spans


def shown_files(cameras: list[Track], spans: list[Span], t0: float) -> list[Track]:
    """The camera files with a frame on screen: those overlapping a span of their participant."""
    ends = [start for start, _ in spans[1:]] + [math.inf]
    return [
        t
        for t in cameras
        if any(
            who == t.meta["participant"] and start <= t.end - t0 and end > t.start - t0
            for (start, who), end in zip(spans, ends, strict=True)
        )
    ]


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


@dataclass
class Plan:
    """What the lesson is made of, on its timeline."""

    main: str | None  # "lecturer", "speaker" (the speaker view), "longest" (main_video's else), None
    videos: list[Track]  # the video files shown, in time order
    audios: list[Track]
    t0: float  # the wall-clock time of the lesson's 0
    duration: float
    spans: list[Span] = field(default_factory=list)  # the speaker view's, in time order


def plan(tracks: list[Track]) -> Plan:
    """The lecturer's video if there is one; else the speaker view if several had cameras; else
    main_video's choice (one camera, or only screens)."""
    audios = [t for t in tracks if t.meta["kind"] == "audio"]
    cameras = speaker_cameras(tracks)
    if cameras:
        t0, duration = _timeline(cameras + audios)
        windows = max(1, math.ceil(duration / WINDOW))
        spans = speaker_spans(loudness(audios, t0, windows), on_camera(cameras, t0, windows))
        return Plan("speaker", shown_files(cameras, spans, t0), audios, t0, duration, spans)
    videos = main_video(tracks)
    if not videos and not audios:
        raise ValueError("no recorded track")
    t0, duration = _timeline(videos + audios)
    if not videos:
        return Plan(None, [], audios, t0, duration)
    lecturer = videos[0].meta.get("role") == "lecturer"
    return Plan("lecturer" if lecturer else "longest", videos, audios, t0, duration)


def _timeline(tracks: list[Track]) -> tuple[float, float]:
    """(t0, duration): from the first track's start to the last one's end."""
    t0 = min(t.start for t in tracks)
    return t0, max(t.end for t in tracks) - t0


def finish(
    directory: Path, out: Path | None = None, progress: Callable[[float], None] | None = None
) -> dict[str, Any]:
    out = out or directory / "finished"
    out.mkdir(parents=True, exist_ok=True)
    tracks = tracks_of(directory)
    if not tracks:
        raise ValueError(f"no recorded track in {directory}")
    lesson = plan(tracks)
    videos, audios, t0, duration = lesson.videos, lesson.audios, lesson.t0, lesson.duration
    mp4 = av.open(str(out / "lesson.mp4"), "w", format="mp4", options={"movflags": "+faststart"})
    try:
        vstream = astream = None  # every stream before the first packet: the muxer writes its header then
        copied = not lesson.spans and copyable(videos)
        if copied:
            with av.open(str(videos[0].path)) as source:
                vstream = mp4.add_stream_from_template(source.streams.video[0])
            vstream.time_base = fractions.Fraction(1, 90_000)
        elif videos:
            vstream = mp4.add_stream("libx264", rate=30)
            # the first file's size; the speaker view's largest camera's (the others scaled up to it)
            vstream.width, vstream.height = max(
                (_video_size(t) for t in (videos if lesson.spans else videos[:1])),
                key=lambda size: size[0] * size[1],
            )
            vstream.pix_fmt = "yuv420p"
            vstream.codec_context.options = {"preset": "veryfast", "crf": "23"}
            vstream.codec_context.gop_size = 30 * GOP_SECONDS  # at most; _video asks for them by time
            vstream.time_base = fractions.Fraction(1, 90_000)
            # the encoder counts in 90 kHz too: frames captured a few ms apart never share a tick
            vstream.codec_context.time_base = fractions.Fraction(1, 90_000)
        if audios:
            astream = mp4.add_stream("aac", rate=RATE, layout="mono")
        poster = out / "poster.jpg"
        poster.unlink(missing_ok=True)  # taken afresh: the one of an earlier run would stop it
        sources: list[Iterator[av.Packet]] = []
        if copied:
            sources.append(_copy(videos, t0, duration, vstream, poster))
        elif videos:
            frames = (
                _speaker_frames(videos, lesson.spans, t0)
                if lesson.spans
                else itertools.chain.from_iterable(_frames(t, t0) for t in videos)
            )
            sources.append(_video(frames, duration, vstream, poster))
        if audios:
            sources.append(_mix(audios, t0, duration, astream))
        # interleaved by time, as a player reading the file front to back (range requests, a
        # phone) wants it: each source runs at most a packet ahead of the others
        for packet in heapq.merge(*sources, key=_seconds):
            mp4.mux(packet)
            if progress is not None and duration > 0:
                progress(min(0.99, max(0.0, _seconds(packet) / duration)))
        if vstream is not None and not copied:
            mp4.mux(vstream.encode(None))
        if astream is not None:
            mp4.mux(astream.encode(None))
        poster_written = poster.exists()
    finally:
        mp4.close()
    to_hls(out / "lesson.mp4", out / "hls")
    result: dict[str, Any] = {
        "starts_at": round(t0, 6),  # the wall-clock time of the lesson's 0
        "duration": round(duration, 3),
        "mp4": "lesson.mp4",
        "hls": "hls/index.m3u8",
        "poster": "poster.jpg" if poster_written else None,
        "main": lesson.main,
        "transcoded": bool(videos) and not copied,
        "video": [t.meta["file"] for t in videos],
        "audio": [t.meta["file"] for t in audios],
    }
    if lesson.main == "speaker":
        result["speakers"] = [{"from": round(at, 3), "participant": who} for at, who in lesson.spans]
    (out / "finished.json").write_text(json.dumps(result, indent=1))
    if progress is not None:
        progress(1.0)
    return result


def copyable(videos: list[Track]) -> bool:
    """Whether the main video can go into the MP4 as it was recorded, without transcoding: H.264
    (what TVs decode) in files of one size and one set of parameter sets, with a keyframe at least
    every MAX_COPIED_GOP seconds (HLS segments start at keyframes; a browser's H.264 has a keyframe
    only when a viewer asks, an encoder such as OBS or FFmpeg every second or two). Reading this
    costs a demux, no decoding."""
    if not videos or any(t.meta.get("codec") != "H264" for t in videos):
        return False
    first: tuple[int, int, bytes] | None = None
    for track in videos:
        with av.open(str(track.path)) as source:
            stream = source.streams.video[0]
            context = stream.codec_context
            shape = (context.width, context.height, bytes(context.extradata or b""))
            if first is None:
                first = shape
            if shape != first or not shape[2]:
                return False
            last_key: float | None = None
            for packet in source.demux(stream):
                if packet.pts is None or packet.time_base is None:
                    continue
                at = float(packet.pts * packet.time_base)
                if packet.is_keyframe:
                    last_key = at
                elif last_key is None or at - last_key > MAX_COPIED_GOP:
                    return False
    return True


def _copy(tracks: list[Track], t0: float, duration: float, stream: Any, poster: Path) -> Iterator[av.Packet]:
    """The main video's packets as they are, file after file on the lesson's timeline; the poster
    decoded from the packets around POSTER_AT."""
    poster_due, last_pts = duration * POSTER_AT, -1
    decoder: Any = None
    for track in tracks:
        offset = track.start - t0
        with av.open(str(track.path)) as source:
            for packet in source.demux(source.streams.video[0]):
                if packet.pts is None or packet.time_base is None or not packet.size:
                    continue
                at = offset + float(packet.pts * packet.time_base)
                near = packet.is_keyframe and at >= poster_due - MAX_COPIED_GOP
                if not poster.exists() and (decoder or near):
                    if decoder is None:  # from the keyframe before the poster's time
                        decoder = av.CodecContext.create("h264", "r")
                        decoder.extradata = source.streams.video[0].codec_context.extradata
                    for frame in decoder.decode(packet):
                        if at >= poster_due:
                            frame.to_image().save(poster, quality=85)
                pts = round(at * 90_000)
                if pts <= last_pts:
                    continue
                last_pts = pts
                packet.pts = packet.dts = pts
                packet.time_base = fractions.Fraction(1, 90_000)
                packet.stream = stream
                yield packet


def _video_size(track: Track) -> tuple[int, int]:
    with av.open(str(track.path)) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
    return (width - width % 2) or 2, (height - height % 2) or 2  # 4:2:0 wants even sizes


def _frames(track: Track, t0: float) -> Generator[tuple[float, av.VideoFrame], None, None]:
    """(seconds on the lesson's timeline, frame) of one video file, decoded in order."""
    offset = track.start - t0
    with av.open(str(track.path)) as source:
        for frame in source.decode(video=0):
            if frame.time is not None:
                yield offset + frame.time, frame


def _speaker_frames(
    files: list[Track], spans: list[Span], t0: float
) -> Iterator[tuple[float, av.VideoFrame]]:
    """The frames of whoever each span shows, in timeline order.

    Each file is decoded from its start, through the spans it is not shown in too, rather than
    sought to each span: a WebRTC camera sends a keyframe only when asked (a subscriber joins, a
    packet is lost), so a seek lands minutes back or on no keyframe at all, and VP8 decodes cheaply
    beside the H.264 encoding. The participants' frames are merged by time (heapq.merge, one frame
    pending a participant); a participant's visits are chained, so a file is opened only when the
    one before it is done, and left once its participant's last span is over: one decoder open a
    participant at most, whatever the lesson's length.
    """
    starts = [start for start, _ in spans]
    ends = [*starts[1:], math.inf]
    until: dict[str, float] = {}
    for (_, who), end in zip(spans, ends, strict=True):
        until[who] = end

    def shown(track: Track) -> Iterator[tuple[float, av.VideoFrame]]:
        who = track.meta["participant"]
        with contextlib.closing(_frames(track, t0)) as frames:
            for at, frame in frames:
                if at >= until[who]:
                    return
                span = bisect.bisect_right(starts, at) - 1
                if span >= 0 and spans[span][1] == who:
                    yield at, frame

    people: dict[str, list[Track]] = {}
    for track in files:
        people.setdefault(track.meta["participant"], []).append(track)
    visits = [itertools.chain.from_iterable(shown(t) for t in tracks) for tracks in people.values()]
    return heapq.merge(*visits, key=lambda item: item[0])


def _video(
    frames: Iterable[tuple[float, av.VideoFrame]], duration: float, stream: Any, poster: Path
) -> Iterator[av.Packet]:
    """The main video's frames, given on the lesson's timeline, encoded (a gap between them holds
    the last picture; a frame not after the last one is left out); the poster from POSTER_AT."""
    width, height = stream.width, stream.height
    poster_due, last_pts, last_key = duration * POSTER_AT, -1, -math.inf
    for at, frame in frames:
        pts = round(at * 90_000)
        if pts <= last_pts:
            continue
        last_pts = pts
        # a keyframe every GOP_SECONDS of the timeline, whatever the camera's frame rate: HLS cuts there
        if at - last_key >= GOP_SECONDS:
            frame.pict_type, last_key = PictureType.I, at
        else:
            frame.pict_type = PictureType.NONE
        if (frame.width, frame.height) != (width, height):  # another layer or camera: scaled
            frame = frame.reformat(width=width, height=height, format="yuv420p")
        if at >= poster_due and not poster.exists():
            frame.to_image().save(poster, quality=85)
        frame.pts, frame.time_base = pts, fractions.Fraction(1, 90_000)
        yield from stream.encode(frame)


def _mix(tracks: list[Track], t0: float, duration: float, stream: Any) -> Iterator[av.Packet]:
    total = round(duration * RATE)
    at = 0
    for chunk in mixed(tracks, t0, total):
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, at, fractions.Fraction(1, RATE)
        at += len(chunk)
        yield from stream.encode(frame)


def _seconds(packet: av.Packet) -> float:
    """When a packet is decoded, on the lesson's timeline: what interleaving orders by."""
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base) if stamp is not None and packet.time_base else 0.0


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
