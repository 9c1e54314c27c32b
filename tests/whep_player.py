"""A WHEP player made of aiortc and one HTTP POST, for tests whose publisher is a client nobody here
wrote (GStreamer, FFmpeg): it decodes what it receives, so a test can say the media really played."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from signaling.client import use_loopback_candidates


@dataclass
class Player:
    pc: RTCPeerConnection
    location: str
    tracks: dict[str, MediaStreamTrack] = field(default_factory=dict)

    async def frames(self, kind: str, count: int, timeout: float = 10.0) -> list[object]:
        """The next `count` decoded frames of the `kind` track (each within `timeout` seconds)."""
        track = self.tracks[kind]
        return [await asyncio.wait_for(track.recv(), timeout) for _ in range(count)]

    async def close(self) -> None:
        await self.pc.close()


async def play(url: str, token: str, kinds: tuple[str, ...] = ("video", "audio")) -> Player:
    """POST a recvonly offer to `url` (…/whep/ROOM) and connect; the answer must be a 201."""
    use_loopback_candidates()
    pc = RTCPeerConnection()
    for kind in kinds:
        pc.addTransceiver(kind, direction="recvonly")
    received: dict[str, MediaStreamTrack] = {}
    pc.on("track", lambda track: received.__setitem__(track.kind, track))
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=pc.localDescription.sdp.encode(), headers=headers) as response,
    ):
        text = await response.text()
        if response.status != 201:
            await pc.close()
            raise AssertionError(f"WHEP answered {response.status}: {text}")
        location = response.headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(text, "answer"))
    return Player(pc, location, received)
