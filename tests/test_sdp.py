"""Tests for sfu.sdp against offers as real clients write them, plus hostile input."""

from __future__ import annotations

import random
import time

import pytest
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection, VideoStreamTrack
from aiortc import sdp as aiortc_sdp

from sfu.sdp import (
    MAX_SDP_BYTES,
    Codec,
    MediaSection,
    Rid,
    SdpError,
    SessionDescription,
    parse,
    serialize,
)

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
CHROME_FP = "5B:9C:1E:6B:AD:22:84:4B:3F:E0:98:11:D7:2A:4E:60:0C:31:F4:85:9A:73:B2:E8:5D:16:C4:0F:A1:37:92:DE"
CHROME_VIDEO_FB = "\n".join(
    f"a=rtcp-fb:{{pt}} {fb}" for fb in ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
)

# Chromium ~M120 offer: audio (opus + RED), simulcast video (rid/simulcast, no a=ssrc), data channel.
CHROME_OFFER = f"""v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1 2
a=extmap-allow-mixed
a=msid-semantic: WMS 9fdf1b9a-3c5e-4d8a-9a2b-6e3f1c2d4b5a
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Yx3q
a=ice-pwd:VqXb2k1lZ1s7cJ0vT8wB4m9N
a=ice-options:trickle
a=fingerprint:sha-256 {CHROME_FP}
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 {TWCC_URI}
a=extmap:4 {MID_URI}
a=sendonly
a=msid:9fdf1b9a-3c5e-4d8a-9a2b-6e3f1c2d4b5a 1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103 106 107 127 125 116 117 118
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Yx3q
a=ice-pwd:VqXb2k1lZ1s7cJ0vT8wB4m9N
a=ice-options:trickle
a=fingerprint:sha-256 {CHROME_FP}
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:13 urn:3gpp:video-orientation
a=extmap:3 {TWCC_URI}
a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type
a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing
a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space
a=extmap:4 {MID_URI}
a=extmap:10 {RID_URI}
a=extmap:11 {RRID_URI}
a=sendonly
a=msid:9fdf1b9a-3c5e-4d8a-9a2b-6e3f1c2d4b5a 7e8f9a0b-1c2d-4e3f-8a4b-5c6d7e8f9a0b
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
{CHROME_VIDEO_FB.format(pt=96)}
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:98 VP9/90000
{CHROME_VIDEO_FB.format(pt=98)}
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:102 H264/90000
{CHROME_VIDEO_FB.format(pt=102)}
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:106 H264/90000
{CHROME_VIDEO_FB.format(pt=106)}
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:107 rtx/90000
a=fmtp:107 apt=106
a=rtpmap:127 H264/90000
{CHROME_VIDEO_FB.format(pt=127)}
a=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f
a=rtpmap:125 rtx/90000
a=fmtp:125 apt=127
a=rtpmap:116 red/90000
a=rtpmap:117 rtx/90000
a=fmtp:117 apt=116
a=rtpmap:118 ulpfec/90000
a=rid:q send
a=rid:h send
a=rid:f send
a=simulcast:send q;h;f
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 0.0.0.0
a=ice-ufrag:Yx3q
a=ice-pwd:VqXb2k1lZ1s7cJ0vT8wB4m9N
a=ice-options:trickle
a=fingerprint:sha-256 {CHROME_FP}
a=setup:actpass
a=mid:2
a=sctp-port:5000
a=max-message-size:262144
""".replace("\n", "\r\n")

# OBS 30 WHIP output (libdatachannel): transport attributes only at session level, LF endings.
OBS_FP = "0C:77:1E:E2:49:8D:A6:4F:33:06:C4:97:B8:55:AF:3A:14:5D:90:E6:21:CC:7B:08:F3:41:9E:D5:62:B0:1A:8E"
OBS_OFFER = f"""v=0
o=rtc 3767197920 0 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=group:LS 0 1
a=msid-semantic:WMS *
a=setup:actpass
a=ice-ufrag:G2pW
a=ice-pwd:Pp3cBGu5wZPaaynJ2hGpJ3
a=ice-options:ice2,trickle
a=fingerprint:sha-256 {OBS_FP}
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=mid:0
a=sendonly
a=ssrc:1735328185 cname:Pr4zbMDf7oUAY8Xp
a=ssrc:1735328185 msid:obs-stream obs-audio
a=msid:obs-stream obs-audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;maxaveragebitrate=96000;stereo=1;sprop-stereo=1;useinbandfec=1
m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=mid:1
a=sendonly
a=ssrc:1735328186 cname:Pr4zbMDf7oUAY8Xp
a=ssrc:1735328186 msid:obs-stream obs-video
a=msid:obs-stream obs-video
a=rtcp-mux
a=rtpmap:96 H264/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 goog-remb
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1
"""

