"""What a Router forwards: codecs, payload types and header-extension ids.

Publishers choose their own payload types and extension ids in their offers; the Producer maps them
to the router's (once per received packet), so every Consumer can be offered the same values.
The ids follow Chromium's defaults, so a Chromium publisher needs no remapping at all.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from .sdp import Codec, MediaSection


@dataclass(frozen=True)
class RouterCodec:
    name: str
    kind: str
    payload_type: int
    clock_rate: int
    channels: int | None
    fmtp: str
    rtx_payload_type: int | None


OPUS = RouterCodec("opus", "audio", 111, 48000, 2, "minptime=10;useinbandfec=1", None)
VP8 = RouterCodec("VP8", "video", 96, 90000, None, "", 97)
H264 = RouterCodec("H264", "video", 102, 90000, None, "level-asymmetry-allowed=1;packetization-mode=1", 103)
CODECS = (OPUS, VP8, H264)  # preference order within a kind
RTX_PAYLOAD_TYPES = {c.name: c.rtx_payload_type for c in CODECS if c.rtx_payload_type is not None}

# Feedback the SFU terminates: NACK (answered from the cache), PLI/FIR (throttled upstream), REMB.
VIDEO_FEEDBACK = ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
AUDIO_FEEDBACK: tuple[str, ...] = ("transport-cc",)
# Publishers get REMB from us, not transport-cc: we would have to send them transport-cc feedback.
PUBLISHER_FEEDBACK = ("goog-remb", "ccm fir", "nack", "nack pli")

URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_RRID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
URI_VIDEO_ORIENTATION = "urn:3gpp:video-orientation"

# uri -> router id, for what a publisher may send us
EXTENSION_IDS = {
    URI_AUDIO_LEVEL: 1,
    URI_ABS_SEND_TIME: 2,
    URI_MID: 4,
    URI_RID: 10,
    URI_RRID: 11,
    URI_VIDEO_ORIENTATION: 13,
}
# Transport-wide sequence numbers go to subscribers only: the server estimates their links (bwe.py).
# Publishers are not offered it, so no publisher packet carries this id.
URI_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
TRANSPORT_CC_ID = 3
# An id that no subscriber negotiates: elements we do not forward are renamed to it and ignored.
HIDDEN_EXTENSION_ID = 14
# What subscribers are offered, per kind (MID/RID describe the publisher's side, not theirs).
SUBSCRIBER_EXTENSIONS = {
    "audio": (URI_AUDIO_LEVEL, URI_TRANSPORT_CC),
    "video": (URI_ABS_SEND_TIME, URI_TRANSPORT_CC, URI_VIDEO_ORIENTATION),
}
SUBSCRIBER_IDS = EXTENSION_IDS | {URI_TRANSPORT_CC: TRANSPORT_CC_ID}


def fmtp_string(params: dict[str, str]) -> str:
    return ";".join(f"{k}={v}" if k else v for k, v in params.items())


def codec_names(kind: str | None = None) -> list[str]:
    """The codecs a Router forwards (of one kind), by their SDP names."""
    return [c.name for c in CODECS if kind is None or c.kind == kind]


def router_codec(codec: Codec, kind: str) -> RouterCodec | None:
    """The router codec an SDP codec entry is, or None if the router does not forward it.

    H.264 needs packetization-mode=1 (mode 0 sends one NAL per packet and is rare in WebRTC).
    """
    name = codec.name.lower()
    for candidate in CODECS:
        if (
            candidate.kind == kind
            and candidate.name.lower() == name
            and candidate.clock_rate == codec.clock_rate
        ):
            if candidate is H264 and codec.fmtp.get("packetization-mode") != "1":
                return None
            return candidate
    return None


def match_codec(
    section: MediaSection, allowed: Collection[str] | None = None
) -> tuple[RouterCodec, Codec] | None:
    """The codec the SFU takes from this offer section, and the offer's entry for it.

    The offerer lists its codecs in order of preference (RFC 8829 section 5.3.1, RFC 3264), so the
    first one the router forwards and the room allows (``allowed``: codec names, None for all) wins:
    an encoder that offers H.264 first sends H.264. The publisher's H.264 profile is kept and offered
    to subscribers as is.
    """
    wanted = None if allowed is None else {name.lower() for name in allowed}
    for codec in section.codecs:
        found = router_codec(codec, section.kind)
        if found is not None and (wanted is None or found.name.lower() in wanted):
            return found, codec
    return None


def h264_profile(fmtp: str | dict[str, str]) -> str:
    """profile_idc and profile-iop of an H.264 profile-level-id (RFC 6184), e.g. "42e0"; "" if absent.

    The level (the last byte) is left out: it limits a decoder's throughput, not what it can decode,
    and Chromium offers level-asymmetry-allowed.
    """
    params = (
        dict(part.split("=", 1) for part in fmtp.split(";") if "=" in part) if isinstance(fmtp, str) else fmtp
    )
    value = params.get("profile-level-id", "").lower()
    return value[:4] if len(value) == 6 else ""


def output_table(negotiated: dict[int, str], reserved: Collection[int]) -> bytes:
    """Router id -> a subscriber's own id, for a subscriber that chose the ids itself (a WHEP offer).

    RFC 8829 keeps the offerer's extension ids in the answer, so such a Consumer rewrites the router's
    ids in every packet it sends. Every other id, the router's extensions the subscriber did not take
    and whatever a publisher sent under ids the router ignores, goes to one id the subscriber never
    offered (none of ``reserved``, where possible), so the subscriber cannot misread it.
    """
    used = set(negotiated)
    spare = [i for i in range(1, 15) if i not in used and i not in reserved]
    spare = spare or [i for i in range(1, 15) if i not in used]
    table = bytearray([spare[0]] * 256)
    for ext_id, uri in negotiated.items():
        router_id = SUBSCRIBER_IDS.get(uri)
        if router_id is not None:
            table[router_id] = ext_id
    return bytes(table)


def extension_table(offered: dict[int, str]) -> bytes | None:
    """Publisher id -> router id, as a 256-byte table; None when no id needs rewriting.

    Only what subscribers read matters: known extensions move to the router's ids, and anything
    else sent under an id that subscribers negotiate is renamed to HIDDEN_EXTENSION_ID. Other
    unknown ids pass unchanged, since subscribers ignore ids they did not negotiate. Entry 0 is the
    fallback for ids that do not fit a one-byte header.
    """
    subscribed = {SUBSCRIBER_IDS[uri] for uris in SUBSCRIBER_EXTENSIONS.values() for uri in uris}
    table = bytearray(range(256))
    table[0] = HIDDEN_EXTENSION_ID
    for ext_id, uri in offered.items():
        router_id = EXTENSION_IDS.get(uri)
        if router_id is not None:
            table[ext_id] = router_id
        elif ext_id in subscribed:
            table[ext_id] = HIDDEN_EXTENSION_ID
    for ext_id in subscribed - offered.keys():  # undeclared, so not what subscribers would take it for
        table[ext_id] = HIDDEN_EXTENSION_ID
    return None if table[1:] == bytes(range(1, 256)) else bytes(table)
