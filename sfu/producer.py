"""Producer: one incoming track, with one RtpStream per simulcast layer.

The RtpStream is the first stop of every received packet after SRTP: it updates receiver statistics,
keeps the packet in a ring cache for NACKs, and hands the same immutable bytes to each Consumer
that currently selects it. No per-packet objects are created beyond what libsrtp returns.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING

from .audio_level import POWER
from .codecs import TRANSPORT_CC_ID, URI_AUDIO_LEVEL
from .fanout import forward, router_terms
from .rtp import (
    SEQ_TS_SSRC,
    U16,
    U32,
    RtpError,
    extension_value,
    is_keyframe,
    one_byte_element,
    payload_offset,
    vp8_keyframe_size,
    vp8_picture_fields,
)
from .stats import ReceiveStats

if TYPE_CHECKING:
    from .consumer import Consumer
    from .transport import WebRtcTransport

CACHE_SIZE = 1024  # packets kept per stream for NACKs: about 1 s of 720p video
CACHE_MASK = CACHE_SIZE - 1
KEYFRAME_REQUEST_INTERVAL = 0.5  # at most one PLI/FIR upstream per stream in this many seconds
# How long a subscriber that shows nothing yet waits for the keyframe it asked for before it is started
# from the cached picture group instead: browsers answer a PLI within a frame or two, but FFmpeg and
# many hardware encoders ignore it and send keyframes only on their own interval (seconds apart).
KEYFRAME_PATIENCE = 0.5
TWCC_SLOT = one_byte_element(TRANSPORT_CC_ID, 2)
MAX_NACK_GAP = 64  # a longer gap is an outage, not loss: a keyframe serves better than resends
NACK_RETRY = 0.05  # seconds before asking once more for what is still missing

_ids = itertools.count(1)
# Track ids are unique in the cluster, not only in this process: a room's tracks may come from
# several workers or nodes (a pipe mirrors a track under its origin's id), and recordings, webhooks
# and the library name tracks by id. Four letters of this process, then its own count.
_PROCESS = "".join(secrets.choice(string.ascii_lowercase) for _ in range(4))


@dataclass(frozen=True)
class CodecSpec:
    """The codec a Producer sends, in router terms (router payload types, see codecs.py)."""

    name: str  # "opus", "VP8", "H264"
    kind: str  # "audio" | "video"
    payload_type: int  # the router's payload type
    clock_rate: int
    channels: int | None = None
    fmtp: str = ""
    rtx_payload_type: int | None = None  # the router's RTX payload type, if RTX was negotiated


@dataclass
class StreamSpec:
    """How to recognise one encoding on the wire before its SSRC is known."""

    rid: str | None = None
    ssrc: int | None = None
    rtx_ssrc: int | None = None


@dataclass
class ProducerSpec:
    kind: str
    mid: str
    codec: CodecSpec
    publisher_payload_type: int
    publisher_rtx_payload_type: int | None
    streams: list[StreamSpec] = field(default_factory=list)
    feedback: frozenset[str] = frozenset()  # "nack", "pli", "fir", "remb"
    source: str = "camera"  # camera | microphone | screen
    name: str = ""


class RtpStream:
    """One encoding of a Producer (a simulcast layer, or the only one)."""

    __slots__ = (
        "bitrate",
        "cache",
        "consumers",
        "height",
        "index",
        "keyframe_pending",
        "last_keyframe_request",
        "last_packet",
        "last_wanted",
        "level_count",
        "level_energy",
        "next_seq",
        "normalize",
        "paused_upstream",
        "pending",
        "picture_id",
        "producer",
        "replay_at",
        "rid",
        "rtx_ssrc",
        "sent_at",
        "ssrc",
        "stats",
        "tick_bytes",
        "tick_packets",
        "tl0",
        "twcc_at",
        "width",
    )

    def __init__(self, producer: Producer, index: int, rid: str | None, ssrc: int | None) -> None:
        self.producer = producer
        self.index = index
        self.rid = rid
        self.ssrc = ssrc
        self.rtx_ssrc: int | None = None
        self.stats = ReceiveStats(producer.codec.clock_rate)
        self.cache: list[bytes | None] = [None] * CACHE_SIZE
        self.consumers: list[Consumer] = []  # forwarding this stream now
        self.pending: list[Consumer] = []  # switching to this stream at its next keyframe
        self.normalize: Callable[[bytes], bytes] = lambda packet: packet
        self.twcc_at = -1  # where the current packet's transport-wide sequence number goes
        self.sent_at = 0.0  # when the current packet goes out: one clock read serves every Consumer
        self.last_keyframe_request = 0.0
        self.keyframe_pending = False
        self.replay_at = 0.0  # when subscribers still waiting for a keyframe get the cached one; 0: none
        self.level_energy = 0.0  # audio: summed linear power of the packets' RFC 6464 levels
        self.level_count = 0
        # simulcast bookkeeping, updated on the Node's timer (and at keyframes for the size)
        self.width = self.height = 0  # from the last VP8 keyframe; 0 if unknown
        self.bitrate = 0  # bit/s over the last timer interval
        self.last_packet = self.last_wanted = time.monotonic()
        self.tick_packets = self.tick_bytes = 0
        self.paused_upstream = False  # the publisher was asked to stop sending this layer
        self.picture_id = self.tl0 = -1  # VP8 simulcast: the latest PictureID and TL0PICIDX seen
        self.next_seq = -1  # the sequence number expected next; anything else is a gap or a late packet

    def receive(self, packet: bytes) -> None:
        """The forwarding path: one received packet to every Consumer of this stream."""
        packet = self.normalize(packet)
        seq, ts, _ = SEQ_TS_SSRC.unpack_from(packet, 2)
        if seq == self.next_seq:
            self.next_seq = (seq + 1) & 0xFFFF
        else:
            self._out_of_order(seq)
        self.stats.update(seq, ts, len(packet))
        self.cache[seq & CACHE_MASK] = packet
        if self.pending:
            self._promote(packet, seq, ts)
        forward(self.consumers, packet, seq, ts, self.twcc_at, self.sent_at)

    def _out_of_order(self, seq: int) -> None:
        """Off the steady path: a gap before `seq` is NACKed upstream; a late packet changes nothing."""
        gap = (seq - self.next_seq) & 0xFFFF
        if self.next_seq < 0 or gap >= 0x8000:  # the first packet, or a late one (repair, reordering)
            if self.next_seq < 0:
                self.next_seq = (seq + 1) & 0xFFFF
            return
        if gap <= MAX_NACK_GAP and "nack" in self.producer.feedback:
            lost = [(self.next_seq + i) & 0xFFFF for i in range(gap)]
            self.producer.request_retransmission(self, lost)
        self.next_seq = (seq + 1) & 0xFFFF

    def _promote(self, packet: bytes, seq: int, ts: int) -> None:
        """At a keyframe (any audio packet), waiting Consumers whose transport is keyed switch here.
        Past their patience, those that show nothing yet start from the cached picture group."""
        if self.producer.kind == "video" and not is_keyframe(self.producer.codec.name, packet):
            if self.replay_at and self.sent_at >= self.replay_at:
                self._replay_to_waiting((seq - 1) & 0xFFFF)  # this packet goes out after it, as usual
            return
        for consumer in list(self.pending):
            if consumer.transport.srtp_tx is not None:
                self.pending.remove(consumer)
                consumer.switch_to(self, seq, ts)
        self._rearm(False)

    def receive_rtx(self, packet: bytes) -> None:
        """RFC 4588: restore the original packet (OSN, payload type, SSRC) and forward it."""
        try:
            offset = payload_offset(packet)
        except RtpError:
            return
        end = len(packet) - (packet[-1] if packet[0] & 0x20 else 0)
        if end - offset < 3 or self.ssrc is None:  # padding-only probe, or nothing to restore
            return
        osn = U16.unpack_from(packet, offset)[0]
        if self.cached(osn) is not None:
            return  # a retransmission of what already arrived
        self.producer.transport.node.repairs += 1
        restored = bytearray(packet[:offset])
        restored[0] &= 0xDF  # the RTX padding is not the original's
        restored[1] = (restored[1] & 0x80) | self.producer.publisher_payload_type
        U16.pack_into(restored, 2, osn)
        U32.pack_into(restored, 8, self.ssrc)
        restored += packet[offset + 2 : end]
        self.receive(bytes(restored))

    def tick(self, now: float, elapsed: float) -> None:
        """On the Node's timer: bitrate (smoothed) and whether packets still arrive."""
        packets, size = self.stats.packets, self.stats.bytes
        if packets != self.tick_packets:
            self.last_packet = now
        rate = int((size - self.tick_bytes) * 8 / elapsed) if elapsed > 0 else 0
        if rate:  # a paused layer keeps its last rate: what it will cost when it comes back
            self.bitrate = (self.bitrate + rate) // 2 if self.bitrate else rate
        self.tick_packets, self.tick_bytes = packets, size

    def cached(self, seq: int) -> bytes | None:
        packet = self.cache[seq & CACHE_MASK]
        if packet is not None and U16.unpack_from(packet, 2)[0] == seq:
            return packet
        return None

    def request_keyframe(self) -> None:
        """Throttled PLI/FIR upstream: many late joiners or lossy subscribers cost one request."""
        now = time.monotonic()
        wait = self.last_keyframe_request + KEYFRAME_REQUEST_INTERVAL - now
        if wait <= 0:
            self.last_keyframe_request = now
            self.producer.send_keyframe_request(self)
        elif not self.keyframe_pending:
            self.keyframe_pending = True
            asyncio.get_running_loop().call_later(wait, self._pending_request)

    def _pending_request(self) -> None:
        self.keyframe_pending = False
        if not self.producer.closed:
            self.request_keyframe()

    def expect_keyframe(self) -> None:
        """A subscriber that shows nothing yet waits for this stream's next keyframe; if none has come
        within KEYFRAME_PATIENCE, _promote starts it from the cached picture group (cached_gop).
        Checked as packets arrive, so it costs no timer and nothing once nobody waits."""
        now = monotonic()
        if self.replay_at < now:
            self.replay_at = now + KEYFRAME_PATIENCE

    def _replay_to_waiting(self, last: int) -> None:
        """Subscribers that show nothing yet start from the cached picture group up to `last`."""
        waiting = [c for c in self.pending if not c.synced and c.transport.srtp_tx is not None]
        gop = self.cached_gop(last) if waiting else None
        for consumer in waiting if gop is not None else []:
            self.pending.remove(consumer)
            consumer.replay(self, gop)  # type: ignore[arg-type]  # not None here
        self._rearm(gop is None)

    def _rearm(self, gave_up: bool) -> None:
        """Wait once more for subscribers still waiting (their DTLS was not done), unless the picture
        group could not be replayed anyway: then the next keyframe it is."""
        waiting = not gave_up and any(not c.synced for c in self.pending)
        self.replay_at = self.sent_at + KEYFRAME_PATIENCE if waiting else 0.0

    def cached_gop(self, last: int) -> list[bytes] | None:
        """The packets from the start of the latest keyframe up to sequence number `last`, if the cache
        holds all of them: enough for a decoder to show the current picture without a new keyframe.
        Found by walking the cache backwards, so nothing is spent on it per packet."""
        codec = self.producer.codec.name
        packets: list[bytes] = []  # newest first
        while len(packets) < CACHE_SIZE:
            packet = self.cached((last - len(packets)) & 0xFFFF)
            if packet is None:
                return None  # a gap: the picture group is not whole
            packets.append(packet)
            if is_keyframe(codec, packet):
                ts = U32.unpack_from(packet, 4)[0]
                while len(packets) < CACHE_SIZE:  # the keyframe's earlier packets, if it has more
                    earlier = self.cached((last - len(packets)) & 0xFFFF)
                    if earlier is None or U32.unpack_from(earlier, 4)[0] != ts:
                        break
                    packets.append(earlier)
                packets.reverse()
                return packets
        return None