FF_FP = "A1:3E:7C:55:09:DB:82:F4:6A:1D:C0:93:2E:B7:48:65:F0:0B:9D:34:C8:71:E6:5A:2F:83:D9:16:4C:BE:07:A5"
FF_CNAME = "{5f0a6d43-6b1e-4b0a-8c5e-2f7d9e8a1b3c}"
FF_VIDEO_FB = "\n".join(
    f"a=rtcp-fb:{{pt}} {fb}" for fb in ("nack", "nack pli", "ccm fir", "goog-remb", "transport-cc")
)

# Firefox ~115 offer: session-level fingerprint, alphabetical attributes (fmtp before rtpmap),
# extmap direction suffixes, simulcast with one FID group per layer.
FIREFOX_OFFER = f"""v=0
o=mozilla...THIS_IS_SDPARTA-99.0 6558408817385335032 0 IN IP4 0.0.0.0
s=-
t=0 0
a=fingerprint:sha-256 {FF_FP}
a=group:BUNDLE 0 1
a=ice-options:trickle
a=msid-semantic:WMS *
m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level
a=extmap:3 {MID_URI}
a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1
a=fmtp:101 0-15
a=ice-pwd:e4e7a4a8c7e1f3a6b3f0b5b1b1b2f5e9
a=ice-ufrag:5a2b9c1d
a=mid:0
a=msid:{{7d9a1d2e-2c3f-4b6a-9c1d-0e8f7a6b5c4d}} {{0f1e2d3c-4b5a-6978-8a9b-acbdcedfe0f1}}
a=rtcp-mux
a=rtpmap:109 opus/48000/2
a=rtpmap:9 G722/8000/1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000/1
a=setup:actpass
a=ssrc:2655508255 cname:{FF_CNAME}
m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127 97 98
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:3/sendonly {MID_URI}
a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:5 urn:ietf:params:rtp-hdrext:toffset
a=extmap:6/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:7 {TWCC_URI}
a=extmap:8 {RID_URI}
a=extmap:9 {RRID_URI}
a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1
a=fmtp:97 profile-level-id=42e01f;level-asymmetry-allowed=1
a=fmtp:120 max-fs=12288;max-fr=60
a=fmtp:124 apt=120
a=fmtp:121 max-fs=12288;max-fr=60
a=fmtp:125 apt=121
a=fmtp:127 apt=126
a=fmtp:98 apt=97
a=ice-pwd:e4e7a4a8c7e1f3a6b3f0b5b1b1b2f5e9
a=ice-ufrag:5a2b9c1d
a=mid:1
a=msid:{{7d9a1d2e-2c3f-4b6a-9c1d-0e8f7a6b5c4d}} {{6c5b4a39-2817-4f6e-9d8c-7b6a59483726}}
a=rid:q send
a=rid:h send
a=rid:f send
{FF_VIDEO_FB.format(pt=120)}
{FF_VIDEO_FB.format(pt=121)}
{FF_VIDEO_FB.format(pt=126)}
{FF_VIDEO_FB.format(pt=97)}
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:120 VP8/90000
a=rtpmap:124 rtx/90000
a=rtpmap:121 VP9/90000
a=rtpmap:125 rtx/90000
a=rtpmap:126 H264/90000
a=rtpmap:127 rtx/90000
a=rtpmap:97 H264/90000
a=rtpmap:98 rtx/90000
a=setup:actpass
a=simulcast:send q;h;f
a=ssrc:3133450328 cname:{FF_CNAME}
a=ssrc:1719658404 cname:{FF_CNAME}
a=ssrc:2203145530 cname:{FF_CNAME}
a=ssrc:4012561377 cname:{FF_CNAME}
a=ssrc:874532761 cname:{FF_CNAME}
a=ssrc:1504381026 cname:{FF_CNAME}
a=ssrc-group:FID 3133450328 1719658404
a=ssrc-group:FID 2203145530 4012561377
a=ssrc-group:FID 874532761 1504381026
""".replace("\n", "\r\n")

