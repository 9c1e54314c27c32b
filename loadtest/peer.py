"""A light WebRTC participant for tests, benchmarks and load tests: no aiortc media stack, no codecs.

aiortc cannot send simulcast and spends about 20 us of Python per received packet, so it can neither
publish three layers like a browser nor drive hundreds of subscribers from one process. This peer is
built from the server's own pieces instead, and does only what a kelian session needs:

- ICE as the controlling full agent against the server's ICE-lite host candidate: aioice's STUN codec
  builds the Binding requests (USE-CANDIDATE, PRIORITY, ICE-CONTROLLING, integrity, fingerprint), which
  are retransmitted until answered and then repeated every 5 s as consent (RFC 7675);
- DTLS-SRTP through `sfu.dtls.DtlsSession` as the DTLS client (the server answers `passive` to our
  `active`, on both connections), checking the server's certificate against its SDP fingerprint;
- SRTP through `sfu.srtp.SrtpContext`, SDP through `sfu.sdp`;
- one UDP socket per connection, demultiplexed by first byte (RFC 7983) as `sfu/node.py` does. The
  server tells its transports apart by the client's address, so a peer that publishes and receives
  has two sockets, one per server transport, like a browser with two RTCPeerConnections.

Publishing replays clips encoded once per process (`signaling.media`): VP8 packetized here (RFC 7741)
in up to three rid-based simulcast layers, and Opus with its RFC 6464 level measured at encode time.
One task per peer paces every frame of every layer in real time and sends the RTCP. Receiving never
decodes: packets are counted per SSRC, frames by marker bit, keyframes and their VP8 size read from
three header bytes, and latency is computed from the sender reports the server relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import math
import random
import re
import secrets
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
from aioice import stun
from aiortc import rtp as artp

from sfu import codecs
from sfu.dtls import Certificate, DtlsSession
from sfu.ice import Address, new_credentials
from sfu.rtp import SEQ_TS_SSRC, is_keyframe, vp8_keyframe_size
from sfu.sdp import Codec, MediaSection, Rid, SdpError, SessionDescription, parse, serialize
from sfu.srtp import SrtpContext, SrtpError, SrtpProfile
from sfu.stats import NTP_EPOCH_OFFSET, ntp_middle, ntp_now, rtt_from_report
from signaling.media import AUDIO_PTIME, encode_audio, encode_video

log = logging.getLogger(__name__)

VIDEO_PT = codecs.VP8.payload_type  # the router's own payload types: the server rewrites nothing
AUDIO_PT = codecs.OPUS.payload_type
VIDEO_CLOCK = codecs.VP8.clock_rate
AUDIO_CLOCK = codecs.OPUS.clock_rate
EXT_AUDIO_LEVEL = codecs.EXTENSION_IDS[codecs.URI_AUDIO_LEVEL]  # and the router's extension ids
EXT_MID = codecs.EXTENSION_IDS[codecs.URI_MID]
EXT_RID = codecs.EXTENSION_IDS[codecs.URI_RID]

MAX_PACKET = 1200  # RTP bytes before SRTP, as browsers keep under a 1280-byte path MTU
RTP_HEADER = struct.Struct("!BBHII")
MAX_EXTENSION = 16  # room kept for the header extension when frames are cut into packets
VP8_DESCRIPTOR = 4  # X=1, I=1 with a 15-bit PictureID
VIDEO_CHUNK = MAX_PACKET - 12 - MAX_EXTENSION - VP8_DESCRIPTOR
SEND_CACHE = 512  # sent packets kept per stream for NACKs (~0.5 s of 720p)
SEND_CACHE_MASK = SEND_CACHE - 1

RTCP_INTERVAL = 1.0  # sender and receiver reports
CONSENT_INTERVAL = 5.0  # a Binding request on each connection, keeping the server's consent
CONSENT_TIMEOUT = 30.0  # RFC 7675: no answer for this long and the path is gone
ICE_RTO = (0.05, 0.1, 0.2, 0.4)  # first retransmission intervals, then ICE_RTO_MAX until ICE_TIMEOUT
ICE_RTO_MAX = 0.5
ICE_TIMEOUT = 10.0
MAX_LATE = 0.2  # a pacer later than this skips frames rather than bursting them
FREEZE = 0.2  # seconds between frames that a viewer sees as a freeze
MAX_NACK = 64  # a larger gap is loss, not something to ask back packet by packet
PLI_INTERVAL = 1.0  # at most one PLI per stream in this many seconds while waiting for a keyframe
LATENCY_SAMPLES = 1024  # recent per-frame latencies kept per track, for percentiles
EVENTS_KEPT = 256
MAX_LIFETIME = 24 * 3600.0  # the pacer's own bound; a peer is closed long before
SOCKET_BUFFER = 512 * 1024
# header extensions a subscriber may accept: it reads none of them, and none obliges it to anything
ACCEPTED_EXTENSIONS = frozenset(
    {codecs.URI_AUDIO_LEVEL, codecs.URI_ABS_SEND_TIME, codecs.URI_VIDEO_ORIENTATION, codecs.URI_MID}
)
ICE_PRIORITY = (126 << 24) | (65535 << 8) | 255  # a host candidate's priority (RFC 8445 5.1.2)
RTCP_PSFB, RTCP_RTPFB = 206, 205
# Extensions a publisher declares, at the router's ids, without sending them, as Chromium does: a
# publisher whose ids match the router's own costs the server no per-packet rewrite
# (codecs.extension_table), so a load test measures the server as browsers load it.
DECLARED_VIDEO = {
    codecs.EXTENSION_IDS[uri]: uri for uri in (codecs.URI_ABS_SEND_TIME, codecs.URI_VIDEO_ORIENTATION)
}
DECLARED_AUDIO = {codecs.EXTENSION_IDS[codecs.URI_ABS_SEND_TIME]: codecs.URI_ABS_SEND_TIME}
PUBLISHER_FEEDBACK = ("goog-remb", "ccm fir", "nack", "nack pli")  # what the publisher honours
NTP_UNIT = float(1 << 32)
RID_RE = re.compile(r"[A-Za-z0-9_-]{1,8}")  # short enough for the one-byte extension form


# -- media, prepared once per process ---------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One encoding a publisher sends: a simulcast layer (rid) or, with rid "", the only one."""

    rid: str
    width: int
    height: int
    bitrate: int


# Low to high, as kelian.js sends them: a quarter, half and full resolution.
SIMULCAST_LAYERS = (
    Layer("q", 320, 180, 150_000),
    Layer("h", 640, 360, 500_000),
    Layer("f", 1280, 720, 1_500_000),
)
SINGLE_LAYER = Layer("", 640, 360, 1_000_000)


@dataclass(frozen=True)
class ClipFrame:
    """One encoded frame, already cut into RTP payloads: replaying it costs no codec work."""

    chunks: tuple[bytes, ...]
    keyframe: bool
    level: int  # RFC 6464 audio level, 127 for video


