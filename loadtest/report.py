"""The report of a load run: per published track, over all its subscribers; the joins; the server's and
the clients' own CPU. Plain dicts (written as JSON) and a plain-text table."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any, TextIO

__all__ = [
    "CLIENT_BUSY",
    "percentile",
    "print_report",
    "probe_warnings",
    "publisher_problems",
    "signaling_figures",
    "table",
    "track_table",
    "write_json",
]

CLIENT_BUSY = 90.0  # percent of a core above which a worker, not the server, may be the limit
# a track whose frames stopped this long before the end ended early (audio: see track_table)
STOPPED_MS = 1000.0


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def _spread(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99)}


def track_table(
    published: dict[str, dict[str, str]], subscribers: list[dict[str, Any]], gone: Iterable[str] = ()
) -> dict[str, dict[str, Any]]:
    """Per published track, summed (or spread) over the subscribers that received it.

    ``bitrate_kbps`` is the mean bitrate one subscriber received; ``first_frame_ms`` runs from starting
    to join to the first keyframe (video); ``latency_ms`` p50 is the median of the subscribers' medians
    and p99 the 99th percentile of their 99th percentiles (one-way, from relayed sender reports).
    ``ended_early`` counts the subscribers for which the track ended before the run did (the server
    unpublished it, or its frames stopped STOPPED_MS before the end); ``stopped_ms`` is the median,
    over those, of the time from its last frame to the end (None when it ended for none).
    ``freezes`` counts gaps over 200 ms between frames over the whole run, ``steady_freezes`` those
    that ended in its steady part, once every subscriber had joined and settled (as the server's CPU
    is measured): a join storm and a load the server cannot carry are different findings.

    Silence is judged for audio only where it means something: the server forwards each subscriber
    only the loudest ``max_audio_streams`` voices (the room says how many), so a quiet voice among
    more is normal, unless its publisher is among ``gone`` (its process died, or it failed).
    """
    sums: dict[str, dict[str, Any]] = {}
    gone = set(gone)
    for peer in subscribers:
        tracks = (peer.get("subscriber") or {}).get("tracks") or {}
        voices = sum(1 for t in tracks.values() if t.get("kind") == "audio")
        loudest = peer.get("max_audio_streams")
        all_heard = not loudest or voices <= int(loudest)
        for track_id, t in tracks.items():
            info = published.get(track_id, {})
            s = sums.setdefault(
                track_id,
                {
                    "kind": t.get("kind") or info.get("kind"),
                    "publisher": info.get("publisher"),
                    "subscribers": 0,
                    "packets": 0,
                    "bytes": 0,
                    "seconds": 0.0,
                    "expected": 0,
                    "lost": 0,
                    "nacks": 0,
                    "plis": 0,
                    "freezes": 0,
                    "steady_freezes": 0,
                    "first": [],
                    "p50": [],
                    "p99": [],
                    "ended": 0,
                    "stopped": [],
                    "probe": None,
                },
            )
            if t.get("probe") is not None:
                s["probe"] = _probe(peer, t["probe"])
            idle = t.get("idle_ms")
            judged = s["kind"] == "video" or all_heard or s["publisher"] in gone
            stopped = judged and idle is not None and idle > STOPPED_MS
            if t.get("ended") or t.get("unpublished") or stopped:
                s["ended"] += 1
                if idle is not None:
                    s["stopped"].append(float(idle))
            s["subscribers"] += 1
            for key, name in (("packets", "packets"), ("bytes", "bytes"), ("expected", "expected")):
                s[key] += int(t.get(name) or 0)
            s["lost"] += max(0, int(t.get("lost") or 0))
            s["nacks"] += int(t.get("nacks_sent") or 0)
            s["plis"] += int(t.get("plis_sent") or 0)
            s["freezes"] += int(t.get("freezes") or 0)
            s["steady_freezes"] += int(t.get("steady_freezes") or 0)
            s["seconds"] += float(t.get("seconds") or 0.0)
            if t.get("first_frame_ms") is not None:
                s["first"].append(float(t["first_frame_ms"]))
            latency = t.get("latency_ms")
            if latency:
                s["p50"].append(float(latency["p50"]))
                s["p99"].append(float(latency["p99"]))
    table: dict[str, dict[str, Any]] = {}
    for track_id, s in sorted(sums.items(), key=lambda item: (str(item[1]["publisher"]), item[0])):
        table[track_id] = {
            "kind": s["kind"],
            "publisher": s["publisher"],
            "subscribers": s["subscribers"],
            "bitrate_kbps": round(s["bytes"] * 8 / s["seconds"] / 1000, 1) if s["seconds"] > 0 else None,
            "packets": s["packets"],
            "loss_percent": round(100 * s["lost"] / s["expected"], 3) if s["expected"] else 0.0,
            "nacks": s["nacks"],
            "plis": s["plis"],
            "freezes": s["freezes"],
            "steady_freezes": s["steady_freezes"],
            "first_frame_ms": _spread(s["first"]),
            "latency_ms": {"p50": percentile(s["p50"], 50), "p99": percentile(s["p99"], 99)},
            "ended_early": s["ended"],
            "stopped_ms": percentile(s["stopped"], 50),
            "probe": s["probe"],
        }
    return table


def _probe(peer: dict[str, Any], probe: dict[str, Any]) -> dict[str, Any]:
    """A track's ``probe`` in the table: what the one subscriber that decoded it saw (loadtest.probe)."""
    width, height = probe.get("width"), probe.get("height")
    return {
        "subscriber": peer.get("identity"),
        "decoded_frames": int(probe.get("decoded_frames") or 0),
        "decode_errors": int(probe.get("decode_errors") or 0),
        "size": f"{width}x{height}" if width and height else None,
        "problem": probe.get("problem"),
    }