MINIMAL = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"


async def make_aiortc_offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: host candidates only
    try:
        pc.addTrack(AudioStreamTrack())
        pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


@pytest.fixture(scope="module")
def aiortc_offer() -> str:
    import asyncio

    return asyncio.run(make_aiortc_offer())


# --- Chromium -------------------------------------------------------------------------------


def test_chrome_session_level() -> None:
    desc = parse(CHROME_OFFER)
    assert desc.origin == "- 4611731400430051336 2 IN IP4 127.0.0.1"
    assert desc.groups == [("BUNDLE", ["0", "1", "2"])]
    assert desc.bundle_mids() == ["0", "1", "2"]
    assert desc.extmap_allow_mixed and not desc.ice_lite
    assert desc.msid_semantic == "WMS 9fdf1b9a-3c5e-4d8a-9a2b-6e3f1c2d4b5a"
    assert [m.kind for m in desc.media] == ["audio", "video", "application"]
    assert [m.mid for m in desc.media] == ["0", "1", "2"]
    for m in desc.media:
        assert (m.ice_ufrag, m.ice_pwd, m.setup) == ("Yx3q", "VqXb2k1lZ1s7cJ0vT8wB4m9N", "actpass")
        assert m.fingerprints == [("sha-256", CHROME_FP)]
        assert m.connection == "IN IP4 0.0.0.0"


def test_chrome_audio() -> None:
    audio = parse(CHROME_OFFER).media[0]
    assert (audio.port, audio.protocol, audio.direction) == (9, "UDP/TLS/RTP/SAVPF", "sendonly")
    assert audio.formats == ["111", "63", "9", "0", "8", "13", "110", "126"]
    assert [c.payload_type for c in audio.codecs] == [111, 63, 9, 0, 8, 13, 110, 126]
    assert audio.codecs[0] == Codec(
        111, "opus", 48000, 2, {"minptime": "10", "useinbandfec": "1"}, ["transport-cc"]
    )
    red = audio.codec(63)
    assert red is not None and (red.name, red.channels, red.fmtp) == ("red", 2, {"": "111/111"})
    assert audio.codec(9) == Codec(9, "G722", 8000)
    assert audio.codec(96) is None
    assert audio.extmaps == {
        1: "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        2: "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        3: TWCC_URI,
        4: MID_URI,
    }
    assert audio.msid == "9fdf1b9a-3c5e-4d8a-9a2b-6e3f1c2d4b5a 1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d"
    assert audio.rtcp_mux and not audio.rtcp_rsize
    assert audio.other == ["rtcp:9 IN IP4 0.0.0.0", "ice-options:trickle"]
    assert audio.rtx_map() == {} and audio.ssrcs == {} and audio.rids == []


def test_chrome_video_simulcast() -> None:
    video = parse(CHROME_OFFER).media[1]
    assert video.rids == [Rid("q", "send"), Rid("h", "send"), Rid("f", "send")]
    assert video.simulcast == "send q;h;f"
    assert video.simulcast_rids() == ["q", "h", "f"]
    assert video.ssrcs == {} and video.ssrc_groups == [] and video.fid_map() == {}
    assert video.extmaps[10] == RID_URI and video.extmaps[11] == RRID_URI and video.extmaps[4] == MID_URI
    assert video.rtcp_mux and video.rtcp_rsize
    names = [(c.payload_type, c.name) for c in video.codecs]
    assert names[:4] == [(96, "VP8"), (97, "rtx"), (98, "VP9"), (99, "rtx")]
    assert names[-3:] == [(116, "red"), (117, "rtx"), (118, "ulpfec")]
    h264 = {c.payload_type: c.fmtp["profile-level-id"] for c in video.codecs if c.name == "H264"}
    assert h264 == {102: "42001f", 106: "42e01f", 127: "4d001f"}
    assert all(c.fmtp["packetization-mode"] == "1" for c in video.codecs if c.name == "H264")
    vp8 = video.codec(96)
    assert vp8 is not None and vp8.rtcp_fb == ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
    assert vp8.clock_rate == 90000 and vp8.channels is None and vp8.apt is None
    assert video.rtx_map() == {97: 96, 99: 98, 103: 102, 107: 106, 125: 127, 117: 116}


