"""`make capacity`: `kelian loadtest --find-capacity` for the live and dual-teacher presets, each
against a fresh server, written to benchmarks/results/<date>-capacity.json.

Steps grow until loss passes 1%, a track freezes, a join fails, the server passes 90% of a core, or
a client worker passes 90% of a core (then the clients, not the server, were the limit: on a
two-core machine that shares its cores between the server and the clients, that is the usual end).
The figure docs/performance.md quotes is the largest step held and the subscribers per core of
server CPU at that step.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from typing import Any

from loadtest.capacity import find_capacity
from loadtest.options import add_arguments, plan_from_args

from . import suite
from .__main__ import RESULTS_DIR

JOIN_RATE = 25.0
SEARCHES = {
    "live": ["--preset", "live", "--start", "50", "--step", "50", "--max-subscribers", "500"],
    "dual-teacher": ["--preset", "dual-teacher", "--start", "30", "--step", "10", "--max-subscribers", "150"],
}


def search(name: str, flags: list[str]) -> dict[str, Any]:
    with suite.server() as (pid, url):
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        argv = ["--url", url, "--room", f"capacity-{name}", "--api-key", suite.API_KEY]
        argv += ["--api-secret", suite.API_SECRET, "--server-pid", str(pid), "--find-capacity"]
        argv += ["--join-rate", str(JOIN_RATE), "--duration", str(suite.STEADY + 3)]
        plan = plan_from_args(parser.parse_args([*argv, *flags]))
        plan = dataclasses.replace(plan, quiet=False)
        result = find_capacity(plan, sys.stdout)
    for step in result["steps"]:
        step.pop("report", None)  # the per-track detail of every step: too much for the results file
    return result


def main() -> int:
    results = {}
    for name, flags in SEARCHES.items():
        print(f"\n{name}: kelian loadtest {' '.join(flags)}", flush=True)
        results[name] = search(name, flags)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{datetime.date.today().isoformat()}-capacity.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