def probe_warnings(tracks: dict[str, dict[str, Any]]) -> list[str]:
    """The probed tracks that did not prove valid: decode errors, or a problem (no frame decoded)."""
    return [
        f"{t['kind']} track {track_id} of {t['publisher']}: {p['subscriber']} decoded "
        f"{p['decoded_frames']} frame(s) with {p['decode_errors']} error(s)"
        + (f" ({p['problem']})" if p["problem"] else "")
        for track_id, t in tracks.items()
        if (p := t.get("probe")) and (p["problem"] or p["decode_errors"])
    ]


def publisher_problems(
    tracks: dict[str, dict[str, Any]], failures: list[dict[str, Any]], lost: list[str]
) -> list[dict[str, str]]:
    """The publishers that failed or ended early: could not publish (`failures`), whose worker died
    before sending its figures (`lost`), or whose tracks ended early for some subscribers."""
    problems = [{"identity": f["identity"], "problem": f"failed: {f['error']}"} for f in failures]
    problems += [{"identity": i, "problem": "its worker died before the end of the run"} for i in lost]
    early: dict[str, list[str]] = {}
    for t in tracks.values():
        if t["ended_early"]:
            stopped = "" if t["stopped_ms"] is None else f", {t['stopped_ms']:g} ms before the end"
            early.setdefault(str(t["publisher"]), []).append(
                f"{t['kind']} for {t['ended_early']} of {t['subscribers']} subscriber(s){stopped}"
            )
    problems += [{"identity": i, "problem": "ended early: " + "; ".join(e)} for i, e in early.items()]
    return problems


