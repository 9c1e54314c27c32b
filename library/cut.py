"""Micro-lessons: a span of at most five minutes cut from a finished lesson's MP4.

Two ways, as editors offer them: at keyframes without re-encoding (fast, exact to the keyframe at or
before the start, which the lesson's encoder puts every two seconds), or frame-exact, re-encoding
the span. Either way the clip gets the lesson's forms: MP4 (fast start), HLS and a poster.
"""

from __future__ import annotations

import fractions
from pathlib import Path
from typing import Any

import av

from recorder.finish import GOP_SECONDS, RATE, to_hls

FAST_START = {"movflags": "+faststart"}


def cut(source: Path, out: Path, start: float, end: float, exact: bool = False) -> dict[str, Any]:
    """Write out/lesson.mp4, out/hls/ and out/poster.jpg; the clip's real start and duration."""
    if not 0 <= start < end:
        raise ValueError("a clip runs from start to a later end, in seconds")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "lesson.mp4"
    began = (_reencode if exact else _copy)(source, target, start, end)
    with av.open(str(target)) as clip:
        duration = float(clip.duration or 0) / av.time_base
        poster = next(clip.decode(video=0), None) if clip.streams.video else None
        if poster is not None:
            poster.to_image().save(out / "poster.jpg", quality=85)
    to_hls(target, out / "hls")
    return {"start": round(began, 3), "duration": round(duration, 3)}


def _copy(source: Path, target: Path, start: float, end: float) -> float:
    """The packets from the keyframe at or before `start` to `end`, as they are."""
    with (
        av.open(str(source)) as src,
        av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as dst,
    ):
        wanted = [s for s in src.streams if s.type in ("video", "audio")]
        streams = {s.index: dst.add_stream_from_template(s) for s in wanted}
        video = src.streams.video[0] if src.streams.video else None
        src.seek(int(start * av.time_base), backward=True, any_frame=False)
        origin: float | None = None
        for packet in src.demux(*wanted):
            if packet.pts is None or packet.dts is None or packet.time_base is None:
                continue
            at = float(packet.pts * packet.time_base)
            if origin is None:
                if video is not None and (packet.stream is not video or not packet.is_keyframe):
                    continue  # the clip starts at a video keyframe
                origin = at
            if at > end:
                if packet.stream is video or video is None:
                    break
                continue
            if at < origin:
                continue
            shift = round(origin / packet.time_base)
            packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
            packet.stream = streams[packet.stream.index]
            dst.mux(packet)
    return origin or 0.0


def _reencode(source: Path, target: Path, start: float, end: float) -> float:
    """Every frame from `start` to `end`, encoded again: exact to the frame."""
    with (
        av.open(str(source)) as src,
        av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as dst,
    ):
        vin = src.streams.video[0] if src.streams.video else None
        ain = src.streams.audio[0] if src.streams.audio else None
        vout = aout = None
        if vin is not None:
            vout = dst.add_stream("libx264", rate=30)
            vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
            vout.pix_fmt = "yuv420p"
            vout.codec_context.options = {"preset": "veryfast", "crf": "23"}
            vout.codec_context.gop_size = 30 * GOP_SECONDS
            vout.time_base = fractions.Fraction(1, 90_000)
            # the encoder counts in 90 kHz too: frames captured a few ms apart never share a tick
            vout.codec_context.time_base = fractions.Fraction(1, 90_000)
        if ain is not None:
            aout = dst.add_stream("aac", rate=RATE, layout="mono")
        src.seek(int(start * av.time_base), backward=True, any_frame=False)
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=RATE)
        samples = 0
        for frame in src.decode(*[s for s in (vin, ain) if s is not None]):
            if not isinstance(frame, (av.VideoFrame, av.AudioFrame)):
                continue
            at = frame.time
            if at is None or at < start or at > end:
                continue
            if isinstance(frame, av.VideoFrame) and vout is not None:
                frame.pts, frame.time_base = round((at - start) * 90_000), fractions.Fraction(1, 90_000)
                dst.mux(vout.encode(frame))
            elif isinstance(frame, av.AudioFrame) and aout is not None:
                for out in resampler.resample(frame):
                    out.pts, out.time_base = samples, fractions.Fraction(1, RATE)
                    samples += out.samples
                    dst.mux(aout.encode(out))
        for stream in (vout, aout):
            if stream is not None:
                dst.mux(stream.encode(None))
    return start
