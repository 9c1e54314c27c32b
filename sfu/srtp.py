"""SRTP contexts for one direction of one Transport.

pylibsrtp's Session.protect allocates a length cell per call, insists on `bytes` and copies the
result twice. On the forwarding path that overhead is larger than the AES itself, so this module
drives the same libsrtp binding with one preallocated staging buffer per context. The Consumer's
header rewrite happens inside that staging buffer: the Producer's packet, shared by every Consumer
and the retransmission cache, is never modified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pylibsrtp import Policy, Session
from pylibsrtp._binding import ffi, lib

if TYPE_CHECKING:
    from ._fanout import unprotect as compiled_unprotect
    from ._srtp import GcmProtect
else:
    try:  # sfu/_srtp.c: protect for AES-GCM over OpenSSL, without libsrtp's bookkeeping
        from ._srtp import GcmProtect
    except ImportError:  # built without OpenSSL's headers: libsrtp protects
        GcmProtect = None
    try:  # sfu/_fanout.c: libsrtp's unprotect called by address, without cffi's staging
        from ._fanout import unprotect as compiled_unprotect
    except ImportError:
        compiled_unprotect = None

from .rtp import PT_SEQ_TS_SSRC, U16, remap_extension_ids, rewrite_vp8_picture

STAGING_SIZE = 1600
MAX_TRAILER = 4 + 16 + 128  # SRTCP index + tag + MKI, as libsrtp reserves


class SrtpError(Exception):
    """libsrtp refused a packet (authentication, replay, or a context not keyed yet)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"libsrtp error {code}")
        self.code = code


@dataclass(frozen=True)
class SrtpProfile:
    """A DTLS-SRTP protection profile (RFC 5764, RFC 7714) and its key sizes."""

    name: bytes  # OpenSSL's name, as negotiated in the use_srtp extension
    libsrtp_profile: int
    key_length: int
    salt_length: int

    def split_keying_material(self, material: bytes, server: bool) -> tuple[bytes, bytes]:
        """RFC 5764 4.2: client key, server key, client salt, server salt -> (tx, rx) key+salt."""
        k, s = self.key_length, self.salt_length
        client = material[0:k] + material[2 * k : 2 * k + s]
        server_key = material[k : 2 * k] + material[2 * k + s : 2 * k + 2 * s]
        return (server_key, client) if server else (client, server_key)


AEAD_AES_128_GCM = SrtpProfile(b"SRTP_AEAD_AES_128_GCM", Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12)
AES128_CM_SHA1_80 = SrtpProfile(b"SRTP_AES128_CM_SHA1_80", Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14)
# GCM first: it authenticates and encrypts in one pass, and sfu/_srtp.c protects it for about a
# quarter of what libsrtp takes (docs/performance.md).
PROFILES = (AEAD_AES_128_GCM, AES128_CM_SHA1_80)


_PROTECT = "int(*)(void *, void *, int *)"  # srtp_protect's signature, which sfu/_srtp.c's shares
SRTP_UNPROTECT = int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_unprotect")))
SRTP_UNPROTECT_RTCP = int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_unprotect_rtcp")))