def _split(data: bytes, size: int) -> tuple[bytes, ...]:
    """Cut `data` into the fewest pieces of at most `size` bytes, of near-equal length (as libwebrtc
    does, so that no frame ends in a tiny packet)."""
    if not data:
        return (b"",)
    count = math.ceil(len(data) / size)
    step = math.ceil(len(data) / count)
    return tuple(data[i : i + step] for i in range(0, len(data), step))


@functools.lru_cache(maxsize=32)
def video_clip(
    width: int, height: int, bitrate: int, fps: int, seconds: float, keyframe_interval: int
) -> tuple[ClipFrame, ...]:
    """A VP8 test-pattern clip of one layer, encoded and cut once per process."""
    frames = encode_video("vp8", width, height, fps, seconds, bitrate, keyframe_interval)
    return tuple(ClipFrame(_split(f.data, VIDEO_CHUNK), f.keyframe, 127) for f in frames)


@functools.lru_cache(maxsize=16)
def audio_clip(
    seconds: float, frequency: float, bursts: bool, amplitude: int, burst_frames: int
) -> tuple[ClipFrame, ...]:
    """An Opus clip of 20 ms frames with their audio levels, encoded once per process."""
    frames = encode_audio(seconds, frequency, bursts, amplitude, burst_frames)
    return tuple(ClipFrame((f.data,), True, f.level) for f in frames)


def _extension(elements: Sequence[tuple[int, bytes]]) -> bytes:
    """An RFC 8285 one-byte-header extension block (0xBEDE), padded to whole words."""
    body = b"".join(bytes([(ext_id << 4) | (len(value) - 1)]) + value for ext_id, value in elements)
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


# -- one connection: ICE, DTLS, SRTP on one UDP socket ----------------------------------------------------


@functools.lru_cache(maxsize=1)
def _certificate() -> Certificate:
    """One certificate per process: generating a key per peer would cost more than the peer."""
    return Certificate()


class Connection(asyncio.DatagramProtocol):
    """The client side of one server transport (publisher or subscriber).

    Every datagram from the server is demultiplexed here by its first byte. Nothing that arrives may
    raise out of `datagram_received`: junk is counted and dropped.
    """

    def __init__(
        self,
        role: str,
        on_rtp: Callable[[bytes], None],
        on_rtcp: Callable[[bytes], None],
        loss: float = 0.0,
    ) -> None:
        self.role = role
        # simulated network loss on receive, before SRTP as real loss is (a packet dropped after
        # decryption would make its retransmission look like a replay); seeded, so runs repeat
        self.loss = loss
        self.rng = random.Random(0x6B656C)
        self.certificate = _certificate()
        self.ufrag, self.pwd = new_credentials()
        self.tie_breaker = secrets.randbits(64)
        self.on_rtp = on_rtp
        self.on_rtcp = on_rtcp
        self.state = "new"  # new -> checking (ICE) -> connecting (DTLS) -> connected; failed, closed
        self.reason = ""
        self.udp: asyncio.DatagramTransport | None = None
        self.local: Address | None = None
        self.remote: Address | None = None
        self.remote_ufrag = ""
        self.remote_pwd = b""
        self.dtls = DtlsSession(self.certificate, self._send_raw, self._on_keys, self._on_dtls_close)
        self.srtp_rx: SrtpContext | None = None
        self.srtp_tx: SrtpContext | None = None
        self.profile: SrtpProfile | None = None
        self.connected = asyncio.Event()
        self.closed_event = asyncio.Event()
        self._transactions: dict[bytes, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._checks = 0
        self._started = 0.0
        self.last_response = 0.0
        self.rtt: float | None = None  # of the last answered Binding request
        # counters
        self.rtp_in = self.rtcp_in = self.bytes_in = 0
        self.rtp_out = self.rtcp_out = self.bytes_out = 0
        self.junk = self.foreign = self.srtp_errors = self.errors = self.dropped = 0
        self.stun_requests = self.stun_responses = 0

    async def open(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0), family=family)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        udp = cast(asyncio.DatagramTransport, transport)  # asyncio's own class does not subclass it
        self.udp = udp
        sock = udp.get_extra_info("socket")
        if sock is not None:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            self.local = sock.getsockname()[:2]

    def error_received(self, exc: Exception) -> None:  # ICMP errors: the server may be gone
        self.errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.udp = None

    def candidate(self) -> str:
        """Our host candidate for the SDP; the ICE-lite server learns our address from the checks."""
        host, port = self.local or ("127.0.0.1", 9)
        return f"1 1 udp {ICE_PRIORITY} {host} {port} typ host"

    # -- ICE ----------------------------------------------------------------------------------------------

    def start(
        self, remote_ufrag: str, remote_pwd: str, fingerprints: list[tuple[str, str]], remote: Address
    ) -> None:
        """Begin connectivity checks to the server's candidate; DTLS follows the first answer."""
        if self.state != "new":
            return
        self.remote_ufrag, self.remote_pwd, self.remote = remote_ufrag, remote_pwd.encode(), remote
        self.dtls.remote_fingerprints = list(fingerprints)
        self.state = "checking"
        self._started = time.monotonic()
        self._retransmit()

    def _retransmit(self) -> None:
        self._timer = None
        if self.state != "checking":
            return
        if time.monotonic() - self._started > ICE_TIMEOUT:
            self._fail("ICE: no answer from the server")
            return
        self.send_check()
        interval = ICE_RTO[self._checks - 1] if self._checks <= len(ICE_RTO) else ICE_RTO_MAX
        self._timer = asyncio.get_running_loop().call_later(interval, self._retransmit)

    def send_check(self) -> None:
        """One Binding request: the nomination while checking, a consent refresh afterwards."""
        if self.remote is None or self.state in ("closed", "failed"):
            return
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{self.remote_ufrag}:{self.ufrag}"
        request.attributes["PRIORITY"] = ICE_PRIORITY
        request.attributes["ICE-CONTROLLING"] = self.tie_breaker
        request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity(self.remote_pwd)  # also adds FINGERPRINT
        now = time.monotonic()
        # answered or not, only the last few transactions can still be answered usefully
        if len(self._transactions) > 8:
            self._transactions.pop(next(iter(self._transactions)))
        self._transactions[request.transaction_id] = now
        self._checks += 1
        self.stun_requests += 1
        self._send_raw(bytes(request))

    def consent(self, now: float) -> None:
        """Called every CONSENT_INTERVAL by the peer's clock."""
        if self.state not in ("connecting", "connected"):
            return
        if now - self.last_response > CONSENT_TIMEOUT:
            self._fail("consent expired: the server went silent")
            return
        self.send_check()

    def _on_stun(self, data: bytes) -> None:
        try:
            message = stun.parse_message(data)
        except (ValueError, struct.error, UnicodeDecodeError, IndexError, KeyError):
            self.junk += 1
            return
        sent = self._transactions.pop(message.transaction_id, None)
        if (
            sent is None
            or message.message_method != stun.Method.BINDING
            or message.message_class != stun.Class.RESPONSE
            or not message.check_message_integrity(self.remote_pwd)
        ):
            self.junk += 1  # an ICE-lite server sends no requests; errors and strays are dropped
            return
        now = time.monotonic()
        self.stun_responses += 1
        self.last_response = now
        self.rtt = now - sent
        if self.state == "checking":
            self.state = "connecting"
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.dtls.start("client")

    # -- DTLS and SRTP ------------------------------------------------------------------------------------

    def _on_keys(self, rx: SrtpContext, tx: SrtpContext, profile: SrtpProfile) -> None:
        self.srtp_rx, self.srtp_tx, self.profile = rx, tx, profile
        if self.state == "connecting":
            self.state = "connected"
            self.connected.set()

    def _on_dtls_close(self, reason: str) -> None:
        if self.state not in ("closed", "failed"):
            self._fail(reason)

    def _fail(self, reason: str) -> None:
        log.info("%s connection failed: %s", self.role, reason)
        self.state = "failed"
        self.reason = reason
        self.srtp_tx = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.closed_event.set()

    # -- datagrams ----------------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            if addr != self.remote:
                self.foreign += 1  # only the server's one candidate speaks to us
                return
            self.bytes_in += len(data)
            first = data[0] if data else 0
            if 127 < first < 192 and len(data) >= 12:
                if 192 <= data[1] <= 223:
                    self._receive_rtcp(data)
                else:
                    self._receive_rtp(data)
            elif first < 4 and data:
                self._on_stun(data)
            elif 19 < first < 64:
                self.dtls.feed(data)
            else:
                self.junk += 1
        except Exception:  # whatever a datagram holds, the peer keeps running
            self.errors += 1
            log.debug("%s: datagram dropped", self.role, exc_info=True)

    def _receive_rtp(self, data: bytes) -> None:
        rx = self.srtp_rx
        if rx is None:
            self.junk += 1
            return
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return
        try:
            packet = rx.unprotect(data)
        except SrtpError:
            self.srtp_errors += 1
            return
        self.rtp_in += 1
        self.on_rtp(packet)

    def _receive_rtcp(self, data: bytes) -> None:
        rx = self.srtp_rx
        if rx is None:
            self.junk += 1
            return
        try:
            packet = rx.unprotect_rtcp(data)
        except SrtpError:
            self.srtp_errors += 1
            return
        self.rtcp_in += 1
        self.on_rtcp(packet)

    def _send_raw(self, data: bytes) -> None:
        udp, remote = self.udp, self.remote
        if udp is not None and remote is not None:
            udp.sendto(data, remote)

    def send_rtp(self, packet: bytes) -> bool:
        tx = self.srtp_tx
        if tx is None:
            return False
        try:
            data = tx.protect(packet)
        except SrtpError:
            self.srtp_errors += 1
            return False
        self._send_raw(data)
        self.rtp_out += 1
        self.bytes_out += len(data)
        return True

    def send_rtcp(self, packet: bytes) -> None:
        tx = self.srtp_tx
        if tx is None:
            return
        try:
            data = tx.protect_rtcp(packet)
        except SrtpError:
            self.srtp_errors += 1
            return
        self._send_raw(data)
        self.rtcp_out += 1

    def close(self) -> None:
        if self.state == "closed":
            return
        was_open = self.state != "failed"
        self.state = "closed"
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if was_open:
            self.dtls.close("closed by the peer")  # close_notify: the server ends the transport at once
        self.srtp_tx = self.srtp_rx = None
        if self.udp is not None:
            self.udp.close()
        self.closed_event.set()

    def stats(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "local": f"{self.local[0]}:{self.local[1]}" if self.local else None,
            "srtp": self.profile.name.decode() if self.profile else None,
            "ice_rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 2),
            "rtp_in": self.rtp_in,
            "rtcp_in": self.rtcp_in,
            "bytes_in": self.bytes_in,
            "rtp_out": self.rtp_out,
            "rtcp_out": self.rtcp_out,
            "bytes_out": self.bytes_out,
            "stun_requests": self.stun_requests,
            "stun_responses": self.stun_responses,
            "junk": self.junk,
            "foreign": self.foreign,
            "srtp_errors": self.srtp_errors,
            "errors": self.errors,
            "dropped": self.dropped,
        }