def test_chrome_datachannel() -> None:
    data = parse(CHROME_OFFER).media[2]
    assert (data.kind, data.protocol, data.formats) == (
        "application",
        "UDP/DTLS/SCTP",
        ["webrtc-datachannel"],
    )
    assert (data.sctp_port, data.max_message_size) == (5000, 262144)
    assert data.codecs == [] and data.direction == "sendrecv" and not data.is_rtp


# --- aiortc ---------------------------------------------------------------------------------


def test_aiortc_offer(aiortc_offer: str) -> None:
    desc = parse(aiortc_offer)
    assert desc.bundle_mids() == ["0", "1"]
    audio, video = desc.media
    assert audio.codecs[0].name == "opus" and audio.codecs[0].channels == 2
    assert {c.name for c in audio.codecs} >= {"PCMU", "PCMA"}
    assert video.rtx_map() and all(video.codec(apt) for apt in video.rtx_map().values())
    for m in desc.media:
        assert m.direction == "sendrecv" and m.rtcp_mux and m.setup == "actpass"
        assert m.candidates and m.end_of_candidates
        assert [alg for alg, _ in m.fingerprints] == ["sha-256", "sha-384", "sha-512"]
        assert m.ssrcs and all("cname" in attrs for attrs in m.ssrcs.values())
        assert "rtcp:9 IN IP4 0.0.0.0" in m.other
    ((semantics, (primary, rtx)),) = video.ssrc_groups
    assert semantics == "FID" and video.fid_map() == {primary: rtx}
    assert set(video.ssrcs) == {primary, rtx}


def test_aiortc_agrees_with_our_parse_and_reads_our_output(aiortc_offer: str) -> None:
    ours = parse(aiortc_offer)
    for text in (aiortc_offer, serialize(ours)):
        theirs = aiortc_sdp.SessionDescription.parse(text)
        assert [m.rtp.muxId for m in theirs.media] == [m.mid for m in ours.media]
        for their_media, our_media in zip(theirs.media, ours.media, strict=True):
            their_codecs = [(c.payloadType, c.name, c.clockRate) for c in their_media.rtp.codecs]
            assert their_codecs == [(c.payload_type, c.name, c.clock_rate) for c in our_media.codecs]
            assert their_media.ice is not None and their_media.ice.usernameFragment == our_media.ice_ufrag
            their_groups = [(g.semantic, g.items) for g in their_media.ssrc_group]
            assert their_groups == our_media.ssrc_groups


# --- OBS / libdatachannel WHIP ----------------------------------------------------------------


def test_obs_whip_offer_inherits_session_transport() -> None:
    desc = parse(OBS_OFFER)
    assert desc.groups == [("BUNDLE", ["0", "1"]), ("LS", ["0", "1"])]
    assert desc.bundle_mids() == ["0", "1"]
    assert desc.other == ["ice-options:ice2,trickle"]
    for m in desc.media:
        assert (m.ice_ufrag, m.ice_pwd, m.setup) == ("G2pW", "Pp3cBGu5wZPaaynJ2hGpJ3", "actpass")
        assert m.fingerprints == [("sha-256", OBS_FP)] and m.direction == "sendonly"
    audio, video = desc.media
    assert audio.ssrcs == {1735328185: {"cname": "Pr4zbMDf7oUAY8Xp", "msid": "obs-stream obs-audio"}}
    assert audio.codecs[0].fmtp["maxaveragebitrate"] == "96000"
    assert video.ssrcs[1735328186]["msid"] == "obs-stream obs-video"
    (h264,) = video.codecs
    assert (h264.payload_type, h264.name, h264.clock_rate) == (96, "H264", 90000)
    assert h264.fmtp == {
        "profile-level-id": "42e01f",
        "packetization-mode": "1",
        "level-asymmetry-allowed": "1",
    }
    assert h264.rtcp_fb == ["nack", "nack pli", "goog-remb"]
    assert video.simulcast_rids() == [] and video.rtx_map() == {}


# --- Firefox --------------------------------------------------------------------------------