class Vp8SimulcastStream(RtpStream):
    """A VP8 simulcast layer: also notes PictureID, TL0PICIDX and keyframe size.

    Consumers that switch between layers continue the subscriber's picture numbering from these,
    and layer choice needs the real sizes. Single-layer VP8 streams never switch, so they skip this.
    """

    __slots__ = ()

    def receive(self, packet: bytes) -> None:
        try:
            pid_at, pid_len, tl0_at = vp8_picture_fields(packet)
        except RtpError:
            pid_len, tl0_at = 0, -1
        if pid_len == 2:
            self.picture_id = (packet[pid_at] & 0x7F) << 8 | packet[pid_at + 1]
        elif pid_len == 1:
            self.picture_id = packet[pid_at] & 0x7F
        if tl0_at >= 0:
            self.tl0 = packet[tl0_at]
        if pid_len and packet[pid_at - 2] & 0x10:  # S bit: a frame starts here, maybe a keyframe
            size = vp8_keyframe_size(packet)
            if size is not None:
                self.width, self.height = size
        RtpStream.receive(self, packet)


class AudioRtpStream(RtpStream):
    """An audio stream that also sums each packet's audio level for the AudioLevelObserver."""

    __slots__ = ("level_ext_id",)

    def __init__(self, producer: Producer, index: int, rid: str | None, ssrc: int | None) -> None:
        super().__init__(producer, index, rid, ssrc)
        self.level_ext_id = producer.transport.ext_ids.get(URI_AUDIO_LEVEL, 0)  # the publisher's id

    def receive(self, packet: bytes) -> None:
        if self.level_ext_id:
            try:
                value = extension_value(packet, self.level_ext_id)
            except RtpError:
                value = None
            if value:
                self.level_energy += POWER[value[0] & 0x7F]
                self.level_count += 1
        RtpStream.receive(self, packet)