# -- RTCP helpers -----------------------------------------------------------------------------------------


def pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """RFC 4585 6.3.1 Picture Loss Indication."""
    return struct.pack("!BBHII", 0x81, RTCP_PSFB, 2, sender_ssrc, media_ssrc)


def nack(sender_ssrc: int, media_ssrc: int, lost: Sequence[int]) -> bytes:
    """RFC 4585 6.2.1 generic NACK for sequence numbers in increasing (wrapping) order."""
    fci = b""
    pid, blp = lost[0], 0
    for seq in lost[1:]:
        d = (seq - pid - 1) & 0xFFFF
        if d < 16:
            blp |= 1 << d
        else:
            fci += struct.pack("!HH", pid, blp)
            pid, blp = seq, 0
    fci += struct.pack("!HH", pid, blp)
    return struct.pack("!BBHII", 0x81, RTCP_RTPFB, 2 + len(fci) // 4, sender_ssrc, media_ssrc) + fci


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


# -- publishing -------------------------------------------------------------------------------------------


class OutStream:
    """One RTP stream we send: a simulcast layer, the only video layer, or the audio."""

    __slots__ = (
        "active",
        "bytes",
        "cache",
        "clip",
        "clock",
        "ext",
        "fraction_lost",
        "frames",
        "index",
        "keyframe_requests",
        "keyframes",
        "kind",
        "layer",
        "levels",
        "nacks",
        "packets",
        "picture_id",
        "pt",
        "retransmissions",
        "rtt",
        "seq",
        "ssrc",
        "step",
        "ts_base",
    )

    def __init__(
        self, kind: str, layer: Layer | None, clip: tuple[ClipFrame, ...], mid: str, fps: int
    ) -> None:
        self.kind = kind
        self.layer = layer
        self.clip = clip
        self.ssrc = secrets.randbits(32) or 1
        self.seq = secrets.randbits(16)
        self.ts_base = secrets.randbits(32)
        self.picture_id = secrets.randbits(15)
        self.active = True
        self.index = 0  # the next clip frame
        if kind == "video":
            self.pt, self.clock, self.step = VIDEO_PT, VIDEO_CLOCK, VIDEO_CLOCK / fps
            elements = [(EXT_MID, mid.encode())]
            if layer is not None and layer.rid:
                elements.append((EXT_RID, layer.rid.encode()))
            self.ext = _extension(elements)
            self.levels: tuple[bytes, ...] = ()
        else:
            self.pt, self.clock, self.step = AUDIO_PT, AUDIO_CLOCK, AUDIO_CLOCK * AUDIO_PTIME
            self.ext = b""
            # the extension differs per frame only by its level byte: one block per level, made here
            self.levels = tuple(
                _extension(
                    [(EXT_MID, mid.encode()), (EXT_AUDIO_LEVEL, bytes([(0x80 if lv < 127 else 0) | lv]))]
                )
                for lv in range(128)
            )
        self.cache: list[bytes | None] = [None] * SEND_CACHE
        self.packets = self.bytes = self.frames = self.keyframes = 0
        self.keyframe_requests = self.nacks = self.retransmissions = 0
        self.rtt: float | None = None
        self.fraction_lost = 0.0

    @property
    def name(self) -> str:
        if self.kind == "audio":
            return "audio"
        return self.layer.rid if self.layer is not None and self.layer.rid else "video"

    def timestamp(self, n: int) -> int:
        """The RTP timestamp of the kind's n-th frame since publishing began (shared by all layers)."""
        return (self.ts_base + int(n * self.step)) & 0xFFFFFFFF

    def next_keyframe(self) -> None:
        """Jump to the clip's next keyframe: a replayed clip cannot encode one on request."""
        n = len(self.clip)
        for step in range(n):
            i = (self.index + step) % n
            if self.clip[i].keyframe:
                self.index = i
                return

    def send_frame(self, n: int, send: Callable[[bytes], bool]) -> None:
        """Packetize the next clip frame with RTP timestamp of frame `n` and send it."""
        frame = self.clip[self.index]
        self.index = (self.index + 1) % len(self.clip)
        ts = self.timestamp(n)
        cache = self.cache
        if self.kind == "video":
            self.picture_id = pid = (self.picture_id + 1) & 0x7FFF
            pid_bytes = bytes((0x80 | pid >> 8, pid & 0xFF))
            first = b"\x90\x80" + pid_bytes  # X, S, partition 0; I; 15-bit PictureID (RFC 7741 4.2)
            rest = b"\x80\x80" + pid_bytes
            last = len(frame.chunks) - 1
            ext = self.ext
            for i, chunk in enumerate(frame.chunks):
                self.seq = seq = (self.seq + 1) & 0xFFFF
                marker = 0x80 if i == last else 0
                header = RTP_HEADER.pack(0x90, marker | self.pt, seq, ts, self.ssrc)
                packet = header + ext + (first if i == 0 else rest) + chunk
                cache[seq & SEND_CACHE_MASK] = packet
                if send(packet):
                    self.packets += 1
                    self.bytes += len(packet)
        else:
            self.seq = seq = (self.seq + 1) & 0xFFFF
            marker = 0x80 if self.frames == 0 else 0  # the start of a talkspurt
            header = RTP_HEADER.pack(0x90, marker | self.pt, seq, ts, self.ssrc)
            packet = header + self.levels[frame.level] + frame.chunks[0]
            cache[seq & SEND_CACHE_MASK] = packet
            if send(packet):
                self.packets += 1
                self.bytes += len(packet)
        self.frames += 1
        if frame.keyframe and self.kind == "video":
            self.keyframes += 1

    def retransmit(self, lost: Sequence[int], send: Callable[[bytes], bool]) -> None:
        """Answer a NACK from the cache: the same packet again (no RTX was negotiated)."""
        self.nacks += 1
        for seq in lost:
            packet = self.cache[seq & SEND_CACHE_MASK]
            if packet is not None and int.from_bytes(packet[2:4], "big") == seq and send(packet):
                self.retransmissions += 1

    def stats(self, wall: float | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "ssrc": self.ssrc,
            "active": self.active,
            "packets": self.packets,
            "bytes": self.bytes,
            "frames": self.frames,
            "keyframes": self.keyframes,
            "keyframe_requests": self.keyframe_requests,
            "nacks": self.nacks,
            "retransmissions": self.retransmissions,
            "fraction_lost": self.fraction_lost,
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 2),
            # wall-clock time (Unix seconds) at which RTP timestamp `rtp` was captured: the mapping a
            # load tool uses for one-way latency without relying on relayed sender reports
            "clock": None if wall is None else {"wall": wall, "rtp": self.ts_base, "rate": self.clock},
        }
        if self.layer is not None:
            out |= {"rid": self.layer.rid, "width": self.layer.width, "height": self.layer.height}
        return out


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
        self.rtcp_errors = 0
        self.cname = secrets.token_hex(8)

    def streams(self) -> list[OutStream]:
        return self.video + ([self.audio] if self.audio is not None else [])

    def add(self, stream: OutStream) -> None:
        if stream.kind == "video":
            self.video.append(stream)
        else:
            self.audio = stream
        self.by_ssrc[stream.ssrc] = stream

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

    def on_rtcp(self, data: bytes) -> None:
        """Feedback from the server: PLI/FIR, NACK, REMB, and receiver reports about our streams."""
        try:
            packets = artp.RtcpPacket.parse(data)
        except (ValueError, IndexError, struct.error):
            self.rtcp_errors += 1
            return
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
        first = self.streams()[0].ssrc
        sdes = artp.RtcpSdesPacket(chunks=[artp.RtcpSourceInfo(first, [(1, self.cname.encode())])])
        self.connection.send_rtcp(b"".join(packets) + bytes(sdes))

    def stats(self) -> dict[str, Any]:
        return {
            "connection": self.connection.stats(),
            "tracks": {"video": self.video_track, "audio": self.audio_track},
            "streams": {s.name: s.stats(self.wall_start) for s in self.streams()},
            "skipped_frames": self.skipped,
            "remb": self.remb,
            "rtcp_errors": self.rtcp_errors,
        }


