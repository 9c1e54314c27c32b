"""Pipes between Nodes (sfu/pipe.py), over real UDP on loopback: a simulcast Producer on an origin
Node is mirrored on an edge Node, whose subscriber gets it as it would a local one; its keyframe
requests reach the publisher through the origin, a packet lost on the pipe is resent from the
origin's cache, sender reports cross, and each layer crosses on its own."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from helpers import send_through_python
from kelian_server import eventually
from test_consumer_rewrite import VP8, vp8

from sfu.codecs import TRANSPORT_CC_ID
from sfu.node import Node
from sfu.pipe import PipeError, PipeTransport, pipe_in, pipe_out
from sfu.plain_transport import PlainTransport
from sfu.producer import Producer, ProducerSpec, StreamSpec
from sfu.rtp import extensions

LAYERS = {"q": 0x1111, "f": 0x2222}


class Endpoint(asyncio.DatagramProtocol):
    """A test socket on loopback: a publisher's or a subscriber's, speaking plain RTP."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.append(data)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    def rtp(self, ssrc: int) -> list[bytes]:
        return [p for p in self.received if not 192 <= p[1] <= 223 and p[8:12] == ssrc.to_bytes(4, "big")]

    def rtcp(self, kind: int) -> list[bytes]:
        return [p for p in self.received if p[1] == kind]


@dataclass
class Pipeline:
    origin: Node
    edge: Node
    publisher: Endpoint
    viewer: Endpoint
    source: Producer
    out: PipeTransport
    into: PipeTransport
    mirror: Producer
    sink: PlainTransport
    sent: dict[int, int] = field(default_factory=lambda: dict.fromkeys(LAYERS.values(), 0))

    def publish(self, frames: int, key_every: int = 0) -> None:
        """`frames` more frames on every layer (a keyframe first, and every `key_every` if set)."""
        for ssrc in LAYERS.values():
            for _ in range(frames):
                n = self.sent[ssrc]
                key = n == 0 or bool(key_every and n % key_every == 0)
                self.publisher.send(vp8(n, n * 3000, ssrc, key=key, marker=True), self.origin.port)
                self.sent[ssrc] = n + 1


async def endpoint() -> Endpoint:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
    return protocol


@pytest_asyncio.fixture
async def pipeline() -> AsyncIterator[Pipeline]:
    origin, edge = Node("127.0.0.1", 0), Node("127.0.0.1", 0)
    await origin.start()
    await edge.start()
    publisher, viewer = await endpoint(), await endpoint()
    ingest = PlainTransport(origin, publisher.address)  # the publisher's transport, plain for the test
    spec = ProducerSpec(
        kind="video",
        mid="0",
        codec=VP8,
        publisher_payload_type=96,
        publisher_rtx_payload_type=None,
        streams=[StreamSpec(rid=rid, ssrc=ssrc) for rid, ssrc in LAYERS.items()],
        feedback=frozenset({"nack", "pli"}),
    )
    source = Producer(ingest, spec)
    ingest.add_producer(source)
    origin.router("lesson").add_producer(source)
    out = PipeTransport(origin, ("127.0.0.1", edge.port))
    into = PipeTransport(edge, ("127.0.0.1", origin.port))
    mirror = pipe_in(edge.router("lesson"), into, pipe_out(out, source))
    sink = PlainTransport(edge, viewer.address)
    edge.router("lesson").consume(sink, mirror, "0")
    try:
        yield Pipeline(origin, edge, publisher, viewer, source, out, into, mirror, sink)
    finally:
        for node in (origin, edge):
            await node.stop()
        for side in (publisher, viewer):
            assert side.transport is not None
            side.transport.close()


def seqs(packets: list[bytes]) -> list[int]:
    return [struct.unpack_from("!H", p, 2)[0] for p in packets]


async def test_the_edge_mirrors_the_track_and_its_viewer_gets_it(pipeline: Pipeline) -> None:
    p = pipeline
    assert p.mirror.id == p.source.id and [s.rid for s in p.mirror.streams] == list(LAYERS)
    consumer = next(iter(p.sink.consumers.values()))
    for _ in range(20):
        p.publish(1)
        await asyncio.sleep(0.005)
    assert await eventually(lambda: len(p.viewer.rtp(consumer.ssrc)) >= 19)
    got = p.viewer.rtp(consumer.ssrc)
    assert all(b - a == 1 for a, b in zip(seqs(got), seqs(got)[1:], strict=False)), seqs(got)
    assert all(s.stats.packets >= 19 for s in p.mirror.streams), "every layer crossed on its own"
    # the origin's transport-wide slot is reused at the edge, not doubled
    assert [eid for eid, _, _ in extensions(got[-1])].count(TRANSPORT_CC_ID) == 1


