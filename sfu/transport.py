"""WebRtcTransport: one participant's ICE-lite + DTLS + SRTP connection on the Node's shared port.

It receives every datagram the Node demultiplexes to its remote address, owns the SRTP contexts,
maps incoming SSRCs to Producer streams (learned from MID/RID header extensions, since browsers send
no a=ssrc lines for simulcast), and routes RTCP between its Consumers and Producers.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiortc import rtp as artp

from .bwe import BandwidthEstimator, new_estimator
from .codecs import URI_MID, URI_RID, URI_RRID
from .consumer import Consumer
from .dtls import DtlsSession
from .fanout import Sender
from .ice import Address, new_credentials
from .producer import Producer, RtpStream
from .rtp import U32, RtpError, extensions, split_compound
from .srtp import SrtpContext, SrtpError, SrtpProfile
from .twcc import RTPFB_TWCC, FeedbackError, SendHistory

if TYPE_CHECKING:
    from ._delay import FeedbackRoute
    from .bwe import CompiledBandwidthEstimator  # where sfu/_delay.c was built
    from .node import Node
else:
    try:  # sfu/_delay.c: the node's batch read takes this transport's usual reports in C
        from ._delay import FeedbackRoute
    except ImportError:
        FeedbackRoute = None

log = logging.getLogger(__name__)
_ids = itertools.count(1)
REPORTS_PER_COMPOUND = 16  # keeps a compound RTCP packet under the MTU
MAX_ADDRESSES = 8  # remote addresses a Transport answers at once (ICE candidate pairs in use)


class WebRtcTransport:
    def __init__(self, node: Node) -> None:
        self.id = f"PA_{next(_ids)}"
        self.node = node
        self.ice_ufrag, self.ice_pwd = new_credentials()
        self.remote_addr: Address | None = None
        # Where authenticated checks came from, and when last: a client has a few candidate pairs, a
        # hostile one could send checks from thousands of ports; only the freshest few are kept.
        self.addresses: dict[Address, float] = {}
        self.state = "new"  # new -> connecting (ICE) -> connected (SRTP keyed) -> closed
        self.close_reason = ""
        self.created = time.monotonic()
        self.last_consent = 0.0
        self.sendto = node.sendto
        # the compiled fan-out's way out (sfu/fanout.py), ready once keyed; None: Consumers send in Python
        self.sender = Sender(node.fd, node.sendto) if Sender is not None and node.fd >= 0 else None
        self.rtcp_ssrc = int.from_bytes(os.urandom(4), "big") or 1
        self.cname = f"kelian-{self.id}"
        self.dtls = DtlsSession(node.certificate, self._send_dtls, self._on_keys, self.close)
        self.dtls_role = "server"
        self.srtp_rx: SrtpContext | None = None
        self.srtp_tx: SrtpContext | None = None
        self.srtp_profile: SrtpProfile | None = None
        # receive side
        self.rtp_routes: dict[int, Callable[[bytes], None]] = {}
        self.incoming: dict[int, RtpStream] = {}
        self.producers: dict[str, Producer] = {}  # by mid
        self.ext_ids: dict[str, int] = {}  # uri -> id as negotiated with this peer
        self.ext_table: bytes | None = None  # publisher id -> router id (codecs.extension_table)
        # send side
        self.consumers: dict[int, Consumer] = {}  # by SSRC
        self.remb_bitrate: int | None = None
        # transport-cc, once the subscriber's answer takes it: send history and the estimate
        self.twcc: SendHistory | None = None
        self.bwe: BandwidthEstimator | CompiledBandwidthEstimator | None = None
        self.twcc_feedbacks = self.twcc_errors = 0
        self.feedback: FeedbackRoute | None = None  # for sfu/_delay.c's read_feedback (node.py)
        self.on_close: list[Callable[[WebRtcTransport], None]] = []
        self.on_connected: list[Callable[[WebRtcTransport], None]] = []
        # counters
        self.rtp_in = self.rtcp_in = self.srtp_errors = self.unknown_ssrc = self.rtcp_errors = 0

    # -- ICE and DTLS -----------------------------------------------------------------------------

    def set_remote(self, fingerprints: list[tuple[str, str]], setup: str | None) -> None:
        """Remote DTLS parameters from its SDP: we are the DTLS client only if it said passive."""
        self.dtls.remote_fingerprints = fingerprints
        self.dtls_role = "client" if setup == "passive" else "server"
        if self.state == "connecting":  # ICE came first (a subscriber that answered quickly)
            self.dtls.start(self.dtls_role)

    def on_binding(self, addr: Address, use_candidate: bool) -> None:
        self.last_consent = now = time.monotonic()
        if addr not in self.addresses:
            self.node.by_addr[addr] = self
            if len(self.addresses) >= MAX_ADDRESSES:
                self._forget_oldest_address()
        self.addresses[addr] = now
        if use_candidate or self.remote_addr is None:
            self._point(addr)
        if self.state == "new":
            self.state = "connecting"
            if self.dtls.remote_fingerprints:  # else set_remote starts it, with the right role
                self.dtls.start(self.dtls_role)

    def _point(self, addr: Address) -> None:
        """Send to `addr` from now on: this transport's packets and its Consumers' (through the
        Sender, or through Python where the Sender cannot express the address). Every consent
        check names the pair again: only a new address is worth converting."""
        if addr != self.remote_addr:
            self.remote_addr = addr
            if self.sender is not None:
                self.sender.point(addr)

    def _forget_oldest_address(self) -> None:
        """Make room for a new address: the one heard from longest ago goes, never the one in use."""
        spare = [(seen, a) for a, seen in self.addresses.items() if a != self.remote_addr]
        if spare:
            _, oldest = min(spare)
            del self.addresses[oldest]
            if self.node.by_addr.get(oldest) is self:
                del self.node.by_addr[oldest]

    def _send_dtls(self, data: bytes) -> None:
        if self.remote_addr is not None:
            self.sendto(data, self.remote_addr)

    def _on_keys(self, rx: SrtpContext, tx: SrtpContext, profile: SrtpProfile) -> None:
        self.srtp_rx, self.srtp_tx, self.srtp_profile = rx, tx, profile
        self._route_feedback()
        if self.sender is not None:
            self.sender.key(*tx.protect_pointers(), owner=tx)
        self.state = "connected"
        log.info("transport %s connected with %s", self.id, profile.name.decode())
        for callback in list(self.on_connected):
            callback(self)
        for consumer in self.consumers.values():
            consumer.request_keyframe()

    # -- receive ----------------------------------------------------------------------------------

    def on_datagram(self, data: bytes) -> None:
        """Everything the Node got from one of our addresses that is not STUN."""
        first = data[0]
        if 127 < first < 192 and len(data) >= 12:
            if 192 <= data[1] <= 223:
                self.on_rtcp(data)
            else:
                self.on_rtp(data)
        elif 19 < first < 64:
            self.dtls.feed(data)

    def on_rtp(self, data: bytes) -> None:
        rx = self.srtp_rx
        if rx is None:
            return
        try:
            packet = rx.unprotect(data)
        except SrtpError:
            self.srtp_errors += 1
            self.node.errors += 1
            return
        self.rtp_in += 1
        route = self.rtp_routes.get(U32.unpack_from(packet, 8)[0])
        if route is None:
            route = self._learn_ssrc(packet)
            if route is None:
                self.unknown_ssrc += 1
                return
        route(packet)

    def _learn_ssrc(self, packet: bytes) -> Callable[[bytes], None] | None:
        """Find the Producer stream of a new SSRC from MID/RID/RRID extensions, then payload type."""
        ssrc = U32.unpack_from(packet, 8)[0]
        pt = packet[1] & 0x7F
        try:
            found = {eid: bytes(packet[o : o + n]) for eid, o, n in extensions(packet)}
        except RtpError:
            return None

        def ext(uri: str) -> str | None:
            eid = self.ext_ids.get(uri)
            value = found.get(eid) if eid is not None else None
            return value.decode("ascii", "replace") if value else None

        mid, rid, rrid = ext(URI_MID), ext(URI_RID), ext(URI_RRID)
        producer = self.producers.get(mid) if mid else None
        if producer is None:
            candidates = [
                p
                for p in self.producers.values()
                if pt in (p.publisher_payload_type, p.publisher_rtx_payload_type)
            ]
            producer = candidates[0] if len(candidates) == 1 else None
        if producer is None:
            return None
        is_rtx = pt == producer.publisher_rtx_payload_type and pt is not None
        stream = producer.stream_by_rid(rrid if is_rtx else rid)
        if stream is None:
            return None
        route: Callable[[bytes], None]
        if is_rtx:
            stream.rtx_ssrc = ssrc
            route = stream.receive_rtx
        else:
            if stream.ssrc is not None and stream.ssrc != ssrc:
                self.rtp_routes.pop(stream.ssrc, None)
                self.incoming.pop(stream.ssrc, None)
            stream.ssrc = ssrc
            self.incoming[ssrc] = stream
            route = stream.receive
        self.rtp_routes[ssrc] = route
        return route

    def on_rtcp(self, data: bytes) -> None:
        rx = self.srtp_rx
        if rx is None:
            return
        try:
            plain = rx.unprotect_rtcp(data)
        except SrtpError as exc:
            self._drop_rtcp(exc)
            return
        self.on_plain_rtcp(plain)

    def on_plain_rtcp(self, plain: bytes) -> None:
        """A compound RTCP packet, decrypted: here or by the node's compiled feedback read, which
        takes only what is all transport-cc feedback itself."""
        try:
            parts = split_compound(plain)
        except RtpError as exc:
            self._drop_rtcp(exc)
            return
        # aiortc reads every RTPFB as a NACK list: transport-cc feedback is taken out first
        others = []
        for part in parts:
            if part[1] == 205 and part[0] & 0x1F == RTPFB_TWCC:
                self._on_transport_cc(part[12:])
            else:
                others.append(part)
        if not others:
            self.rtcp_in += 1
            return
        try:
            packets = artp.RtcpPacket.parse(b"".join(others))
        except (ValueError, IndexError, struct.error) as exc:
            self._drop_rtcp(exc)
            return
        self.rtcp_in += 1
        for p in packets:
            if isinstance(p, (artp.RtcpSrPacket, artp.RtcpRrPacket)):
                if isinstance(p, artp.RtcpSrPacket) and (stream := self.incoming.get(p.ssrc)):
                    stream.stats.on_sender_report(p.sender_info.ntp_timestamp, p.sender_info.rtp_timestamp)
                for r in p.reports:
                    if consumer := self.consumers.get(r.ssrc):
                        consumer.on_receiver_report(r.fraction_lost, r.packets_lost, r.jitter, r.lsr, r.dlsr)
            elif isinstance(p, artp.RtcpRtpfbPacket):
                if p.fmt == artp.RTCP_RTPFB_NACK and (consumer := self.consumers.get(p.media_ssrc)):
                    self.node.nacks += 1
                    consumer.on_nack([s & 0xFFFF for s in p.lost])
            elif isinstance(p, artp.RtcpPsfbPacket):
                if p.fmt == artp.RTCP_PSFB_PLI:
                    target = self.consumers.get(p.media_ssrc)
                elif p.fmt == artp.RTCP_PSFB_FIR and len(p.fci) >= 4:
                    target = self.consumers.get(int.from_bytes(p.fci[0:4], "big"))
                elif p.fmt == artp.RTCP_PSFB_APP and p.fci[:4] == b"REMB":
                    with contextlib.suppress(ValueError, struct.error):  # a short FCI: aiortc's struct.error
                        self.remb_bitrate = artp.unpack_remb_fci(p.fci)[0]
                    continue
                else:
                    continue
                if target is not None:
                    self.node.plis += 1
                    target.on_pli()

    def _drop_rtcp(self, exc: Exception) -> None:
        self.rtcp_errors += 1
        log.debug("transport %s: RTCP dropped: %s", self.id, exc)

    # -- send -------------------------------------------------------------------------------------

    def send_rtcp(self, packet: bytes) -> None:
        tx = self.srtp_tx
        if tx is None or self.remote_addr is None:
            return
        try:
            self.sendto(tx.protect_rtcp(packet), self.remote_addr)
        except SrtpError:
            self.rtcp_errors += 1

    def send_keyframe_request(self, producer: Producer, ssrc: int) -> None:
        self.node.keyframe_requests += 1
        if "pli" in producer.feedback or "fir" not in producer.feedback:
            packet = artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_PLI, ssrc=self.rtcp_ssrc, media_ssrc=ssrc)
        else:
            producer.fir_seq = (producer.fir_seq + 1) & 0xFF
            fci = ssrc.to_bytes(4, "big") + bytes([producer.fir_seq, 0, 0, 0])
            packet = artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_FIR, ssrc=self.rtcp_ssrc, media_ssrc=0, fci=fci)
        self.send_rtcp(bytes(packet))

    def send_nack(self, ssrc: int, lost: list[int]) -> None:
        """Ask the publisher to resend what never arrived (RFC 4585 generic NACK)."""
        self.node.nacks_sent += 1
        self.send_rtcp(
            bytes(
                artp.RtcpRtpfbPacket(
                    fmt=artp.RTCP_RTPFB_NACK, ssrc=self.rtcp_ssrc, media_ssrc=ssrc, lost=lost
                )
            )
        )

    def send_reports(self, max_bitrate: int) -> None:
        """Periodic RTCP: SRs for our Consumers, RRs and a REMB for what we receive."""
        if self.state != "connected":
            return
        sdes = bytes(
            artp.RtcpSdesPacket(chunks=[artp.RtcpSourceInfo(self.rtcp_ssrc, [(1, self.cname.encode())])])
        )
        packets: list[bytes] = []
        for consumer in list(self.consumers.values()):
            report = consumer.sender_report()
            if report is not None:
                info = artp.RtcpSenderInfo(*report)
                packets.append(bytes(artp.RtcpSrPacket(ssrc=consumer.ssrc, sender_info=info)))
        blocks = [
            artp.RtcpReceiverInfo(ssrc, *stream.stats.report_block())
            for ssrc, stream in self.incoming.items()
            if stream.stats.packets
        ]
        for i in range(0, len(blocks), 31):
            packets.append(bytes(artp.RtcpRrPacket(ssrc=self.rtcp_ssrc, reports=blocks[i : i + 31])))
        if self.incoming:
            fci = artp.pack_remb_fci(max_bitrate, list(self.incoming))
            packets.append(
                bytes(artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_APP, ssrc=self.rtcp_ssrc, media_ssrc=0, fci=fci))
            )
        for i in range(0, len(packets), REPORTS_PER_COMPOUND):
            self.send_rtcp(b"".join(packets[i : i + REPORTS_PER_COMPOUND]) + sdes)

    # -- Producers and Consumers ------------------------------------------------------------------

    def add_producer(self, producer: Producer) -> None:
        self.producers[producer.mid] = producer
        for stream in producer.streams:
            if stream.ssrc is not None:
                self.rtp_routes[stream.ssrc] = stream.receive
                self.incoming[stream.ssrc] = stream
            if stream.rtx_ssrc is not None:
                self.rtp_routes[stream.rtx_ssrc] = stream.receive_rtx
        producer.on_close.append(self._forget_producer)

    def _forget_producer(self, producer: Producer) -> None:
        self.producers.pop(producer.mid, None)
        for stream in producer.streams:
            for ssrc in (stream.ssrc, stream.rtx_ssrc):
                if ssrc is not None:
                    self.rtp_routes.pop(ssrc, None)
                    self.incoming.pop(ssrc, None)

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers[consumer.ssrc] = consumer
        consumer.on_close.append(self._forget_consumer)

    def _forget_consumer(self, consumer: Consumer) -> None:
        self.consumers.pop(consumer.ssrc, None)
        self.node.retire(consumer)

    def enable_transport_cc(self) -> None:
        """The subscriber answered with transport-cc: number our packets and estimate its link."""
        if self.twcc is None:
            self.twcc = SendHistory()
            if self.sender is not None:
                self.sender.history = self.twcc
            self.bwe = new_estimator()
            self._route_feedback()

    def _route_feedback(self) -> None:
        """Let the node's compiled batch read (sfu/_delay.c read_feedback) take this transport's
        transport-cc reports from their datagrams to the estimate, once there are keys to decrypt
        them and a compiled estimator to take them."""
        rx, history, bwe = self.srtp_rx, self.twcc, self.bwe
        if FeedbackRoute is None or not isinstance(rx, SrtpContext) or history is None or bwe is None:
            return  # (a PlainTransport's "SRTP" is plain RTP: it has no transport-cc)
        if not isinstance(bwe, BandwidthEstimator):  # so, compiled: where _delay.c was built
            self.feedback = FeedbackRoute(*rx.unprotect_rtcp_pointers(), rx, bwe, history)

    def _on_transport_cc(self, fci: bytes) -> None:
        if self.twcc is None or self.bwe is None:
            return  # not negotiated: nothing of ours carries the sequence numbers it would report
        try:
            self.bwe.report(fci, self.twcc, time.monotonic())
        except FeedbackError as exc:
            self.twcc_errors += 1
            log.debug("transport %s: transport-cc feedback dropped: %s", self.id, exc)
            return
        self.twcc_feedbacks += 1

    def simulcast_consumers(self) -> bool:
        return any(len(c.producer.streams) > 1 for c in self.consumers.values())

    def layer_budget(self, now: float) -> int | None:
        """What simulcast.allocate may spend on this subscriber (see BandwidthEstimator.layer_budget)."""
        if self.bwe is not None and self.bwe.feedbacks:
            return self.bwe.layer_budget(now)
        return self.remb_bitrate

    def available_bitrate(self) -> int | None:
        """What the subscriber's link can take, bit/s: our transport-cc estimate once feedback comes,
        else the subscriber's REMB, else None (unknown: no cap)."""
        if self.bwe is not None and self.bwe.feedbacks:
            return self.bwe.estimate
        return self.remb_bitrate

    def close(self, reason: str = "closed") -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        self.close_reason = reason
        log.info("transport %s closed: %s", self.id, reason)
        self.dtls.close(reason)
        self.node.forget(self)
        for producer in list(self.producers.values()):
            producer.close()
        for consumer in list(self.consumers.values()):
            consumer.close()
        for callback in list(self.on_close):
            callback(self)

    def stats(self) -> dict[str, object]:
        return {
            "id": self.id,
            "state": self.state,
            "remote": f"{self.remote_addr[0]}:{self.remote_addr[1]}" if self.remote_addr else None,
            "srtp": self.srtp_profile.name.decode() if self.srtp_profile else None,
            "rtp_in": self.rtp_in,
            "rtcp_in": self.rtcp_in,
            "srtp_errors": self.srtp_errors,
            "unknown_ssrc": self.unknown_ssrc,
            "remb_bitrate": self.remb_bitrate,
            "bandwidth_estimate": self.available_bitrate(),
            "transport_cc_feedbacks": self.twcc_feedbacks,
        }
