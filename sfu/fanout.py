"""The forwarding path's fan-out: one received packet to every Consumer of a stream.

`forward` is sfu/_fanout.c, compiled when kelian is installed: per Consumer it rewrites the header,
protects and sends without returning to the interpreter (docs/performance.md has the profile that
called for it). A Consumer reaches it through its transport's `Sender` (the SRTP session, socket and
address in C terms); one without a Sender (not keyed yet, an address the Sender cannot express, a
test's fake transport) is sent through `Consumer.send`, the reference path the compiled one must
match byte for byte (tests/test_fanout.py). Where nothing could be compiled, every Consumer goes that
way and only speed differs.

`router_terms` is the step before, once per received packet: the publisher's packet in router terms
with a slot for the transport-wide number (the reference is rtp.router_terms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["COMPILED", "Forward", "Sender", "forward", "router_terms"]

if TYPE_CHECKING:
    from ._fanout import Forward, Sender, forward, router_terms

    COMPILED: bool
else:
    try:
        from ._fanout import Forward, Sender, forward, router_terms

        COMPILED = True
    except ImportError:  # no C compiler or Python headers where kelian was installed
        from .rtp import router_terms

        COMPILED = False
        Sender = None

        class Forward:
            """The numbers _fanout.Forward keeps in C, as plain slots."""

            __slots__ = (
                "bytes",
                "errors",
                "ext_table",
                "last_seq",
                "last_ts",
                "packets",
                "payload_type",
                "sender",
                "seq_delta",
                "ssrc",
                "sync_seq",
                "ts_delta",
                "vp8_deltas",
            )

        def forward(
            consumers: list[Any], packet: bytes, seq: int, ts: int, twcc_at: int, sent_at: float
        ) -> None:
            for consumer in consumers:
                consumer.send(packet, seq, ts)