async def test_a_viewers_keyframe_request_reaches_the_publisher(pipeline: Pipeline) -> None:
    p = pipeline
    p.publish(3)
    consumer = next(iter(p.sink.consumers.values()))
    assert await eventually(lambda: bool(p.viewer.rtp(consumer.ssrc)))
    p.publisher.received.clear()
    await asyncio.sleep(0.6)  # past the origin's keyframe-request throttle
    pli = struct.pack("!BBHII", 0x81, 206, 2, 0x5EED, consumer.ssrc)
    p.viewer.send(pli, p.edge.port)
    assert consumer.stream is not None
    origin = p.source.stream_by_rid(consumer.stream.rid)
    assert origin is not None
    origin_ssrc = origin.ssrc
    assert await eventually(
        lambda: any(struct.unpack_from("!I", r, 8)[0] == origin_ssrc for r in p.publisher.rtcp(206))
    ), "the PLI went viewer -> edge -> pipe -> origin -> publisher, for the layer the viewer gets"


async def test_a_packet_lost_on_the_pipe_is_resent_from_the_origins_cache(pipeline: Pipeline) -> None:
    p = pipeline
    consumer = next(iter(p.sink.consumers.values()))
    p.publish(3)
    assert await eventually(lambda: len(p.viewer.rtp(consumer.ssrc)) >= 3)
    real, dropped = p.out.sendto, []

    def lossy(data: bytes, addr: object) -> None:  # the pipe loses one packet of the top layer
        top = p.mirror.streams[-1].ssrc
        if (
            not dropped
            and not 192 <= data[1] <= 223
            and top is not None
            and data[8:12] == top.to_bytes(4, "big")
        ):
            dropped.append(data)
            return
        real(data, addr)  # type: ignore[arg-type]

    p.out.sendto = lossy  # type: ignore[method-assign]
    send_through_python(p.out)
    for _ in range(10):
        p.publish(1)
        await asyncio.sleep(0.005)
    assert dropped
    assert await eventually(lambda: len(set(seqs(p.viewer.rtp(consumer.ssrc)))) >= 13)
    assert p.origin.nacks >= 1, "the edge asked the origin"
    assert sum(c.retransmissions for c in p.out.consumers.values()) >= 1, "which resent it"


async def test_sender_reports_cross_the_pipe(pipeline: Pipeline) -> None:
    p = pipeline
    p.publish(2)
    ntp = 0xE000_0000_0000_0000
    for ssrc in LAYERS.values():  # the publisher's report, as a browser sends one
        sr = struct.pack("!BBHIQIII", 0x80, 200, 6, ssrc, ntp, 6000, 2, 100)
        p.publisher.send(sr, p.origin.port)
    for _ in range(40):
        p.publish(1)
        await asyncio.sleep(0.05)
        if all(s.stats.last_sr_arrival for s in p.mirror.streams):
            break
    assert all(s.stats.last_sr_arrival for s in p.mirror.streams), "the origin reported each layer"


async def test_a_bad_description_is_refused_and_changes_nothing(pipeline: Pipeline) -> None:
    p = pipeline
    router = p.edge.router("lesson")
    before = dict(router.producers)
    for bad in (
        {},
        {"track": "TR_x", "codec": {"name": "VP8"}},
        {"track": p.mirror.id} | pipe_out(p.out, p.source),
    ):
        with pytest.raises(PipeError):
            pipe_in(router, p.into, bad)
    assert router.producers == before


def test_idle_pipes_keep_their_consent() -> None:
    sent: list[bytes] = []
    node = Node("127.0.0.1", 0)
    transport = PipeTransport(node, ("127.0.0.1", 9))
    transport.send_rtcp = sent.append  # type: ignore[method-assign]
    transport.send_reports(1_000_000)
    assert sent and sent[0][1] == 201, "an empty receiver report"
