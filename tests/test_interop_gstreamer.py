"""GStreamer's webrtcbin publishing over WHIP, as a classroom box built on GStreamer does.

webrtcbin with max-bundle offers every section after the first with port 0 and a=bundle-only; kelian
once read that as a rejection and dropped the box's audio. The box runs in a network namespace the
test makes (libnice ignores loopback), with UPnP off, so nothing leaves the machine; an aiortc WHEP
player on the host decodes what it sent.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from helpers import require_system
from kelian_server import eventually, running_server
from netns import Namespace
from whep_player import play

SYSTEM_PYTHON = "/usr/bin/python3"
PUBLISHER = Path(__file__).parent / "clients" / "gst_whip_publish.py"
PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0');"
    "from gi.repository import Gst; Gst.init(None);"
    "assert all(Gst.ElementFactory.find(e) for e in ('webrtcbin', 'nicesrc', 'vp8enc', 'opusenc'))"
)


def require_gstreamer() -> None:
    try:
        subprocess.run([SYSTEM_PYTHON, "-c", PROBE], check=True, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        require_system(
            "gstreamer",
            "GStreamer's webrtcbin from python3 is missing (apt-get install python3-gst-1.0"
            " gstreamer1.0-plugins-bad gstreamer1.0-nice gstreamer1.0-plugins-good"
            " gstreamer1.0-plugins-base)",
        )


async def test_webrtcbin_publishes_vp8_and_opus_with_max_bundle(netns: Namespace) -> None:
    require_gstreamer()
    async with running_server(netns.host_ip) as kelian:
        token = kelian.token("box-3", "classroom")
        box = await asyncio.create_subprocess_exec(
            *("ip", "netns", "exec", netns.name, SYSTEM_PYTHON, str(PUBLISHER)),
            *(f"{kelian.url}/whip/lesson", token, "30"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            room = kelian.rooms.get("lesson")  # type: ignore[attr-defined]

            def publishing() -> bool:
                producers = list(room.router.producers.values())
                return len(producers) == 2 and all(s.stats.packets > 10 for p in producers for s in p.streams)

            assert await eventually(publishing, timeout=20), "the box's audio and video both arrive"
            assert sorted((p.kind, p.codec.name) for p in room.router.producers.values()) == [
                ("audio", "opus"),
                ("video", "VP8"),
            ]
            player = await play(f"{kelian.url}/whep/lesson", kelian.token("viewer", "viewer"))
            try:
                video = await player.frames("video", 20)
                audio = await player.frames("audio", 20)
                assert {(f.width, f.height) for f in video} == {(320, 240)}  # type: ignore[attr-defined]
                assert video[-1].to_ndarray(format="rgb24").std() > 20  # type: ignore[attr-defined]  # SMPTE bars
                assert all(f.sample_rate == 48000 for f in audio)  # type: ignore[attr-defined]
            finally:
                await player.close()
        finally:
            if box.returncode is None:
                box.terminate()
            out, err = await box.communicate()
    assert b"whip 201 /whip/lesson/" in out, (out + err).decode(errors="replace")
    assert b"connection connected" in out