# -- receiving --------------------------------------------------------------------------------------------


class InStream:
    """What a subscriber counts about one received track (one SSRC), per packet in plain ints."""

    __slots__ = (
        "base_seq",
        "bytes",
        "clock",
        "codec",
        "cycles",
        "ended",
        "expected_prior",
        "first_keyframe",
        "frames",
        "freezes",
        "gaps",
        "jitter",
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
        "max_seq",
        "mid",
        "nacks_sent",
        "packets",
        "plis_sent",
        "received_prior",
        "send_rtcp",
        "sender_ssrc",
        "sr_arrival",
        "sr_ntp",
        "sr_rtp",
        "sr_unix",
        "ssrc",
        "subscribed",
        "track_id",
        "transit",
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
        self.subscribed = time.monotonic()
        self.ended = False
        self.packets = self.bytes = 0
        self.base_seq = -1
        self.max_seq = self.cycles = 0
        self.gaps = self.late = self.nacks_sent = self.plis_sent = 0
        self.expected_prior = self.received_prior = 0
        self.frames = self.keyframes = self.freezes = 0
        self.keyframe_size: tuple[int, int] | None = None
        self.first_keyframe: float | None = None  # seconds from subscribing to the first keyframe
        self.last_ts = -1
        self.last_frame = 0.0
        self.max_frame_gap = 0.0
        self.last_pli = 0.0
        self.jitter = 0.0
        self.transit: float | None = None
        self.sr_ntp = self.sr_rtp = 0
        self.sr_arrival = 0.0
        self.sr_unix = 0.0
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.latency_sum = self.latency_max = 0.0
        self.latency_count = 0

    def receive(self, packet: bytes, seq: int, ts: int) -> None:
        """The per-packet path: sequence accounting always, the rest once per frame."""
        self.packets += 1
        self.bytes += len(packet)
        if self.base_seq < 0:
            self.base_seq = self.max_seq = seq
        else:
            d = (seq - self.max_seq) & 0xFFFF
            if 0 < d < 0x8000:
                if seq < self.max_seq:
                    self.cycles += 0x10000
                if d > 1:
                    self._gap(d - 1)
                self.max_seq = seq
            else:
                self.late += 1  # reordered, or a retransmission we asked for
        if self.last_ts < 0 or 0 < (ts - self.last_ts) & 0xFFFFFFFF < 0x80000000:
            self._frame_start(packet, ts)
        if self.video and packet[1] & 0x80:
            self.frames += 1

    def _gap(self, missing: int) -> None:
        self.gaps += 1
        if missing <= MAX_NACK:
            lost = [(self.max_seq + i) & 0xFFFF for i in range(1, missing + 1)]
            self.send_rtcp(nack(self.sender_ssrc, self.ssrc, lost))
            self.nacks_sent += 1

    def _frame_start(self, packet: bytes, ts: int) -> None:
        """The first packet of a new RTP timestamp: frame pacing, jitter, latency, keyframes."""
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
        self.last_frame = now
        transit = now * self.clock - ts
        if self.transit is not None:
            d = abs(transit - self.transit)
            if d < self.clock * 10:  # a timestamp jump (a layer switch) is not jitter
                self.jitter += (d - self.jitter) / 16
        self.transit = transit
        if self.sr_arrival:
            captured = self.sr_unix + _signed32(ts - self.sr_rtp) / self.clock
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

    def request_keyframe(self, now: float | None = None) -> None:
        self.last_pli = time.monotonic() if now is None else now
        self.plis_sent += 1
        self.send_rtcp(pli(self.sender_ssrc, self.ssrc))

    def on_sender_report(self, ntp: int, rtp: int) -> None:
        self.sr_ntp, self.sr_rtp = ntp, rtp
        self.sr_arrival = time.monotonic()
        self.sr_unix = ntp / NTP_UNIT - NTP_EPOCH_OFFSET

    @property
    def expected(self) -> int:
        return 0 if self.base_seq < 0 else self.cycles + self.max_seq - self.base_seq + 1

    def report_block(self) -> artp.RtcpReceiverInfo:
        """RFC 3550 6.4.1, as the server's own ReceiveStats computes it."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.packets - self.received_prior
        self.expected_prior, self.received_prior = expected, self.packets
        lost_interval = expected_interval - received_interval
        fraction = (
            0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        )
        lsr = dlsr = 0
        if self.sr_arrival:
            lsr = ntp_middle(self.sr_ntp)
            dlsr = int((time.monotonic() - self.sr_arrival) * 65536)
        return artp.RtcpReceiverInfo(
            self.ssrc,
            min(fraction, 255),
            min(max(0, expected - self.packets), 0x7FFFFF),
            (self.cycles + self.max_seq) & 0xFFFFFFFF,
            int(self.jitter),
            lsr,
            dlsr,
        )

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
        return {
            "track": self.track_id,
            "mid": self.mid,
            "kind": self.kind,
            "codec": self.codec,
            "ssrc": self.ssrc,
            "ended": self.ended,
            "packets": self.packets,
            "bytes": self.bytes,
            "expected": self.expected,
            "lost": max(0, self.expected - self.packets),
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
            "jitter_ms": round(self.jitter / self.clock * 1000, 2),
            "latency_ms": latency,
        }


class Subscriber:
    """The receiving connection: answers the server's offers and counts what arrives."""

    def __init__(self, connection: Connection, remb: int | None) -> None:
        self.connection = connection
        self.ssrc = secrets.randbits(32) or 1  # ours, as the sender of RTCP
        self.streams: dict[int, InStream] = {}  # by media SSRC
        self.by_mid: dict[str, InStream] = {}
        self.remb = remb
        self.feedback = {"nack", "nack pli", "ccm fir"} | ({"goog-remb"} if remb is not None else set())
        self.unknown_ssrc = self.rtcp_errors = self.offers = 0
        self.cname = secrets.token_hex(8)

    def on_rtp(self, packet: bytes) -> None:
        seq, ts, ssrc = SEQ_TS_SSRC.unpack_from(packet, 2)
        stream = self.streams.get(ssrc)
        if stream is None:
            self.unknown_ssrc += 1
            return
        stream.receive(packet, seq, ts)

    def on_rtcp(self, data: bytes) -> None:
        try:
            packets = artp.RtcpPacket.parse(data)
        except (ValueError, IndexError, struct.error):
            self.rtcp_errors += 1
            return
        for p in packets:
            if isinstance(p, artp.RtcpSrPacket) and (stream := self.streams.get(p.ssrc)) is not None:
                stream.on_sender_report(p.sender_info.ntp_timestamp, p.sender_info.rtp_timestamp)

    def answer(self, offer: SessionDescription, tracks: dict[str, str]) -> str:
        """Our answer: every section received (recvonly; inactive stays inactive), same mids and order,
        with the server's payload type; and the streams to count, keyed by the SSRC each section names.

        Only what this peer really does is accepted: the main codec (no RTX, whose repair stream it
        would not understand), NACK, PLI and FIR (REMB if it sends one), and extensions it can ignore
        without harm. transport-cc in particular is declined: accepting it promises feedback that
        this peer never sends, and the server would estimate our link from silence.
        """
        self.offers += 1
        conn = self.connection
        sections: list[MediaSection] = []
        for m in offer.media:
            codec = _main_codec(m)
            section = MediaSection(
                kind=m.kind,
                port=9 if m.port else 0,
                protocol=m.protocol,
                formats=[str(codec.payload_type)] if codec is not None else list(m.formats[:1]),
                mid=m.mid,
                direction="recvonly" if m.direction in ("sendonly", "sendrecv") else "inactive",
                extmaps={i: uri for i, uri in m.extmaps.items() if uri in ACCEPTED_EXTENSIONS},
                ice_ufrag=conn.ufrag,
                ice_pwd=conn.pwd,
                fingerprints=[("sha-256", conn.certificate.fingerprint)],
                setup="active",
                rtcp_mux=True,
                rtcp_rsize=m.rtcp_rsize,
            )
            if codec is not None:
                feedback = [fb for fb in codec.rtcp_fb if fb in self.feedback]
                section.codecs = [
                    Codec(
                        codec.payload_type,
                        codec.name,
                        codec.clock_rate,
                        codec.channels,
                        dict(codec.fmtp),
                        feedback,
                    )
                ]
            if m.port and m.is_rtp:
                section.candidates = [conn.candidate()]
            sections.append(section)
            self._track(m, codec, tracks)
        origin = secrets.randbits(62)
        desc = SessionDescription(
            origin=f"- {origin} 2 IN IP4 127.0.0.1",
            name="-",
            groups=[("BUNDLE", [m.mid for m in sections if m.port and m.mid is not None])],
            media=sections,
        )
        return serialize(desc)

    def _track(self, m: MediaSection, codec: Codec | None, tracks: dict[str, str]) -> None:
        """Note the stream an offer section carries; a section's SSRC and track never change."""
        mid = m.mid or ""
        old = self.by_mid.get(mid)
        track_id = tracks.get(mid)
        repairs = set(m.fid_map().values())
        ssrc = next((s for s in m.ssrcs if s not in repairs), None)
        if m.direction not in ("sendonly", "sendrecv") or track_id is None or ssrc is None or codec is None:
            if old is not None:
                old.ended = True
            return
        if old is not None and old.ssrc == ssrc and old.track_id == track_id:
            return
        if old is not None:
            old.ended = True
            self.streams.pop(old.ssrc, None)
        stream = InStream(
            track_id, mid, m.kind, codec.name, codec.clock_rate, ssrc, self.ssrc, self.connection.send_rtcp
        )
        self.streams[ssrc] = stream
        self.by_mid[mid] = stream

    def report(self) -> None:
        """Receiver reports (the server's loss and RTT figures) and, if asked for, a REMB."""
        if self.connection.srtp_tx is None:
            return
        blocks = [s.report_block() for s in self.streams.values() if s.packets]
        packets = [
            bytes(artp.RtcpRrPacket(ssrc=self.ssrc, reports=blocks[i : i + 31]))
            for i in range(0, len(blocks), 31)
        ] or [bytes(artp.RtcpRrPacket(ssrc=self.ssrc))]
        if self.remb is not None and self.streams:
            fci = artp.pack_remb_fci(self.remb, list(self.streams))
            packets.append(
                bytes(artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_APP, ssrc=self.ssrc, media_ssrc=0, fci=fci))
            )
        sdes = artp.RtcpSdesPacket(chunks=[artp.RtcpSourceInfo(self.ssrc, [(1, self.cname.encode())])])
        self.connection.send_rtcp(b"".join(packets) + bytes(sdes))

    def stats(self) -> dict[str, Any]:
        return {
            "connection": self.connection.stats(),
            "offers": self.offers,
            "unknown_ssrc": self.unknown_ssrc,
            "rtcp_errors": self.rtcp_errors,
            "tracks": {s.track_id: s.stats() for s in self.by_mid.values()},
        }


