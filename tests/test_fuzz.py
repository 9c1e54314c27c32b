"""Fuzzing everything that parses untrusted bytes: none of it may raise anything but kelian's own
error types (SdpError, NegotiationError, RtpError, FeedbackError, IceError, ClassroomError,
TokenError), and nothing may reach the media port's catch-all.

Deterministic in CI (tests/conftest.py: derandomized, 300 examples a test); `make fuzz` runs a long
random search. Inputs are random bytes and text, and real offers and packets mutated line by line or
byte by byte, which reach deeper than random bytes alone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
import jwt
import msgpack
from aiohttp import WSMsgType
from hypothesis import given, settings
from hypothesis import strategies as st
from kelian_server import API_KEY, API_SECRET
from test_negotiation import (
    AIORTC_OFFER,
    CHROME_WHEP_OFFER,
    GSTREAMER_OFFER,
    OPUS_SPEC,
    VP8_SPEC,
    FakeTransport,
    play,
    publisher,
)
from test_sdp import CHROME_OFFER, FIREFOX_OFFER, OBS_OFFER

from classroom import text
from classroom.errors import ClassroomError
from classroom.tokens import TokenError, verify
from sfu import rtp, twcc
from sfu.ice import IceError, parse_binding_request
from sfu.negotiation import NegotiationError, answer_publish
from sfu.node import Node
from sfu.producer import Producer
from sfu.router import Router
from sfu.sdp import SdpError, parse, serialize
from sfu.srtp import AEAD_AES_128_GCM, SrtpContext
from signaling import server
from signaling.config import Config
from signaling.ws import Codec

T = TypeVar("T")
# Examples that go over a socket cost milliseconds each: fewer of them in CI, all of a long run's.
NETWORK = settings(max_examples=int(os.environ.get("KELIAN_FUZZ_EXAMPLES") or 100))
OFFERS = [CHROME_OFFER, FIREFOX_OFFER, OBS_OFFER, GSTREAMER_OFFER, CHROME_WHEP_OFFER, AIORTC_OFFER]


# -- strategies -----------------------------------------------------------------------------------------


@st.composite
def mutated_lines(draw: st.DrawFn, documents: list[str]) -> str:
    """A real document with a few of its lines dropped, repeated, swapped or rewritten."""
    lines = draw(st.sampled_from(documents)).split("\r\n")
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "repeat", "swap", "rewrite", "cut", "junk"]))
        if action == "drop":
            del lines[i]
        elif action == "repeat":
            lines.insert(i, lines[i])
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif action == "rewrite" and ":" in lines[i]:
            head, _, tail = lines[i].partition(":")
            words = tail.split(" ")
            k = draw(st.integers(0, len(words) - 1))
            words[k] = draw(st.sampled_from(["", "0", "-1", "65536", "4294967296", "x" * 300, "\u00e9", "*"]))
            lines[i] = head + ":" + " ".join(words)
        elif action == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        else:
            lines.insert(i, draw(st.text(max_size=80)))
        if not lines:
            lines = [""]
    return "\r\n".join(lines)


@st.composite
def mutated_bytes(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    """A real packet with a few bytes changed, cut short or extended."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["set", "cut", "grow"]))
        if action == "set" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[draw(st.integers(0, len(data))) :]
        else:
            data += draw(st.binary(max_size=16))
    return bytes(data)


