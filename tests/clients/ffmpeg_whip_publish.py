"""Publish H.264 and Opus over WHIP with FFmpeg's own WHIP muxer, as PyAV's wheels bundle it.

An encoder nobody here wrote: FFmpeg does its own ICE (it sends checks to the answer's candidate),
DTLS and SRTP, and ignores keyframe requests. Its self-made certificate is ECDSA P-224, which
current OpenSSL refuses ("wrong curve"), so the caller passes a P-256 certificate and key.

    python ffmpeg_whip_publish.py URL TOKEN CERT KEY SECONDS GOP

Encodes the picture of picture.py (320x240, 25 fps, a keyframe every GOP frames and no other) and
a 440 Hz tone in real time; prints "published N frames" when done.
"""

from __future__ import annotations

import fractions
import sys
import time

import av
import numpy as np
from picture import frame

FPS = 25
RATE = 48000


def main() -> int:
    url, token, cert, key, seconds, gop = sys.argv[1:7]
    options = {"authorization": token, "cert_file": cert, "key_file": key}
    with av.open(url, mode="w", format="whip", options=options) as out:
        video = out.add_stream(
            "libx264",
            rate=FPS,
            options={
                "preset": "ultrafast",
                "tune": "zerolatency",
                "profile": "baseline",
                "g": gop,
                "bf": "0",
                "x264-params": "scenecut=0",
            },
        )
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        audio = out.add_stream("libopus", rate=RATE)
        audio.layout = "stereo"
        start = time.monotonic()
        count = samples = 0
        while time.monotonic() - start < float(seconds):
            picture = av.VideoFrame.from_ndarray(frame(320, 240, count), format="rgb24")
            picture.pts, picture.time_base = count, fractions.Fraction(1, FPS)
            for packet in video.encode(picture.reformat(format="yuv420p")):
                out.mux(packet)
            while samples < (count + 1) * RATE // FPS:
                t = (np.arange(960) + samples) / RATE
                tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
                sound = av.AudioFrame.from_ndarray(np.repeat(tone, 2)[None, :], format="s16", layout="stereo")
                sound.sample_rate, sound.pts = RATE, samples
                for packet in audio.encode(sound):
                    out.mux(packet)
                samples += 960
            count += 1
            time.sleep(max(0.0, start + count / FPS - time.monotonic()))
    print("published", count, "frames", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
