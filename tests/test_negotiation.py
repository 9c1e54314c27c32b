"""Unit tests for sfu.negotiation (the server's answers and offers) and codecs.extension_table.

A fake Transport carries exactly what negotiation.py reads and writes; one test runs the same
answer through a real, unstarted Node's Transport to show the fake does not hide anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from test_sdp import CHROME_FP, CHROME_OFFER, CHROME_VIDEO_FB, FIREFOX_OFFER, OBS_OFFER, RID_URI, RRID_URI

from sfu import codecs
from sfu.codecs import HIDDEN_EXTENSION_ID, URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID
from sfu.codecs import URI_VIDEO_ORIENTATION as URI_ORIENTATION
from sfu.consumer import Consumer
from sfu.negotiation import (
    NegotiationError,
    SubscriberSlot,
    accept_answer,
    answer_publish,
    answer_subscribe_offer,
    answered_codecs,
    answered_rtx,
    offer_subscribe,
)
from sfu.node import Node
from sfu.producer import CodecSpec, Producer, ProducerSpec, StreamSpec
from sfu.sdp import Rid, SessionDescription, parse, serialize
from sfu.transport import MAX_ADDRESSES

SERVER_FP = ":".join(["5A"] * 32)
CANDIDATE = "1 1 udp 2130706431 192.0.2.10 8701 typ host"
TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

# What aiortc 1.x offers (addresses replaced by documentation ones): opus and VP8 under its own
# payload types, a=ssrc with an FID group for RTX, mid on id 1 and abs-send-time on id 3.
AIORTC_FP = "34:B1:46:71:84:E6:66:72:C1:3D:D3:60:BA:37:CE:FA:60:D5:F7:51:CF:9C:71:B8:99:26:76:97:30:5E:2F:81"
AIORTC_OFFER = f"""v=0
o=- 4004551536 4004551536 IN IP4 0.0.0.0
s=-
t=0 0
a=group:BUNDLE 0 1
a=msid-semantic:WMS *
m=audio 46578 UDP/TLS/RTP/SAVPF 96 9 0 8
c=IN IP4 192.0.2.2
a=sendrecv
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=mid:0
a=msid:8aed9c60-8c20-4b40-aca3-30e52a82e9b4 feeae23a-2018-4976-98d4-1cc6c4c0c234
a=rtcp:9 IN IP4 0.0.0.0
a=rtcp-mux
a=ssrc:90425664 cname:b5591167-9be4-405a-9ccf-0c263d40f572
a=rtpmap:96 opus/48000/2
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=candidate:f957a2332b1715da3b0ef8ba684454eb 1 udp 2130706431 192.0.2.2 46578 typ host
a=end-of-candidates
a=ice-ufrag:CBBv
a=ice-pwd:sDNDrx6GyWTulc2ik2LysU
a=fingerprint:sha-256 {AIORTC_FP}
a=setup:actpass
m=video 42987 UDP/TLS/RTP/SAVPF 97 98 99 100
c=IN IP4 192.0.2.2
a=sendrecv
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=mid:1
a=msid:8aed9c60-8c20-4b40-aca3-30e52a82e9b4 be8364a4-d76c-4ac2-afaf-33f4229a991f
a=rtcp:9 IN IP4 0.0.0.0
a=rtcp-mux
a=ssrc-group:FID 3991049345 3824283221
a=ssrc:3991049345 cname:b5591167-9be4-405a-9ccf-0c263d40f572
a=ssrc:3824283221 cname:b5591167-9be4-405a-9ccf-0c263d40f572
a=rtpmap:97 VP8/90000
a=rtcp-fb:97 nack
a=rtcp-fb:97 nack pli
a=rtcp-fb:97 goog-remb
a=rtpmap:98 rtx/90000
a=fmtp:98 apt=97
a=rtpmap:99 H264/90000
a=rtcp-fb:99 nack
a=rtcp-fb:99 nack pli
a=rtcp-fb:99 goog-remb
a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:100 rtx/90000
a=fmtp:100 apt=99
a=candidate:f957a2332b1715da3b0ef8ba684454eb 1 udp 2130706431 192.0.2.2 42987 typ host
a=end-of-candidates
a=ice-ufrag:CBBv
a=ice-pwd:sDNDrx6GyWTulc2ik2LysU
a=fingerprint:sha-256 {AIORTC_FP}
a=setup:actpass
""".replace("\n", "\r\n")

VIDEO_HEAD = f"""v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
m=video 9 UDP/TLS/RTP/SAVPF {{pts}}
c=IN IP4 0.0.0.0
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 {CHROME_FP}
a=setup:actpass
a=mid:0
a=sendonly
a=rtcp-mux
"""


def video_offer(pts: str, body: str) -> str:
    return (VIDEO_HEAD.format(pts=pts) + body).replace("\n", "\r\n")


@dataclass
class FakeNode:
    certificate_fingerprint: str = SERVER_FP

    @property
    def certificate(self) -> FakeNode:
        return self

    @property
    def fingerprint(self) -> str:
        return self.certificate_fingerprint

    def candidate(self) -> str:
        return CANDIDATE


@dataclass
class FakeTransport:
    """The attributes of WebRtcTransport that negotiation.py touches."""

    node: FakeNode = field(default_factory=FakeNode)
    ice_ufrag: str = "sfuU"
    ice_pwd: str = "sfu-password-0123456789ab"
    ext_ids: dict[str, int] = field(default_factory=dict)
    ext_table: bytes | None = None
    sender: None = None  # no compiled Sender: its Consumers would send through Python
    remote: list[tuple[list[tuple[str, str]], str | None]] = field(default_factory=list)

    def set_remote(self, fingerprints: list[tuple[str, str]], setup: str | None) -> None:
        self.remote.append((fingerprints, setup))


def publish(offer: str) -> tuple[str, SessionDescription, list[ProducerSpec], FakeTransport]:
    transport = FakeTransport()
    text, specs = answer_publish(offer, transport)  # type: ignore[arg-type]
    return text, parse(text), specs, transport


def drop_lines(text: str, pattern: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not re.match(pattern, line))


# --- answer_publish: Chromium simulcast ---------------------------------------------------------


def test_chrome_simulcast_answer_lines() -> None:
    text, _, _, _ = publish(CHROME_OFFER)
    lines = text.split("\r\n")
    for expected in (
        "a=ice-lite",
        "a=rid:q recv",
        "a=rid:h recv",
        "a=rid:f recv",
        "a=simulcast:recv q;h;f",
        "a=setup:passive",
        "a=recvonly",
        f"a=candidate:{CANDIDATE}",
        f"a=fingerprint:sha-256 {SERVER_FP}",
        "a=ice-ufrag:sfuU",
        "a=ice-pwd:sfu-password-0123456789ab",
    ):
        assert expected in lines, expected
    assert "a=setup:active" not in lines and "a=sendonly" not in lines and "a=sendrecv" not in lines
    assert text.endswith("\r\n")


def test_chrome_simulcast_answer_structure() -> None:
    _, answer, _, transport = publish(CHROME_OFFER)
    assert answer.ice_lite
    assert answer.groups == [("BUNDLE", ["0", "1"])]  # the rejected data channel is not bundled
    audio, video, data = answer.media
    assert [m.mid for m in answer.media] == ["0", "1", "2"]
    for m in (audio, video):
        assert m.port == 9 and m.direction == "recvonly" and m.setup == "passive"
        assert m.candidates == [CANDIDATE] and m.end_of_candidates
        assert m.rtcp_mux and m.fingerprints == [("sha-256", SERVER_FP)]
        assert (m.ice_ufrag, m.ice_pwd) == (transport.ice_ufrag, transport.ice_pwd)
    assert video.rids == [Rid("q", "recv"), Rid("h", "recv"), Rid("f", "recv")]
    assert video.simulcast == "recv q;h;f" and video.rtcp_rsize
    # the offer's own ids for what the SFU reads (mid, rid, repaired-rid) and forwards
    assert video.extmaps == {
        2: URI_ABS_SEND_TIME,
        13: URI_ORIENTATION,
        4: URI_MID,
        10: RID_URI,
        11: RRID_URI,
    }
    assert audio.extmaps == {1: URI_AUDIO_LEVEL, 2: URI_ABS_SEND_TIME, 4: URI_MID}
    assert TWCC_URI not in video.extmaps.values()
    # one codec (+ its RTX) per section, with the feedback the SFU terminates
    assert [(c.payload_type, c.name) for c in video.codecs] == [(96, "VP8"), (97, "rtx")]
    assert video.codecs[0].rtcp_fb == ["goog-remb", "ccm fir", "nack", "nack pli"]
    assert video.codecs[1].fmtp == {"apt": "96"} and video.formats == ["96", "97"]
    assert [(c.payload_type, c.name) for c in audio.codecs] == [(111, "opus")]
    assert audio.codecs[0].fmtp == {"minptime": "10", "useinbandfec": "1"}
    assert audio.codecs[0].rtcp_fb == [] and audio.rids == [] and audio.simulcast is None
    # the data channel is refused: port 0, inactive, no candidates
    assert (data.kind, data.port, data.direction) == ("application", 0, "inactive")
    assert data.candidates == [] and data.formats == ["webrtc-datachannel"]


def test_chrome_simulcast_producer_specs() -> None:
    _, _, specs, transport = publish(CHROME_OFFER)
    audio, video = specs
    assert video.kind == "video" and video.mid == "1"
    assert video.streams == [StreamSpec(rid="q"), StreamSpec(rid="h"), StreamSpec(rid="f")]
    assert video.codec == CodecSpec("VP8", "video", 96, 90000, None, "", 97)
    assert (video.publisher_payload_type, video.publisher_rtx_payload_type) == (96, 97)
    assert video.feedback == frozenset({"remb", "fir", "nack", "pli"})
    assert video.source == "camera" and video.name == "7e8f9a0b-1c2d-4e3f-8a4b-5c6d7e8f9a0b"
    assert audio.kind == "audio" and audio.mid == "0" and audio.source == "microphone"
    assert audio.codec == CodecSpec("opus", "audio", 111, 48000, 2, "minptime=10;useinbandfec=1", None)
    assert audio.streams == [StreamSpec()]  # no a=ssrc, no rid: learnt from the MID extension
    assert audio.feedback == frozenset()
    # DTLS parameters and extension ids handed to the Transport
    assert transport.remote == [([("sha-256", CHROME_FP)], "actpass")]
    assert transport.ext_ids[URI_MID] == 4 and transport.ext_ids[RID_URI] == 10
    assert transport.ext_ids[RRID_URI] == 11 and transport.ext_ids[TWCC_URI] == 3


def test_chrome_publisher_ids_are_kept_but_its_transport_cc_is_hidden() -> None:
    """Chromium's ids are the router's, except its transport-cc on 3: that id carries the server's
    own transport-wide numbers to subscribers, so whatever a publisher sends there is hidden."""
    _, _, _, transport = publish(CHROME_OFFER)
    table = transport.ext_table
    assert table is not None and table[3] == HIDDEN_EXTENSION_ID
    assert all(table[i] == i for i in (1, 2, 4, 10, 11, 13))


def test_sources_override_the_default_per_mid() -> None:
    transport = FakeTransport()
    _, specs = answer_publish(CHROME_OFFER, transport, {"1": "screen"})  # type: ignore[arg-type]
    assert [s.source for s in specs] == ["microphone", "screen"]


# --- answer_publish: other publishers -------------------------------------------------------------


def test_aiortc_offer_ssrc_and_rtx_ssrc() -> None:
    _, answer, specs, transport = publish(AIORTC_OFFER)
    audio, video = specs
    assert video.streams == [StreamSpec(rid=None, ssrc=3991049345, rtx_ssrc=3824283221)]
    assert audio.streams == [StreamSpec(ssrc=90425664)]
    # aiortc's payload types are its own; the router's are offered to subscribers
    assert (video.publisher_payload_type, video.publisher_rtx_payload_type) == (97, 98)
    assert (video.codec.payload_type, video.codec.rtx_payload_type) == (96, 97)
    assert (audio.publisher_payload_type, audio.codec.payload_type) == (96, 111)
    assert video.feedback == frozenset({"nack", "pli", "remb"})
    # the answer keeps the publisher's payload types and sendrecv becomes recvonly
    assert [(c.payload_type, c.name) for c in answer.media[1].codecs] == [(97, "VP8"), (98, "rtx")]
    assert [m.direction for m in answer.media] == ["recvonly", "recvonly"]
    assert answer.media[1].rids == [] and answer.media[1].simulcast is None
    assert transport.remote == [([("sha-256", AIORTC_FP)], "actpass")]
    assert transport.ext_table is not None and transport.ext_table[1] == 4  # its mid id -> ours


def test_obs_h264_keeps_the_publishers_profile() -> None:
    _, answer, specs, _ = publish(OBS_OFFER)
    audio, video = specs
    assert video.codec.name == "H264" and video.codec.payload_type == 102
    assert video.codec.fmtp == "profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1"
    assert video.codec.rtx_payload_type is None and video.publisher_rtx_payload_type is None
    assert video.publisher_payload_type == 96
    assert video.streams == [StreamSpec(ssrc=1735328186)]
    assert audio.streams == [StreamSpec(ssrc=1735328185)] and audio.name == "obs-audio"
    assert answer.media[1].codecs[0].fmtp["profile-level-id"] == "42e01f"


def test_firefox_simulcast_uses_rids() -> None:
    _, answer, specs, _ = publish(FIREFOX_OFFER)
    video = specs[1]
    assert [s.rid for s in video.streams] == ["q", "h", "f"]
    assert (video.publisher_payload_type, video.publisher_rtx_payload_type) == (120, 124)
    assert answer.media[1].simulcast == "recv q;h;f"
    assert answer.media[1].extmaps == {3: URI_MID, 4: URI_ABS_SEND_TIME, 8: RID_URI, 9: RRID_URI}


def test_more_than_three_layers_are_cut() -> None:
    offer = CHROME_OFFER.replace("a=rid:f send\r\n", "a=rid:f send\r\na=rid:x send\r\n").replace(
        "a=simulcast:send q;h;f", "a=simulcast:send q;h;f;x"
    )
    text, answer, specs, _ = publish(offer)
    assert [s.rid for s in specs[1].streams] == ["q", "h", "f"]
    assert answer.media[1].simulcast == "recv q;h;f" and "a=rid:x recv" not in text


# --- codec choice -----------------------------------------------------------------------------------

H264_PM1 = """a=rtpmap:102 H264/90000
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
"""
H264_PM0 = """a=rtpmap:104 H264/90000
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f
"""
VP8_LINES = """a=rtpmap:120 VP8/90000
a=rtcp-fb:120 nack
a=rtpmap:121 rtx/90000
a=fmtp:121 apt=120
"""


def test_the_offerers_first_codec_wins() -> None:
    """RFC 8829: the offer lists codecs in the offerer's order of preference; an encoder that puts
    H.264 first publishes H.264."""
    _, answer, specs, _ = publish(video_offer("102 103 120 121", H264_PM1 + VP8_LINES))
    (spec,) = specs
    assert spec.codec.name == "H264" and spec.publisher_payload_type == 102
    assert answer.media[0].formats == ["102", "103"]
    _, answer, specs, _ = publish(video_offer("120 121 102 103", VP8_LINES + H264_PM1))
    (spec,) = specs
    assert spec.codec.name == "VP8" and spec.publisher_payload_type == 120
    assert spec.publisher_rtx_payload_type == 121 and spec.feedback == frozenset({"nack"})
    assert answer.media[0].formats == ["120", "121"]


def test_the_rooms_codec_policy_narrows_the_choice() -> None:
    offer = video_offer("102 103 120 121", H264_PM1 + VP8_LINES)
    text, specs = answer_publish(offer, FakeTransport(), allowed_codecs=("VP8", "opus"))  # type: ignore[arg-type]
    assert specs[0].codec.name == "VP8" and parse(text).media[0].formats == ["120", "121"]
    with pytest.raises(
        NegotiationError, match=r"this room allows only H264, opus; the offer sends video \(VP8\)"
    ):
        answer_publish(video_offer("120 121", VP8_LINES), FakeTransport(), allowed_codecs=("H264", "opus"))  # type: ignore[arg-type]


def test_h264_alone_is_accepted() -> None:
    _, answer, specs, _ = publish(video_offer("102 103", H264_PM1))
    assert specs[0].codec.name == "H264" and answer.media[0].formats == ["102", "103"]


def test_h264_packetization_mode_0_is_skipped_for_mode_1() -> None:
    _, answer, specs, _ = publish(video_offer("104 102 103", H264_PM0 + H264_PM1))
    assert specs[0].publisher_payload_type == 102 and answer.media[0].formats == ["102", "103"]


def test_h264_packetization_mode_0_alone_is_refused() -> None:
    with pytest.raises(NegotiationError, match=r"H\.264 packetization-mode 1"):
        publish(video_offer("104", H264_PM0))


def test_h264_without_packetization_mode_is_refused() -> None:
    offer = video_offer("97", "a=rtpmap:97 H264/90000\na=fmtp:97 profile-level-id=42e01f\n")
    with pytest.raises(NegotiationError, match="no audio or video in a codec kelian forwards"):
        publish(offer)


def test_unsupported_codecs_are_rejected_per_section() -> None:
    offer = CHROME_OFFER.replace(
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "m=audio 9 UDP/TLS/RTP/SAVPF 9 0 8"
    )
    _, answer, specs, _ = publish(offer)
    assert [s.kind for s in specs] == ["video"]
    audio = answer.media[0]
    # inactive but still bundled: the first section carries the transport for the others
    assert (audio.port, audio.direction, audio.formats) == (9, "inactive", ["9"])
    assert audio.rtcp_mux and audio.candidates
    assert answer.groups == [("BUNDLE", ["0", "1"])]


def test_an_unpublished_first_section_stays_in_the_bundle() -> None:
    # what Chromium offers after its first track (here the microphone) was unpublished
    offer = CHROME_OFFER.replace("a=sendonly", "a=inactive", 1)
    _, answer, specs, _ = publish(offer)
    assert [s.kind for s in specs] == ["video"]
    assert (answer.media[0].port, answer.media[0].direction) == (9, "inactive")
    assert answer.groups == [("BUNDLE", ["0", "1"])]


def test_recvonly_offer_is_refused() -> None:
    offer = CHROME_OFFER.replace("a=sendonly", "a=recvonly")
    with pytest.raises(NegotiationError, match="sends no audio or video"):
        publish(offer)


# --- DTLS role --------------------------------------------------------------------------------------


def test_passive_offer_gets_an_active_answer() -> None:
    text, answer, _, transport = publish(CHROME_OFFER.replace("a=setup:actpass", "a=setup:passive"))
    assert {m.setup for m in answer.media} == {"active"}
    assert "a=setup:active" in text.split("\r\n")
    assert transport.remote == [([("sha-256", CHROME_FP)], "passive")]  # we are the DTLS client


def test_active_offer_gets_a_passive_answer() -> None:
    _, answer, _, transport = publish(CHROME_OFFER.replace("a=setup:actpass", "a=setup:active"))
    assert {m.setup for m in answer.media} == {"passive"}
    assert transport.remote[0][1] == "active"


# --- transport errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"a=fingerprint:", "section 0 has no DTLS fingerprint"),
        (r"a=rtcp-mux", "section 0 lacks a=rtcp-mux, which kelian requires"),
        (r"a=ice-(ufrag|pwd):", "section 0 has no ICE credentials"),
        (r"a=ice-pwd:", "section 0 has no ICE credentials"),
        (r"a=mid:", "audio section has no a=mid"),
    ],
)
def test_missing_transport_attributes(pattern: str, message: str) -> None:
    with pytest.raises(NegotiationError, match=f"^{re.escape(message)}$"):
        publish(drop_lines(CHROME_OFFER, pattern))


def test_missing_attribute_in_a_later_section_is_named() -> None:
    offer = CHROME_OFFER.replace("a=rtcp-mux\r\na=rtcp-rsize", "a=rtcp-rsize")  # video only
    assert offer.count("a=rtcp-mux") == 1
    with pytest.raises(NegotiationError, match="section 1 lacks a=rtcp-mux"):
        publish(offer)


def test_rejected_offers_leave_the_transport_alone() -> None:
    transport = FakeTransport()
    with pytest.raises(NegotiationError):
        answer_publish(drop_lines(CHROME_OFFER, r"a=fingerprint:"), transport)  # type: ignore[arg-type]
    assert transport.remote == [] and transport.ext_ids == {} and transport.ext_table is None


DATA_ONLY_OFFER = CHROME_OFFER.split("m=audio")[0] + "m=application" + CHROME_OFFER.split("m=application")[1]


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ("not sdp", "malformed SDP"),
        ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", "no usable audio or video section"),
        (DATA_ONLY_OFFER, "no usable audio or video section"),
    ],
)
def test_offers_without_media(offer: str, message: str) -> None:
    with pytest.raises(NegotiationError, match=message):
        publish(offer)


# --- a real Transport ----------------------------------------------------------------------------------


def test_answer_through_a_real_unstarted_node() -> None:
    node = Node(host="127.0.0.1", port=40000, announced_address="192.0.2.44")
    transport = node.create_transport()
    text, specs = answer_publish(CHROME_OFFER, transport)
    answer = parse(text)
    video = answer.media[1]
    assert video.fingerprints == [("sha-256", node.certificate.fingerprint)]
    assert (video.ice_ufrag, video.ice_pwd) == (transport.ice_ufrag, transport.ice_pwd)
    assert video.candidates == ["1 1 udp 2130706431 192.0.2.44 40000 typ host"]
    assert transport.dtls.remote_fingerprints == [("sha-256", CHROME_FP)]
    assert transport.dtls_role == "server"
    assert transport.ext_ids[RID_URI] == 10 and [s.rid for s in specs[1].streams] == ["q", "h", "f"]


# --- offer_subscribe / accept_answer ---------------------------------------------------------------------

H264_SPEC = CodecSpec(
    "H264", "video", 102, 90000, None, "level-asymmetry-allowed=1;packetization-mode=1", 103
)


def subscriber_slots() -> list[SubscriberSlot]:
    return [
        SubscriberSlot("0", "audio", codecs.OPUS, 111, 1111, "PA_1", "TR_1", "kelian-PA_9"),
        SubscriberSlot("1", "video", codecs.VP8, 96, 2222, "PA_1", "TR_2", "kelian-PA_9"),
        SubscriberSlot("2", "video", H264_SPEC, 102, 3333, "PA_2", "TR_3"),
        SubscriberSlot("3", "video", codecs.VP8, 96, None),  # a Consumer that went away
    ]


def test_offer_subscribe_lines() -> None:
    lines = offer_subscribe(FakeTransport(), subscriber_slots()).split("\r\n")  # type: ignore[arg-type]
    for expected in (
        "a=ice-lite",
        "a=group:BUNDLE 0 1 2 3",
        "a=ssrc:1111 cname:kelian-PA_9",
        "a=ssrc:1111 msid:PA_1 TR_1",
        "a=msid:PA_1 TR_1",
        "a=ssrc:2222 msid:PA_1 TR_2",
        "a=msid:PA_2 TR_3",
        "a=ssrc:3333 cname:kelian",
        "a=rtpmap:111 opus/48000/2",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:102 H264/90000",
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1",
        "a=setup:actpass",
        "a=inactive",
    ):
        assert expected in lines, expected
    assert lines.count("a=sendonly") == 3 and lines.count("a=inactive") == 1


def test_offer_subscribe_offers_rtx_for_video_and_reads_the_answer() -> None:
    slot = SubscriberSlot("0", "video", codecs.VP8, 96, 2222, "PA_1", "TR_2", rtx_ssrc=4444)
    offer = parse(offer_subscribe(FakeTransport(), [slot]))  # type: ignore[arg-type]
    (video,) = offer.media
    assert video.formats == ["96", "97"] and video.codecs[1].fmtp == {"apt": "96"}
    assert video.ssrc_groups == [("FID", [2222, 4444])] and set(video.ssrcs) == {2222, 4444}
    answer = offer_subscribe(FakeTransport(), [slot]).replace("a=sendonly", "a=recvonly")
    assert answered_rtx(parse(answer)) == {"0"}
    without = answer.replace(" 96 97", " 96").replace("a=rtpmap:97 rtx/90000\r\n", "")
    without = without.replace("a=fmtp:97 apt=96\r\n", "")
    assert answered_rtx(parse(without)) == set()


def test_offer_subscribe_structure() -> None:
    transport = FakeTransport()
    offer = parse(offer_subscribe(transport, subscriber_slots()))  # type: ignore[arg-type]
    assert offer.ice_lite and offer.msid_semantic == "WMS *"
    audio, vp8, h264, gone = offer.media
    for m in offer.media:
        assert m.port == 9 and m.setup == "actpass" and m.rtcp_mux and m.rtcp_rsize
        assert m.candidates == [CANDIDATE] and m.fingerprints == [("sha-256", SERVER_FP)]
        assert (m.ice_ufrag, m.ice_pwd) == (transport.ice_ufrag, transport.ice_pwd)
    assert [m.direction for m in offer.media] == ["sendonly", "sendonly", "sendonly", "inactive"]
    assert audio.formats == ["111"] and audio.codecs[0].fmtp == {"minptime": "10", "useinbandfec": "1"}
    assert audio.codecs[0].channels == 2 and audio.codecs[0].rtcp_fb == ["transport-cc"]
    assert audio.extmaps == {1: URI_AUDIO_LEVEL, 3: TWCC_URI}
    assert vp8.formats == ["96"] and vp8.codecs[0].rtcp_fb == list(codecs.VIDEO_FEEDBACK)
    assert "transport-cc" in vp8.codecs[0].rtcp_fb
    assert vp8.extmaps == {2: URI_ABS_SEND_TIME, 3: TWCC_URI, 13: URI_ORIENTATION}
    assert vp8.ssrcs == {2222: {"cname": "kelian-PA_9", "msid": "PA_1 TR_2"}}
    assert h264.codecs[0].fmtp == {"level-asymmetry-allowed": "1", "packetization-mode": "1"}
    assert h264.msid == "PA_2 TR_3" and list(h264.ssrcs) == [3333]
    assert gone.ssrcs == {} and gone.msid is None and gone.formats == ["96"]


def subscriber_answer(offer_text: str, setup: str = "active", mids: list[str] | None = None) -> str:
    """What a browser answers to our offer: recvonly, its own ICE/DTLS parameters."""
    desc = parse(offer_text)
    desc.ice_lite = False
    for i, m in enumerate(desc.media):
        m.direction = "recvonly" if m.direction == "sendonly" else m.direction
        m.setup = setup
        m.ice_ufrag, m.ice_pwd = "brws", "browser-password-0123456"
        m.fingerprints = [("sha-256", CHROME_FP)]
        m.candidates, m.end_of_candidates = [], False
        m.ssrcs, m.msid = {}, None
        if mids is not None:
            m.mid = mids[i]
    return serialize(desc)


def test_accept_answer() -> None:
    transport = FakeTransport()
    offer = offer_subscribe(transport, subscriber_slots())  # type: ignore[arg-type]
    answer = accept_answer(subscriber_answer(offer), transport, ["0", "1", "2", "3"])  # type: ignore[arg-type]
    assert [m.direction for m in answer.media] == ["recvonly"] * 3 + ["inactive"]
    assert transport.remote == [([("sha-256", CHROME_FP)], "active")]


@pytest.mark.parametrize("mids", [["0", "1", "2", "4"], ["1", "0", "2", "3"], ["a", "b", "c", "d"]], ids=str)
def test_accept_answer_rejects_other_mids(mids: list[str]) -> None:
    transport = FakeTransport()
    offer = offer_subscribe(transport, subscriber_slots())  # type: ignore[arg-type]
    with pytest.raises(NegotiationError, match="do not match the offer's"):
        accept_answer(subscriber_answer(offer, mids=mids), transport, ["0", "1", "2", "3"])  # type: ignore[arg-type]
    assert transport.remote == []


def test_accept_answer_rejects_missing_sections() -> None:
    transport = FakeTransport()
    offer = offer_subscribe(transport, subscriber_slots()[:2])  # type: ignore[arg-type]
    with pytest.raises(NegotiationError, match=r"\['0', '1'\] do not match the offer's \['0', '1', '2'\]"):
        accept_answer(subscriber_answer(offer), transport, ["0", "1", "2"])  # type: ignore[arg-type]


def test_accept_answer_requires_a_dtls_role() -> None:
    transport = FakeTransport()
    offer = offer_subscribe(transport, subscriber_slots())  # type: ignore[arg-type]
    with pytest.raises(NegotiationError, match="a=setup:active or a=setup:passive"):
        accept_answer(subscriber_answer(offer, setup="actpass"), transport, ["0", "1", "2", "3"])  # type: ignore[arg-type]


# --- codecs.extension_table ----------------------------------------------------------------------------

CHROMIUM_KNOWN_IDS = {
    1: URI_AUDIO_LEVEL,
    2: URI_ABS_SEND_TIME,
    4: URI_MID,
    10: RID_URI,
    11: RRID_URI,
    13: URI_ORIENTATION,
}


def test_extension_table_with_router_ids_only_hides_the_transport_cc_id() -> None:
    for offered in (CHROMIUM_KNOWN_IDS, {i: uri for uri, i in codecs.EXTENSION_IDS.items()}):
        table = codecs.extension_table(offered)
        assert table is not None and table[codecs.TRANSPORT_CC_ID] == HIDDEN_EXTENSION_ID
        assert all(table[i] == i for i in set(range(1, 256)) - {codecs.TRANSPORT_CC_ID})


def test_extension_table_hides_router_ids_the_publisher_did_not_offer() -> None:
    # ids 1, 2 and 13 are what subscribers read; a publisher that did not negotiate them has no
    # business sending them, so anything arriving there is hidden
    table = codecs.extension_table({4: URI_MID, 10: RID_URI})
    assert table is not None
    assert (table[1], table[2], table[3], table[13]) == (HIDDEN_EXTENSION_ID,) * 4
    assert all(table[i] == i for i in set(range(1, 256)) - {1, 2, 3, 13})


def test_extension_table_aiortc_ids() -> None:
    offered = {1: URI_MID, 2: URI_AUDIO_LEVEL, 3: URI_ABS_SEND_TIME}  # aiortc, audio and video merged
    table = codecs.extension_table(offered)
    assert table is not None and len(table) == 256
    assert (table[1], table[2], table[3]) == (4, 1, 2)
    assert table[0] == HIDDEN_EXTENSION_ID  # the fallback for ids a one-byte header cannot hold
    assert table[13] == HIDDEN_EXTENSION_ID  # not offered, but subscribers read 13 as orientation
    untouched = set(range(256)) - {0, 1, 2, 3, 13}
    assert all(table[i] == i for i in untouched)


def test_extension_table_leaves_unknown_uris_that_subscribers_ignore() -> None:
    offered = {
        1: URI_AUDIO_LEVEL,
        2: URI_ABS_SEND_TIME,
        3: TWCC_URI,
        7: "urn:example:private",
        13: URI_ORIENTATION,
    }
    # known ids are the router's, the rest sit on ids subscribers ignore, but for transport-cc on 3
    table = codecs.extension_table(offered)
    assert table is not None and table[3] == HIDDEN_EXTENSION_ID
    assert all(table[i] == i for i in set(range(1, 256)) - {3})


def test_extension_table_moves_a_foreign_use_of_a_router_id_out_of_the_way() -> None:
    # a publisher that sends TWCC on id 2 must not reach subscribers as abs-send-time
    table = codecs.extension_table({2: TWCC_URI, 5: URI_ABS_SEND_TIME})
    assert table is not None and (table[2], table[5]) == (HIDDEN_EXTENSION_ID, 2)


def test_extension_table_for_the_firefox_offer() -> None:
    offered = {i: uri for m in parse(FIREFOX_OFFER).media for i, uri in m.extmaps.items()}
    table = codecs.extension_table(offered)
    assert table is not None
    assert (table[1], table[3], table[4], table[8], table[9]) == (1, 4, 2, 10, 11)
    assert table[2] == HIDDEN_EXTENSION_ID  # an unknown extension on an id subscribers read
    assert (table[5], table[6], table[7]) == (5, 6, 7)  # unknown, on ids subscribers ignore
    assert table[13] == HIDDEN_EXTENSION_ID


# --- max-bundle offers (GStreamer's webrtcbin) -------------------------------------------------------

# What GStreamer 1.22's webrtcbin offers with bundle-policy=max-bundle (Debian bookworm): the second
# section has port 0 and a=bundle-only, which is not a rejection (RFC 8843 section 6).
GSTREAMER_OFFER = f"""v=0
o=- 6596692176152015096 0 IN IP4 0.0.0.0
s=-
t=0 0
a=ice-options:trickle
a=group:BUNDLE video0 audio1
m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=setup:actpass
a=ice-ufrag:hDop2CAyv4MA2tGEc3ynOXgVgEp9Y0x6
a=ice-pwd:YbGgU/DmhsI9wG6Br6VqgJLK9PHMJSbE
a=rtcp-mux
a=rtcp-rsize
a=sendrecv
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 transport-cc
a=framerate:15
a=ssrc:3876339740 msid:user2938452300@host-1aaaa91d webrtctransceiver0
a=ssrc:3876339740 cname:user2938452300@host-1aaaa91d
a=mid:video0
a=fingerprint:sha-256 {CHROME_FP}
a=rtcp-mux-only
a=candidate:1 1 UDP 2015363327 192.0.2.2 37338 typ host
m=audio 0 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=setup:actpass
a=ice-ufrag:hDop2CAyv4MA2tGEc3ynOXgVgEp9Y0x6
a=ice-pwd:YbGgU/DmhsI9wG6Br6VqgJLK9PHMJSbE
a=bundle-only
a=rtcp-mux
a=rtcp-rsize
a=sendrecv
a=rtpmap:111 OPUS/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 sprop-maxcapturerate=48000;sprop-stereo=0
a=ssrc:633709805 msid:user2938452300@host-1aaaa91d webrtctransceiver1
a=ssrc:633709805 cname:user2938452300@host-1aaaa91d
a=mid:audio1
a=fingerprint:sha-256 {CHROME_FP}
a=rtcp-mux-only
""".replace("\n", "\r\n")


def test_a_bundle_only_section_is_accepted() -> None:
    _, answer, specs, _ = publish(GSTREAMER_OFFER)
    assert [(s.kind, s.mid, s.codec.name) for s in specs] == [
        ("video", "video0", "VP8"),
        ("audio", "audio1", "opus"),
    ]
    audio = answer.media[1]
    assert answer.groups == [("BUNDLE", ["video0", "audio1"])]
    assert (audio.port, audio.direction, audio.formats, audio.bundle_only) == (9, "recvonly", ["111"], False)
    assert audio.codecs[0].name == "OPUS", "the offer's spelling is kept"
    assert specs[1].streams[0].ssrc == 633709805


def test_a_plain_port_zero_still_rejects() -> None:
    offer = GSTREAMER_OFFER.replace("a=bundle-only\r\n", "")
    _, answer, specs, _ = publish(offer)
    assert [s.kind for s in specs] == ["video"]
    assert answer.media[1].port == 0 and answer.groups == [("BUNDLE", ["video0"])]


def test_bundle_only_outside_the_bundle_group_is_a_rejection() -> None:
    offer = GSTREAMER_OFFER.replace("a=group:BUNDLE video0 audio1", "a=group:BUNDLE video0")
    _, answer, specs, _ = publish(offer)
    assert [s.kind for s in specs] == ["video"] and answer.media[1].port == 0


# --- WHEP: answering a player's offer ------------------------------------------------------------------

# Chromium 156's offer for a recvonly video and audio transceiver (trimmed to the codecs that matter):
# its extension ids are its own (video orientation on 3, transport-cc on 4, audio level on 14), and a
# Chromium refuses any answer that moves them or adds one.
CHROME_WHEP_OFFER = f"""v=0
o=- 2007086931313658565 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 107 108 109
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:A6N2
a=ice-pwd:7YTFYRCmX52kWpjw6ZBn/W+R
a=ice-options:trickle
a=fingerprint:sha-256 {CHROME_FP}
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 urn:3gpp:video-orientation
a=extmap:4 {TWCC_URI}
a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
{CHROME_VIDEO_FB.format(pt=96)}
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
{CHROME_VIDEO_FB.format(pt=102)}
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:104 H264/90000
{CHROME_VIDEO_FB.format(pt=104)}
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f
a=rtpmap:107 rtx/90000
a=fmtp:107 apt=104
a=rtpmap:108 H264/90000
{CHROME_VIDEO_FB.format(pt=108)}
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:109 rtx/90000
a=fmtp:109 apt=108
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:A6N2
a=ice-pwd:7YTFYRCmX52kWpjw6ZBn/W+R
a=ice-options:trickle
a=fingerprint:sha-256 {CHROME_FP}
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:4 {TWCC_URI}
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
""".replace("\n", "\r\n")


@dataclass
class FakeSubscriberTransport(FakeTransport):
    """A WHEP player's Transport: also takes transport-cc and Consumers."""

    transport_cc: bool = False
    consumers: list[Consumer] = field(default_factory=list)

    def enable_transport_cc(self) -> None:
        self.transport_cc = True

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)


