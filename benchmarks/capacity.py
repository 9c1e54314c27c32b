"""`make capacity`: `kelian loadtest --find-capacity` for the live and dual-teacher presets, each
against a fresh server, written to benchmarks/results/<date>-capacity.json.

Steps grow until loss passes 1%, a track freezes in a step's steady part, a join fails, the server
passes 90% of a core, or a client worker passes 90% of a core (then the clients, not the server, were
the limit: on a two-core machine that shares its cores between the server and the clients, that is
the usual end).
The figure docs/performance.md quotes is the largest step held and the subscribers per core of
server CPU at that step.
"""

from __future__ import annotations

import sys
from typing import Any

from loadtest import run as loadtest_run
from loadtest.capacity import find_capacity

from . import suite

SEARCHES = {
    "live": ["--preset", "live", "--start", "50", "--step", "50", "--max-subscribers", "500"],
    "dual-teacher": ["--preset", "dual-teacher", "--start", "50", "--step", "25", "--max-subscribers", "300"],
}


def search(name: str, flags: list[str]) -> dict[str, Any]:
    with suite.server() as (pid, url):
        duration = suite.STEADY + loadtest_run.SETTLE  # each step: its joins, then this
        plan = suite.loadtest_plan(
            url, pid, f"capacity-{name}", ["--find-capacity", "--duration", str(duration), *flags]
        )
        result = find_capacity(plan, sys.stdout)
    for step in result["steps"]:
        step.pop("report", None)  # the per-track detail of every step: too much for the results file
    return result


def main() -> int:
    results = {}
    for name, flags in SEARCHES.items():
        print(f"\n{name}: kelian loadtest {' '.join(flags)}", flush=True)
        results[name] = search(name, flags)
    suite.write_results(results, "-capacity")
    return 0


if __name__ == "__main__":
    sys.exit(main())
