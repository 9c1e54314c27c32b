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
from time import monotonic
from typing import TYPE_CHECKING

from .codecs import TRANSPORT_CC_ID
from .fanout import Forward
from .rtp import (
    SEQ_TS,
    U16,
    U32,
    RtpError,
    extension_offset,
    payload_end,
    payload_offset,
    rewrite_vp8_picture,
)
from .srtp import SrtpError
from .stats import ntp_now, rtt_from_report
from .twcc import HISTORY_MASK

if TYPE_CHECKING:
    from .producer import Producer, RtpStream
    from .transport import WebRtcTransport

_ids = itertools.count(1)


class Consumer(Forward):
    """Forwarding state of one subscription. The numbers each forwarded packet reads and writes are
    in its base, Forward (sfu/fanout.py), where the compiled fan-out finds them; the rest on slots."""

    __slots__ = (
        "closed",
        "codec_name",
        "enabled",
        "fraction_lost",
        "id",
        "jitter",
        "kind",
        "max_height",
        "max_width",
        "mid",
        "nacks",
        "on_close",
        "packets_lost",
        "paused",
        "plis",
        "producer",
        "replayed",
        "retransmissions",
        "rtt",
        "rtx_payload_type",
        "rtx_seq",
        "rtx_ssrc",
        "stream",
        "target",
        "transport",
    )

    def __init__(self, transport: WebRtcTransport, producer: Producer, mid: str) -> None:
        self.id = f"CO_{next(_ids)}"
        self.transport = transport
        self.producer = producer
        self.kind = producer.kind
        self.codec_name = producer.codec.name
        self.mid = mid
        self.payload_type = producer.codec.payload_type  # WHEP answers use the player's own
        self.ext_table = None  # router -> subscriber extension ids, where they differ
        self.sender = transport.sender  # the compiled fan-out's way out; None: through send()
        self.ssrc = random.getrandbits(32) or 1
        self.rtx_ssrc = random.getrandbits(32) or 1
        self.rtx_payload_type: int | None = None  # set once the subscriber's answer keeps RTX
        self.rtx_seq = random.getrandbits(16)
        self.stream: RtpStream | None = None  # the source being forwarded
        self.target: RtpStream | None = None  # the source to switch to at its next keyframe
        self.sync_seq = 0
        self.seq_delta = 0
        self.ts_delta = 0
        self.last_seq = random.getrandbits(16)
        self.last_ts = random.getrandbits(32)
        self.paused = False
        self.closed = False
        # what the subscriber shows this track at (0: no preference) and whether it wants it at all
        self.max_width = self.max_height = 0
        self.enabled = True
        # VP8 PictureID / TL0PICIDX offsets after a layer switch (rewritten only when non-zero)
        self.vp8_deltas = None  # None: no offset, nothing to rewrite
        # source timestamp -> output timestamp of the frames of a replayed picture group (replay())
        self.replayed: dict[int, int] | None = None
        self.packets = self.bytes = self.errors = 0
        self.nacks = self.plis = self.retransmissions = 0
        self.fraction_lost = 0.0
        self.packets_lost = 0
        self.jitter = 0.0
        self.rtt: float | None = None
        self.on_close: list[Callable[[Consumer], None]] = []
        producer.consumers.append(self)

    # -- forwarding path ------------------------------------------------------------------------

    def send(self, packet: bytes, seq: int, ts: int) -> None:
        """The reference path of fanout.forward, which calls it for a Consumer it cannot send for
        itself; only while this Consumer is in its stream's `consumers`: synced and keyed."""
        d = (seq - self.sync_seq) & 0xFFFF
        if d >= 0x8000:
            return  # from before the switch point: its sequence number belongs to the old source
        if d > 0x4000:
            self.sync_seq = (seq - 0x1000) & 0xFFFF  # slide the window with the stream
        out_seq = (seq + self.seq_delta) & 0xFFFF
        out_ts = (ts + self.ts_delta) & 0xFFFFFFFF
        transport = self.transport
        history = transport.twcc
        stream: RtpStream = self.stream  # type: ignore[assignment]  # set: we are in its consumers
        if history is None:
            twcc_at, twcc_seq = -1, 0
        else:
            twcc_at = stream.twcc_at
            twcc_seq = history.next_seq
            history.next_seq = (twcc_seq + 1) & 0xFFFF
        try:
            data = transport.srtp_tx.protect_rewritten(  # type: ignore[union-attr]  # keyed before promotion
                packet,
                self.payload_type,
                out_seq,
                out_ts,
                self.ssrc,
                self.vp8_deltas,
                twcc_at,
                twcc_seq,
                self.ext_table,
            )
        except (SrtpError, RtpError):
            self.errors += 1
            return
        if history is not None:
            index = twcc_seq & HISTORY_MASK
            history.sent_at[index] = stream.sent_at
            history.sizes[index] = len(data)
        transport.sendto(data, transport.remote_addr)  # type: ignore[arg-type]  # keyed => has an address
        self.packets += 1
        self.bytes += len(packet)
        if (out_seq - self.last_seq) & 0xFFFF < 0x8000:
            self.last_seq = out_seq
            self.last_ts = out_ts

    def switch_to(self, stream: RtpStream, seq: int, ts: int) -> None:
        """Called by `stream` at its keyframe: leave the old source and continue the output from here."""
        old = self.stream
        if old is not None and old is not stream and self in old.consumers:
            old.consumers.remove(self)
        out_ts = self._continued(old, stream, ts) if self.packets and old is not None else self.last_ts + 1
        self.stream = stream
        self.target = None
        self.replayed = None
        self.seq_delta = (self.last_seq + 1 - seq) & 0xFFFF
        self.ts_delta = (out_ts - ts) & 0xFFFFFFFF
        self.sync_seq = seq
        if old is not None and old is not stream and stream.picture_id >= 0 and old.picture_id >= 0:
            # continue the picture numbering the subscriber has seen (one past the last forwarded)
            pid_delta, tl0_delta = self.vp8_deltas or (0, 0)
            last_pid = (old.picture_id + pid_delta) & 0x7FFF
            pid_delta = (last_pid + 1 - stream.picture_id) & 0x7FFF
            if old.tl0 >= 0 and stream.tl0 >= 0:
                last_tl0 = (old.tl0 + tl0_delta) & 0xFF
                tl0_delta = (last_tl0 + 1 - stream.tl0) & 0xFF
            self.vp8_deltas = (pid_delta, tl0_delta) if pid_delta or tl0_delta else None
        stream.consumers.append(self)

    def _continued(self, old: RtpStream, new: RtpStream, ts: int) -> int:
        """Where `new`'s timestamp `ts` goes on the output when `new` takes over from `old`: as far
        after the last one sent as it was captured after it, so that a player's jitter buffer and a
        recording keep real time across a layer switch, a failover or a pause. Layers of one
        publisher share its sender reports' clock, which places it exactly (as mediasoup does);
        other sources are placed by when their packets arrived. Never at or before the last sent."""
        a, b = old.stats, new.stats
        if old.producer is new.producer and a.last_sr_arrival and b.last_sr_arrival:
            since_report = (ts - b.last_sr_rtp + 0x80000000) % 0x100000000 - 0x80000000
            apart = (b.last_sr_ntp - a.last_sr_ntp) * self.producer.codec.clock_rate / 2**32
            on_old = a.last_sr_rtp + round(apart) + since_report
        elif a.transit is not None and b.transit is not None:
            on_old = ts + round(b.transit - a.transit)  # what `old` would stamp the same arrival
        else:  # nothing to place it by: about a frame after the last
            return (self.last_ts + max(1, int(0.033 * self.producer.codec.clock_rate))) & 0xFFFFFFFF
        out = (on_old + self.ts_delta) & 0xFFFFFFFF
        if (out - self.last_ts - 1) & 0xFFFFFFFF >= 0x80000000:
            return (self.last_ts + 1) & 0xFFFFFFFF  # captured no later than what went out: just after it
        return out

    def replay(self, stream: RtpStream, packets: list[bytes]) -> None:
        """Start from a cached picture group (RtpStream.cached_gop) instead of a fresh keyframe.

        The frames go out at once with timestamps one tick apart, just before where the live stream
        continues: the decoder gets every reference it needs and the player shows the current
        picture at once, rather than playing seconds of old video behind live.
        """
        seq0 = SEQ_TS.unpack_from(packets[0], 2)[0]
        frames = list(dict.fromkeys(U32.unpack_from(p, 4)[0] for p in packets))
        before = self.last_ts
        self.switch_to(stream, seq0, frames[-1])  # the newest cached picture where it belongs; live after it
        end = (frames[-1] + self.ts_delta) & 0xFFFFFFFF
        if self.packets and (end - len(frames) - before) & 0xFFFFFFFF >= 0x80000000:
            end = (before + len(frames)) & 0xFFFFFFFF  # no room before it: the group right after the last
            self.ts_delta = (end - frames[-1]) & 0xFFFFFFFF
        first = end - len(frames) + 1
        self.replayed = {ts: (first + i) & 0xFFFFFFFF for i, ts in enumerate(frames)}
        for packet in packets:
            seq, ts = SEQ_TS.unpack_from(packet, 2)
            out_seq = (seq + self.seq_delta) & 0xFFFF
            if self._send_cached(
                packet, self.payload_type, out_seq, self.replayed[ts], self.ssrc, self.vp8_deltas
            ):
                self.packets += 1
                self.bytes += len(packet)
                self.last_seq, self.last_ts = out_seq, self.replayed[ts]

    def _send_cached(
        self, packet: bytes, pt: int, seq: int, ts: int, ssrc: int, vp8_deltas: tuple[int, int] | None
    ) -> bool:
        """Send a packet from the Producer's cache (a replay, a resend, an RTX packet) with these
        header fields, a transport-wide number of its own, and the subscriber's extension ids."""
        transport = self.transport
        tx = transport.srtp_tx
        if tx is None or transport.remote_addr is None:
            return False
        at, twcc_seq = self._twcc_slot(packet, len(packet))
        try:
            data = tx.protect_rewritten(packet, pt, seq, ts, ssrc, vp8_deltas, at, twcc_seq, self.ext_table)
        except SrtpError:
            self.errors += 1
            return False
        transport.sendto(data, transport.remote_addr)
        return True

    # -- control ----------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self.stream is not None and self in self.stream.consumers

    def attach(self, stream: RtpStream) -> None:
        """Forward `stream` from its next keyframe; the old source keeps flowing until then."""
        if self.target is not None and self in self.target.pending:
            self.target.pending.remove(self)
        if stream is self.stream and self.synced:
            self.target = None
            return
        self.target = stream
        if self.producer.paused:
            return  # muted: Producer.resume() attaches it
        stream.pending.append(self)
        if self.kind == "video":
            stream.request_keyframe()
            if not self.synced:  # the subscriber shows nothing until this stream's keyframe
                stream.expect_keyframe()

    def move_to(self, producer: Producer) -> None:
        """Take `producer` as the source (Router.reassign): attached to its best stream, switching
        at that stream's keyframe, the current source flowing until then."""
        old = self.producer
        if self in old.consumers:
            old.consumers.remove(self)
        self.producer = producer
        producer.consumers.append(self)
        if not self.paused:
            self.attach(producer.best_stream())

    def select(self, stream: RtpStream) -> None:
        """simulcast.allocate chose `stream`: switch at its next keyframe unless already on the way."""
        if stream is (self.target or self.stream) or self.paused or self.producer.paused:
            return
        if stream.paused_upstream:  # stopped for lack of viewers: ask the publisher for it again
            stream.paused_upstream = False
            self.producer.layers_changed()
        self.attach(stream)

    def set_view(self, width: int, height: int, enabled: bool = True) -> None:
        """The subscriber shows this track at width x height (0 x 0: as large as it comes), or not."""
        self.max_width, self.max_height = max(0, width), max(0, height)
        if enabled == self.enabled:
            return
        self.enabled = enabled
        if not enabled:
            self.detach()
        elif not self.paused:
            self._reattach()

    def request_keyframe(self) -> None:
        stream = self.target or self.stream
        if stream is not None and self.kind == "video":
            stream.request_keyframe()

    def pause(self) -> None:
        """Stop forwarding at once (the subscriber does not know this SSRC yet, or asked for nothing)."""
        self.paused = True
        self.detach()

    def detach(self) -> None:
        """Leave the stream lists without changing `paused`: how a muted Producer stops its Consumers
        while remembering which of them want media back when it is unmuted."""
        for stream in (self.stream, self.target):
            if stream is not None:
                for members in (stream.consumers, stream.pending):
                    if self in members:
                        members.remove(self)

    def resume(self) -> None:
        """Forward again from the next keyframe; while the Producer is muted, only note that we may."""
        self.paused = False
        self._reattach()

    def _reattach(self) -> None:
        if self.producer.paused or not self.enabled:
            return
        stream = self.target or self.stream
        if stream is not None:
            self.target = None
            self.attach(stream)

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
            ts = U32.unpack_from(packet, 4)[0]
            replayed = self.replayed
            out_ts = replayed[ts] if replayed and ts in replayed else (ts + self.ts_delta) & 0xFFFFFFFF
            if self.rtx_payload_type is None:
                sent = self._send_cached(
                    packet, self.payload_type, out_seq, out_ts, self.ssrc, self.vp8_deltas
                )
            else:  # RFC 4588: its own SSRC and numbering, the original sequence number first
                self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
                try:
                    rtx = self._rtx_packet(packet, out_seq)
                except RtpError:
                    self.errors += 1
                    continue
                sent = self._send_cached(
                    rtx, self.rtx_payload_type, self.rtx_seq, out_ts, self.rtx_ssrc, None
                )
            if sent:
                self.retransmissions += 1

    def _twcc_slot(self, packet: bytes, size: int) -> tuple[int, int]:
        """A transport-wide number for a retransmission too: it is traffic the link must carry."""
        history = self.transport.twcc
        if history is None:
            return -1, 0
        twcc_seq = history.next_seq
        history.next_seq = (twcc_seq + 1) & 0xFFFF
        history.sent_at[twcc_seq & HISTORY_MASK] = monotonic()
        history.sizes[twcc_seq & HISTORY_MASK] = size
        return extension_offset(packet, TRANSPORT_CC_ID), twcc_seq

    def _rtx_packet(self, packet: bytes, out_seq: int) -> bytes:
        """The RTX form of a cached packet: header (padding dropped), OSN, then the payload as sent."""
        offset = payload_offset(packet)
        original = packet
        if self.vp8_deltas is not None:  # the subscriber saw rewritten picture ids: repair with those
            rewritten = bytearray(packet)
            rewrite_vp8_picture(rewritten, packet, *self.vp8_deltas)
            original = bytes(rewritten)
        header = bytearray(packet[:offset])
        header[0] &= 0xDF
        return bytes(header) + U16.pack(out_seq) + original[offset : payload_end(packet)]

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
        self.pause()
        if self in self.producer.consumers:
            self.producer.consumers.remove(self)
        for callback in list(self.on_close):
            callback(self)