def rtp_packet(
    payload: bytes, extension: bytes = b"", pt: int = 96, seq: int = 1, marker: bool = False
) -> bytes:
    first = 0x90 if extension else 0x80
    header = struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq, 3000 * seq, 0xAAAA)
    if extension:
        padded = extension + bytes(-len(extension) % 4)
        header += struct.pack("!HH", 0xBEDE, len(padded) // 4) + padded
    return header + payload


VP8_KEYFRAME = bytes([0x90, 0x80, 0x81, 0x23]) + b"\x50\x42\x00\x9d\x01\x2a\x80\x02\x68\x01" + bytes(40)
H264_STAP = bytes([24, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 3]) + bytes([0x65]) + bytes(30)
H264_FU = bytes([28, 0x85]) + bytes(60)
RTP_SAMPLES = [
    rtp_packet(VP8_KEYFRAME, bytes([0x22, 1, 2, 3, 0x41, 0x6D]), seq=7),
    rtp_packet(H264_STAP, bytes([0x10, 5]), pt=102),
    rtp_packet(H264_FU, pt=102, marker=True),
    rtp_packet(bytes([0xFC, 0xFF, 0xFE]), bytes([0x10, 0x85]), pt=111),
]
RTCP_SAMPLES = [
    bytes.fromhex("81c90007") + bytes(28),  # receiver report with one block
    bytes.fromhex("81cd0003") + struct.pack("!IIHH", 1, 0xAAAA, 5, 3),  # generic NACK
    bytes.fromhex("81ce0002") + struct.pack("!II", 1, 0xAAAA),  # PLI
    bytes.fromhex("8fcd0005") + struct.pack("!IIHHI", 1, 0xAAAA, 10, 3, 0x000001) + bytes([0x20, 3, 4, 5]),
    bytes.fromhex("8fce0005")
    + struct.pack("!II", 1, 0)
    + b"REMB"
    + bytes([1, 0x0A, 0xBC, 0xDE, 0, 0, 0xAA, 0xAA]),
]
STUN_SAMPLE = bytes.fromhex("000100082112a442") + bytes(12) + bytes.fromhex("0006000461623a63")


# -- SDP --------------------------------------------------------------------------------------------------


@given(st.one_of(st.text(max_size=2000), mutated_lines(OFFERS)))
def test_sdp_parse_raises_only_sdp_error(data: str) -> None:
    try:
        desc = parse(data)
    except SdpError:
        return
    assert parse(serialize(desc)) is not None, "what parses serializes to what parses again"


@given(mutated_lines(OFFERS))
def test_publish_answers_raise_only_negotiation_error(offer: str) -> None:
    try:
        text_, _ = answer_publish(offer, FakeTransport())  # type: ignore[arg-type]
    except NegotiationError:
        return
    parse(text_)


@given(mutated_lines([CHROME_WHEP_OFFER, OFFERS[0], OFFERS[2]]))
def test_whep_answers_raise_only_negotiation_error(offer: str) -> None:
    try:
        answer, _ = play(offer, publisher(VP8_SPEC), publisher(OPUS_SPEC, "audio"))
    except NegotiationError:
        return
    assert answer.media


# -- RTP, RTCP, payload descriptors, transport-cc, STUN --------------------------------------------------


@given(st.one_of(st.binary(max_size=1500), mutated_bytes(RTP_SAMPLES)))
def test_rtp_helpers_raise_only_rtp_error(data: bytes) -> None:
    for codec in ("VP8", "H264", "opus"):
        rtp.is_keyframe(codec, data)
    try:
        offset = rtp.payload_offset(data)
        assert 12 <= offset <= len(data)
        rtp.payload_end(data)
        for _, at, size in rtp.extensions(data):
            assert at + size <= len(data)
        rtp.extension_value(data, 1)
        assert rtp.extension_offset(data, 3) < len(data)
        rtp.vp8_picture_fields(data)
        out = bytearray(data)
        rtp.rewrite_vp8_picture(out, data, 5, 1)
        assert len(out) == len(data)
        rtp.vp8_keyframe_size(data)
        table = bytes((i * 7) % 15 for i in range(256))
        remapped = bytearray(data)
        rtp.remap_extension_ids(remapped, table)
        assert len(remapped) == len(data)
        grown = bytearray(data)
        at = rtp.insert_extension_slot(grown, rtp.one_byte_element(3, 2))
        assert at == -1 or at + 2 <= len(grown)
    except rtp.RtpError:
        pass


@given(st.one_of(st.binary(max_size=600), mutated_bytes(RTCP_SAMPLES)))
def test_rtcp_split_and_transport_cc_raise_only_their_errors(data: bytes) -> None:
    try:
        parts = rtp.split_compound(data)
    except rtp.RtpError:
        return
    assert sum(len(p) for p in parts) <= len(data)
    try:
        base, arrivals = twcc.parse_feedback(data[12:])
        assert 0 <= base <= 0xFFFF and len(arrivals) <= 0xFFFF
    except twcc.FeedbackError:
        pass


@given(st.one_of(st.binary(max_size=300), mutated_bytes([STUN_SAMPLE])))
def test_stun_parsing_raises_only_ice_error(data: bytes) -> None:
    with contextlib.suppress(IceError):
        parse_binding_request(data)


class Media:
    """A publisher and a subscriber Transport on an unstarted Node, joined by a Consumer, with SRTP
    that lets everything through: what an authenticated but hostile peer can get past libsrtp."""

    class Clear:
        def unprotect(self, data: bytes) -> bytes:
            return data

        unprotect_rtcp = unprotect

    def __init__(self) -> None:
        self.node = node = Node(host="127.0.0.1", port=40000)
        self.sent: list[bytes] = []
        node.sendto = lambda data, addr: self.sent.append(bytes(data))  # type: ignore[method-assign]
        self.publisher = node.create_transport()
        _, specs = answer_publish(CHROME_OFFER, self.publisher)
        self.producers = [Producer(self.publisher, spec) for spec in specs]
        for producer in self.producers:
            self.publisher.add_producer(producer)
        self.publisher.srtp_rx = self.Clear()  # type: ignore[assignment]
        self.publisher.srtp_tx = SrtpContext(AEAD_AES_128_GCM, bytes(28), True)
        self.publisher.remote_addr = ("127.0.0.1", 5000)
        self.subscriber = node.create_transport()
        self.subscriber.srtp_rx = self.Clear()  # type: ignore[assignment]
        self.subscriber.srtp_tx = SrtpContext(AEAD_AES_128_GCM, bytes(28), True)
        self.subscriber.remote_addr = ("127.0.0.1", 5001)
        self.subscriber.enable_transport_cc()
        self.consumers = [
            Router("fuzz").consume(self.subscriber, p, str(i)) for i, p in enumerate(self.producers)
        ]


_LOOP = asyncio.new_event_loop()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return _LOOP.run_until_complete(coro)


_MEDIA: list[Media] = []


def media() -> Media:
    """One for the whole run, made inside the loop: Producers schedule their timers on it."""
    if not _MEDIA:

        async def make() -> Media:
            return Media()

        _MEDIA.append(run(make()))
    return _MEDIA[0]


@given(st.lists(st.one_of(st.binary(min_size=12, max_size=1400), mutated_bytes(RTP_SAMPLES)), max_size=8))
def test_hostile_rtp_and_rtcp_never_reach_the_catch_all(datagrams: list[bytes]) -> None:
    target = media()

    async def feed() -> None:
        for data in datagrams:
            if not data:
                continue  # the Node drops empty datagrams before any Transport sees them
            for transport in (target.publisher, target.subscriber):
                transport.on_datagram(bytes([0x80 | (data[0] & 0x3F)]) + data[1:])
                transport.on_rtcp(data)

    run(feed())
    assert target.node.errors == 0


@given(st.lists(mutated_bytes(RTCP_SAMPLES), max_size=8))
def test_hostile_feedback_never_reaches_the_catch_all(packets: list[bytes]) -> None:
    target = media()

    async def feed() -> None:
        for data in packets:
            target.subscriber.on_rtcp(data)
            target.publisher.on_rtcp(data)

    run(feed())
    assert target.node.errors == 0


# -- WebSocket messages, tokens, admin bodies ---------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
MESSAGE_TYPES = [
    "join",
    "publish",
    "answer",
    "mute",
    "remove",
    "track_settings",
    "unpublish",
    "leave",
    "ping",
]


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """Protocol messages with the right type and wrong everything else."""
    message = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "sdp",
                    "track",
                    "muted",
                    "width",
                    "height",
                    "enabled",
                    "sources",
                    "identity",
                    "token",
                    "room",
                    "id",
                    "resume",
                ]
            ),
            json_values,
            max_size=6,
        )
    )
    message["type"] = draw(st.sampled_from(MESSAGE_TYPES) | st.text(max_size=10))
    return message