def test_firefox_offer() -> None:
    desc = parse(FIREFOX_OFFER)
    assert desc.other == ["ice-options:trickle"]
    audio, video = desc.media
    assert audio.fingerprints == video.fingerprints == [("sha-256", FF_FP)]
    # fmtp lines precede their rtpmap lines in Firefox offers
    assert audio.codec(109) == Codec(
        109, "opus", 48000, 2, {"maxplaybackrate": "48000", "stereo": "1", "useinbandfec": "1"}
    )
    assert audio.codec(101) == Codec(101, "telephone-event", 8000, 1, {"": "0-15"})
    assert audio.codec(9) == Codec(9, "G722", 8000, 1)
    assert audio.extmaps[2] == "urn:ietf:params:rtp-hdrext:csrc-audio-level"
    assert video.extmaps[3] == MID_URI and video.extmaps[6].endswith("playout-delay")
    assert video.simulcast == "send q;h;f" and video.simulcast_rids() == ["q", "h", "f"]
    assert [r.id for r in video.rids] == ["q", "h", "f"]
    assert video.rtx_map() == {124: 120, 125: 121, 127: 126, 98: 97}
    assert video.fid_map() == {3133450328: 1719658404, 2203145530: 4012561377, 874532761: 1504381026}
    assert all(c.rtcp_fb[-1] == "transport-cc" for c in video.codecs if c.name != "rtx")
    assert video.codec(97) is not None and "packetization-mode" not in video.codec(97).fmtp  # type: ignore[union-attr]


# --- helpers and edge cases -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "direction", "expected"),
    [
        ("send q;h;f", None, ["q", "h", "f"]),
        ("send q,h;f", None, ["q", "f"]),
        ("send ~q;h;~f", None, ["q", "h", "f"]),
        ("recv q;h;f", None, ["q", "h", "f"]),
        ("send a;b recv c;d", "recv", ["c", "d"]),
        ("send a;b recv c;d", "send", ["a", "b"]),
        ("send a;b", "recv", []),
        ("send q;;h", None, ["q", "h"]),
        (None, None, []),
    ],
)
def test_simulcast_rids(value: str | None, direction: str | None, expected: list[str]) -> None:
    m = MediaSection("video", 9, "UDP/TLS/RTP/SAVPF", ["96"], simulcast=value)
    assert m.simulcast_rids(direction) == expected


def test_static_payload_types_without_rtpmap() -> None:
    desc = parse(
        MINIMAL + "m=audio 5004 RTP/AVP 0 8 9 96 13\r\nc=IN IP4 192.0.2.7\r\na=rtpmap:96 opus/48000/2\r\n"
    )
    (audio,) = desc.media
    assert [(c.payload_type, c.name, c.clock_rate) for c in audio.codecs] == [
        (0, "PCMU", 8000),
        (8, "PCMA", 8000),
        (9, "G722", 8000),
        (96, "opus", 48000),
        (13, "CN", 8000),
    ]
    assert audio.connection == "IN IP4 192.0.2.7" and audio.mid is None


def test_rtcp_fb_wildcard_and_orphans_are_kept() -> None:
    text = MINIMAL + (
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 35\r\n"
        "a=rtcp-fb:* nack\r\n"
        "a=rtpmap:96 VP8/90000\r\n"
        "a=rtpmap:97 rtx/90000\r\n"
        "a=fmtp:97 apt=96\r\n"
        "a=rtcp-fb:96 nack\r\n"
        "a=rtcp-fb:96 nack pli\r\n"
        "a=rtpmap:100 H264/90000\r\n"
        "a=fmtp:101 apt=100\r\n"
        "a=rtcp-fb:35 goog-remb\r\n"
        "a=x-google-flag:conference\r\n"
    )
    (video,) = parse(text).media
    assert [c.payload_type for c in video.codecs] == [96, 97]  # 35 has neither rtpmap nor static meaning
    assert video.codec(96).rtcp_fb == ["nack", "nack pli"]  # type: ignore[union-attr]
    assert video.codec(97).rtcp_fb == ["nack"]  # type: ignore[union-attr]
    assert video.other == [
        "x-google-flag:conference",
        "rtpmap:100 H264/90000",
        "fmtp:101 apt=100",
        "rtcp-fb:35 goog-remb",
    ]


def test_session_c_line_bandwidth_and_lowercase_fingerprint() -> None:
    text = (
        "v=0\no=- 1 2 IN IP4 127.0.0.1\ns=\nc=IN IP4 203.0.113.9\nb=AS:3000\nt=0 0\n"
        "a=fingerprint:SHA-256 ab:cd:ef\n\n"
        "m=video 9 RTP/SAVPF 96\nb=TIAS:2500000\na=rtpmap:96 VP8/90000\n"
    )
    desc = parse(text)
    (video,) = desc.media
    assert desc.name == "" and desc.bandwidth == {"AS": 3000}
    assert video.connection == "IN IP4 203.0.113.9" and video.bandwidth == {"TIAS": 2500000}
    assert video.fingerprints == [("sha-256", "AB:CD:EF")]
    assert parse(serialize(desc)) == desc


