"""The server's own SDP: answers to publishers (and WHEP players), offers to subscribers.

Every Transport is ICE-lite with the Node's one host candidate, BUNDLE and rtcp-mux only (one port
cannot tell RTCP from RTP by port). Publishers' simulcast is accepted by answering `a=rid ... recv`
and `a=simulcast:recv`, without which Chromium sends only its lowest layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from . import codecs
from .codecs import RouterCodec, fmtp_string, match_codec
from .consumer import Consumer
from .dtls import FINGERPRINT_ALGORITHMS
from .producer import CodecSpec, Producer, ProducerSpec, StreamSpec
from .sdp import Codec, MediaSection, Rid, SdpError, SessionDescription, parse, serialize
from .transport import WebRtcTransport

MAX_SIMULCAST_LAYERS = 3


class NegotiationError(ValueError):
    """An SDP that parses but cannot be used: no supported codec, no fingerprint, no rtcp-mux..."""


@dataclass
class SubscriberSlot:
    """One m-section of a subscriber's offer: a Consumer, or an inactive leftover of one."""

    mid: str
    kind: str
    codec: RouterCodec | CodecSpec
    payload_type: int
    ssrc: int | None  # None: inactive
    stream_id: str = "-"
    track_id: str = "-"
    cname: str = "kelian"
    rtx_ssrc: int | None = None  # retransmissions as RFC 4588 RTX on this SSRC (video)
    # What the subscriber's own offer chose (a WHEP player), in place of the router's values: its RTX
    # payload type, extension ids, RTCP feedback and codec parameters. None: the router's.
    rtx_payload_type: int | None = None
    extmaps: dict[int, str] | None = None
    feedback: list[str] | None = None
    fmtp: dict[str, str] | None = None
    rtcp_rsize: bool = True  # reduced-size RTCP (RFC 5506): ours to offer, the player's to ask for
    rejected: bool = False  # offered with port 0, outside the BUNDLE group, so its place can be recycled


def parse_sdp(text: str) -> SessionDescription:
    try:
        return parse(text)
    except SdpError as exc:
        raise NegotiationError(f"malformed SDP: {exc}") from None


def _check_transport(desc: SessionDescription, transport: WebRtcTransport) -> list[MediaSection]:
    """Validate the transport attributes and hand the DTLS parameters to the Transport."""
    sections = [m for m in desc.media if desc.accepted(m) and m.is_rtp]
    if not sections:
        raise NegotiationError("SDP has no usable audio or video section")
    first = sections[0]
    for m in sections:
        if not m.ice_ufrag or not m.ice_pwd:
            raise NegotiationError(f"section {m.mid or m.kind} has no ICE credentials")
        if not m.fingerprints:
            raise NegotiationError(f"section {m.mid or m.kind} has no DTLS fingerprint")
        if not any(algorithm in FINGERPRINT_ALGORITHMS for algorithm, _ in m.fingerprints):
            offered = ", ".join(sorted({algorithm for algorithm, _ in m.fingerprints}))
            raise NegotiationError(
                f"section {m.mid or m.kind} has a DTLS fingerprint in {offered}; kelian checks"
                f" {', '.join(FINGERPRINT_ALGORITHMS)} (RFC 8122)"
            )
        if not m.rtcp_mux:
            raise NegotiationError(f"section {m.mid or m.kind} lacks a=rtcp-mux, which kelian requires")
        if m.mid is None:
            raise NegotiationError(f"{m.kind} section has no a=mid")
    transport.set_remote(first.fingerprints, first.setup)
    return sections


def _base_section(
    kind: str, mid: str | None, transport: WebRtcTransport, setup: str, port: int = 9
) -> MediaSection:
    node = transport.node
    return MediaSection(
        kind=kind,
        port=port,
        protocol="UDP/TLS/RTP/SAVPF",
        mid=mid,
        ice_ufrag=transport.ice_ufrag,
        ice_pwd=transport.ice_pwd,
        fingerprints=[("sha-256", node.certificate.fingerprint)],
        setup=setup,
        rtcp_mux=True,
        candidates=[node.candidate()],
        end_of_candidates=True,
    )


