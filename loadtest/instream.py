"""What a light subscriber counts about one received track, without decoding anything.

RFC 3550 receiver statistics (sequence tracking, loss, jitter, the report block) are the server's
own `sfu.stats.ReceiveStats`, so that the peer's receiver reports say what a server-side receiver
would. Around it: NACKs for gaps and PLIs until the first keyframe, as a receiving browser sends
them, and the viewer's figures a load test reports: frames by marker bit or timestamp, keyframes and
their VP8 size (which simulcast layer arrives), freezes, and one-way latency from the sender
reports the server relays. The per-packet path is plain ints; the rest runs once per frame. The one
subscriber per track that proves the stream decodes hands each packet to its `probe` as well.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import rtp as artp

from sfu.rtp import is_keyframe, vp8_keyframe_size
from sfu.stats import NTP_EPOCH_OFFSET, ReceiveStats

from .probe import Probe
from .rtcp import nack, pli

FREEZE = 0.2  # seconds between frames that a viewer sees as a freeze
MAX_NACK = 64  # a larger gap is loss, not something to ask back packet by packet
PLI_INTERVAL = 1.0  # at most one PLI per stream in this many seconds while waiting for a keyframe
LATENCY_SAMPLES = 1024  # recent per-frame latencies kept per track, for percentiles
NTP_UNIT = float(1 << 32)


def signed32(value: int) -> int:
    """A 32-bit RTP timestamp difference as the signed number it stands for."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