def test_offer_without_media_is_valid() -> None:
    desc = parse("v=0\no=- 1 2 IN IP4 127.0.0.1\ns=-\n")
    assert desc.media == [] and desc.bundle_mids() == []
    assert serialize(desc) == "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def test_serialize_layout() -> None:
    fp = "AB:" * 31 + "CD"
    video = MediaSection(
        "video",
        9,
        "UDP/TLS/RTP/SAVPF",
        ["96", "97"],
        mid="1",
        direction="recvonly",
        ice_ufrag="sfu1",
        ice_pwd="p" * 24,
        fingerprints=[("sha-256", fp)],
        setup="passive",
        extmaps={4: MID_URI, 10: RID_URI},
        rtcp_mux=True,
        rtcp_rsize=True,
        codecs=[
            Codec(96, "VP8", 90000, rtcp_fb=["nack", "nack pli"]),
            Codec(97, "rtx", 90000, fmtp={"apt": "96"}),
        ],
        rids=[Rid("q", "recv"), Rid("f", "recv", "max-width=1280")],
        simulcast="recv q;f",
        ssrc_groups=[("FID", [11, 12])],
        ssrcs={11: {"cname": "sfu", "msid": "s t"}, 12: {"cname": "sfu"}},
        candidates=["1 1 udp 2130706431 192.0.2.1 40000 typ host"],
        end_of_candidates=True,
        other=["ice-options:trickle"],
    )
    desc = SessionDescription(
        ice_lite=True,
        groups=[("BUNDLE", ["1"])],
        msid_semantic="WMS *",
        extmap_allow_mixed=True,
        media=[video],
    )
    assert serialize(desc).split("\r\n") == [
        "v=0",
        "o=- 0 0 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=ice-lite",
        "a=group:BUNDLE 1",
        "a=extmap-allow-mixed",
        "a=msid-semantic:WMS *",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:sfu1",
        "a=ice-pwd:" + "p" * 24,
        "a=fingerprint:sha-256 " + fp,
        "a=setup:passive",
        "a=mid:1",
        f"a=extmap:4 {MID_URI}",
        f"a=extmap:10 {RID_URI}",
        "a=recvonly",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rid:q recv",
        "a=rid:f recv max-width=1280",
        "a=simulcast:recv q;f",
        "a=ssrc-group:FID 11 12",
        "a=ssrc:11 cname:sfu",
        "a=ssrc:11 msid:s t",
        "a=ssrc:12 cname:sfu",
        "a=candidate:1 1 udp 2130706431 192.0.2.1 40000 typ host",
        "a=end-of-candidates",
        "a=ice-options:trickle",
        "",
    ]
    assert parse(serialize(desc)) == desc


def test_serialize_refuses_line_breaks_in_values() -> None:
    desc = parse(OBS_OFFER)
    desc.media[1].msid = "stream track\r\na=ice-pwd:hijacked"
    with pytest.raises(SdpError, match="line break"):
        serialize(desc)


ALL_OFFERS = {"chrome": CHROME_OFFER, "obs": OBS_OFFER, "firefox": FIREFOX_OFFER}


@pytest.mark.parametrize("name", [*ALL_OFFERS, "aiortc"])
def test_round_trip(name: str, aiortc_offer: str) -> None:
    desc = parse(ALL_OFFERS.get(name, aiortc_offer))
    text = serialize(desc)
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    assert parse(text) == desc
    assert serialize(parse(text)) == text


# --- malformed and hostile input --------------------------------------------------------------

