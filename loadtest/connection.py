"""The client side of one server transport: ICE, DTLS and SRTP on one UDP socket.

- ICE as the controlling full agent against the server's ICE-lite host candidate: aioice's STUN codec
  builds the Binding requests (USE-CANDIDATE, PRIORITY, ICE-CONTROLLING, integrity, fingerprint), which
  are retransmitted until answered and then repeated every 5 s as consent (RFC 7675);
- DTLS-SRTP through `sfu.dtls.DtlsSession` as the DTLS client (the server answers `passive` to our
  `active`, on both connections), checking the server's certificate against its SDP fingerprint;
- SRTP through `sfu.srtp.SrtpContext`;
- one UDP socket per connection, demultiplexed by first byte (RFC 7983) as `sfu/node.py` does. The
  server tells its transports apart by the client's address, so a peer that publishes and receives
  has two sockets, one per server transport, like a browser with two RTCPeerConnections.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import secrets
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, cast

from aioice import stun
from aiortc import rtp as artp

from sfu.dtls import Certificate, DtlsSession
from sfu.ice import Address, new_credentials
from sfu.srtp import SrtpContext, SrtpError, SrtpProfile

log = logging.getLogger(__name__)

CONSENT_INTERVAL = 5.0  # a Binding request on each connection, keeping the server's consent
CONSENT_TIMEOUT = 30.0  # RFC 7675: no answer for this long and the path is gone
ICE_RTO = (0.05, 0.1, 0.2, 0.4)  # first retransmission intervals, then ICE_RTO_MAX until ICE_TIMEOUT
ICE_RTO_MAX = 0.5
ICE_TIMEOUT = 10.0
ICE_PRIORITY = (126 << 24) | (65535 << 8) | 255  # a host candidate's priority (RFC 8445 5.1.2)
SOCKET_BUFFER = 512 * 1024


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
        on_rtcp: Callable[[list[artp.AnyRtcpPacket]], None],
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
        self.junk = self.foreign = self.srtp_errors = self.rtcp_errors = self.errors = self.dropped = 0
        self.stun_requests = self.stun_responses = 0

    async def open(self, host: str) -> None:
        """Bind our socket on `host`, any free port: the one candidate our SDP offers."""
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
                self._receive_srtp(data)
            elif first < 4 and data:
                self._on_stun(data)
            elif 19 < first < 64:
                self.dtls.feed(data)
            else:
                self.junk += 1
        except Exception:  # whatever a datagram holds, the peer keeps running
            self.errors += 1
            log.debug("%s: datagram dropped", self.role, exc_info=True)

    def _receive_srtp(self, data: bytes) -> None:
        """SRTP or SRTCP, told apart as RFC 5761 says: RTCP types sit where RTP has marker and type."""
        rx = self.srtp_rx
        if rx is None:
            self.junk += 1
            return
        rtcp = 192 <= data[1] <= 223
        if not rtcp and self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return
        try:
            packet = rx.unprotect_rtcp(data) if rtcp else rx.unprotect(data)
        except SrtpError:
            self.srtp_errors += 1
            return
        if rtcp:
            self.rtcp_in += 1
            try:
                packets = artp.RtcpPacket.parse(packet)
            except (ValueError, IndexError, struct.error):
                self.rtcp_errors += 1
                return
            self.on_rtcp(packets)
        else:
            self.rtp_in += 1
            self.on_rtp(packet)

    def _send_raw(self, data: bytes) -> None:
        """To the server's candidate; nothing before the server's address is known or after closing."""
        udp, remote = self.udp, self.remote
        if udp is not None and remote is not None:
            udp.sendto(data, remote)

    def _send_srtp(self, packet: bytes, rtcp: bool) -> bool:
        tx = self.srtp_tx
        if tx is None:
            return False
        try:
            data = tx.protect_rtcp(packet) if rtcp else tx.protect(packet)
        except SrtpError:
            self.srtp_errors += 1
            return False
        self._send_raw(data)
        self.bytes_out += len(data)
        if rtcp:
            self.rtcp_out += 1
        else:
            self.rtp_out += 1
        return True

    def send_rtp(self, packet: bytes) -> bool:
        """Protect and send one RTP packet; whether it went (not before keys, nor after a failure)."""
        return self._send_srtp(packet, False)

    def send_rtcp(self, packet: bytes) -> None:
        """Protect and send one RTCP packet, compound or not."""
        self._send_srtp(packet, True)

    def close(self) -> None:
        """End the connection: DTLS close_notify if it was up, so the server ends its transport at once."""
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
            "rtcp_errors": self.rtcp_errors,
            "errors": self.errors,
            "dropped": self.dropped,
        }
