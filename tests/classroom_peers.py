"""Light peers (loadtest.peer) in one lesson, standing in for classroom boxes, tutors, students and
viewers, and a thin admin API client: what the classroom tests share."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
from kelian_server import API_KEY, API_SECRET, Server, eventually

from classroom.participant import Participant
from classroom.room import Room
from classroom.tokens import mint
from loadtest.peer import Peer

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()}


def token(kelian: Server, identity: str, role: str, kind: str, **claims: Any) -> str:
    return mint(API_KEY, API_SECRET, room="lesson", identity=identity, role=role, kind=kind, **claims)


@asynccontextmanager
async def connected(kelian: Server, tokens: list[str], **options: Any) -> AsyncIterator[list[Peer]]:
    """Light peers joined with these tokens, in order (a lesson's roster, say), `options` going to
    every Peer; closed on the way out."""
    made = [Peer(kelian.url, t, **options) for t in tokens]
    try:
        for peer in made:
            await peer.connect()
        yield made
    finally:
        for peer in made:
            await peer.close()


def peers(
    kelian: Server, *people: tuple[str, str, dict[str, Any]], kind: str
) -> AbstractAsyncContextManager[list[Peer]]:
    """Connected light peers: (identity, role, extra token claims), in order."""
    return connected(kelian, [token(kelian, who, role, kind, **extra) for who, role, extra in people])


def room_of(kelian: Server) -> Room:
    return kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined,no-any-return]


def session(kelian: Server, identity: str) -> Participant:
    (found,) = room_of(kelian).find(identity)
    return found


def watched(kelian: Server, identity: str) -> set[str]:
    """Whose tracks `identity` receives now (owner identities)."""
    room = room_of(kelian)
    owners = {p.id: owner.identity for owner in room.participants.values() for p in owner.producers.values()}
    return {owners[s.producer_id] for s in session(kelian, identity).subscriptions if s.consumer is not None}


def events(peer: Peer, kind: str) -> list[dict[str, Any]]:
    return [e for e in peer.events if e["type"] == kind]


async def settled(kelian: Server) -> bool:
    room = room_of(kelian)
    return await eventually(
        lambda: not any(p.offer_pending or p.renegotiate for p in room.participants.values())
    )


DUAL = [
    ("lecturer", "lecturer", {}),
    ("box-1", "classroom", {}),
    ("box-2", "classroom", {}),
    ("box-3", "classroom", {}),
    ("tutor-1", "tutor", {"classroom": "box-1"}),
]


async def api(
    kelian: Server | str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One admin API call under /api/v1 of a server (or the URL of one running in its own process):
    (status, parsed JSON body, or None when empty)."""
    base = kelian if isinstance(kelian, str) else kelian.url
    async with aiohttp.ClientSession() as http:
        url = f"{base}/api/v1{path}"
        async with http.request(method, url, json=body, headers=headers or BASIC) as response:
            text = await response.text()
            return response.status, (await response.json() if text else None)


def org(now: float) -> dict[str, Any]:
    """A district of two schools, each with two classrooms and a lesson in session now."""
    body: dict[str, Any] = {k: [] for k in ("districts", "schools", "classrooms", "teachers", "students")}
    body["districts"].append({"id": "d1", "name": "District One"})
    body["lessons"] = []
    for s in ("s1", "s2"):
        body["schools"].append({"id": s, "district": "d1", "name": f"School {s}"})
        body["teachers"].append({"id": f"{s}-t", "school": s, "name": f"Teacher {s}"})
        for c in ("a", "b"):
            body["classrooms"].append({"id": f"{s}-{c}", "school": s, "box": f"box-{s}-{c}"})
        body["students"].append({"id": f"{s}-ann", "school": s, "name": "Ann", "classroom": f"{s}-a"})
        body["lessons"].append(
            {
                "id": f"{s}-maths",
                "school": s,
                "title": "Maths",
                "room_kind": "dual_teacher",
                "teacher": f"{s}-t",
                "classrooms": [f"{s}-a", f"{s}-b"],
                "students": [f"{s}-ann"],
                "starts_at": int(now) - 600,
                "ends_at": int(now) + 3000,
            }
        )
    return body


async def roster(kelian: Server, lesson: str) -> dict[str, str]:
    status, body = await api(kelian, "POST", f"/lessons/{lesson}/tokens")
    assert status == 201, body
    return {entry["identity"]: entry["token"] for entry in body["tokens"]}
