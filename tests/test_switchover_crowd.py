"""The emergency switchover at the size of two schools: 200 light peers in two worker processes, in
20 lessons (a teacher speaking, four classroom boxes and five students at home each). One call
switches one school back to class; everyone of that school hears it, nobody of the other does, the
lecture keeps reaching every classroom without a freeze, the students at home are sent back, and
switching online again works; the audit says so.

A freeze is a gap of over 200 ms in a peer's audio. The server runs as `kelian serve` does, in a
process of its own (the test runner's heap would make its garbage collector's pauses the runner's).
The peers' processes share two cores with it and the rest of the suite: a gap while a peer's process
itself did not run (a "stall", which the crowd process counts) is the harness's, so each stall
excuses at most one freeze; with none, there must be none. A lesson's peers share a process: a
stall that holds the teacher's audio back is counted by the boxes that hear it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from classroom_peers import api
from cluster_helpers import serve_process
from crowd import report, workers

from signaling.client import use_loopback_candidates

LESSONS_PER_SCHOOL = 10
BOXES, STUDENTS = 4, 5


def organisation(now: float) -> dict[str, Any]:
    body: dict[str, Any] = {k: [] for k in ("schools", "classrooms", "teachers", "students", "lessons")}
    body["districts"] = [{"id": "d1"}]
    for s in ("s1", "s2"):
        body["schools"].append({"id": s, "district": "d1", "mode": "online"})
        for n in range(LESSONS_PER_SCHOOL):
            lesson = f"{s}-l{n}"
            body["teachers"].append({"id": f"{lesson}-t", "school": s})
            rooms = [f"{lesson}-c{b}" for b in range(BOXES)]
            body["classrooms"] += [{"id": c, "school": s, "box": f"box-{c}"} for c in rooms]
            pupils = [f"{lesson}-p{p}" for p in range(STUDENTS)]
            body["students"] += [{"id": p, "school": s, "classroom": rooms[0]} for p in pupils]
            body["lessons"].append(
                {
                    "id": lesson,
                    "school": s,
                    "teacher": f"{lesson}-t",
                    "classrooms": rooms,
                    "students": pupils,
                    "starts_at": int(now) - 60,
                    "ends_at": int(now) + 3600,
                }
            )
    return body


async def test_one_call_switches_one_school_of_two_hundred_clients(tmp_path: Path) -> None:
    use_loopback_candidates()
    kelian, process = await serve_process(tmp_path / "kelian")
    try:
        status, body = await api(kelian, "POST", "/import", organisation(time.time()))
        assert status == 200, body
        peers: list[dict[str, Any]] = []
        for s in ("s1", "s2"):
            for n in range(LESSONS_PER_SCHOOL):
                status, roster = await api(kelian, "POST", f"/lessons/{s}-l{n}/tokens")
                for entry in roster["tokens"]:
                    teacher = entry["role"] == "lecturer"
                    peers.append(
                        {
                            "token": entry["token"],
                            "audio": teacher,
                            "expect": 0 if teacher else 1,
                            "group": f"{s}-l{n}",
                        }
                    )
        assert len(peers) == 200
        async with workers(kelian, peers) as crowd:
            for worker in crowd:
                await worker.send("mark")
            await asyncio.gather(*(w.expect("marked") for w in crowd))
            await asyncio.sleep(1)
            status, back = await api(
                kelian, "POST", "/switchover", {"school": "s1", "mode": "offline", "by": "test"}
            )
            assert status == 200, back
            await asyncio.sleep(2)  # media keeps flowing meanwhile: measured below, per peer
            status, online = await api(kelian, "POST", "/switchover", {"school": "s1", "mode": "online"})
            assert status == 200, online
            await asyncio.sleep(2)
            seen = await report(crowd)

        assert (back["clients_told"], back["lessons_in_session"], back["rooms"]) == (100, 10, 10)
        assert (online["clients_told"], online["rooms_opened"]) == (50, 0), "the students had gone home"
        for identity, peer in seen.items():
            school_one = identity.startswith(("s1-", "box-s1-"))
            modes = [(m["mode"], m["switch"]) for m in peer["modes"]]
            student = identity.rsplit("-", 1)[-1].startswith("p")
            teacher = identity.endswith("-t")  # it speaks; it receives nothing
            if not school_one:
                assert modes == [], f"{identity} of the other school heard a switch"
                assert peer["disconnected"] is None and peer["freezes"] <= peer["stalls"], peer
                assert teacher or peer["packets"] > 100, peer
            elif student:
                assert modes == [("offline", back["switch"])], identity
                assert peer["disconnected"] == "offline", "sent back to class: its classroom box is there"
            else:
                assert modes == [("offline", back["switch"]), ("online", online["switch"])], identity
                assert peer["disconnected"] is None, identity
                if not teacher:  # a box: the lecture reached it throughout
                    assert peer["freezes"] <= peer["stalls"] and peer["packets"] > 100, (identity, peer)
        status, audits = await api(kelian, "GET", "/switchovers?limit=2")
        assert [a["switch"] for a in audits["switchovers"]] == [online["switch"], back["switch"]]
        assert audits["switchovers"][1]["by"] == "test" and audits["switchovers"][1]["scope"] == {
            "school": "s1"
        }
    finally:
        process.terminate()
        await process.wait()
