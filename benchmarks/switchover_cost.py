"""A district's switchover at the size of a city district: the server's side of one call. `make bench`
prints it; `python -m benchmarks.switchover_cost` alone.

`kelian serve --workers 2` in a process of its own, its database a file, then two nodes on a
real redis-server (`--redis-url`, one worker each, the call made to one); a district of SCHOOLS
schools with LESSONS lessons each in session now (two classrooms with a box each). One
`POST /api/v1/switchover {"district": ..., "mode": "online"}` opens every lesson's room (placed over
the workers, each told at once), writes the modes and the audit; then back to "offline", which
closes them. The figure is each call's wall time as the school's system sees it, and the rooms it
reports. No client is connected: telling clients is one queued message each on their own socket,
measured by tests/test_switchover_crowd.py (200 clients in one call).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from . import cluster_cost, suite

SCHOOLS = 200
LESSONS = 20  # in session in each school at once


def district(now: float, schools: int, lessons: int) -> dict[str, Any]:
    body: dict[str, Any] = {k: [] for k in ("schools", "classrooms", "teachers", "students", "lessons")}
    body["districts"] = [{"id": "d1"}]
    for s in range(schools):
        school = f"s{s}"
        body["schools"].append({"id": school, "district": "d1", "mode": "offline"})
        for n in range(lessons):
            lesson = f"{school}-l{n}"
            rooms = [f"{lesson}-c{c}" for c in range(2)]
            body["teachers"].append({"id": f"{lesson}-t", "school": school})
            body["classrooms"] += [{"id": c, "school": school, "box": f"box-{c}"} for c in rooms]
            body["lessons"].append(
                {
                    "id": lesson,
                    "school": school,
                    "teacher": f"{lesson}-t",
                    "classrooms": rooms,
                    "starts_at": int(now) - 60,
                    "ends_at": int(now) + 3600,
                }
            )
    return body


async def switch(url: str, schools: int, lessons: int) -> dict[str, Any]:
    auth = {"Authorization": aiohttp.BasicAuth(suite.API_KEY, suite.API_SECRET).encode()}
    async with aiohttp.ClientSession(headers=auth, timeout=aiohttp.ClientTimeout(total=600)) as http:
        async with http.post(url + "/api/v1/import", json=district(time.time(), schools, lessons)) as r:
            if r.status != 200:
                raise RuntimeError(f"import: {r.status} {await r.text()}")
        figures: dict[str, Any] = {"schools": schools, "lessons": schools * lessons}
        for mode in ("online", "offline"):
            start = time.perf_counter()
            async with http.post(url + "/api/v1/switchover", json={"district": "d1", "mode": mode}) as r:
                audit = await r.json()
            figures[f"to_{mode}_seconds"] = round(time.perf_counter() - start, 3)
            figures[f"to_{mode}_rooms"] = audit.get("rooms_opened" if mode == "online" else "rooms")
            if r.status != 200:
                raise RuntimeError(f"switchover: {r.status} {json.dumps(audit)}")
        return figures


def run(schools: int = SCHOOLS, lessons: int = LESSONS) -> dict[str, Any]:
    with suite.server(workers=2) as (_, url):
        machine = asyncio.run(switch(url, schools, lessons))
    return {"one_node_two_workers": machine, "two_nodes_on_redis": asyncio.run(on_redis(schools, lessons))}


async def on_redis(schools: int, lessons: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kelian-bench-") as folder:
        redis, redis_url = cluster_cost.redis_server(Path(folder))
        nodes = []
        try:
            for name in ("a", "b"):
                nodes.append(await cluster_cost.node(redis_url, Path(folder) / name))
            return await switch(nodes[0][1], schools, lessons)
        finally:
            for process, _ in nodes:
                process.terminate()
                await process.wait()
            redis.terminate()
            redis.wait()


if __name__ == "__main__":
    print(run(*(int(a) for a in sys.argv[1:3])))
