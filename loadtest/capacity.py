"""``kelian loadtest --find-capacity``: run the plan's steps (see loadtest.options), each a fresh room
with more subscribers, until one breaks a limit; report the largest load held.

Limits are judged on the step's steady part (once everyone has joined and settled): loss over the
run, but freezes and the server's CPU from then on; the joins' freezes are in the step's report.

Each step is a run of its own in a room of its own (``<room>-<subscribers>``): everyone joins again,
so a step's figures are its own and not what the previous step left behind (a track that froze, a
backlog), and the code is the plain run's. It costs a join per step, which the step's duration
includes. A step breaks when loss on a track is over LOSS_LIMIT %, a track froze, a subscriber could
not join, a publisher failed, or (when the server's CPU is known) the server used over CPU_LIMIT %. A
step in which a worker used over CLIENT_BUSY % of a core stops the search: the clients, not the server,
were the limit, so that step says nothing about the server.
"""

from __future__ import annotations

import io
import sys
from typing import Any, TextIO

from .options import Plan
from .report import CLIENT_BUSY, table, write_json
from .run import RunError, run

__all__ = ["CPU_LIMIT", "LOSS_LIMIT", "find_capacity"]

LOSS_LIMIT = 1.0  # percent, on any track
CPU_LIMIT = 90.0  # percent of the server's CPU (of one core: over 100 uses more than one)


def _judge(subscribers: int, report: dict[str, Any]) -> dict[str, Any]:
    """One step's row: its figures, what limits it broke, and whether the clients were the limit."""
    tracks = report["tracks"].values()
    loss = max((t["loss_percent"] for t in tracks), default=0.0)
    freezes = sum(t["steady_freezes"] for t in tracks)  # the joins' own are reported, not judged
    cpu = report["server"]["cpu_percent"]
    busiest = max((w["cpu_percent"] for w in report["workers"]), default=0.0)
    broke = []
    if loss > LOSS_LIMIT:
        broke.append(f"loss {loss:g}% over {LOSS_LIMIT:g}%")
    if freezes:
        broke.append(f"{freezes} freeze(s)")
    if report["joins"]["failures"]:
        broke.append(f"{len(report['joins']['failures'])} join failure(s)")
    if report["publisher_problems"]:
        broke.append(f"{len(report['publisher_problems'])} publisher problem(s)")
    if cpu is not None and cpu > CPU_LIMIT:
        broke.append(f"server CPU {cpu:g}% over {CPU_LIMIT:g}%")
    return {
        "subscribers": subscribers,
        "duration": report["run"]["duration"],
        "joined": report["joins"]["joined"],
        "max_loss_percent": loss,
        "freezes": freezes,
        "server_cpu_percent": cpu,
        "busiest_worker_cpu_percent": busiest,
        "clients_busy": busiest > CLIENT_BUSY,
        "held": not broke,
        "broke": broke,
    }


def find_capacity(plan: Plan, out: TextIO, status: TextIO | None = None) -> dict[str, Any]:
    """Run the steps until one breaks a limit (or the clients do); print the table of steps to `out`
    (and write the JSON report if asked); returns the report."""
    if status is None and not plan.quiet:
        status = sys.stderr
    rows: list[dict[str, Any]] = []
    stopped = "every step held, up to --max-subscribers"
    held: dict[str, Any] | None = None
    for number, step in enumerate(plan.steps, 1):
        if status is not None:
            print(
                f"step {number}/{len(plan.steps)}: {step.subscribers} subscriber(s)", file=status, flush=True
            )
        try:
            report = run(step, io.StringIO(), status)  # the step's full report goes in the JSON only
        except RunError as exc:
            rows.append({"subscribers": step.subscribers, "held": False, "broke": [f"run failed: {exc}"]})
            stopped = f"{step.subscribers} subscribers: the run failed"
            break
        row = _judge(step.subscribers, report) | {"report": report}
        rows.append(row)
        if row["clients_busy"]:
            row["held"] = False
            stopped = (
                f"stopped early at {step.subscribers} subscribers: a worker used "
                f"{row['busiest_worker_cpu_percent']:g}% of a core, the clients were the bottleneck "
                "(use more --processes)"
            )
            break
        if not row["held"]:
            stopped = f"{step.subscribers} subscribers broke a limit: " + ", ".join(row["broke"])
            break
        held = row
    cpu_known = bool(rows) and all(r.get("server_cpu_percent") is not None for r in rows if "report" in r)
    per_core = None
    if held is not None and held["server_cpu_percent"]:
        per_core = round(held["subscribers"] / (held["server_cpu_percent"] / 100), 1)
    result = {
        "capacity": {
            "room": plan.room,
            "preset": plan.preset,
            "publishers": plan.publishers,
            "steps": [s.subscribers for s in plan.steps],
            "limits": {"loss_percent": LOSS_LIMIT, "steady_freezes": 0, "server_cpu_percent": CPU_LIMIT},
            "server_cpu_known": cpu_known,
            "largest_held": held["subscribers"] if held else None,
            "subscribers_per_core": per_core,
            "stopped": stopped,
        },
        "steps": rows,
    }
    _print(result, out)
    if plan.report:
        write_json(plan.report, result)
    return result


def _print(result: dict[str, Any], out: TextIO) -> None:
    capacity = result["capacity"]
    print(
        f"kelian loadtest --find-capacity: {capacity['publishers']} publisher(s), steps of subscribers",
        file=out,
    )
    header = ["subs", "joined", "loss%", "freezes", "srv_cpu%", "client_cpu%", "held", "broke"]
    rows = [
        [
            r["subscribers"],
            r.get("joined"),
            r.get("max_loss_percent"),
            r.get("freezes"),
            r.get("server_cpu_percent"),
            r.get("busiest_worker_cpu_percent"),
            "yes" if r["held"] else "no",
            ", ".join(r["broke"]) or "-",
        ]
        for r in result["steps"]
    ]
    table(out, header, rows)
    largest = capacity["largest_held"]
    print(f"largest load held: {'none' if largest is None else f'{largest} subscribers'}", file=out)
    if capacity["subscribers_per_core"] is not None:
        print(f"held subscribers per core of server CPU: {capacity['subscribers_per_core']:g}", file=out)
    if not capacity["server_cpu_known"]:
        print("server CPU unknown (not a local server, or no --server-pid): not judged", file=out)
    print(capacity["stopped"], file=out)