def _session(sections: list[MediaSection]) -> SessionDescription:
    version = int(time.time() * 1000) & 0x7FFFFFFF
    return SessionDescription(
        origin=f"kelian {version} {version} IN IP4 127.0.0.1",
        name="kelian",
        ice_lite=True,
        groups=[("BUNDLE", [m.mid for m in sections if m.mid is not None and m.port != 0])],
        msid_semantic="WMS *",
        media=sections,
    )


def _answer_setup(offer_setup: str | None) -> str:
    return "active" if offer_setup == "passive" else "passive"


def _rejected(m: MediaSection, accepted: bool, transport: WebRtcTransport, setup: str) -> MediaSection:
    """An answer section that carries nothing.

    An audio/video section the peer still offers stays in the BUNDLE group, merely inactive: Chromium
    refuses an answer whose first bundled section (the one carrying the transport) is rejected with
    port 0, which is what a browser offers after unpublishing its first track. Only sections the
    offer itself rejected, or that are not RTP (data channels), get port 0.
    """
    keep = m.port != 0 and m.kind in ("audio", "video")
    section = _base_section(m.kind, m.mid, transport, setup, port=9 if keep else 0)  # no mid: none
    section.protocol = m.protocol
    section.formats = list(m.formats[:1])
    section.codecs = list(m.codecs[:1])
    section.direction = "inactive"
    if not keep:
        section.candidates = []
        section.end_of_candidates = False
    if m.kind == "application":
        section.formats = list(m.formats)
    return section


def answer_publish(
    offer_text: str,
    transport: WebRtcTransport,
    sources: dict[str, str] | None = None,
    allowed_codecs: Collection[str] | None = None,
) -> tuple[str, list[ProducerSpec]]:
    """Answer a publisher's offer: one Producer per sending audio/video section we can forward.

    Each section gets the first codec of the offerer's own list that the router forwards and the
    room allows (``allowed_codecs``, None for all). The answer keeps the offerer's extension ids and
    only extensions it offered (RFC 8829 section 5.3.1): Chromium refuses any other answer.
    """
    offer = parse_sdp(offer_text)
    _check_transport(offer, transport)
    setup = _answer_setup(offer.media[0].setup if offer.media else None)
    offered_exts = {i: uri for m in offer.media for i, uri in m.extmaps.items()}
    transport.ext_ids = {uri: i for i, uri in offered_exts.items()}
    transport.ext_table = codecs.extension_table(offered_exts)
    sections: list[MediaSection] = []
    specs: list[ProducerSpec] = []
    refused: list[str] = []  # what the room's codec policy turned away, for the error
    for m in offer.media:
        accepted = offer.accepted(m)
        usable = m.is_rtp and accepted and m.direction in ("sendonly", "sendrecv")
        match = match_codec(m, allowed_codecs) if usable else None
        if match is None:
            if usable and allowed_codecs is not None and match_codec(m) is not None:
                refused.append(f"{m.kind} ({', '.join(_names(m))})")
            sections.append(_rejected(m, accepted, transport, setup))
            continue
        router_codec, codec = match
        rtx = next((c for c in m.codecs if c.name.lower() == "rtx" and c.apt == codec.payload_type), None)
        feedback = (
            [fb for fb in codec.rtcp_fb if fb in codecs.PUBLISHER_FEEDBACK] if m.kind == "video" else []
        )
        answer_codecs = [
            Codec(
                codec.payload_type, codec.name, codec.clock_rate, codec.channels, dict(codec.fmtp), feedback
            )
        ]
        if rtx is not None:
            answer_codecs.append(Codec(rtx.payload_type, rtx.name, rtx.clock_rate, None, dict(rtx.fmtp), []))
        section = _base_section(m.kind, m.mid or "", transport, setup)
        section.formats = [str(c.payload_type) for c in answer_codecs]
        section.codecs = answer_codecs
        section.direction = "recvonly"
        section.rtcp_rsize = m.rtcp_rsize
        section.extmaps = {i: uri for i, uri in m.extmaps.items() if uri in codecs.EXTENSION_IDS}
        rids = [r.id for r in m.rids if r.direction == "send"]
        layers = (m.simulcast_rids("send") or rids)[:MAX_SIMULCAST_LAYERS]
        if layers:
            section.rids = [Rid(rid, "recv") for rid in layers]
            section.simulcast = "recv " + ";".join(layers)
        sections.append(section)
        specs.append(
            ProducerSpec(
                kind=m.kind,
                mid=m.mid or "",
                codec=CodecSpec(
                    name=router_codec.name,
                    kind=m.kind,
                    payload_type=router_codec.payload_type,
                    clock_rate=router_codec.clock_rate,
                    channels=router_codec.channels,
                    fmtp=fmtp_string(codec.fmtp) if router_codec is codecs.H264 else router_codec.fmtp,
                    rtx_payload_type=router_codec.rtx_payload_type if rtx is not None else None,
                ),
                publisher_payload_type=codec.payload_type,
                publisher_rtx_payload_type=rtx.payload_type if rtx is not None else None,
                streams=_stream_specs(m, layers),
                feedback=frozenset(_feedback_names(codec.rtcp_fb)),
                source=(sources or {}).get(m.mid or "", "microphone" if m.kind == "audio" else "camera"),
                name=(m.msid or "").split(" ")[-1],
            )
        )
    if refused:
        raise NegotiationError(
            f"this room allows only {', '.join(allowed_codecs or [])}; the offer sends " + "; ".join(refused)
        )
    if not specs:
        raise NegotiationError(
            "the offer sends no audio or video in a codec kelian forwards"
            " (opus, VP8, H.264 packetization-mode 1)"
        )
    return serialize(_session(sections)), specs