def publisher(codec: CodecSpec, kind: str = "video") -> Producer:
    spec = ProducerSpec(kind, "0", codec, codec.payload_type, codec.rtx_payload_type, [StreamSpec()])
    transport = FakeTransport()
    transport.id = "PA_7"  # type: ignore[attr-defined]
    return Producer(transport, spec)  # type: ignore[arg-type]


OPUS_SPEC = CodecSpec("opus", "audio", 111, 48000, 2, "minptime=10;useinbandfec=1")
VP8_SPEC = CodecSpec("VP8", "video", 96, 90000, None, "", 97)
CONSTRAINED_BASELINE = CodecSpec(
    "H264",
    "video",
    102,
    90000,
    None,
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    103,
)


def play(offer: str, *producers: Producer) -> tuple[SessionDescription, FakeSubscriberTransport]:
    transport = FakeSubscriberTransport()

    def consume(mid: str, producer: Producer) -> Consumer:
        consumer = Consumer(transport, producer, mid)  # type: ignore[arg-type]
        transport.add_consumer(consumer)
        return consumer

    text = answer_subscribe_offer(offer, transport, list(producers), consume)  # type: ignore[arg-type]
    return parse(text), transport


def test_whep_answer_keeps_the_players_extension_ids_and_only_what_it_offered() -> None:
    answer, transport = play(CHROME_WHEP_OFFER, publisher(VP8_SPEC), publisher(OPUS_SPEC, "audio"))
    video, audio = answer.media
    assert video.extmaps == {2: URI_ABS_SEND_TIME, 3: URI_ORIENTATION, 4: TWCC_URI}
    assert audio.extmaps == {14: URI_AUDIO_LEVEL, 4: TWCC_URI}
    assert transport.transport_cc, "the player offered transport-cc: the server estimates its link"
    video_consumer, audio_consumer = transport.consumers
    table = video_consumer.ext_table
    assert table is not None
    assert (table[codecs.TRANSPORT_CC_ID], table[13], table[2]) == (4, 3, 2)
    hidden = table[HIDDEN_EXTENSION_ID]
    assert hidden not in {1, 2, 3, 4, 5, 9, 10, 11, 14}, "an id the player never offered"
    assert all(table[i] == hidden for i in (1, 4, 10, 11)), "the router's other ids are hidden"
    assert audio_consumer.ext_table is not None and audio_consumer.ext_table[1] == 14