class Producer:
    """One published track. Consumers attach to one of its streams."""

    def __init__(self, transport: WebRtcTransport, spec: ProducerSpec, track_id: str | None = None) -> None:
        # a primary published again while its standby stood in takes its old id (sfu.failover)
        self.id = track_id or f"TR_{_PROCESS}{next(_ids)}"
        self.transport = transport
        self.kind = spec.kind
        self.mid = spec.mid
        self.codec = spec.codec
        self.source = spec.source
        self.name = spec.name
        self.feedback = spec.feedback
        self.publisher_payload_type = spec.publisher_payload_type
        self.publisher_rtx_payload_type = spec.publisher_rtx_payload_type
        self.closed = False
        self.paused = False  # muted by a moderator or the admin API: nothing is forwarded
        self.fir_seq = 0
        # every live Consumer, including paused ones that are in no stream's lists: pause(), resume()
        # and close() must reach them all
        self.consumers: list[Consumer] = []
        self.on_close: list[Callable[[Producer], None]] = []
        self.on_layers: list[Callable[[Producer], None]] = []
        specs = spec.streams or [StreamSpec()]
        kind: type[RtpStream] = RtpStream
        if self.kind == "audio":
            kind = AudioRtpStream
        elif self.codec.name == "VP8" and len(specs) > 1:
            kind = Vp8SimulcastStream
        self.streams = [kind(self, i, s.rid, s.ssrc) for i, s in enumerate(specs)]
        for stream, s in zip(self.streams, specs, strict=True):
            stream.rtx_ssrc = s.rtx_ssrc
        for stream in self.streams:
            stream.normalize = _normalizer(
                stream, spec.publisher_payload_type, spec.codec.payload_type, transport.ext_table
            )

    def stream_by_rid(self, rid: str | None) -> RtpStream | None:
        if rid is None:
            return self.streams[0] if len(self.streams) == 1 else None
        return next((s for s in self.streams if s.rid == rid), None)

    def best_stream(self) -> RtpStream:
        """Where a new Consumer starts: the largest layer received so far (then simulcast.allocate
        moves it to what its view and link call for)."""
        live = [s for s in self.streams if s.stats.packets]
        if not live:
            return self.streams[-1]
        return max(live, key=lambda s: (s.width * s.height, s.index))

    def layers_changed(self) -> None:
        """Some layer was paused or resumed upstream: tell whoever relays that to the publisher."""
        for callback in list(self.on_layers):
            callback(self)

    def request_retransmission(self, stream: RtpStream, lost: list[int]) -> None:
        """NACK now, and once more after NACK_RETRY for whatever is still missing then."""
        if stream.ssrc is None or self.closed:
            return
        self.transport.send_nack(stream.ssrc, lost)
        asyncio.get_running_loop().call_later(NACK_RETRY, self._nack_again, stream, lost)

    def _nack_again(self, stream: RtpStream, lost: list[int]) -> None:
        missing = [seq for seq in lost if stream.cached(seq) is None]
        if missing and not self.closed and stream.ssrc is not None:
            self.transport.send_nack(stream.ssrc, missing)

    def send_keyframe_request(self, stream: RtpStream) -> None:
        if stream.ssrc is not None:
            self.transport.send_keyframe_request(self, stream.ssrc)

    def pause(self) -> None:
        """Mute: stop forwarding to every Consumer at once, while still receiving (stats, NACK cache).

        Muting here rather than asking the publisher keeps it in force whatever the publisher's client
        does; its Consumers keep their own pause state, so unmuting does not start a subscriber whose
        answer is still outstanding.
        """
        if self.paused:
            return
        self.paused = True
        for consumer in list(self.consumers):
            consumer.detach()

    def resume(self) -> None:
        """Unmute: Consumers that want media restart at the next keyframe.

        Consumer.resume() attaches to the stream, and attaching a video Consumer asks that stream for a
        keyframe (throttled, so one PLI serves them all); asking here as well would only schedule a
        second, late one.
        """
        if not self.paused:
            return
        self.paused = False
        for consumer in list(self.consumers):
            if not consumer.paused and not consumer.closed:
                consumer.resume()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for callback in list(self.on_close):
            callback(self)
        for consumer in list(self.consumers):
            consumer.close()


def _normalizer(
    stream: RtpStream, publisher_pt: int, router_pt: int, ext_table: bytes | None
) -> Callable[[bytes], bytes]:
    """A function that brings a publisher's packet to router terms, once for all its Consumers:
    router payload type and extension ids, and a slot for the transport-wide sequence number that
    each subscriber Transport writes its own value into (stream.twcc_at)."""

    def normalize(packet: bytes) -> bytes:
        packet, stream.twcc_at = router_terms(packet, router_pt, ext_table, TWCC_SLOT)
        stream.sent_at = monotonic()
        return packet

    return normalize