def _names(m: MediaSection) -> list[str]:
    """The codecs a section offers, by name, once each and in order, leaving out repair formats."""
    skip = {"rtx", "red", "ulpfec", "flexfec-03", "cn", "telephone-event"}
    return list(dict.fromkeys(c.name for c in m.codecs if c.name.lower() not in skip))


def _stream_specs(m: MediaSection, rids: list[str]) -> list[StreamSpec]:
    if rids:
        return [StreamSpec(rid=rid) for rid in rids]
    fid = m.fid_map()
    sim = next((ssrcs for sem, ssrcs in m.ssrc_groups if sem == "SIM"), None)
    if sim:
        return [StreamSpec(ssrc=s, rtx_ssrc=fid.get(s)) for s in sim[:MAX_SIMULCAST_LAYERS]]
    repairs = set(fid.values())
    primary = [s for s in m.ssrcs if s not in repairs]
    if primary:
        return [StreamSpec(ssrc=primary[0], rtx_ssrc=fid.get(primary[0]))]
    return [StreamSpec()]


def _feedback_names(rtcp_fb: list[str]) -> set[str]:
    names = {"nack pli": "pli", "ccm fir": "fir", "nack": "nack", "goog-remb": "remb"}
    return {names[fb] for fb in rtcp_fb if fb in names}


