"""PlainTransport: plain RTP to a process on this machine (the recorder), as mediasoup's.

A recorder is a member of the room that needs no ICE, DTLS or encryption: it runs on the same host,
reached over loopback. It gets the same Consumers a browser gets (layer choice, keyframe requests,
retransmissions, the sender reports it aligns audio and video by), so the forwarding path is the
same code; only the SRTP context is one that rewrites the header and encrypts nothing. Its RTCP
(NACK, PLI, receiver reports) comes back to the media port from its one address, which is how the
Node routes it here; its receiver reports are its consent: a recorder that dies goes silent, and the
transport closes like any other whose peer went away.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .rtp import PT_SEQ_TS_SSRC, U16, remap_extension_ids, rewrite_vp8_picture
from .transport import Address, WebRtcTransport

if TYPE_CHECKING:
    from .node import Node


class PlainRtp:
    """SrtpContext's interface without the cryptography: the Consumer's header rewrite, and
    packets passed through as they are."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray(1600)

    def protect_rewritten(
        self,
        packet: bytes,
        pt: int,
        seq: int,
        timestamp: int,
        ssrc: int,
        vp8_deltas: tuple[int, int] | None = None,
        twcc_at: int = -1,
        twcc_seq: int = 0,
        ext_table: bytes | None = None,
    ) -> bytes:
        buf = bytearray(packet)  # a fresh copy: the datagram may be queued by the kernel as it is
        PT_SEQ_TS_SSRC.pack_into(buf, 1, (packet[1] & 0x80) | pt, seq, timestamp, ssrc)
        if vp8_deltas is not None:
            rewrite_vp8_picture(buf, packet, *vp8_deltas)
        if twcc_at >= 0:
            U16.pack_into(buf, twcc_at, twcc_seq)
        if ext_table is not None:
            remap_extension_ids(memoryview(buf), ext_table)
        return bytes(buf)

    def protect(self, packet: bytes | bytearray) -> bytes:
        return bytes(packet)

    def protect_rtcp(self, packet: bytes | bytearray) -> bytes:
        return bytes(packet)

    def unprotect(self, packet: bytes) -> bytes:
        return packet

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        return packet


class PlainTransport(WebRtcTransport):
    """Sends to `remote` at once: no ICE, no DTLS, no SRTP (loopback only: the caller's rule)."""

    def __init__(self, node: Node, remote: Address) -> None:
        super().__init__(node)
        if self.sender is not None:
            self.sender.key()  # plain RTP: nothing to protect with
        self._point(remote)
        self.addresses[remote] = time.monotonic()
        node.by_addr[remote] = self
        node.transports[self.id] = self
        plain = PlainRtp()
        self.srtp_rx = self.srtp_tx = plain  # type: ignore[assignment]  # the same interface
        self.state = "connected"
        self.last_consent = time.monotonic()  # then each report from the recorder renews it

    def on_rtcp(self, data: bytes) -> None:
        self.last_consent = time.monotonic()
        super().on_rtcp(data)