def signaling_figures(subscribers: list[dict[str, Any]]) -> dict[str, Any]:
    """What signaling cost the subscribers: the offers each got, the m-sections of the largest (an
    offer should follow what a peer watches, not the room's size), and the server's events by type
    over all of them (in a live room, a viewer's join should cost the other viewers nothing)."""
    received: Counter[str] = Counter()
    offers, sections = [], []
    for peer in subscribers:
        received.update(peer.get("received") or {})
        side = peer.get("subscriber") or {}
        offers.append(float(side.get("offers", 0)))
        sections.append(float(side.get("sections", 0)))
    return {
        "offers_per_subscriber": {"p50": percentile(offers, 50), "max": max(offers, default=None)},
        "offer_sections": {"p50": percentile(sections, 50), "max": max(sections, default=None)},
        "events": dict(sorted(received.items())),
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table(out: TextIO, header: list[str], rows: list[list[Any]]) -> None:
    cells = [header, *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ),
            file=out,
        )


def print_report(report: dict[str, Any], out: TextIO) -> None:
    run = report["run"]
    print(
        f"kelian loadtest: {run['publishers']} publisher(s), {run['subscribers']} subscriber(s) in room "
        f"{run['room']!r}, {run['layout']} layout, {run['duration']:g} s, {run['processes']} process(es)",
        file=out,
    )
    rows = [
        [
            track_id,
            t["kind"],
            t["publisher"],
            t["subscribers"],
            t["bitrate_kbps"],
            t["packets"],
            t["loss_percent"],
            t["nacks"],
            t["plis"],
            f"{t['freezes']} ({t['steady_freezes']})",
            t["first_frame_ms"]["p50"],
            t["first_frame_ms"]["p99"],
            t["latency_ms"]["p50"],
            t["latency_ms"]["p99"],
            t["ended_early"],
            t["probe"]["decoded_frames"] if t.get("probe") else None,
        ]
        for track_id, t in report["tracks"].items()
    ]
    header = ["track", "kind", "publisher", "subs", "kbit/s", "packets", "loss%", "nacks", "plis"]
    header += ["freezes (steady)", "ttff50ms", "ttff99ms", "lat50ms", "lat99ms", "ended"]
    header += ["decoded"]  # frames the track's probe decoded ("-": not probed)
    print(file=out)
    table(out, header, rows)
    joins = report["joins"]
    print(
        f"\njoins: {joins['joined']} of {joins['expected']} subscribers, "
        f"join p50 {_cell(joins['join_ms']['p50'])} ms, p99 {_cell(joins['join_ms']['p99'])} ms, "
        f"failures {len(joins['failures'])}",
        file=out,
    )
    for failure in joins["failures"][:10]:
        print(f"  {failure['identity']}: {failure['error']}", file=out)
    if "signaling" in report:
        sig = report["signaling"]
        events = ", ".join(f"{kind} {n}" for kind, n in sig["events"].items())
        print(
            f"signaling: offers per subscriber p50 {_cell(sig['offers_per_subscriber']['p50'])}, "
            f"max {_cell(sig['offers_per_subscriber']['max'])}; the largest offer "
            f"{_cell(sig['offer_sections']['max'])} sections (p50 {_cell(sig['offer_sections']['p50'])}); "
            f"events to all subscribers: {events or 'none'}",
            file=out,
        )
    if report["publisher_problems"]:
        print("publishers that failed or ended early:", file=out)
    for problem in report["publisher_problems"]:
        print(f"  {problem['identity']}: {problem['problem']}", file=out)
    server = report["server"]
    print(
        f"server (the last {_cell(server['measured_seconds'])} s): pid {_cell(server['pid'])}, "
        f"CPU {_cell(server['cpu_percent'])}%, "
        f"RSS {_cell(server['rss_mb'])} MB, forwarded {_cell(server['forwarded_packets'])} packets, "
        f"{_cell(server['forwarded_packets_per_cpu_second'])} per CPU-second",
        file=out,
    )
    print("clients:", file=out)
    table(
        out,
        ["worker", "peers", "cpu%", "cpu_s", "rss_mb"],
        [
            [w["worker"], w["peers"], w["cpu_percent"], w["cpu_seconds"], w["rss_mb"]]
            for w in report["workers"]
        ],
    )
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=out)


def write_json(path: str, report: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