MALFORMED = [
    ("", "empty"),
    ("\r\n \r\n\t\n", "empty"),
    ("o=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n", "first line must be 'v=0'"),
    (MINIMAL.replace("v=0", "v=1"), "first line must be 'v=0'"),
    ("v=0\r\ns=-\r\n", "lacks o="),
    ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" + AUDIO, "lacks s="),
    ("v=0\r\no=- 1 2\r\ns=-\r\n", "o= must have 6 fields"),
    (MINIMAL + "v=0\r\n", "second 'v='"),
    (MINIMAL + "s=again\r\n", "second 's='"),
    (MINIMAL + "x=1\r\n", "unknown line type 'x='"),
    (MINIMAL + "this is not sdp\r\n", "expected '<letter>=<value>'"),
    (MINIMAL + "A=1\r\n", "expected '<letter>=<value>'"),
    (MINIMAL + "a=\r\n", "bad attribute name"),
    (MINIMAL + "a=:x\r\n", "bad attribute name"),
    (MINIMAL + "m=audio 9 UDP/TLS/RTP/SAVPF\r\n", "m= must be"),
    (MINIMAL + "m=audio\r\n", "m= must be"),
    (MINIMAL + "m=audio nine RTP/AVP 0\r\n", "port must be a non-negative integer"),
    (MINIMAL + "m=audio -9 RTP/AVP 0\r\n", "port must be a non-negative integer"),
    (MINIMAL + "m=audio 70000 RTP/AVP 0\r\n", "port 70000 is outside 0..65535"),
    (MINIMAL + "m=audio 9 RTP/AVP 200\r\n", "payload type 200 is outside 0..127"),
    (MINIMAL + "m=audio 9 RTP/AVP opus\r\n", "payload type must be"),
    (MINIMAL + "m=audio 9 RTP/AVP \u00b2\r\n", "payload type must be"),  # str.isdigit() would say yes
    (MINIMAL + "m=audio 9 RTP/AVP 0\r\n" * 257, "more than 256 m-sections"),
    (MINIMAL + AUDIO + "a=rtpmap:abc\r\n", "payload type must be"),
    (MINIMAL + AUDIO + "a=rtpmap:112\r\n", "a=rtpmap must be"),
    (MINIMAL + AUDIO + "a=rtpmap:200 foo/8000\r\n", "payload type 200"),
    (MINIMAL + AUDIO + "a=rtpmap:111 opus/48000/2\r\n", "second a=rtpmap for payload type 111"),
    (MINIMAL + AUDIO + "a=rtpmap:112 opus/fast\r\n", "clock rate must be"),
    (MINIMAL + AUDIO + "a=rtpmap:112 opus/48000/0\r\n", "channel count 0"),
    (MINIMAL + AUDIO + "a=fmtp:x apt=1\r\n", "payload type must be"),
    (MINIMAL + AUDIO + "a=rtcp-fb:111\r\n", "a=rtcp-fb needs a value"),
    (MINIMAL + AUDIO + "a=ssrc:x cname:foo\r\n", "SSRC must be"),
    (MINIMAL + AUDIO + "a=ssrc:4294967296 cname:foo\r\n", "SSRC 4294967296 is outside"),
    (MINIMAL + AUDIO + "a=ssrc:1 :x\r\n", "a=ssrc attribute without a name"),
    (MINIMAL + AUDIO + "a=ssrc-group:FID\r\n", "a=ssrc-group must be"),
    (MINIMAL + AUDIO + "a=ssrc-group:FID 1 two\r\n", "SSRC must be"),
    (MINIMAL + AUDIO + "a=extmap:0 urn:x\r\n", "extmap id 0 is outside 1..255"),
    (MINIMAL + AUDIO + "a=extmap:256 urn:x\r\n", "extmap id 256 is outside 1..255"),
    (MINIMAL + AUDIO + "a=extmap:x/sendonly urn:x\r\n", "extmap id must be"),
    (MINIMAL + AUDIO + "a=extmap:1\r\n", "a=extmap needs a value"),
    (MINIMAL + AUDIO + "a=extmap:1 urn:a\r\na=extmap:1 urn:b\r\n", "two different extensions"),
    (MINIMAL + AUDIO + "a=rid:q sideways\r\n", "a=rid must be"),
    (MINIMAL + AUDIO + "a=rid:q;h send\r\n", "a=rid must be"),
    (MINIMAL + AUDIO + "a=fingerprint:sha-256 not-hex\r\n", "a=fingerprint must be"),
    (MINIMAL + "a=fingerprint:sha-256\r\n", "a=fingerprint must be"),
    (MINIMAL + AUDIO + "a=setup:bogus\r\n", "a=setup must be one of"),
    (MINIMAL + AUDIO + "a=mid:\r\n", "a=mid needs a value"),
    (MINIMAL + "a=ice-ufrag:\r\n", "a=ice-ufrag needs a value"),
    (MINIMAL + AUDIO + "a=mid:0\r\n" + AUDIO + "a=mid:0\r\n", "duplicate a=mid"),
    (MINIMAL + AUDIO + "a=sctp-port:99999\r\n", "sctp-port 99999 is outside"),
    (MINIMAL + AUDIO + "a=max-message-size:-1\r\n", "max-message-size must be"),
    (MINIMAL + AUDIO + "o=- 1 2 IN IP4 127.0.0.1\r\n", "not allowed inside a media section"),
    (MINIMAL + AUDIO + "c=IN IP4\r\n", "c= must be"),
    (MINIMAL + AUDIO + "b=AS:lots\r\n", "b=AS bandwidth must be"),
    (MINIMAL + "b=AS\r\n", "b=AS bandwidth must be"),
    (MINIMAL + "a=group:\r\n", "a=group needs semantics"),
    ("v=0\r\n" + "a=x\r\n" * 60_000, "larger than 262144 bytes"),
    ("v=0\r\ns=" + "\u00e9" * 140_000 + "\r\n", "larger than 262144 bytes"),  # 140k chars, 280k bytes
    ("\x00\x01\xff\xfe\x89PNG\r\n\x1a\n", "control character"),
    (bytes(range(256)).decode("latin-1"), "control character"),
    (MINIMAL + "a=foo\x07bar\r\n", "control character"),
    (MINIMAL + "a=msid:\ud800\r\n", "control character"),  # lone surrogate: not encodable
    ("v=0\ro=- 1 2 IN IP4 127.0.0.1\rs=-\r", "control character '\\\\r'"),
]


