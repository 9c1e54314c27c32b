"""Draw a `make bench` results file: server CPU % and forwarded packets/s against subscribers.

    python -m benchmarks.plot benchmarks/results/<date>.json docs/img/performance.png

Each series of `kelian loadtest` runs (benchmarks.suite: "forwarding", one layer; "live", the live
preset) is a line; the 50-subscriber simulcast runs are separate points, labelled by case.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

LINES = {
    "forwarding": ("o-", "one 360p VP8 layer, no audio"),
    "live": ("s-", "live preset: 720p simulcast + audio"),
}
POINT_MARKERS = ("D", "^", "v", "P", "X")


def plot(report: dict[str, Any], out: Path, title: str = "") -> None:
    """Write a PNG of ``report`` (the JSON `make bench` writes) to ``out``."""
    runs = report.get("runs", [])
    fig, (cpu_ax, pkt_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    panels = (
        (cpu_ax, "server_cpu_percent", "server CPU (% of one core)"),
        (pkt_ax, "forwarded_packets_per_s", "forwarded RTP packets per second"),
    )
    for ax, key, label in panels:
        most = 50
        for table, (style, name) in LINES.items():
            rows = [r for r in runs if r["table"] == table and r[key] is not None]
            xs, ys = [r["subscribers"] for r in rows], [r[key] for r in rows]
            most = max([most, *xs])
            ax.plot(xs, ys, style, label=name)
            for x, y in zip(xs, ys, strict=True):
                ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
        points = [r for r in runs if r["table"] == "simulcast" and r[key] is not None]
        for marker, r in zip(POINT_MARKERS, points, strict=False):
            ax.plot(r["subscribers"], r[key], marker, linestyle="none", label=f"simulcast, {r['case']}")
        ax.set_xlabel("subscribers")
        ax.set_ylabel(label)
        ax.set_xlim(0, most * 1.1)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    pkt_ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title or "kelian over loopback (make bench)")
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
    plot(report, out, title=f"kelian over loopback, make bench {source.stem}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