class InStream:
    """One received track (one SSRC): the RFC 3550 statistics and what a viewer would notice."""

    __slots__ = (
        "clock",
        "codec",
        "ended",
        "first_keyframe",
        "frames",
        "freeze_times",
        "freezes",
        "gaps",
        "keyframe_size",
        "keyframes",
        "kind",
        "last_frame",
        "last_pli",
        "last_ts",
        "late",
        "latencies",
        "latency_count",
        "latency_max",
        "latency_sum",
        "max_frame_gap",
        "mid",
        "nacks_sent",
        "plis_sent",
        "probe",
        "rx",
        "send_rtcp",
        "sender_ssrc",
        "sr_unix",
        "ssrc",
        "subscribed",
        "track_id",
        "video",
    )

    def __init__(
        self,
        track_id: str,
        mid: str,
        kind: str,
        codec: str,
        clock: int,
        ssrc: int,
        sender_ssrc: int,
        send_rtcp: Callable[[bytes], None],
    ) -> None:
        self.track_id, self.mid, self.kind, self.codec, self.clock = track_id, mid, kind, codec, clock
        self.ssrc = ssrc
        self.video = kind == "video"
        self.sender_ssrc = sender_ssrc
        self.send_rtcp = send_rtcp
        self.rx = ReceiveStats(clock)
        self.subscribed = time.monotonic()
        self.ended = False
        self.gaps = self.late = self.nacks_sent = self.plis_sent = 0
        self.frames = self.keyframes = self.freezes = 0
        self.freeze_times: deque[float] = deque(maxlen=LATENCY_SAMPLES)  # when each ended, monotonic
        self.keyframe_size: tuple[int, int] | None = None
        self.first_keyframe: float | None = None  # seconds from subscribing to the first keyframe
        self.last_ts = -1
        self.last_frame = 0.0
        self.max_frame_gap = 0.0
        self.last_pli = 0.0
        self.sr_unix = 0.0  # the wall-clock time of the last sender report, Unix seconds
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.latency_sum = self.latency_max = 0.0
        self.latency_count = 0
        self.probe: Probe | None = None  # decodes the track, on the one subscriber that probes it

    @property
    def packets(self) -> int:
        """Packets received, retransmissions included (RFC 3550 counts them too)."""
        return self.rx.packets

    def receive(self, packet: bytes, seq: int, ts: int) -> None:
        """The per-packet path: sequence accounting always, the rest once per frame."""
        rx = self.rx
        first, highest = rx.base_seq < 0, rx.max_seq
        rx.update(seq, ts, len(packet))
        if not first:
            step = (seq - highest) & 0xFFFF
            if step == 0 or step >= 0x8000:
                self.late += 1  # reordered, or a retransmission we asked for
            elif step > 1:
                self._gap(highest, step - 1)
        if self.last_ts < 0 or 0 < (ts - self.last_ts) & 0xFFFFFFFF < 0x80000000:
            self._frame_start(packet, ts)
        if self.video and packet[1] & 0x80:
            self.frames += 1
        if self.probe is not None:
            self.probe.feed(packet)

    def _gap(self, highest: int, missing: int) -> None:
        self.gaps += 1
        if missing <= MAX_NACK:
            lost = [(highest + i) & 0xFFFF for i in range(1, missing + 1)]
            self.send_rtcp(nack(self.sender_ssrc, self.ssrc, lost))
            self.nacks_sent += 1

    def _frame_start(self, packet: bytes, ts: int) -> None:
        """The first packet of a new RTP timestamp: frame pacing, latency, keyframes."""
        self.last_ts = ts
        now = time.monotonic()
        if not self.video:
            self.frames += 1
        if self.last_frame:
            gap = now - self.last_frame
            if gap > self.max_frame_gap:
                self.max_frame_gap = gap
            if gap > FREEZE:
                self.freezes += 1
                self.freeze_times.append(now)
        self.last_frame = now
        if self.sr_unix:
            captured = self.sr_unix + signed32(ts - self.rx.last_sr_rtp) / self.clock
            latency = time.time() - captured
            self.latencies.append(latency)
            self.latency_sum += latency
            self.latency_count += 1
            if latency > self.latency_max:
                self.latency_max = latency
        if not self.video:
            return
        if is_keyframe(self.codec, packet):
            self.keyframes += 1
            if self.first_keyframe is None:
                self.first_keyframe = now - self.subscribed
            if self.codec == "VP8":
                self.keyframe_size = vp8_keyframe_size(packet) or self.keyframe_size
        elif self.keyframes == 0 and now - self.last_pli >= PLI_INTERVAL:
            self.request_keyframe(now)  # joined mid-stream: nothing is decodable until a keyframe

    def start_probe(self) -> None:
        """Decode this track from now on (see loadtest.probe). A video stream already past its first
        keyframe asks for another, as a decoder joining mid-stream would, rather than wait for one."""
        if self.probe is not None:
            return
        self.probe = Probe(self.kind, self.codec, self.clock)
        if self.video and self.keyframes:
            self.request_keyframe()

    def request_keyframe(self, now: float | None = None) -> None:
        """Send a PLI, as a decoder that lost its picture would."""
        self.last_pli = time.monotonic() if now is None else now
        self.plis_sent += 1
        self.send_rtcp(pli(self.sender_ssrc, self.ssrc))

    def on_sender_report(self, ntp: int, rtp: int) -> None:
        """The publisher's NTP/RTP mapping, relayed by the server: capture times from now on."""
        self.rx.on_sender_report(ntp, rtp)
        self.sr_unix = ntp / NTP_UNIT - NTP_EPOCH_OFFSET

    def report_block(self) -> artp.RtcpReceiverInfo:
        """RFC 3550 6.4.1, for the receiver report the subscriber sends every second."""
        return artp.RtcpReceiverInfo(self.ssrc, *self.rx.report_block())

    def stats(self) -> dict[str, Any]:
        latencies = sorted(self.latencies)
        latency: dict[str, float] | None = None
        if latencies:
            latency = {
                "mean": round(self.latency_sum / self.latency_count * 1000, 2),
                "p50": round(latencies[len(latencies) // 2] * 1000, 2),
                "p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2),
                "max": round(self.latency_max * 1000, 2),
            }
        rx = self.rx
        return {
            "track": self.track_id,
            "mid": self.mid,
            "kind": self.kind,
            "codec": self.codec,
            "ssrc": self.ssrc,
            "ended": self.ended,
            "packets": rx.packets,
            "bytes": rx.bytes,
            "expected": rx.expected,
            "lost": rx.lost,
            "gaps": self.gaps,
            "late": self.late,
            "nacks_sent": self.nacks_sent,
            "plis_sent": self.plis_sent,
            "frames": self.frames,
            "keyframes": self.keyframes,
            "keyframe_size": list(self.keyframe_size) if self.keyframe_size else None,
            "first_keyframe_ms": None
            if self.first_keyframe is None
            else round(self.first_keyframe * 1000, 1),
            "max_frame_gap_ms": round(self.max_frame_gap * 1000, 1),
            "freezes": self.freezes,
            "jitter_ms": round(rx.jitter / self.clock * 1000, 2),
            "latency_ms": latency,
            "probe": None if self.probe is None else self.probe.stats(),
        }
