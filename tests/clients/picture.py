"""The picture the interop tests publish: four coloured quadrants and a moving dark bar.

Whatever encodes it (FFmpeg, Chromium's fake camera playing a .y4m file) and whatever decodes it
(aiortc, Chromium), the quadrants survive compression and scaling, so a test can tell that the
picture a player shows is the publisher's and not some other one, and that it moves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# top-left, top-right, bottom-left, bottom-right
COLOURS = ((230, 30, 30), (30, 200, 30), (30, 30, 230), (235, 235, 235))


def frame(width: int, height: int, index: int) -> np.ndarray:
    """RGB (height, width, 3): the quadrants, with a bar sweeping across the middle band."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    h, w = height // 2, width // 2
    for i, colour in enumerate(COLOURS):
        image[(i // 2) * h : (i // 2 + 1) * h, (i % 2) * w : (i % 2 + 1) * w] = colour
    bar = max(4, width // 32)
    x = (index * bar // 2) % (width - bar)
    image[height * 7 // 16 : height * 9 // 16, x : x + bar] = 0
    return image


def shows_quadrants(image: np.ndarray) -> bool:
    """Whether an RGB picture (any size) is this one: each quadrant's middle is nearest its colour."""
    height, width = image.shape[:2]
    palette = np.array(COLOURS, dtype=np.int32)
    for i in range(4):
        top, left = (i // 2) * height // 2, (i % 2) * width // 2
        patch = image[top + height // 8 : top + height * 3 // 8, left + width // 8 : left + width * 3 // 8]
        colour = np.median(patch.reshape(-1, 3), axis=0)
        if int(np.argmin(np.abs(palette - colour).sum(axis=1))) != i:
            return False
    return True


def write_y4m(path: Path, width: int, height: int, frames: int, fps: int = 30) -> Path:
    """A YUV4MPEG2 clip of the picture, which Chromium plays as its fake camera, looping."""
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(frames):
            out.write(b"FRAME\n" + _i420(frame(width, height, index)))
    return path


def _i420(rgb: np.ndarray) -> bytes:
    """BT.601 full-range planar Y, then U and V at half size."""
    r, g, b = (rgb[..., c].astype(np.float32) for c in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = (b - y) * 0.564 + 128
    v = (r - y) * 0.713 + 128

    def half(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(plane.shape[0] // 2, 2, plane.shape[1] // 2, 2).mean(axis=(1, 3))

    planes = (y, half(u), half(v))
    return b"".join(np.clip(p, 0, 255).astype(np.uint8).tobytes() for p in planes)
