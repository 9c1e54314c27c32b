"""The finished lesson's picture without a lecturer camera: the speaker view.

Recordings are built by hand (PyAV, no server): classroom boxes, each a camera of one solid colour
and a microphone that sounds a tone when it "speaks", with the sidecars recorder/track.py writes.
The finished MP4's frames are told apart by colour, so each test reads whose camera is on screen.
"""

from __future__ import annotations

import fractions
import json
from pathlib import Path

import av
import numpy as np

from recorder.finish import WINDOW, finish, speaker_spans

START = 1_800_000_000.0  # the wall-clock time every track starts at (as the sender reports say)
SECONDS = 6.0
FPS = 10
RATE = 48_000
OPUS_FRAME = 960  # 20 ms
RED, BLUE, GREEN = (220, 0, 0), (0, 0, 220), (0, 200, 0)


def _sidecar(
    folder: Path, participant: str, role: str, source: str, codec: str, frames: int, seconds: float
) -> None:
    """The JSON beside a track's file, with the fields TrackFile writes (meta, then close())."""
    kind, clock = ("audio", RATE) if source == "microphone" else ("video", 90_000)
    meta = {
        "track": f"TR_{participant}_{kind[0]}",
        "participant": participant,
        "role": role,
        "source": source,
        "kind": kind,
        "codec": codec,
        "clock": clock,
        "file": f"{participant}-{source}.mkv",
        "first_rtp": 0,
        "first_unix": START,
        "frames": frames,
        "holes": 0,
        "duration": round(seconds, 3),
    }
    (folder / f"{participant}-{source}.json").write_text(json.dumps(meta, indent=1))