def test_whep_answer_takes_the_players_payload_types_feedback_and_rtx() -> None:
    answer, transport = play(CHROME_WHEP_OFFER, publisher(VP8_SPEC), publisher(OPUS_SPEC, "audio"))
    video, audio = answer.media
    assert video.formats == ["96", "97"] and video.codecs[1].fmtp == {"apt": "96"}
    assert video.codecs[0].rtcp_fb == ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
    consumer = transport.consumers[0]
    assert consumer.rtx_payload_type == 97 and video.ssrc_groups == [
        ("FID", [consumer.ssrc, consumer.rtx_ssrc])
    ]
    assert audio.formats == ["111"] and audio.codecs[0].rtcp_fb == ["transport-cc"]
    assert (video.direction, audio.direction) == ("sendonly", "sendonly")
    assert video.rtcp_rsize and audio.rtcp_rsize


def test_whep_answer_leaves_out_feedback_and_extensions_the_player_did_not_offer() -> None:
    offer = drop_lines(CHROME_WHEP_OFFER, r"a=(rtcp-fb:\d+ (transport-cc|goog-remb)|extmap:3 )")
    answer, transport = play(offer.replace("a=rtcp-rsize\r\n", ""), publisher(VP8_SPEC))
    video = answer.media[0]
    assert not video.rtcp_rsize, "reduced-size RTCP only for a player that asked for it"
    assert video.codecs[0].rtcp_fb == ["ccm fir", "nack", "nack pli"]
    assert video.extmaps == {2: URI_ABS_SEND_TIME}, "no transport-cc feedback, no transport-cc numbers"
    assert not transport.transport_cc
    assert answer.media[1].direction == "inactive", "nothing published for the audio section"


