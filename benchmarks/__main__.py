"""`make bench`: the in-process costs, then the fixed `kelian loadtest` suite (benchmarks.suite), printed
as tables and written to benchmarks/results/<date>.json (see docs/performance.md)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from loadtest.report import table

from . import cluster_cost, consumer_cost, floor, peer_cost, recorder_cost, scaling, suite, switchover_cost

COLUMNS = [
    ("case", "case"),
    ("subs", "subscribers"),
    ("fwd pkt/s", "forwarded_packets_per_s"),
    ("server cpu%", "server_cpu_percent"),
    ("pkt per cpu-s", "forwarded_packets_per_cpu_second"),
    ("rss MB", "server_rss_mb"),
    ("lat p50 ms", "video_latency_p50_ms"),
    ("lat p99 ms", "video_latency_p99_ms"),
    ("ttff p50 ms", "first_frame_p50_ms"),
    ("loss%", "max_loss_percent"),
    ("freezes", "freezes"),
    ("steady frz", "steady_freezes"),
    ("client cpu%", "client_cpu_percent"),
    ("join p99 ms", "join_p99_ms"),
    ("offer secs", "offer_sections_p50"),
    ("joined evts", "participant_joined_events"),
]
TITLES = {
    "forwarding": "one VP8 publisher (one 360p layer, no audio) to N light subscribers without transport-cc",
    "simulcast": "a three-layer publisher (no audio) to 50 subscribers: all large, or mixed thirds",
    "live": "the live preset (720p simulcast and audio, speaker view) to N viewers",
    "lessons": "the three lessons: dual-teacher at 10 and 100 classrooms, fusion of 16, a live room of 300",
    "recording": "the live preset to 50 viewers with the room recorded (compare the live 50 row)",
}


def against_floor(rows: list[dict[str, Any]], floor_us: float | None) -> list[dict[str, Any]]:
    """Server CPU per forwarded packet of the forwarding and simulcast cases, and its ratio to the
    floor (what one send and one protect cost on this machine)."""
    found = []
    for r in rows:
        rate = r["forwarded_packets_per_cpu_second"]
        if r["table"] not in ("forwarding", "simulcast") or not rate:
            continue
        us = 1e6 / rate
        ratio = round(us / floor_us, 2) if floor_us else None
        found.append(
            {"table": r["table"], "case": r["case"], "us_per_packet": round(us, 2), "times_the_floor": ratio}
        )
    return found


def main() -> int:
    print("in-process forwarding cost (no sockets, real SRTP, AEAD_AES_128_GCM, 1200-byte VP8 packets)")
    cost = asyncio.run(consumer_cost.run())
    for name, value in cost.items():
        print(f"  {name:<40} {value:8.2f} us")
    print("\nlight test peer (loadtest/peer.py), in process: per packet, real SRTP, 640x360 VP8")
    peer = asyncio.run(peer_cost.run())
    for name, value in peer.items():
        print(f"  {name:<40} {value:8.2f} us")
    print("\nrecorder (a ~1 Mbit/s VP8 stream to Matroska, in process) and the finishing job (a minute)")
    recording = recorder_cost.run()
    for name, figure in recording.items():
        print(f"  {name:<40} {figure:8g}")
    rows: list[dict[str, Any]] = []
    for name, label, flags in suite.CASES:
        if not rows or rows[-1]["table"] != name:
            print(f"\n{TITLES[name]}  (kelian loadtest {' '.join(flags[:2])} ...)", flush=True)
        rows.append(suite.run_case(name, label, flags))
        r = rows[-1]
        print(
            "  " + "  ".join(f"{header}={r[key] if r[key] is not None else '-'}" for header, key in COLUMNS),
            flush=True,
        )
        for warning in r["warnings"]:
            print(f"    warning: {warning}", flush=True)
    print("\none pipe hop between two Nodes, loopback, one process (cluster_cost)", flush=True)
    hop = asyncio.run(cluster_cost.pipe_latency())
    print(f"  {hop}", flush=True)
    print("\na node of two killed outright: its clients back with media (cluster_cost)", flush=True)
    failure = asyncio.run(cluster_cost.node_failure())
    print(f"  {failure}", flush=True)
    print("\na live lecture on one worker and spread over two (scaling)", flush=True)
    spread = scaling.run()
    for key, value in spread.items():
        print(f"  {key}: {value}", flush=True)
    print("\na district's switchover, 200 schools, 4,000 lessons (switchover_cost)", flush=True)
    switchover = switchover_cost.run()
    for key, value in switchover.items():
        print(f"  {key}: {value}", flush=True)
    print("\nlayer switch: request to the first decoded frame of the new layer (aiortc probe)", flush=True)
    switches = suite.layer_switches()
    print(f"  {switches}")
    print("\nthe floor on this machine: a C sender, Python's sendto, SRTP protect (floor)", flush=True)
    bottom = floor.run()
    print(f"  {bottom}")
    per_packet = against_floor(rows, bottom["floor_us"])
    for line in per_packet:
        print(f"  {line['table']} {line['case']}: {line['us_per_packet']} us a forwarded packet,"
              f" {line['times_the_floor']}x the floor")  # fmt: skip
    print()
    table(sys.stdout, [h for h, _ in COLUMNS], [[r[k] for _, k in COLUMNS] for r in rows])
    report = {
        "consumer_cost": cost,
        "peer_cost": peer,
        "recorder_cost": recording,
        "runs": rows,
        "layer_switch": switches,
        "node_failure": failure,
        "pipe_hop": hop,
        "floor": bottom,
        "per_forwarded_packet": per_packet,
        "scaling": spread,
        "switchover": switchover,
    }
    suite.write_results(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