# -- the peer ---------------------------------------------------------------------------------------------


class PeerError(Exception):
    """The server refused a request (an `error` reply), or it could not be made."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _main_codec(m: MediaSection) -> Codec | None:
    """The codec a section carries media in: the first that is not a repair or redundancy format."""
    return next((c for c in m.codecs if c.name.lower() not in ("rtx", "red", "ulpfec", "flexfec-03")), None)


def _server_candidate(section: MediaSection) -> Address:
    """The address of the server's one host candidate ("foundation comp udp prio ADDR PORT typ host")."""
    for candidate in section.candidates:
        parts = candidate.split()
        if len(parts) >= 8 and parts[2].lower() == "udp" and parts[6] == "typ":
            return parts[4], int(parts[5])
    raise PeerError("bad_sdp", "the server's SDP has no UDP candidate")


def _transport_section(desc: SessionDescription) -> MediaSection:
    section = next((m for m in desc.media if m.port and m.is_rtp and m.candidates), None)
    if section is None or not section.ice_ufrag or not section.ice_pwd or not section.fingerprints:
        raise PeerError("bad_sdp", "the server's SDP lacks a candidate, ICE credentials or a fingerprint")
    return section


class Peer:
    """One participant: the WebSocket, and a publisher and a subscriber connection as needed.

    ``loss`` drops that fraction of received RTP before it is counted (seeded, so runs repeat), to
    exercise NACKs; ``remb`` makes the subscriber announce that many bit/s, which caps the simulcast
    layers the server chooses for it. Many peers may share one aiohttp ``session``; give it a
    connector without a connection limit (``aiohttp.TCPConnector(limit=0)``), since every peer holds
    its WebSocket open and aiohttp's default allows 100.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        host: str = "127.0.0.1",
        session: aiohttp.ClientSession | None = None,
        loss: float = 0.0,
        remb: int | None = None,
        max_lifetime: float = MAX_LIFETIME,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.host = host
        self.loss = loss
        self.remb = remb
        self.max_lifetime = max_lifetime
        self.participant: dict[str, Any] = {}
        self.room: dict[str, Any] = {}
        self.grants: dict[str, Any] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.errors: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)  # error replies without an id
        self.track_infos: dict[str, dict[str, Any]] = {}  # every track the room has announced
        self.active_speakers: list[str] = []
        self.speaker_events = 0
        self.publisher: Publisher | None = None
        self.subscriber: Subscriber | None = None
        self.bad_messages = 0
        self.disconnected: str | None = None  # the reason, once the server has ended the session
        self._own_session = session is None
        self._session = session
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._clock: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tracks_changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._closed = False

    # -- signaling ----------------------------------------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> dict[str, Any]:
        """Open the WebSocket and join with the token; returns the `joined` reply."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        ws_url = self.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"
        self._ws = await asyncio.wait_for(
            self._session.ws_connect(ws_url, protocols=("kelian.v1.json",), heartbeat=20.0), timeout
        )
        self._reader = asyncio.create_task(self._read())
        joined = await self.request({"type": "join", "token": self.token}, timeout)
        self.participant = joined.get("participant") or {}
        self.room = joined.get("room") or {}
        self.grants = joined.get("grants") or {}
        for p in self.room.get("participants", []):
            for t in p.get("tracks", []) if isinstance(p, dict) else []:
                if isinstance(t, dict) and isinstance(t.get("id"), str):
                    self.track_infos[t["id"]] = t
        self._clock = asyncio.create_task(self._run_clock())
        return joined

    @property
    def sid(self) -> str:
        return str(self.participant.get("sid", ""))

    async def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send a message with an id and wait for its reply; PeerError if the server refused it."""
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.send(message | {"id": request_id})
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)
        if reply.get("type") == "error":
            raise PeerError(str(reply.get("code", "error")), str(reply.get("message", "")))
        return reply

    async def send(self, message: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed:
            raise ConnectionError("signaling is not connected")
        await self._ws.send_str(json.dumps(message, separators=(",", ":")))

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.ERROR,
                    ):
                        break
                    self.bad_messages += 1
                    continue
                try:
                    message = json.loads(msg.data)
                except ValueError:
                    self.bad_messages += 1
                    continue
                if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                    self.bad_messages += 1
                    continue
                try:
                    await self._dispatch(message)
                except Exception:  # a message we cannot use must not end the session
                    self.bad_messages += 1
                    log.warning("signaling message %r not handled", message.get("type"), exc_info=True)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("signaling connection closed"))

    async def _dispatch(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        if isinstance(request_id, int) and request_id in self._pending:
            future = self._pending[request_id]
            if not future.done():
                future.set_result(message)
            return
        kind = message["type"]
        self.events.append(message)
        if kind == "offer":
            await self._answer(message)
        elif kind == "layers":
            if self.publisher is not None and message.get("track") == self.publisher.video_track:
                active = message.get("active")
                if isinstance(active, list):
                    self.publisher.set_layers([str(a) for a in active])
        elif kind in ("track_published", "track_unpublished", "track_muted"):
            track = message.get("track")
            if isinstance(track, dict) and isinstance(track.get("id"), str):
                self.track_infos[track["id"]] = track
        elif kind == "active_speakers":
            speakers = message.get("speakers")
            if isinstance(speakers, list):
                self.active_speakers = [str(s.get("sid")) for s in speakers if isinstance(s, dict)]
                self.speaker_events += 1
        elif kind == "transport_closed":
            which = self.publisher if message.get("transport") == "publisher" else self.subscriber
            if which is not None:
                which.connection.reason = str(message.get("reason", ""))
        elif kind == "disconnected":
            self.disconnected = str(message.get("reason", ""))
        elif kind == "error":
            self.errors.append(message)

    # -- publishing ---------------------------------------------------------------------------------------

    async def publish(
        self,
        video: bool = True,
        audio: bool = True,
        simulcast: bool = True,
        layers: Sequence[Layer] | None = None,
        *,
        fps: int = 30,
        seconds: float = 2.0,
        keyframe_interval: int = 30,
        audio_bursts: bool = False,
        audio_amplitude: int = 8000,
        audio_frequency: float = 440.0,
        burst_frames: int = 25,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Publish a camera (VP8, rid simulcast q/h/f by default) and a microphone (Opus) from clips
        encoded once per process; returns the server's `answer` reply once media is flowing.

        ``layers`` are low to high; without simulcast, one layer (640x360 by default) and no rid.
        """
        if self.publisher is not None:
            raise RuntimeError("this peer publishes already")
        if not video and not audio:
            raise ValueError("publish needs video or audio")
        chosen = tuple(layers or (SIMULCAST_LAYERS if simulcast else (SINGLE_LAYER,)))
        if simulcast and not 1 < len(chosen) <= 3:
            raise ValueError("simulcast takes two or three layers")
        if simulcast and (
            any(not RID_RE.fullmatch(layer.rid) for layer in chosen)
            or len({x.rid for x in chosen}) < len(chosen)
        ):
            raise ValueError("simulcast rids are distinct, of 1 to 8 letters, digits, - or _")
        if not 0 < fps <= 120:
            raise ValueError("fps must be between 1 and 120")
        if not simulcast:
            if len(chosen) != 1:
                raise ValueError("without simulcast, give one layer")
            chosen = (Layer("", chosen[0].width, chosen[0].height, chosen[0].bitrate),)
        # encoding is once per process, but it takes a second: not on the loop the server may share
        clips = [
            await asyncio.to_thread(
                video_clip, layer.width, layer.height, layer.bitrate, fps, seconds, keyframe_interval
            )
            for layer in (chosen if video else ())
        ]
        sound = (
            await asyncio.to_thread(
                audio_clip, seconds, audio_frequency, audio_bursts, audio_amplitude, burst_frames
            )
            if audio
            else None
        )
        publisher = Publisher(Connection("publisher", self._unexpected_rtp, lambda d: None), fps)
        publisher.connection.on_rtcp = publisher.on_rtcp
        await publisher.connection.open(self.host)
        mids = {"video": "0", "audio": "1" if video else "0"}
        for layer, clip in zip(chosen if video else (), clips, strict=True):
            publisher.add(OutStream("video", layer, clip, mids["video"], fps))
        if sound is not None:
            publisher.add(OutStream("audio", None, sound, mids["audio"], fps))
        offer = self._publish_offer(publisher, mids)
        sources = {mids["video"]: "camera"} if video else {}
        if audio:
            sources[mids["audio"]] = "microphone"
        self.publisher = publisher
        try:
            reply = await self.request({"type": "publish", "sdp": offer, "sources": sources}, timeout)
            try:
                section = _transport_section(parse(reply.get("sdp")))  # type: ignore[arg-type]
            except SdpError as exc:
                raise PeerError("bad_sdp", f"the server's answer: {exc}") from None
            for track in reply.get("tracks", []):
                if not isinstance(track, dict):
                    continue
                if track.get("kind") == "video":
                    publisher.video_track = track["id"]
                elif track.get("kind") == "audio":
                    publisher.audio_track = track["id"]
            publisher.connection.start(
                section.ice_ufrag or "",
                section.ice_pwd or "",
                section.fingerprints,
                _server_candidate(section),
            )
            await asyncio.wait_for(publisher.connection.connected.wait(), timeout)
        except BaseException:
            publisher.connection.close()
            self.publisher = None
            raise
        self._wake.set()
        return reply

    def _publish_offer(self, publisher: Publisher, mids: dict[str, str]) -> str:
        conn = publisher.connection
        sections: list[MediaSection] = []
        msid_stream = f"peer-{publisher.cname}"
        if publisher.video:
            feedback = list(PUBLISHER_FEEDBACK)
            m = self._section("video", mids["video"], conn)
            m.codecs = [Codec(VIDEO_PT, "VP8", VIDEO_CLOCK, None, {}, feedback)]
            m.formats = [str(VIDEO_PT)]
            m.extmaps = {EXT_MID: codecs.URI_MID, EXT_RID: codecs.URI_RID} | DECLARED_VIDEO
            m.msid = f"{msid_stream} camera"
            if len(publisher.video) > 1:  # rid simulcast: SSRCs are not signalled, as Chromium does
                rids = [s.name for s in publisher.video]
                m.rids = [Rid(rid, "send") for rid in rids]
                m.simulcast = "send " + ";".join(rids)
            else:
                m.ssrcs = {publisher.video[0].ssrc: {"cname": publisher.cname, "msid": m.msid}}
            sections.append(m)
        if publisher.audio is not None:
            m = self._section("audio", mids["audio"], conn)
            m.codecs = [Codec(AUDIO_PT, "opus", AUDIO_CLOCK, 2, {"minptime": "10", "useinbandfec": "1"}, [])]
            m.formats = [str(AUDIO_PT)]
            m.extmaps = {EXT_AUDIO_LEVEL: codecs.URI_AUDIO_LEVEL, EXT_MID: codecs.URI_MID} | DECLARED_AUDIO
            m.msid = f"{msid_stream} microphone"
            m.ssrcs = {publisher.audio.ssrc: {"cname": publisher.cname, "msid": m.msid}}
            sections.append(m)
        origin = secrets.randbits(62)
        desc = SessionDescription(
            origin=f"- {origin} 2 IN IP4 127.0.0.1",
            name="-",
            groups=[("BUNDLE", [m.mid for m in sections if m.mid is not None])],
            msid_semantic="WMS *",
            media=sections,
        )
        return serialize(desc)

    @staticmethod
    def _section(kind: str, mid: str, conn: Connection) -> MediaSection:
        return MediaSection(
            kind=kind,
            port=9,
            protocol="UDP/TLS/RTP/SAVPF",
            mid=mid,
            direction="sendonly",
            ice_ufrag=conn.ufrag,
            ice_pwd=conn.pwd,
            fingerprints=[("sha-256", conn.certificate.fingerprint)],
            setup="active",  # we are the DTLS client; the server answers passive
            rtcp_mux=True,
            rtcp_rsize=True,
            candidates=[conn.candidate()],
            end_of_candidates=True,
        )

    def _unexpected_rtp(self, packet: bytes) -> None:
        """RTP on the publisher connection: the server sends none there."""
        if self.publisher is not None:
            self.publisher.connection.junk += 1

    # -- subscribing --------------------------------------------------------------------------------------

    async def _answer(self, message: dict[str, Any]) -> None:
        sdp, tracks = message.get("sdp"), message.get("tracks") or {}
        if not isinstance(sdp, str) or not isinstance(tracks, dict):
            self.bad_messages += 1
            return
        try:
            offer = parse(sdp)
            section = _transport_section(offer)
            remote = _server_candidate(section)
        except (SdpError, PeerError, ValueError) as exc:
            self.bad_messages += 1
            log.warning("cannot use the server's offer: %s", exc)
            return
        if self.subscriber is None:
            conn = Connection("subscriber", lambda p: None, lambda d: None, loss=self.loss)
            subscriber = Subscriber(conn, self.remb)
            conn.on_rtp, conn.on_rtcp = subscriber.on_rtp, subscriber.on_rtcp
            await conn.open(self.host)
            self.subscriber = subscriber
        subscriber = self.subscriber
        answer = subscriber.answer(offer, {str(k): str(v) for k, v in tracks.items()})
        await self.send({"type": "answer", "sdp": answer})
        subscriber.connection.start(
            section.ice_ufrag or "", section.ice_pwd or "", section.fingerprints, remote
        )
        self._tracks_changed.set()

    def tracks(self) -> list[dict[str, Any]]:
        """The tracks we receive now: the room's info about each, with our mid and SSRC."""
        if self.subscriber is None:
            return []
        return [
            self.track_infos.get(s.track_id, {"id": s.track_id, "kind": s.kind})
            | {"mid": s.mid, "ssrc": s.ssrc}
            for s in self.subscriber.by_mid.values()
            if not s.ended
        ]

    async def wait_for_tracks(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until we receive at least `count` tracks (answered offers); returns them."""
        deadline = time.monotonic() + timeout
        while len(self.tracks()) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.tracks())} of {count} tracks after {timeout} s")
            self._tracks_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tracks_changed.wait(), remaining)
        return self.tracks()

    async def set_track_settings(self, track_id: str, width: int, height: int, enabled: bool = True) -> None:
        """Tell the server the size we show a track at: it picks the simulcast layer that covers it."""
        message = {"type": "track_settings", "track": track_id, "width": width, "height": height}
        await self.request(message | {"enabled": enabled})

    def request_keyframe(self, track_id: str) -> None:
        """Send a PLI for a received video track, as a decoder that lost its picture would."""
        if self.subscriber is None:
            raise KeyError(track_id)
        stream = next((s for s in self.subscriber.by_mid.values() if s.track_id == track_id), None)
        if stream is None:
            raise KeyError(track_id)
        stream.request_keyframe()

    # -- the clock: media pacing, RTCP, consent -----------------------------------------------------------

    async def _run_clock(self) -> None:
        """The peer's one task: sends every due frame, reports each second, refreshes consent.

        Bounded by `max_lifetime` and by close(); each turn sleeps until the next thing is due.
        """
        loop = asyncio.get_running_loop()
        begun = loop.time()
        next_report = begun + RTCP_INTERVAL
        next_consent = begun + CONSENT_INTERVAL
        while not self._closed and loop.time() - begun < self.max_lifetime:
            now = loop.time()
            due = min(next_report, next_consent)
            try:
                if self.publisher is not None:
                    due = min(due, self.publisher.pump(now))
                if now >= next_report:
                    next_report = max(next_report + RTCP_INTERVAL, now + RTCP_INTERVAL / 2)
                    if self.publisher is not None:
                        self.publisher.report()
                    if self.subscriber is not None:
                        self.subscriber.report()
                if now >= next_consent:
                    next_consent = now + CONSENT_INTERVAL
                    for side in (self.publisher, self.subscriber):
                        if side is not None:
                            side.connection.consent(time.monotonic())
            except Exception:  # a bug here must show, but not stop the media of a long load test
                log.exception("peer clock step failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.001, due - loop.time()))

    # -- results and the end ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Everything counted so far, as plain dicts of numbers and strings (JSON-ready).

        ``publisher.streams`` is keyed by rid ("q", "h", "f"), "video" or "audio": packets, frames,
        keyframes, keyframe requests, NACKs answered, whether the server wants the layer (``active``),
        and the wall-clock/RTP mapping (``clock``) a load tool needs for one-way latency.
        ``subscriber.tracks`` is keyed by track id: packets, bytes, ``lost`` (RFC 3550: expected minus
        received, so recovered packets do not count), ``gaps``, frames, keyframes, the last VP8
        ``keyframe_size`` (which simulcast layer arrives), ``first_keyframe_ms`` after subscribing,
        ``max_frame_gap_ms`` and ``freezes`` (gaps over 200 ms), jitter, and ``latency_ms`` from the
        sender reports the server relays.
        """
        return {
            "sid": self.sid,
            "publisher": None if self.publisher is None else self.publisher.stats(),
            "subscriber": None if self.subscriber is None else self.subscriber.stats(),
            "active_speakers": list(self.active_speakers),
            "speaker_events": self.speaker_events,
            "bad_messages": self.bad_messages,
            "disconnected": self.disconnected,
            "errors": [dict(e) for e in self.errors],
        }

    async def close(self) -> None:
        """Leave, and close both connections (DTLS close_notify) and the socket; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send({"type": "leave"}), 2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 2.0)
        for side in (self.publisher, self.subscriber):
            if side is not None:
                side.connection.close()
        for task in (self._clock, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._own_session and self._session is not None:
            await self._session.close()