def test_whep_h264_takes_the_players_entry_for_the_publishers_profile() -> None:
    answer, transport = play(CHROME_WHEP_OFFER, publisher(CONSTRAINED_BASELINE))
    video = answer.media[0]
    assert video.formats == ["108", "109"], "42e01f, and never packetization-mode 0"
    assert video.codecs[0].fmtp["profile-level-id"] == "42e01f"
    assert transport.consumers[0].payload_type == 108
    high = CodecSpec("H264", "video", 102, 90000, None, "packetization-mode=1;profile-level-id=64001f", 103)
    answer, _ = play(CHROME_WHEP_OFFER, publisher(high))
    assert answer.media[0].formats == ["102", "103"], "no entry of its profile: the first mode-1 entry"


def test_whep_offer_that_cannot_decode_anything_published_is_told_why() -> None:
    offer = drop_lines(CHROME_WHEP_OFFER, r"a=(rtpmap|fmtp|rtcp-fb):(96|97) ").replace(" 96 97 102", " 102")
    answer, _ = play(offer, publisher(CONSTRAINED_BASELINE))
    assert answer.media[0].direction == "sendonly"
    with pytest.raises(NegotiationError, match=r"none of the tracks published in this room \(video in VP8\)"):
        play(offer.replace("H264/90000", "H265/90000"), publisher(VP8_SPEC))