class Frame:
    def __init__(self, kind: WSMsgType, data: Any) -> None:
        self.type, self.data = kind, data


@given(st.one_of(st.text(max_size=500), st.binary(max_size=500), json_values.map(json.dumps)))
def test_websocket_frames_decode_or_raise_signaling_error(data: str | bytes) -> None:
    for binary in (False, True):
        frame = Frame(WSMsgType.BINARY if isinstance(data, bytes) else WSMsgType.TEXT, data)
        with contextlib.suppress(ClassroomError):
            Codec(binary).decode(frame)
    packed = None
    with contextlib.suppress(ValueError, TypeError, OverflowError):  # msgpack cannot pack every value
        packed = msgpack.packb(json.loads(data) if isinstance(data, str) else data)
    if packed is not None:
        with contextlib.suppress(ClassroomError):
            Codec(True).decode(Frame(WSMsgType.BINARY, packed))


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())))
def test_random_tokens_raise_only_token_error(token: str) -> None:
    with contextlib.suppress(TokenError):
        verify(token, API_KEY, API_SECRET)


@given(
    st.dictionaries(
        st.sampled_from(["iss", "sub", "room", "role", "exp", "nbf", "iat", "name", "grants"]),
        json_values,
        max_size=9,
    )
)
def test_signed_tokens_with_any_claims_raise_only_token_error(payload: dict[str, Any]) -> None:
    payload.setdefault("iss", API_KEY)
    try:
        token = jwt.encode(payload, API_SECRET, algorithm="HS256")
    except (TypeError, ValueError):
        return
    try:
        claims = verify(token, API_KEY, API_SECRET)
    except TokenError:
        return
    text.name(claims.room, "room")
    text.name(claims.identity, "identity")