class SrtpContext:
    """One libsrtp session with its own staging buffer; not thread-safe, like the event loop.

    An outbound AES-GCM context protects RTP with sfu/_srtp.c instead, where it is built: every RTP
    packet of the transport, so that each SSRC's rollover counter lives in one place (SRTCP stays
    with libsrtp, which numbers it apart)."""

    __slots__ = (
        "_address",
        "_buf",
        "_cdata",
        "_gcm",
        "_len",
        "_protect",
        "_protect_arg",
        "_session",
        "_srtp",
        "_view",
    )

    def __init__(self, profile: SrtpProfile, key_and_salt: bytes, outbound: bool) -> None:
        policy = Policy(
            key=key_and_salt,
            ssrc_type=Policy.SSRC_ANY_OUTBOUND if outbound else Policy.SSRC_ANY_INBOUND,
            srtp_profile=profile.libsrtp_profile,
        )
        policy.allow_repeat_tx = True  # retransmissions reuse sequence numbers
        policy.window_size = 1024
        self._session = Session(policy)  # owns the srtp_t and frees it
        self._srtp = self._session._srtp[0]
        self._address = int(ffi.cast("uintptr_t", self._srtp))  # the srtp_t, for compiled callers
        self._cdata = ffi.new("char[]", STAGING_SIZE)
        self._buf = ffi.buffer(self._cdata)
        self._view = memoryview(self._buf)  # indexes as ints, for the extension-id rewrite
        self._len = ffi.new("int *")
        self._gcm: GcmProtect | None = None
        self._protect, self._protect_arg = ffi.addressof(lib, "srtp_protect"), self._srtp
        if outbound and profile is AEAD_AES_128_GCM and GcmProtect is not None:
            self._gcm = GcmProtect(key_and_salt, policy.window_size)  # the same window as libsrtp's
            function, session = self._gcm.pointers()
            self._protect, self._protect_arg = ffi.cast(_PROTECT, function), ffi.cast("void *", session)

    def _run(self, func: object, session: object, data: bytes | bytearray, trailer: int) -> bytes:
        n = len(data)
        if n > STAGING_SIZE - trailer:
            raise SrtpError(-1)
        self._buf[0:n] = data
        self._len[0] = n
        rc = func(session, self._cdata, self._len)  # type: ignore[operator]
        if rc:
            raise SrtpError(rc)
        return self._buf[0 : self._len[0]]

    def protect(self, packet: bytes | bytearray) -> bytes:
        return self._run(self._protect, self._protect_arg, packet, MAX_TRAILER)

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
        """Copy, rewrite payload type, sequence number, timestamp and SSRC in the staging buffer,
        then protect; the marker bit is kept. `vp8_deltas` (PictureID, TL0PICIDX) continue a VP8
        picture numbering across a simulcast layer switch; `twcc_seq` goes into the transport-cc slot
        at `twcc_at` when the subscriber negotiated transport-cc; `ext_table` moves the router's
        extension ids to those of a subscriber that chose its own (codecs.output_table)."""
        n = len(packet)
        if n > STAGING_SIZE - MAX_TRAILER:
            raise SrtpError(-1)
        ffi.memmove(self._cdata, packet, n)
        buf = self._buf
        PT_SEQ_TS_SSRC.pack_into(buf, 1, (packet[1] & 0x80) | pt, seq, timestamp, ssrc)
        if vp8_deltas is not None:
            rewrite_vp8_picture(buf, packet, *vp8_deltas)
        if twcc_at >= 0:
            U16.pack_into(buf, twcc_at, twcc_seq)
        if ext_table is not None:
            remap_extension_ids(self._view[:n], ext_table)
        self._len[0] = n
        rc = self._protect(self._protect_arg, self._cdata, self._len)
        if rc:
            raise SrtpError(rc)
        return buf[0 : self._len[0]]

    def protect_pointers(self) -> tuple[int, int]:
        """The protect function (libsrtp's srtp_protect, or sfu/_srtp.c's with its signature) and its
        session, as addresses: what the compiled fan-out (sfu/_fanout.c) protects with, so that the
        fan-out and this context protect with the same state."""
        function = ffi.cast("uintptr_t", self._protect)
        return int(function), int(ffi.cast("uintptr_t", self._protect_arg))

    def unprotect_rtcp_pointers(self) -> tuple[int, int]:
        """libsrtp's srtp_unprotect_rtcp and this context's session, as addresses: what the node's
        compiled feedback read (sfu/_delay.c) decrypts this transport's reports with."""
        return SRTP_UNPROTECT_RTCP, self._address

    def protect_rtcp(self, packet: bytes | bytearray) -> bytes:
        return self._run(lib.srtp_protect_rtcp, self._srtp, packet, MAX_TRAILER)

    def unprotect(self, packet: bytes) -> bytes:
        return self._unprotect(SRTP_UNPROTECT, lib.srtp_unprotect, packet)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        return self._unprotect(SRTP_UNPROTECT_RTCP, lib.srtp_unprotect_rtcp, packet)

    def _unprotect(self, address: int, function: object, packet: bytes) -> bytes:
        """Where sfu/_fanout.c was built, libsrtp's `function` is called by its `address` on a copy
        of the packet, without the staging buffer's copies in and out (a third of an unprotect's
        cost); the same size limit either way."""
        if compiled_unprotect is None or type(packet) is not bytes:
            return self._run(function, self._srtp, packet, 0)
        if len(packet) > STAGING_SIZE:
            raise SrtpError(-1)
        plain = compiled_unprotect(address, self._address, packet)
        if isinstance(plain, int):
            raise SrtpError(plain)
        return plain