def subscriber_section(slot: SubscriberSlot, transport: WebRtcTransport, setup: str) -> MediaSection:
    codec = slot.codec
    section = _base_section(slot.kind, slot.mid, transport, setup)
    fmtp = slot.fmtp
    if fmtp is None:
        fmtp = dict(part.split("=", 1) for part in codec.fmtp.split(";") if "=" in part)
    if slot.feedback is not None:
        feedback = list(slot.feedback)
    else:
        feedback = list(codecs.VIDEO_FEEDBACK) if slot.kind == "video" else list(codecs.AUDIO_FEEDBACK)
    section.codecs = [Codec(slot.payload_type, codec.name, codec.clock_rate, codec.channels, fmtp, feedback)]
    rtx_pt = None
    if slot.rtx_ssrc is not None:
        rtx_pt = slot.rtx_payload_type or codecs.RTX_PAYLOAD_TYPES.get(codec.name)
    if rtx_pt is not None:
        section.codecs.append(
            Codec(rtx_pt, "rtx", codec.clock_rate, None, {"apt": str(slot.payload_type)}, [])
        )
    section.formats = [str(c.payload_type) for c in section.codecs]
    if slot.extmaps is not None:
        section.extmaps = dict(slot.extmaps)
    else:
        section.extmaps = {codecs.SUBSCRIBER_IDS[uri]: uri for uri in codecs.SUBSCRIBER_EXTENSIONS[slot.kind]}
    section.rtcp_rsize = slot.rtcp_rsize
    if slot.ssrc is None:
        section.direction = "inactive"
        if slot.rejected:
            section.port, section.candidates, section.end_of_candidates = 0, [], False
        return section
    section.direction = "sendonly"
    section.msid = f"{slot.stream_id} {slot.track_id}"
    section.ssrcs = {slot.ssrc: {"cname": slot.cname, "msid": section.msid}}
    if rtx_pt is not None and slot.rtx_ssrc is not None:
        section.ssrcs[slot.rtx_ssrc] = {"cname": slot.cname, "msid": section.msid}
        section.ssrc_groups = [("FID", [slot.ssrc, slot.rtx_ssrc])]
    return section


def answered_transport_cc(answer: SessionDescription) -> bool:
    """Whether the subscriber will send transport-cc feedback (it kept the extension)."""
    return any(codecs.URI_TRANSPORT_CC in m.extmaps.values() for m in answer.media if m.port != 0)


def answered_rtx(answer: SessionDescription) -> set[str]:
    """Mids whose answer kept RTX: only those Consumers retransmit as RTX, the others plainly."""
    return {
        m.mid or "" for m in answer.media if m.port != 0 and any(c.name.lower() == "rtx" for c in m.codecs)
    }


def offer_subscribe(transport: WebRtcTransport, slots: list[SubscriberSlot]) -> str:
    """The server's offer for a subscriber Transport: one sendonly section per Consumer."""
    return serialize(_session([subscriber_section(s, transport, "actpass") for s in slots]))


def accept_answer(answer_text: str, transport: WebRtcTransport, mids: list[str]) -> SessionDescription:
    """Check a subscriber's answer to our offer and take its DTLS parameters."""
    answer = parse_sdp(answer_text)
    answered = [m.mid for m in answer.media]
    if answered != mids:
        raise NegotiationError(f"the answer's sections {answered} do not match the offer's {mids}")
    if any(m.setup not in ("active", "passive") for m in answer.media if m.port != 0):
        raise NegotiationError("the answer must say a=setup:active or a=setup:passive")
    if any(m.port != 0 for m in answer.media):
        _check_transport(answer, transport)
    return answer


def answered_codecs(answer: SessionDescription) -> dict[str, set[int]]:
    """Payload types each receiving section of a subscriber's answer kept, by mid.

    A browser that cannot decode a codec answers its section with port 0 (or without that payload
    type): the Consumer behind it must not send, and the subscriber is told why.
    """
    return {m.mid or "": {c.payload_type for c in m.codecs} for m in answer.media if answer.accepted(m)}


@dataclass
class _PlayerMatch:
    producer: Producer
    codec: Codec  # the player's entry for the producer's codec
    rtx: Codec | None  # the player's RTX for it, if it offered one