def test_subscriber_answers_that_turn_a_codec_down_are_seen() -> None:
    slots = subscriber_slots()
    offer = offer_subscribe(FakeTransport(), slots)  # type: ignore[arg-type]
    answer = parse(subscriber_answer(offer))
    answer.media[2].port = 0  # a browser without an H.264 decoder rejects that section
    answer.media[1].codecs = [c for c in answer.media[1].codecs if c.payload_type != 96]
    kept = answered_codecs(answer)
    assert 111 in kept["0"] and 96 not in kept.get("1", set()) and "2" not in kept


def test_a_fingerprint_kelian_cannot_check_is_refused_at_once() -> None:
    """md5 used to be accepted here and to fail only at the DTLS handshake, seconds later."""
    md5_value = ":".join(["AB"] * 16)
    md5 = CHROME_OFFER.replace(f"a=fingerprint:sha-256 {CHROME_FP}", f"a=fingerprint:md5 {md5_value}")
    with pytest.raises(NegotiationError, match=r"in md5; kelian checks sha-256, sha-384, sha-512"):
        publish(md5)
    both = md5.replace("a=setup:actpass", f"a=fingerprint:sha-256 {CHROME_FP}\r\na=setup:actpass")
    _, _, _, transport = publish(both)
    assert transport.remote[0][0] == [("md5", md5_value), ("sha-256", CHROME_FP)]


def test_a_transport_answers_only_its_freshest_few_addresses() -> None:
    node = Node(host="127.0.0.1", port=40000)
    transport = node.create_transport()
    transport.on_binding(("192.0.2.1", 5000), use_candidate=True)
    for port in range(3000):  # a hostile client's checks from thousands of source ports
        transport.on_binding(("192.0.2.1", 10000 + port), use_candidate=False)
    assert len(transport.addresses) == MAX_ADDRESSES
    assert ("192.0.2.1", 5000) in transport.addresses, "the address in use is never dropped"
    assert [a for a in node.by_addr if node.by_addr[a] is transport] == list(transport.addresses)
    transport.close()
    assert not node.by_addr
