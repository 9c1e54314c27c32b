"""The RTCP a light peer writes itself: PLI, generic NACK and SDES.

aiortc's packet classes would do, but they build objects per message; these are a struct.pack each,
and they are what the receive path sends on every sequence gap. (Reading is aiortc's parser, in
connection.py: it knows every report and feedback type the server sends.)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

RTCP_SDES = 202
RTCP_RTPFB = 205
RTCP_PSFB = 206
SDES_CNAME = 1


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


def sdes(ssrc: int, cname: str) -> bytes:
    """RFC 3550 6.5 source description with one chunk holding our CNAME, as every compound ends."""
    item = bytes([SDES_CNAME, len(cname)]) + cname.encode()
    chunk = struct.pack("!I", ssrc) + item + bytes(4 - len(item) % 4)  # at least one null octet
    return struct.pack("!BBH", 0x81, RTCP_SDES, len(chunk) // 4) + chunk