def answer_subscribe_offer(
    offer_text: str,
    transport: WebRtcTransport,
    producers: list[Producer],
    consume: Callable[[str, Producer], Consumer],
) -> str:
    """WHEP: answer a player's recvonly offer with the room's current tracks, one per section.

    The player chose the payload types, RTX, feedback and extension ids, and a browser refuses an
    answer that changes them: the answer takes the player's values, and each Consumer rewrites the
    router's extension ids into the player's (`Consumer.ext_table`). `consume(mid, producer)` creates
    the Consumer.
    """
    offer = parse_sdp(offer_text)
    _check_transport(offer, transport)
    setup = _answer_setup(offer.media[0].setup if offer.media else None)
    offered_ids = {i for m in offer.media for i in m.extmaps}
    available = list(producers)
    sections: list[MediaSection] = []
    for m in offer.media:
        accepted = offer.accepted(m)
        receiving = m.is_rtp and accepted and m.direction in ("recvonly", "sendrecv")
        match = _player_match(m, available) if receiving else None
        if match is None:
            sections.append(_rejected(m, accepted, transport, setup))
            continue
        producer = match.producer
        available.remove(producer)
        supported = codecs.VIDEO_FEEDBACK if m.kind == "video" else codecs.AUDIO_FEEDBACK
        extmaps = {i: uri for i, uri in m.extmaps.items() if uri in codecs.SUBSCRIBER_EXTENSIONS[m.kind]}
        feedback = [fb for fb in match.codec.rtcp_fb if fb in supported]
        if "transport-cc" not in feedback:  # both the extension and the feedback, or neither
            extmaps = {i: uri for i, uri in extmaps.items() if uri != codecs.URI_TRANSPORT_CC}
        consumer = consume(m.mid or "", producer)
        consumer.payload_type = match.codec.payload_type
        consumer.ext_table = codecs.output_table(extmaps, offered_ids)
        if match.rtx is not None:
            consumer.rtx_payload_type = match.rtx.payload_type
        if codecs.URI_TRANSPORT_CC in extmaps.values():
            transport.enable_transport_cc()
        slot = SubscriberSlot(
            mid=m.mid or "",
            kind=m.kind,
            codec=producer.codec,
            payload_type=match.codec.payload_type,
            ssrc=consumer.ssrc,
            stream_id=producer.transport.id,
            track_id=producer.id,
            rtx_ssrc=consumer.rtx_ssrc if match.rtx is not None else None,
            rtx_payload_type=match.rtx.payload_type if match.rtx is not None else None,
            extmaps=extmaps,
            feedback=feedback,
            fmtp=dict(match.codec.fmtp) if producer.codec.name == "H264" else None,
            rtcp_rsize=m.rtcp_rsize,
        )
        sections.append(subscriber_section(slot, transport, setup))
    if all(s.port == 0 or s.direction == "inactive" for s in sections):
        published = ", ".join(sorted({f"{p.kind} in {p.codec.name}" for p in producers}))
        raise NegotiationError(
            f"the offer can receive none of the tracks published in this room ({published});"
            " offer a recvonly section of their kind that lists their codec"
        )
    return serialize(_session(sections))


def _player_match(m: MediaSection, producers: list[Producer]) -> _PlayerMatch | None:
    """The first producer of this section's kind that the player can decode, with the player's codec.

    For H.264 the player's entry with the producer's profile is preferred, then any entry with
    packetization-mode 1: Chromium offers several profiles under different payload types, and its
    decoders take every profile kelian forwards.
    """
    for producer in producers:
        if producer.kind != m.kind:
            continue
        candidates = [c for c in m.codecs if codecs.router_codec(c, m.kind) is not None]
        candidates = [c for c in candidates if c.name.lower() == producer.codec.name.lower()]
        if not candidates:
            continue
        if producer.codec.name == "H264":
            profile = codecs.h264_profile(producer.codec.fmtp)
            candidates.sort(key=lambda c: codecs.h264_profile(c.fmtp) != profile)
        codec = candidates[0]
        rtx = None
        if m.kind == "video":
            rtx = next((c for c in m.codecs if c.name.lower() == "rtx" and c.apt == codec.payload_type), None)
        return _PlayerMatch(producer, codec, rtx)
    return None