class LiveServer:
    """One kelian server on its own event loop thread, for fuzzing what goes over the network."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.config = Config(
            http_host="127.0.0.1",
            http_port=0,
            media_port=0,
            api_key=API_KEY,
            api_secret=API_SECRET,
            database=":memory:",
            auto_record=False,
        )
        self.runner, self.node = self.call(server.start(self.config))
        site = next(iter(self.runner.sites))
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


_LIVE: list[LiveServer] = []


def live() -> LiveServer:
    if not _LIVE:
        _LIVE.append(LiveServer())
    return _LIVE[0]


@NETWORK
@given(st.lists(messages(), min_size=1, max_size=6), st.booleans())
def test_websocket_sessions_answer_every_message_and_never_fail_inside(
    batch: list[dict[str, Any]], join: bool
) -> None:
    target = live()
    token = jwt.encode(
        {"iss": API_KEY, "sub": "fuzz", "room": "fuzz", "role": "lecturer", "exp": 2**40},
        API_SECRET,
        algorithm="HS256",
    )

    async def session() -> list[dict[str, Any]]:
        replies = []
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(target.url.replace("http", "ws") + "/ws") as ws,
        ):
            if join:
                await ws.send_json({"type": "join", "token": token, "id": "j"})
                replies.append(await ws.receive_json(timeout=5))
            for i, message in enumerate(batch):
                message["id"] = i
                await ws.send_str(json.dumps(message))
            await ws.send_json({"type": "ping", "id": "end"})  # answered after all the others
            while True:
                reply = await ws.receive(timeout=5)
                if reply.type != WSMsgType.TEXT:
                    break
                replies.append(json.loads(reply.data))
                if replies[-1].get("id") == "end":
                    break
        return replies

    replies = target.call(session())
    assert not any(r.get("code") == "internal" for r in replies), replies


@given(
    st.sampled_from(
        [
            "/api/v1/rooms",
            "/api/v1/tokens",
            "/api/v1/rooms/x/participants/y/tracks/z/mute",
            "/dev/token",
            "/whip/x",
            "/whep/x",
        ]
    ),
    st.one_of(json_values.map(json.dumps), st.text(max_size=300), st.binary(max_size=300)),
)
def test_http_bodies_are_never_a_500(path: str, body: str | bytes) -> None:
    target = live()
    auth = "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()

    async def post() -> int:
        headers = {"Authorization": auth, "Content-Type": "application/json"}
        if path.startswith("/wh"):
            headers = {"Authorization": "Bearer x", "Content-Type": "application/sdp"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(target.url + path, data=body, headers=headers) as r,
        ):
            return r.status

    status = target.call(post())
    assert status < 500, (path, body)


def test_what_the_long_search_found() -> None:
    """Examples `make fuzz` found, kept so that they never come back."""
    short_remb = bytes.fromhex("8fce000500000001 00000000") + b"REMB" + bytes.fromhex("020abcde0000aaaa")
    target = media()

    async def feed() -> None:
        target.subscriber.on_rtcp(short_remb)  # aiortc's REMB parser raised struct.error

    run(feed())
    assert target.node.errors == 0
    no_mid = GSTREAMER_OFFER.replace("a=mid:audio1\r\n", "")  # a rejected section without a mid
    text_, _ = answer_publish(no_mid, FakeTransport())  # type: ignore[arg-type]
    assert "a=mid:\r\n" not in text_ and parse(text_).media[1].mid is None
