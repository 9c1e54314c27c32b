"""What a light peer reads from the server's SDP and the transport lines it writes into its own.

The server's SDP is trusted for nothing: a description without the one host candidate, ICE
credentials or fingerprint that a kelian transport always has is refused as `bad_sdp`.
"""

from __future__ import annotations

from sfu.ice import Address
from sfu.sdp import Codec, MediaSection, SessionDescription
from signaling.channel import RequestError

from .connection import Connection

REPAIR_CODECS = ("rtx", "red", "ulpfec", "flexfec-03")


def main_codec(m: MediaSection) -> Codec | None:
    """The codec a section carries media in: the first that is not a repair or redundancy format."""
    return next((c for c in m.codecs if c.name.lower() not in REPAIR_CODECS), None)


def server_candidate(section: MediaSection) -> Address:
    """The address of the server's one host candidate ("foundation comp udp prio ADDR PORT typ host")."""
    for candidate in section.candidates:
        parts = candidate.split()
        if len(parts) >= 8 and parts[2].lower() == "udp" and parts[6] == "typ":
            return parts[4], int(parts[5])
    raise RequestError("bad_sdp", "the server's SDP has no UDP candidate")


def transport_section(desc: SessionDescription) -> MediaSection:
    """The first bundled section: it carries the transport's ICE, DTLS and candidate lines."""
    section = next((m for m in desc.media if m.port and m.is_rtp and m.candidates), None)
    if section is None or not section.ice_ufrag or not section.ice_pwd or not section.fingerprints:
        raise RequestError("bad_sdp", "the server's SDP lacks a candidate, ICE credentials or a fingerprint")
    return section


def local_section(
    kind: str,
    mid: str | None,
    direction: str,
    conn: Connection,
    protocol: str = "UDP/TLS/RTP/SAVPF",
    port: int = 9,
) -> MediaSection:
    """A section of ours on `conn`: we are the DTLS client (the server answers passive), RTCP is
    multiplexed, and a section in use carries our one host candidate; the caller adds codecs,
    extensions and the rest of what the section is about."""
    return MediaSection(
        kind=kind,
        port=port,
        protocol=protocol,
        mid=mid,
        direction=direction,
        ice_ufrag=conn.ufrag,
        ice_pwd=conn.pwd,
        fingerprints=[("sha-256", conn.certificate.fingerprint)],
        setup="active",
        rtcp_mux=True,
        candidates=[conn.candidate()] if port and "RTP/" in protocol else [],
    )


def session(
    sections: list[MediaSection], origin: int, msid_semantic: str | None = None
) -> SessionDescription:
    """Our description: the sections bundled on one transport, as the server requires."""
    return SessionDescription(
        origin=f"- {origin} 2 IN IP4 127.0.0.1",
        name="-",
        groups=[("BUNDLE", [m.mid for m in sections if m.port and m.mid is not None])],
        msid_semantic=msid_semantic,
        media=sections,
    )
