"""`make bench`: the forwarding benchmarks, printed as a table (see README, Performance)."""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from pathlib import Path

import uvloop

from . import consumer_cost, forwarding, peer_cost, simulcast

# One file per day (a later run that day overwrites it); benchmarks/plot.py draws one.
RESULTS_DIR = Path(__file__).parent / "results"


def main() -> int:
    print("in-process forwarding cost (no sockets, real SRTP, AEAD_AES_128_GCM, 1200-byte VP8 packets)")
    cost = asyncio.run(consumer_cost.run())
    for name, value in cost.items():
        print(f"  {name:<40} {value:8.2f} us")
    print()
    print("light test peer (loadtest/peer.py), in process: per packet, real SRTP, 640x360 VP8")
    peer = asyncio.run(peer_cost.run())
    for name, value in peer.items():
        print(f"  {name:<40} {value:8.2f} us")
    print()
    print("one ~1.1 Mbit/s VP8 publisher to N subscribers over loopback (server in its own process)")
    header = (
        f"  {'subs':>5} {'fwd pkt/s':>10} {'server CPU':>11} {'pkt per CPU-s':>14}"
        f" {'lat p50 ms':>11} {'lat p99 ms':>11} {'RSS MB':>7}"
    )
    print(header)
    results = []
    for count in (1, 10, 50):
        r = uvloop.run(forwarding.run_case(count))
        results.append(r)
        print(
            f"  {r['subscribers']:>5} {r['forwarded_packets_per_s']:>10} {r['server_cpu_percent']:>10}%"
            f" {r['forwarded_packets_per_cpu_second'] or 0:>14}"
            f" {r['latency_p50_ms']:>11} {r['latency_p99_ms']:>11}"
            f" {r['server_rss_mb']:>7}",
            flush=True,
        )
    print()
    print("simulcast: a three-layer publisher to 50 light subscribers, all on the large layer (full)")
    print("or a third each on small, medium, large (mixed), with or without transport-cc feedback;")
    print("a decoding probe times switches between the small and large layer")
    print(
        f"  {'views':>6} {'tcc':>4} {'fwd pkt/s':>10} {'server CPU':>11} {'pkt per CPU-s':>14}"
        f" {'switch p50 ms':>14} {'switch p99 ms':>14}"
    )
    layered = []
    for mixed, transport_cc in ((False, True), (False, False), (True, True)):
        r = uvloop.run(simulcast.run_case(mixed=mixed, transport_cc=transport_cc))
        layered.append(r)
        print(
            f"  {r['views']:>6} {'on' if transport_cc else 'off':>4}"
            f" {r['forwarded_packets_per_s']:>10} {r['server_cpu_percent']:>10}%"
            f" {r['forwarded_packets_per_cpu_second'] or 0:>14}"
            f" {r['layer_switch_p50_ms'] or '-':>14} {r['layer_switch_p99_ms'] or '-':>14}",
            flush=True,
        )
    print()
    report = {"consumer_cost": cost, "peer_cost": peer, "forwarding": results, "simulcast": layered}
    print(json.dumps(report))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
