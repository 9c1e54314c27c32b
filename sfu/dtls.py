"""DTLS-SRTP handshake for one Transport, driven by datagrams from the shared UDP port.

aiortc's RTCDtlsTransport owns a receive loop and routes every SRTP packet through coroutines, which
is the cost the SFU must avoid, so only its certificate handling is reused here. The handshake runs on
pyOpenSSL memory BIOs: the Node feeds datagrams in, records come out through `send`, and a timer
drives retransmission (RFC 6347 4.2.4). Once keyed, the Transport owns the SRTP contexts and DTLS
only sees the rare record that follows (alerts, close_notify).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS, RTCCertificate, certificate_digest
from OpenSSL import SSL

from .srtp import PROFILES, SrtpContext, SrtpProfile

log = logging.getLogger(__name__)
# What a peer's a=fingerprint may use: what the DTLS check can verify (md5 and sha-1 are out).
FINGERPRINT_ALGORITHMS = tuple(X509_DIGEST_ALGORITHMS)

HANDSHAKE_TIMEOUT = 15.0


class Certificate:
    """The Node's one certificate, its fingerprint and one reusable SSL context."""

    def __init__(self) -> None:
        self._cert = RTCCertificate.generateCertificate()
        self.fingerprint = certificate_digest(self._cert._cert, "sha-256")
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU)
        # Peers present self-signed certificates; they are checked against the SDP fingerprint instead.
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
        ctx.use_certificate(self._cert._cert)
        ctx.use_privatekey(self._cert._key)
        ctx.set_cipher_list(
            b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
            b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"
        )
        ctx.set_tlsext_use_srtp(b":".join(p.name for p in PROFILES))
        self.context = ctx


MAX_EARLY_RECORDS = 8


class DtlsSession:
    """One DTLS association; calls `on_keys(rx, tx, profile)` once, `on_close(reason)` at most once."""

    def __init__(
        self,
        certificate: Certificate,
        send: Callable[[bytes], None],
        on_keys: Callable[[SrtpContext, SrtpContext, SrtpProfile], None],
        on_close: Callable[[str], None],
    ) -> None:
        self._send = send
        self._on_keys = on_keys
        self._on_close = on_close
        self._ssl = SSL.Connection(certificate.context, None)
        self._ssl.set_ciphertext_mtu(1200)
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self.remote_fingerprints: list[tuple[str, str]] = []
        self.role: str | None = None
        # Records that arrive before we know the peer's fingerprint: a browser answering our offer
        # starts ICE and DTLS the moment it has answered, often before its answer reaches us.
        self._early: list[bytes] = []
        self.connected = False
        self.closed = False
        self.profile: SrtpProfile | None = None

    def start(self, role: str) -> None:
        """`role` is 'server' (we answered a=setup:passive) or 'client' (a=setup:active)."""
        if self.role is not None:
            return
        self.role = role
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(HANDSHAKE_TIMEOUT, self._fail, "DTLS handshake timed out")
        if role == "server":
            self._ssl.set_accept_state()
        else:
            self._ssl.set_connect_state()
            self._step()
        early, self._early = self._early, []
        for data in early:
            self.feed(data)

    def feed(self, data: bytes) -> None:
        """A DTLS record from the peer (first byte 20-63)."""
        if self.closed:
            return
        if self.role is None:
            if len(self._early) < MAX_EARLY_RECORDS:
                self._early.append(data)
            return
        try:
            self._ssl.bio_write(data)
        except SSL.Error:
            return
        if not self.connected:
            self._step()
            return
        try:
            self._ssl.recv(1500)  # WebRTC sends no application data over DTLS unless SCTP is used
        except SSL.ZeroReturnError:
            self._flush()
            self.close("DTLS close_notify from peer")
            return
        except SSL.WantReadError:
            pass
        except SSL.Error as exc:
            log.debug("DTLS record error: %s", exc)
        self._flush()

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_timers()
        if self.role is not None:
            try:
                self._ssl.shutdown()
                self._flush()
            except SSL.Error:
                pass
        self._on_close(reason)

    def _step(self) -> None:
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            self._flush()
            self._arm_timer()
            return
        except SSL.Error as exc:
            self._flush()
            self._fail(f"DTLS handshake failed: {exc}")
            return
        self._flush()
        self._handshake_done()

    def _handshake_done(self) -> None:
        peer = self._ssl.get_peer_certificate(as_cryptography=True)
        checked = [(alg, value) for alg, value in self.remote_fingerprints if alg in X509_DIGEST_ALGORITHMS]
        if (
            peer is None
            or not checked
            or any(certificate_digest(peer, alg) != value for alg, value in checked)
        ):
            self._fail("DTLS peer certificate does not match the SDP fingerprint")
            return
        name = self._ssl.get_selected_srtp_profile()
        profile = next((p for p in PROFILES if p.name == name), None)
        if profile is None:
            self._fail("DTLS negotiated no SRTP profile")
            return
        material = self._ssl.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
        )
        tx_key, rx_key = profile.split_keying_material(material, server=self.role == "server")
        self.connected = True
        self.profile = profile
        if self._deadline is not None:
            self._deadline.cancel()
        # DTLS 1.2 servers may still need to resend their last flight; keep the timer until quiet.
        self._arm_timer()
        self._on_keys(SrtpContext(profile, rx_key, False), SrtpContext(profile, tx_key, True), profile)

    def _flush(self) -> None:
        while True:
            try:
                data = self._ssl.bio_read(1500)
            except SSL.Error:
                return
            if not data:
                return
            self._send(data)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        timeout = self._ssl.DTLSv1_get_timeout()
        if timeout is not None and not self.closed:
            self._timer = asyncio.get_running_loop().call_later(max(timeout, 0.01), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        try:
            self._ssl.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            self._fail(f"DTLS retransmission failed: {exc}")
            return
        self._flush()
        self._arm_timer()

    def _cancel_timers(self) -> None:
        for handle in (self._timer, self._deadline):
            if handle is not None:
                handle.cancel()
        self._timer = self._deadline = None

    def _fail(self, reason: str) -> None:
        log.info("%s", reason)
        self.close(reason)
