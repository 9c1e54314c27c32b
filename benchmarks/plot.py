"""Draw a `make bench` results file: server CPU % and forwarded packets/s against subscribers.

    python -m benchmarks.plot benchmarks/results/<date>.json docs/img/performance.png

The "forwarding" rows (one VP8 publisher to N subscribers) are one line per figure; the "simulcast"
rows (a three-layer publisher to 50 subscribers) are separate points, labelled by view and
transport-cc.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

SIMULCAST_MARKERS = {("full", True): "s", ("full", False): "D", ("mixed", True): "^", ("mixed", False): "v"}


def plot(report: dict[str, Any], out: Path, title: str = "") -> None:
    """Write a PNG of ``report`` (the JSON `make bench` writes) to ``out``."""
    forwarding = report.get("forwarding", [])
    simulcast = report.get("simulcast", [])
    fig, (cpu_ax, pkt_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    panels = (
        (cpu_ax, "server_cpu_percent", "server CPU (% of one core)"),
        (pkt_ax, "forwarded_packets_per_s", "forwarded RTP packets per second"),
    )
    for ax, key, label in panels:
        xs = [row["subscribers"] for row in forwarding]
        ys = [row[key] for row in forwarding]
        ax.plot(xs, ys, "o-", color="tab:blue", label="VP8 publisher, one layer")
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
        for row in simulcast:
            view, tcc = row.get("views", "?"), bool(row.get("transport_cc"))
            ax.plot(
                row.get("subscribers", 50),
                row[key],
                SIMULCAST_MARKERS.get((view, tcc), "x"),
                linestyle="none",
                label=f"simulcast, {view}, transport-cc {'on' if tcc else 'off'}",
            )
        ax.set_xlabel("subscribers")
        ax.set_ylabel(label)
        ax.set_xlim(0, max([*xs, 50]) * 1.12)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    pkt_ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title or "kelian forwarding over loopback (make bench)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.plot RESULTS.json OUT.png", file=sys.stderr)
        return 2
    source, out = Path(argv[0]), Path(argv[1])
    report = json.loads(source.read_text())
    plot(report, out, title=f"kelian forwarding over loopback, make bench {source.stem}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
