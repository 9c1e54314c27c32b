"""What a light peer publishes: frames paced in real time on every layer, and the answers to the
server's feedback (PLI/FIR, NACK, REMB, receiver reports) and sender reports of our own.

One Publisher serves one publisher connection. The peer's clock calls `pump`, which sends every
frame that is due and says when the next one is; a clock that fell behind skips frames rather than
bursting them, so the server sees real-time media whatever the load on the test's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import struct
import time
from collections.abc import Sequence
from typing import Any

from aiortc import rtp as artp

from sfu import codecs
from sfu.sdp import Codec, MediaSection, Rid, serialize
from sfu.stats import ntp_now, rtt_from_report
from signaling.media import AUDIO_PTIME

from .connection import Connection
from .outstream import (
    AUDIO_CLOCK,
    AUDIO_PT,
    EXT_AUDIO_LEVEL,
    EXT_MID,
    EXT_RID,
    VIDEO_CLOCK,
    VIDEO_PT,
    OutStream,
)
from .rtcp import sdes
from .sdp import local_section, session

MAX_LATE = 0.2  # a pacer later than this skips frames rather than bursting them
# Extensions a publisher declares, at the router's ids, without sending them, as Chromium does: a
# publisher whose ids match the router's own costs the server no per-packet rewrite
# (codecs.extension_table), so a load test measures the server as browsers load it.
DECLARED_VIDEO = {
    codecs.EXTENSION_IDS[uri]: uri for uri in (codecs.URI_ABS_SEND_TIME, codecs.URI_VIDEO_ORIENTATION)
}
DECLARED_AUDIO = {codecs.EXTENSION_IDS[codecs.URI_ABS_SEND_TIME]: codecs.URI_ABS_SEND_TIME}


class Publisher:
    """What one peer sends: its streams, the pacing state and the answers to the server's feedback."""

    def __init__(self, connection: Connection, fps: int) -> None:
        self.connection = connection
        self.fps = fps
        self.video: list[OutStream] = []
        self.audio: OutStream | None = None
        self.by_ssrc: dict[int, OutStream] = {}
        self.video_track = self.audio_track = ""
        self.start: float | None = None  # loop time of frame 0
        self.wall_start: float | None = None  # the same instant on the wall clock
        self.video_n = self.audio_n = 0
        self.skipped = 0
        self.remb: int | None = None
        self.cname = secrets.token_hex(8)

    def streams(self) -> list[OutStream]:
        """Video layers low to high, then the audio."""
        return self.video + ([self.audio] if self.audio is not None else [])

    def add(self, stream: OutStream) -> None:
        """A stream to send, before the offer is made (its SSRC answers the server's feedback)."""
        if stream.kind == "video":
            self.video.append(stream)
        else:
            self.audio = stream
        self.by_ssrc[stream.ssrc] = stream

    def offer(self, mids: dict[str, str]) -> str:
        """Our publish offer: VP8 with rid simulcast when there are several layers (SSRCs are then not
        signalled, as Chromium does) and Opus, each with the router's payload type and extension ids."""
        conn = self.connection
        sections: list[MediaSection] = []
        msid_stream = f"peer-{self.cname}"
        if self.video:
            m = local_section("video", mids["video"], "sendonly", conn)
            m.codecs = [Codec(VIDEO_PT, "VP8", VIDEO_CLOCK, None, {}, list(codecs.PUBLISHER_FEEDBACK))]
            m.formats = [str(VIDEO_PT)]
            m.extmaps = {EXT_MID: codecs.URI_MID, EXT_RID: codecs.URI_RID} | DECLARED_VIDEO
            m.msid = f"{msid_stream} camera"
            if len(self.video) > 1:
                rids = [s.name for s in self.video]
                m.rids = [Rid(rid, "send") for rid in rids]
                m.simulcast = "send " + ";".join(rids)
            else:
                m.ssrcs = {self.video[0].ssrc: {"cname": self.cname, "msid": m.msid}}
            sections.append(m)
        if self.audio is not None:
            m = local_section("audio", mids["audio"], "sendonly", conn)
            m.codecs = [Codec(AUDIO_PT, "opus", AUDIO_CLOCK, 2, {"minptime": "10", "useinbandfec": "1"}, [])]
            m.formats = [str(AUDIO_PT)]
            m.extmaps = {EXT_AUDIO_LEVEL: codecs.URI_AUDIO_LEVEL, EXT_MID: codecs.URI_MID} | DECLARED_AUDIO
            m.msid = f"{msid_stream} microphone"
            m.ssrcs = {self.audio.ssrc: {"cname": self.cname, "msid": m.msid}}
            sections.append(m)
        for m in sections:
            m.rtcp_rsize = m.end_of_candidates = True
        return serialize(session(sections, secrets.randbits(62), msid_semantic="WMS *"))

    def pump(self, now: float) -> float:
        """Send whatever frames are due at loop time `now`; returns when the next one is due."""
        if self.connection.srtp_tx is None:  # soon connected, or failed: then the clock idles
            return now + (0.01 if self.connection.state in ("new", "checking", "connecting") else 1.0)
        first = self.start is None
        if self.start is None:
            self.start = now
            self.wall_start = time.time()
        start, send = self.start, self.connection.send_rtp
        due = now + 1.0
        if self.video:
            next_video = start + self.video_n / self.fps
            if now >= next_video:
                late = now - next_video
                if late > MAX_LATE:  # the loop stalled: stay in real time, do not burst
                    skip = int(late * self.fps)
                    self.video_n += skip
                    self.skipped += skip
                for stream in self.video:
                    if stream.active:
                        stream.send_frame(self.video_n, send)
                self.video_n += 1
                next_video = start + self.video_n / self.fps
            due = min(due, next_video)
        if self.audio is not None:
            next_audio = start + self.audio_n * AUDIO_PTIME
            if now >= next_audio:
                late = now - next_audio
                if late > MAX_LATE:
                    skip = int(late / AUDIO_PTIME)
                    self.audio_n += skip
                    self.skipped += skip
                self.audio.send_frame(self.audio_n, send)
                self.audio_n += 1
                next_audio = start + self.audio_n * AUDIO_PTIME
            due = min(due, next_audio)
        if first:  # the server relays our NTP/RTP mapping to subscribers: give it one at once
            self.report()
        return due

    def set_layers(self, active: Sequence[str]) -> None:
        """The server's `layers`: stop the layers nobody watches; a resumed one starts at a keyframe."""
        if len(self.video) < 2:
            return
        for stream in self.video:
            on = stream.name in active
            if on and not stream.active:
                stream.next_keyframe()
            stream.active = on

    def on_rtcp(self, packets: list[artp.AnyRtcpPacket]) -> None:
        """Feedback from the server: PLI/FIR, NACK, REMB, and receiver reports about our streams."""
        for p in packets:
            if isinstance(p, artp.RtcpPsfbPacket):
                if p.fmt == artp.RTCP_PSFB_PLI:
                    self._keyframe(p.media_ssrc)
                elif p.fmt == artp.RTCP_PSFB_FIR:
                    for pos in range(0, len(p.fci) - 7, 8):
                        self._keyframe(int.from_bytes(p.fci[pos : pos + 4], "big"))
                elif p.fmt == artp.RTCP_PSFB_APP and p.fci[:4] == b"REMB":
                    with contextlib.suppress(ValueError, IndexError, struct.error):
                        self.remb = artp.unpack_remb_fci(p.fci)[0]
            elif isinstance(p, artp.RtcpRtpfbPacket):
                stream = self.by_ssrc.get(p.media_ssrc)
                if p.fmt == artp.RTCP_RTPFB_NACK and stream is not None:
                    stream.retransmit([s & 0xFFFF for s in p.lost], self.connection.send_rtp)
            elif isinstance(p, (artp.RtcpRrPacket, artp.RtcpSrPacket)):
                for report in p.reports:
                    if (stream := self.by_ssrc.get(report.ssrc)) is not None:
                        stream.fraction_lost = report.fraction_lost / 256
                        rtt = rtt_from_report(report.lsr, report.dlsr)
                        if rtt is not None:
                            stream.rtt = rtt

    def _keyframe(self, ssrc: int) -> None:
        stream = self.by_ssrc.get(ssrc)
        if stream is not None and stream.kind == "video":
            stream.keyframe_requests += 1
            stream.next_keyframe()

    def report(self) -> None:
        """Sender reports for every stream that has sent, so subscribers can tell capture time.

        The RTP timestamp is that of a frame due now (frame n is due `n` frame times after the
        start), so NTP and RTP in one report name the same instant.
        """
        start = self.start
        if start is None or self.connection.srtp_tx is None:
            return
        ntp = ntp_now()
        elapsed = asyncio.get_running_loop().time() - start
        packets = [
            bytes(
                artp.RtcpSrPacket(
                    ssrc=s.ssrc,
                    sender_info=artp.RtcpSenderInfo(
                        ntp,
                        (s.ts_base + int(elapsed * s.clock)) & 0xFFFFFFFF,
                        s.packets & 0xFFFFFFFF,
                        s.bytes & 0xFFFFFFFF,
                    ),
                )
            )
            for s in self.streams()
            if s.packets
        ]
        if not packets:
            return
        self.connection.send_rtcp(b"".join(packets) + sdes(self.streams()[0].ssrc, self.cname))

    def stats(self) -> dict[str, Any]:
        return {
            "connection": self.connection.stats(),
            "tracks": {"video": self.video_track, "audio": self.audio_track},
            "streams": {s.name: s.stats(self.wall_start) for s in self.streams()},
            "skipped_frames": self.skipped,
            "remb": self.remb,
        }
