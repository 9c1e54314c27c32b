"""Pipes: a Producer of one Node fed into a Router of another Node, as mediasoup's pipeToRouter.

A room that outgrows one worker process, or one machine, is spread: the Node that holds its
publishers (the origin) pipes their Producers to the Nodes where more of its viewers are (the
edges), and the edges' subscribers consume the piped Producers as they would local ones. One
PipeTransport joins two Nodes, whatever rooms they share: plain RTP between their media ports
(loopback between workers; a private network between machines), no ICE, DTLS or SRTP, as a
PlainTransport.

On the origin, a Producer is piped by a Consumer per layer, each pinned to its layer (simulcast
allocation never moves it): every layer crosses, so each edge chooses layers for its own viewers as
the origin does. The Consumers keep their layer's sequence numbers and timestamps continuous and
give it an SSRC of its own on the pipe. On the edge, a Producer with one stream per piped layer,
known by those SSRCs, mirrors the original under the same track id. What an edge needs of the origin
travels back as the RTCP it already speaks: a keyframe request (PLI) reaches the piped layer's
Consumer and from it the publisher; a NACK is answered from the origin's cache (or, once the
publisher resends, by the resend itself); sender reports cross the other way, so lip sync holds at
the edge; each end's reports are the other's consent, as a recorder's are.

`pipe_out` returns a description of the piped Producer (JSON-able), which whatever carries the
cluster's control messages takes to the edge, where `pipe_in` builds the mirror from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from time import monotonic
from typing import TYPE_CHECKING, Any

from .codecs import TRANSPORT_CC_ID
from .consumer import Consumer
from .plain_transport import PlainTransport
from .producer import TWCC_SLOT, CodecSpec, Producer, ProducerSpec, StreamSpec
from .rtp import RtpError, extension_offset, insert_extension_slot

if TYPE_CHECKING:
    from .ice import Address
    from .node import Node
    from .producer import RtpStream
    from .router import Router

KEEPALIVE = b"\x80\xc9\x00\x01" + b"kpip"  # an empty receiver report: consent on an idle pipe


class PipeError(ValueError):
    """A pipe description that cannot be mirrored."""


class PipeTransport(PlainTransport):
    """One end of the pipe between two Nodes."""

    def simulcast_consumers(self) -> bool:
        return False  # its Consumers are pinned to their layers: allocation leaves them alone

    def send_reports(self, max_bitrate: int) -> None:
        super().send_reports(max_bitrate)
        if not self.consumers and not self.incoming:
            self.send_rtcp(KEEPALIVE)  # nothing piped yet: the other end still hears we are here


def pipe_to(node: Node, remote: Address) -> PipeTransport:
    """The pipe between `node` and the Node at `remote`, made on first use: one joins two Nodes
    whatever rooms they share (the node tells its plain transports apart by their address)."""
    existing = node.by_addr.get(remote)
    if isinstance(existing, PipeTransport) and existing.state != "closed":
        return existing
    return PipeTransport(node, remote)


def pipe_out(transport: PipeTransport, producer: Producer) -> dict[str, Any]:
    """Start piping `producer` over `transport`: a Consumer pinned to each of its layers. The
    description the edge mirrors it from."""
    streams = []
    for stream in producer.streams:
        consumer = Consumer(transport, producer, f"{producer.id}.{stream.index}")
        transport.add_consumer(consumer)
        consumer.attach(stream)
        streams.append({"rid": stream.rid, "ssrc": consumer.ssrc})
    return {
        "track": producer.id,
        "kind": producer.kind,
        "source": producer.source,
        "name": producer.name,
        "codec": asdict(producer.codec),
        "feedback": sorted(producer.feedback),
        "streams": streams,
    }


def stop_piping(transport: PipeTransport, producer: Producer) -> None:
    """The edge at the other end no longer follows `producer`: its pinned Consumers go."""
    for consumer in [c for c in transport.consumers.values() if c.producer is producer]:
        consumer.close()


def pipe_in(router: Router, transport: PipeTransport, description: dict[str, Any]) -> Producer:
    """The edge's mirror of a piped Producer, in `router`, under the origin's track id."""
    try:
        codec = CodecSpec(**description["codec"])
        track = str(description["track"])
        streams = [StreamSpec(rid=s["rid"], ssrc=int(s["ssrc"])) for s in description["streams"]]
        spec = ProducerSpec(
            kind=str(description["kind"]),
            mid=track,
            codec=codec,
            publisher_payload_type=codec.payload_type,  # the origin sends in router terms already
            publisher_rtx_payload_type=None,  # its resends come as the packets themselves
            streams=streams,
            # the origin answers NACKs from its cache and PLIs through its publisher, whatever the
            # publisher itself negotiated
            feedback=frozenset(description.get("feedback", ())) | {"nack", "pli"},
            source=str(description.get("source", "camera")),
            name=str(description.get("name", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PipeError(f"a pipe description kelian cannot mirror: {exc!r}") from None
    if not streams or spec.kind not in ("audio", "video") or track in router.producers:
        raise PipeError(f"cannot mirror track {track!r} here")
    producer = Producer(transport, spec, track_id=track)
    for stream in producer.streams:
        stream.normalize = _reuse_twcc_slot(stream)
    transport.add_producer(producer)
    router.add_producer(producer)
    return producer


def _reuse_twcc_slot(stream: RtpStream) -> Callable[[bytes], bytes]:
    """A piped packet is in router terms already and carries the origin's transport-wide slot:
    the edge's Consumers write their own number there, rather than into a second element."""

    def normalize(packet: bytes) -> bytes:
        at = extension_offset(packet, TRANSPORT_CC_ID)
        if at < 0:
            buf = bytearray(packet)
            try:
                at = insert_extension_slot(buf, TWCC_SLOT)
            except RtpError:
                at = -1
            packet = bytes(buf)
        stream.twcc_at = at
        stream.sent_at = monotonic()
        return packet

    return normalize
