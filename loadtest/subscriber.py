"""What a light peer receives: its answers to the server's offers, and where each packet goes.

One Subscriber serves the subscriber connection. Each offer names, per section, the SSRC and the
track it carries; the answer accepts only what this peer really does, and each packet is handed to
the InStream of its SSRC. Every second the subscriber sends receiver reports (and REMB if asked
to); with transport-cc, every 100 ms the feedback the server estimates our link from. The tracks it
is told to `probe` are decoded too (loadtest.probe), from whenever their stream appears.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiortc import rtp as artp

from sfu import codecs
from sfu.rtp import SEQ_TS_SSRC
from sfu.sdp import Codec, MediaSection, SessionDescription, serialize

from .connection import Connection
from .instream import InStream
from .rtcp import sdes
from .sdp import local_section, main_codec, session
from .transport_cc import FeedbackSender

# header extensions a subscriber may accept: it reads none of them, and none obliges it to anything
ACCEPTED_EXTENSIONS = frozenset(
    {codecs.URI_AUDIO_LEVEL, codecs.URI_ABS_SEND_TIME, codecs.URI_VIDEO_ORIENTATION, codecs.URI_MID}
)
FEEDBACK = frozenset({"nack", "nack pli", "ccm fir"})  # what every light subscriber sends
MAX_REPORT_BLOCKS = 31  # RFC 3550: the report count is five bits


class Subscriber:
    """The receiving connection: answers the server's offers and counts what arrives.

    ``remb`` announces that many bit/s in a REMB each second; ``transport_cc`` keeps the transport-wide
    sequence extension when offered and sends its feedback (off: cheaper, and the server has no
    estimate of our link but the REMB). ``probing`` names the tracks to decode (see `probe`).
    """

    def __init__(
        self,
        connection: Connection,
        remb: int | None,
        transport_cc: bool = True,
        probing: set[str] | None = None,
    ) -> None:
        self.connection = connection
        self.ssrc = secrets.randbits(32) or 1  # ours, as the sender of RTCP
        self.streams: dict[int, InStream] = {}  # by media SSRC
        self.by_mid: dict[str, InStream] = {}
        self.remb = remb
        self.transport_cc = transport_cc
        self.twcc: FeedbackSender | None = None  # once an answer has taken transport-cc
        self.feedback = (
            FEEDBACK
            | ({"goog-remb"} if remb is not None else set())
            | ({"transport-cc"} if transport_cc else set())
        )
        self.extensions = ACCEPTED_EXTENSIONS | ({codecs.URI_TRANSPORT_CC} if transport_cc else set())
        self.unknown_ssrc = self.offers = 0
        self.sections = 0  # m-sections of the largest offer: what watching costs in signaling
        self.cname = secrets.token_hex(8)
        self.probing = set() if probing is None else probing  # track ids to decode, received yet or not

    def on_rtp(self, packet: bytes) -> None:
        """Every received packet, decrypted: noted for transport-cc, then counted by its track."""
        if self.twcc is not None:
            self.twcc.record(packet)
        seq, ts, ssrc = SEQ_TS_SSRC.unpack_from(packet, 2)
        stream = self.streams.get(ssrc)
        if stream is None:
            self.unknown_ssrc += 1
            return
        stream.receive(packet, seq, ts)

    def on_rtcp(self, packets: list[artp.AnyRtcpPacket]) -> None:
        """Sender reports the server relays: the NTP/RTP mapping each track's latency is measured by."""
        for p in packets:
            if isinstance(p, artp.RtcpSrPacket) and (stream := self.streams.get(p.ssrc)) is not None:
                stream.on_sender_report(p.sender_info.ntp_timestamp, p.sender_info.rtp_timestamp)

    def answer(self, offer: SessionDescription, tracks: dict[str, str]) -> str:
        """Our answer: every section received (recvonly; inactive stays inactive), same mids and order,
        with the server's payload type; and the streams to count, keyed by the SSRC each section names.

        Only what this peer really does is accepted: the main codec (no RTX, whose repair stream it
        would not understand), NACK, PLI and FIR (REMB if it sends one), transport-cc if it sends
        that feedback, and extensions it can ignore without harm. Accepting anything else would
        promise what this peer never does.
        """
        self.offers += 1
        self.sections = max(self.sections, len(offer.media))
        sections: list[MediaSection] = []
        for m in offer.media:
            codec = main_codec(m)
            direction = "recvonly" if m.direction in ("sendonly", "sendrecv") else "inactive"
            section = local_section(m.kind, m.mid, direction, self.connection, m.protocol, 9 if m.port else 0)
            section.formats = [str(codec.payload_type)] if codec is not None else list(m.formats[:1])
            section.extmaps = {i: uri for i, uri in m.extmaps.items() if uri in self.extensions}
            section.rtcp_rsize = m.rtcp_rsize
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
            sections.append(section)
            self._track(m, codec, tracks)
            if self.twcc is None and m.port:
                ext_id = next(
                    (i for i, uri in section.extmaps.items() if uri == codecs.URI_TRANSPORT_CC), None
                )
                if ext_id is not None:
                    self.twcc = FeedbackSender(self.ssrc, ext_id)
        return serialize(session(sections, secrets.randbits(62)))

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
            if old.probe is not None:
                old.probe.close()
        stream = InStream(
            track_id, mid, m.kind, codec.name, codec.clock_rate, ssrc, self.ssrc, self.connection.send_rtcp
        )
        self.streams[ssrc] = stream
        self.by_mid[mid] = stream
        if track_id in self.probing:
            stream.start_probe()

    def probe(self, track_id: str) -> None:
        """Decode this track, now if it arrives already, else as soon as it does."""
        self.probing.add(track_id)
        for stream in self.by_mid.values():
            if stream.track_id == track_id and not stream.ended:
                stream.start_probe()

    def close(self) -> None:
        """End the probes' decoder threads (the connection is the peer's to close)."""
        for stream in self.by_mid.values():
            if stream.probe is not None:
                stream.probe.close()

    def report(self) -> None:
        """Receiver reports (the server's loss and RTT figures) and, if asked for, a REMB."""
        if self.connection.srtp_tx is None:
            return
        blocks = [s.report_block() for s in self.streams.values() if s.packets]
        packets = [
            bytes(artp.RtcpRrPacket(ssrc=self.ssrc, reports=blocks[i : i + MAX_REPORT_BLOCKS]))
            for i in range(0, len(blocks), MAX_REPORT_BLOCKS)
        ] or [bytes(artp.RtcpRrPacket(ssrc=self.ssrc))]
        if self.remb is not None and self.streams:
            fci = artp.pack_remb_fci(self.remb, list(self.streams))
            packets.append(
                bytes(artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_APP, ssrc=self.ssrc, media_ssrc=0, fci=fci))
            )
        self.connection.send_rtcp(b"".join(packets) + sdes(self.ssrc, self.cname))

    def send_feedback(self) -> None:
        """transport-cc feedback about every packet since the last (FEEDBACK_INTERVAL), if we took it.

        The arrivals are taken even when they cannot be sent, so that they never pile up."""
        if self.twcc is None:
            return
        for message in self.twcc.feedback(next(iter(self.streams), 0)):
            self.connection.send_rtcp(message)

    def stats(self) -> dict[str, Any]:
        return {
            "connection": self.connection.stats(),
            "offers": self.offers,
            "sections": self.sections,
            "unknown_ssrc": self.unknown_ssrc,
            "transport_cc": None if self.twcc is None else self.twcc.stats(),
            "tracks": {s.track_id: s.stats() for s in self.by_mid.values()},
        }