@pytest.mark.parametrize(
    ("text", "message"), MALFORMED, ids=[f"{i}:{m}" for i, (_, m) in enumerate(MALFORMED)]
)
def test_malformed_input_raises_sdp_error(text: str, message: str) -> None:
    with pytest.raises(SdpError, match=message) as caught:
        parse(text)
    assert str(caught.value)


def test_error_names_the_line() -> None:
    text = MINIMAL + AUDIO + "a=ssrc:banana cname:x\r\n"
    with pytest.raises(SdpError) as caught:
        parse(text)
    assert caught.value.line == 8
    assert str(caught.value).startswith("line 8: SSRC must be a non-negative integer, got 'banana'")


@pytest.mark.parametrize("value", [None, 42, b"v=0\r\n"])
def test_non_string_input(value: object) -> None:
    with pytest.raises(SdpError, match="SDP must be a string"):
        parse(value)  # type: ignore[arg-type]


def test_rtcp_fb_wildcard_flood_is_linear() -> None:
    """128 codecs x ~3700 distinct "a=rtcp-fb:*" lines once took 11 s of CPU per 64 KiB offer."""
    lines = [MINIMAL.strip(), "m=video 9 RTP/AVP " + " ".join(map(str, range(128)))]
    lines += [f"a=rtpmap:{pt} X/90000" for pt in range(128)]
    while sum(len(line) + 2 for line in lines) < MAX_SDP_BYTES - 40:
        lines.append(f"a=rtcp-fb:* {len(lines):x}")
    start = time.perf_counter()
    (video,) = parse("\r\n".join(lines)).media
    assert time.perf_counter() - start < 2.0
    assert len(video.codecs) == 128 and len(video.codecs[0].rtcp_fb) > 3000


@pytest.mark.parametrize("name", list(ALL_OFFERS))
def test_mutated_offers_raise_only_sdp_error_and_round_trip(name: str) -> None:
    """Random truncations, substitutions, deletions and duplications of real offers must either
    parse (and then round-trip) or raise SdpError -- never any other exception."""
    rng = random.Random(name)
    lines = ALL_OFFERS[name].splitlines()
    for _ in range(400):
        mutated = list(lines)
        i = rng.randrange(len(mutated))
        op = rng.randrange(4)
        if op == 0:
            mutated[i] = mutated[i][: rng.randrange(len(mutated[i]) + 1)]
        elif op == 1 and mutated[i]:
            j = rng.randrange(len(mutated[i]))
            mutated[i] = mutated[i][:j] + rng.choice(":/ =;0x~-*\t9") + mutated[i][j + 1 :]
        elif op == 2:
            del mutated[i]
        else:
            mutated.insert(i, rng.choice(mutated))
        try:
            desc = parse("\r\n".join(mutated))
        except SdpError:
            continue
        assert parse(serialize(desc)) == desc
