"""Prometheus metrics, read from the SFU's plain counters at scrape time.

The forwarding path only increments ints on its own objects; a prometheus_client Counter there
would take a lock per packet. This collector sums those ints when /metrics is scraped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from prometheus_client import ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from classroom.limits import Refusals
from classroom.rooms import Rooms
from school.schools import Schools
from sfu.node import Node

from .webhooks import Webhooks


class KelianCollector(Collector):
    def __init__(self, node: Node, rooms: Rooms) -> None:
        self.node = node
        self.rooms = rooms

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        node = self.node
        transports = list(node.transports.values())
        yield GaugeMetricFamily("kelian_rooms", "Rooms open on this node", value=len(self.rooms.rooms))
        with contextlib.suppress(RuntimeError):  # collected outside the event loop: no tasks to count
            yield GaugeMetricFamily(
                "kelian_tasks", "asyncio tasks of the process", value=len(asyncio.all_tasks())
            )
        yield GaugeMetricFamily(
            "kelian_participants",
            "Participants in rooms on this node",
            value=sum(len(r.participants) for r in self.rooms.rooms.values()),
        )
        by_state = GaugeMetricFamily("kelian_transports", "WebRTC transports by state", labels=["state"])
        for state in ("new", "connecting", "connected"):
            by_state.add_metric([state], sum(1 for t in transports if t.state == state))
        yield by_state
        yield GaugeMetricFamily(
            "kelian_producers", "Tracks being published", value=sum(len(t.producers) for t in transports)
        )
        yield GaugeMetricFamily(
            "kelian_consumers", "Tracks being forwarded", value=sum(len(t.consumers) for t in transports)
        )
        estimates = sorted(e for t in transports if t.state == "connected" and (e := t.available_bitrate()))
        bandwidth = GaugeMetricFamily(
            "kelian_bandwidth_estimate_bits",
            "Subscriber links as estimated (transport-cc, else REMB), bit/s: lowest, median, highest",
            labels=["stat"],
        )
        if estimates:
            for stat, value in (
                ("min", estimates[0]),
                ("median", estimates[len(estimates) // 2]),
                ("max", estimates[-1]),
            ):
                bandwidth.add_metric([stat], value)
        yield bandwidth
        yield GaugeMetricFamily(
            "kelian_estimated_links", "Subscriber links with a bandwidth estimate", value=len(estimates)
        )
        totals = node.consumer_totals()
        counters = [
            ("kelian_datagrams_received", "UDP datagrams received on the media port", node.packets_in),
            ("kelian_bytes_received", "Bytes received on the media port", node.bytes_in),
            ("kelian_packets_sent", "RTP packets forwarded to subscribers", totals["packets"]),
            ("kelian_bytes_sent", "RTP bytes forwarded to subscribers", totals["bytes"]),
            ("kelian_retransmissions", "Packets resent from the cache for NACKs", totals["retransmissions"]),
            ("kelian_nacks", "NACK messages received from subscribers", node.nacks),
            ("kelian_nacks_sent", "NACK messages sent to publishers for lost packets", node.nacks_sent),
            ("kelian_repairs", "Lost packets that publishers resent as RTX", node.repairs),
            ("kelian_plis", "PLI and FIR requests received from subscribers", node.plis),
            ("kelian_keyframe_requests", "Keyframe requests sent to publishers", node.keyframe_requests),
            (
                "kelian_feedback_datagrams",
                "Transport-cc feedback datagrams the kernel steered to the batch-read socket",
                node.feedback_read,
            ),
            ("kelian_stun_requests", "ICE connectivity and consent checks answered", node.stun_requests),
            ("kelian_dropped_datagrams", "Datagrams dropped as unknown or malformed", node.dropped),
            (
                "kelian_forwarding_errors",
                "Packets lost to errors inside the server (SRTP, exceptions)",
                node.errors + totals["errors"],
            ),
        ]
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
        yield refused(self.rooms.refusals)


def refused(refusals: Refusals) -> CounterMetricFamily:
    """kelian_refused_total{reason}: a node's, or a front's own (its connection bounds)."""
    family = CounterMetricFamily(
        "kelian_refused",
        "What the server's bounds refused, by reason (docs/security.md)",
        labels=["reason"],
    )
    for reason, count in sorted(refusals.items()):
        family.add_metric([reason], count)
    return family


class RefusalCollector(Collector):
    def __init__(self, refusals: Refusals) -> None:
        self.refusals = refusals

    def collect(self) -> Iterator[Metric]:
        yield refused(self.refusals)


class LessonCollector(Collector):
    """The switchovers and the webhooks: counters kept on their own objects."""

    def __init__(self, schools: Schools, hooks: Webhooks) -> None:
        self.schools = schools
        self.hooks = hooks

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        counts = self.schools.counts
        switches = CounterMetricFamily(
            "kelian_switchovers", "Switchovers, by the mode switched to", labels=["mode"]
        )
        for mode in ("online", "offline"):
            switches.add_metric([mode], counts[mode])
        yield switches
        yield CounterMetricFamily(
            "kelian_switchover_clients_told", "Clients told of a switchover, in all", value=counts["told"]
        )
        yield GaugeMetricFamily(
            "kelian_switchover_last_seconds",
            "The last switchover: from the request to the last client's message queued",
            value=self.schools.last_told_ms / 1000,
        )
        hooks = CounterMetricFamily("kelian_webhooks", "Webhook events by outcome", labels=["result"])
        for result in ("sent", "failed", "dropped"):
            hooks.add_metric([result], self.hooks.counts[result])
        yield hooks
        yield CounterMetricFamily(
            "kelian_webhook_retries", "Webhook deliveries tried again", value=self.hooks.counts["retries"]
        )


def registry(node: Node, rooms: Rooms, schools: Schools, hooks: Webhooks) -> CollectorRegistry:
    """kelian's figures and the process's own (``process_cpu_seconds_total``,
    ``process_resident_memory_bytes``...): a load test of a remote server reads its CPU and memory
    from here."""
    reg = CollectorRegistry()
    reg.register(KelianCollector(node, rooms))
    reg.register(LessonCollector(schools, hooks))
    ProcessCollector(registry=reg)
    return reg