def camera(
    folder: Path, participant: str, role: str, colour: tuple[int, int, int], codec: str = "VP8", gop: int = 0
) -> None:
    """A camera of one colour, 160x120 at FPS, SECONDS long: VP8, or H.264 as an encoder such as OBS
    sends it (no B-frames, a keyframe every `gop` frames)."""
    name = f"{participant}-camera"
    picture = np.zeros((120, 160, 3), dtype=np.uint8)
    picture[:, :] = colour
    with av.open(str(folder / f"{name}.mkv"), "w", format="matroska") as container:
        if codec == "H264":
            stream = container.add_stream("libx264", rate=FPS)
            keys = f"keyint={gop}:min-keyint={gop}:scenecut=0" if gop else "keyint=infinite:scenecut=0"
            stream.codec_context.options = {"x264-params": f"bframes=0:{keys}"}
        else:
            stream = container.add_stream("libvpx", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        frames = int(SECONDS * FPS)
        for n in range(frames):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = n, fractions.Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    _sidecar(folder, participant, role, "camera", codec, frames, (frames - 1) / FPS)


def microphone(folder: Path, participant: str, role: str, loud: list[tuple[float, float]]) -> None:
    """An Opus microphone, SECONDS long: a 440 Hz tone during each (from, to) of `loud`, else silence."""
    name = f"{participant}-microphone"
    total = int(SECONDS * RATE)
    t = np.arange(total) / RATE
    samples = np.zeros(total)
    for start, end in loud:
        on = (t >= start) & (t < end)
        samples[on] = 12_000 * np.sin(2 * np.pi * 440 * t[on])
    pcm = samples.astype(np.int16)
    with av.open(str(folder / f"{name}.mkv"), "w", format="matroska") as container:
        stream = container.add_stream("libopus", rate=RATE, layout="mono")
        frames = total // OPUS_FRAME
        for n in range(frames):
            chunk = pcm[n * OPUS_FRAME : (n + 1) * OPUS_FRAME].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, n * OPUS_FRAME
            frame.time_base = fractions.Fraction(1, RATE)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    _sidecar(folder, participant, role, "microphone", "opus", frames, (frames - 1) * OPUS_FRAME / RATE)


def colours(mp4: Path) -> list[tuple[float, str]]:
    """(time, "red" | "blue" | "green" | "?") of each frame of the MP4's video."""
    seen = []
    with av.open(str(mp4)) as container:
        for frame in container.decode(video=0):
            r, g, b = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
            name = "red" if r > 150 > max(g, b) else "blue" if b > 150 > max(r, g) else "?"
            name = "green" if g > 150 > max(r, b) else name
            assert frame.time is not None
            seen.append((frame.time, name))
    return seen


def changes(seen: list[tuple[float, str]]) -> list[str]:
    """The colours shown, one entry each time the picture changes."""
    runs: list[str] = []
    for _, name in seen:
        if not runs or runs[-1] != name:
            runs.append(name)
    return runs


def two_boxes(folder: Path, a_loud: list[tuple[float, float]], b_loud: list[tuple[float, float]]) -> None:
    camera(folder, "box-a", "classroom", RED)
    camera(folder, "box-b", "classroom", BLUE)
    microphone(folder, "box-a", "classroom", a_loud)
    microphone(folder, "box-b", "classroom", b_loud)


def test_the_picture_follows_whoever_speaks(tmp_path: Path) -> None:
    """box-a speaks the first half, box-b the second: the MP4 shows box-a, then box-b, switching once."""
    two_boxes(tmp_path, a_loud=[(0.0, 3.0)], b_loud=[(3.0, 6.0)])
    result = finish(tmp_path, tmp_path / "out")
    seen = colours(tmp_path / "out" / "lesson.mp4")
    assert all(name == "red" for at, name in seen if at < 2.5), seen
    assert all(name == "blue" for at, name in seen if at > 5.0), seen
    assert changes(seen) == ["red", "blue"], seen  # one switch, no flicker
    assert result["main"] == "speaker"
    speakers = result["speakers"]
    assert [s["participant"] for s in speakers] == ["box-a", "box-b"], speakers
    assert speakers[0]["from"] == 0.0 and 2.5 <= speakers[1]["from"] <= 5.0, speakers
    switch = next(at for at, name in seen if name == "blue")
    assert abs(switch - speakers[1]["from"]) <= 1 / FPS + 0.01, (switch, speakers)
    assert sorted(result["video"]) == ["box-a-camera.mkv", "box-b-camera.mkv"]
    assert json.loads((tmp_path / "out" / "finished.json").read_text()) == result


def test_a_cough_does_not_take_the_picture(tmp_path: Path) -> None:
    """box-a speaks, then is quiet; box-b coughs (0.3 s, loud) in the quiet: the picture stays on box-a."""
    two_boxes(tmp_path, a_loud=[(0.0, 2.0)], b_loud=[(3.0, 3.3)])
    result = finish(tmp_path, tmp_path / "out")
    seen = colours(tmp_path / "out" / "lesson.mp4")
    assert seen and changes(seen) == ["red"], seen
    assert result["speakers"] == [{"from": 0.0, "participant": "box-a"}]
    assert result["video"] == ["box-a-camera.mkv"]  # box-b's camera is never on screen


def test_with_a_lecturer_camera_only_the_lecturer_is_shown(tmp_path: Path) -> None:
    """The boxes speak in turn, the lecturer is quiet: the lecturer's camera is the picture all along."""
    two_boxes(tmp_path, a_loud=[(0.0, 3.0)], b_loud=[(3.0, 6.0)])
    camera(tmp_path, "teacher", "lecturer", GREEN)
    microphone(tmp_path, "teacher", "lecturer", [])
    result = finish(tmp_path, tmp_path / "out")
    seen = colours(tmp_path / "out" / "lesson.mp4")
    assert len(seen) >= SECONDS * FPS - 2 and changes(seen) == ["green"], seen
    assert result["main"] == "lecturer" and "speakers" not in result
    assert result["video"] == ["teacher-camera.mkv"]
    assert len(result["audio"]) == 3  # every voice is still heard


def _levels(*loud: tuple[int, int], windows: int = 20) -> np.ndarray:
    """A level per window: -20 dBov in each [from, to) window range of `loud`, silence elsewhere."""
    level = np.full(windows, -127.0)
    for start, end in loud:
        level[start:end] = -20.0
    return level


def test_a_speaker_without_a_camera_leaves_the_picture_where_it_is() -> None:
    """box-c speaks but has no camera: box-a (the only voice with a camera) stays on screen; once
    box-a's camera goes, the picture goes at once to the camera left."""
    everywhere = np.ones(20, dtype=bool)
    a_camera = np.arange(20) < 12
    levels = {"box-a": _levels((0, 4)), "box-b": _levels(), "box-c": _levels((5, 15))}
    spans = speaker_spans(levels, {"box-a": a_camera, "box-b": everywhere})
    assert spans == [(0.0, "box-a"), (12 * WINDOW, "box-b")]
