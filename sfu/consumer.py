"""Consumer: one Producer forwarded to one Transport.

The subscriber must see one continuous RTP stream whatever the Consumer forwards underneath: a
simulcast layer now, another layer or a standby Producer later. So the Consumer owns its SSRC and
keeps sequence-number and timestamp deltas that are recomputed at every source switch ("sync"),
always at a keyframe for video. The rewrite itself happens in the SRTP staging buffer (srtp.py).
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .rtp import is_keyframe
from .srtp import SrtpError
from .stats import ntp_now, rtt_from_report

if TYPE_CHECKING:
    from .producer import Producer, RtpStream
    from .transport import WebRtcTransport

_ids = itertools.count(1)


class Consumer:
    """Forwarding state of one subscription; all mutable state is plain ints on slots."""

    __slots__ = (
        "bytes",
        "closed",
        "codec_name",
        "errors",
        "fraction_lost",
        "id",
        "jitter",
        "kind",
        "last_seq",
        "last_ts",
        "mid",
        "nacks",
        "on_close",
        "packets",
        "packets_lost",
        "paused",
        "payload_type",
        "plis",
        "producer",
        "retransmissions",
        "rtt",
        "seq_delta",
        "ssrc",
        "stream",
        "sync_seq",
        "synced",
        "transport",
        "ts_delta",
    )

    def __init__(self, transport: WebRtcTransport, producer: Producer, mid: str) -> None:
        self.id = f"CO_{next(_ids)}"
        self.transport = transport
        self.producer = producer
        self.kind = producer.kind
        self.codec_name = producer.codec.name
        self.mid = mid
        self.payload_type = producer.codec.payload_type  # WHEP answers use the player's own
        self.ssrc = random.getrandbits(32) or 1
        self.stream: RtpStream | None = None
        self.synced = False
        self.sync_seq = 0
        self.seq_delta = 0
        self.ts_delta = 0
        self.last_seq = random.getrandbits(16)
        self.last_ts = random.getrandbits(32)
        self.paused = False
        self.closed = False
        self.packets = self.bytes = self.errors = 0
        self.nacks = self.plis = self.retransmissions = 0
        self.fraction_lost = 0.0
        self.packets_lost = 0
        self.jitter = 0.0
        self.rtt: float | None = None
        self.on_close: list[Callable[[Consumer], None]] = []

    # -- forwarding path ------------------------------------------------------------------------

    def send(self, packet: bytes, seq: int, ts: int) -> None:
        transport = self.transport
        tx = transport.srtp_tx
        if tx is None:  # not connected yet: do not sync on a keyframe the subscriber would miss
            return
        if not self.synced:
            if self.paused or (self.kind == "video" and not is_keyframe(self.codec_name, packet)):
                return
            self._sync(seq, ts)
        elif (seq - self.sync_seq) & 0xFFFF >= 0x8000:
            return  # older than the switch point: its sequence number belongs to the old source
        out_seq = (seq + self.seq_delta) & 0xFFFF
        out_ts = (ts + self.ts_delta) & 0xFFFFFFFF
        try:
            data = tx.protect_rewritten(packet, self.payload_type, out_seq, out_ts, self.ssrc)
        except SrtpError:
            self.errors += 1
            return
        transport.sendto(data, transport.remote_addr)  # type: ignore[arg-type]  # keyed => has an address
        self.packets += 1
        self.bytes += len(packet)
        if (out_seq - self.last_seq) & 0xFFFF < 0x8000:
            self.last_seq = out_seq
            self.last_ts = out_ts

    def _sync(self, seq: int, ts: int) -> None:
        """Start (or restart after a switch) so the next packet follows the last one sent."""
        stream = self.stream
        clock = self.producer.codec.clock_rate
        gap = 1
        if stream is not None and self.packets:
            gap = max(1, int(0.033 * clock))  # about a frame: the switch point has no shared clock
        self.seq_delta = (self.last_seq + 1 - seq) & 0xFFFF
        self.ts_delta = (self.last_ts + gap - ts) & 0xFFFFFFFF
        self.sync_seq = seq
        self.synced = True

    # -- control ----------------------------------------------------------------------------------

    def attach(self, stream: RtpStream) -> None:
        """Forward `stream` from its next keyframe; the old source keeps flowing until then."""
        if stream is self.stream:
            return
        if self.stream is not None and self in self.stream.consumers:
            self.stream.consumers.remove(self)
        self.stream = stream
        self.synced = False
        stream.consumers.append(self)
        if self.kind == "video":
            stream.request_keyframe()

    def request_keyframe(self) -> None:
        if self.stream is not None and self.kind == "video":
            self.stream.request_keyframe()

    def pause(self) -> None:
        self.paused = True
        self.synced = False

    def resume(self) -> None:
        self.paused = False
        self.request_keyframe()

    def on_nack(self, lost: list[int]) -> None:
        """Answer a subscriber's NACK from the Producer's cache, rewritten as the original was."""
        self.nacks += 1
        stream = self.stream
        transport = self.transport
        tx = transport.srtp_tx
        if stream is None or tx is None or transport.remote_addr is None or not self.synced:
            return
        for out_seq in lost:
            seq = (out_seq - self.seq_delta) & 0xFFFF
            if (seq - self.sync_seq) & 0xFFFF >= 0x8000:
                continue
            packet = stream.cached(seq)
            if packet is None:
                continue
            ts = int.from_bytes(packet[4:8], "big")
            try:
                data = tx.protect_rewritten(
                    packet, self.payload_type, out_seq, (ts + self.ts_delta) & 0xFFFFFFFF, self.ssrc
                )
            except SrtpError:
                self.errors += 1
                continue
            transport.sendto(data, transport.remote_addr)
            self.retransmissions += 1

    def on_pli(self) -> None:
        self.plis += 1
        self.request_keyframe()

    def on_receiver_report(
        self, fraction_lost: int, packets_lost: int, jitter: int, lsr: int, dlsr: int
    ) -> None:
        self.fraction_lost = fraction_lost / 256
        self.packets_lost = packets_lost
        self.jitter = jitter / self.producer.codec.clock_rate
        rtt = rtt_from_report(lsr, dlsr)
        if rtt is not None:
            self.rtt = rtt

    def sender_report(self) -> tuple[int, int, int, int] | None:
        """(ntp, rtp timestamp, packets, octets) in the publisher's clock, or None before any media.

        Using the publisher's NTP/RTP mapping (shifted by our timestamp delta) keeps lip sync: audio and
        video Consumers of one publisher report the same NTP clock.
        """
        stream = self.stream
        if not self.packets or stream is None:
            return None
        stats = stream.stats
        clock = self.producer.codec.clock_rate
        if stats.last_sr_arrival:
            elapsed = time.monotonic() - stats.last_sr_arrival
            ntp = stats.last_sr_ntp + int(elapsed * (1 << 32))
            rtp = stats.last_sr_rtp + int(elapsed * clock) + self.ts_delta
        else:
            ntp, rtp = ntp_now(), self.last_ts
        return ntp & 0xFFFFFFFFFFFFFFFF, rtp & 0xFFFFFFFF, self.packets & 0xFFFFFFFF, self.bytes & 0xFFFFFFFF

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.stream is not None and self in self.stream.consumers:
            self.stream.consumers.remove(self)
        for callback in list(self.on_close):
            callback(self)
