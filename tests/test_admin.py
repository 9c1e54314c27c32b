"""The admin REST API (/api/v1) and /openapi.json, against a real server with real participants."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from kelian_server import API_KEY, API_SECRET, Server, eventually, lesson

from classroom.participant import Participant
from classroom.room import Room
from classroom.rooms import Rooms
from classroom.tokens import verify
from sfu.consumer import Consumer
from signaling.client import Client, ClientError
from signaling.media import video_track

API = "/api/v1"


def basic(user: str, password: str) -> dict[str, str]:
    """An Authorization header built by hand, so garbage and non-ASCII credentials can be sent too."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


AUTH = basic(API_KEY, API_SECRET)


class Api:
    """A thin client: every call returns (status, parsed JSON body or None for empty bodies)."""

    def __init__(self, kelian: Server, session: aiohttp.ClientSession) -> None:
        self.kelian = kelian
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = AUTH,
        data: str | None = None,
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"headers": headers}
        if data is not None:
            kwargs["data"] = data
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.kelian.url + path, **kwargs) as response:
            text = await response.text()
            if response.status != 204:
                assert response.content_type == "application/json", (response.status, text)
            return response.status, (await response.json() if text else None)

    async def rooms(self) -> list[dict[str, Any]]:
        status, body = await self.call("GET", f"{API}/rooms")
        assert status == 200, body
        return cast(list[dict[str, Any]], body["rooms"])


@asynccontextmanager
async def admin(kelian: Server) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(kelian, session)


def rooms_of(kelian: Server) -> Rooms:
    return cast(Rooms, kelian.rooms)


def room_of(kelian: Server, name: str = "lesson") -> Room:
    return rooms_of(kelian).rooms[name]


def session_of(kelian: Server, identity: str, room: str = "lesson") -> Participant:
    return room_of(kelian, room).find(identity)[0]


def consumer_of(participant: Participant) -> Consumer:
    consumers = [s.consumer for s in participant.subscriptions if s.consumer is not None]
    assert len(consumers) == 1, consumers
    return consumers[0]


def events(client: Client, kind: str) -> list[dict[str, Any]]:
    return [e for e in client.events if e.get("type") == kind]


def assert_error(status: int, body: Any, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


# -- rooms ------------------------------------------------------------------------------------------------


async def test_room_lifecycle(kelian: Server) -> None:
    async with admin(kelian) as api:
        assert await api.rooms() == []
        metadata = {"stage": "primary", "grade": "5", "subject": "maths", "teacher": "Ms Lin"}
        request = {"name": "maths-5a", "max_participants": 30, "empty_timeout": 600, "metadata": metadata}
        async with api.session.post(f"{kelian.url}{API}/rooms", json=request, headers=AUTH) as response:
            assert response.status == 201, await response.text()
            assert response.headers["Location"] == f"{API}/rooms/maths-5a"
            created = await response.json()
        assert created["name"] == "maths-5a"
        assert created["participants"] == []
        assert created["max_participants"] == 30
        assert created["empty_timeout"] == 600
        assert created["metadata"] == metadata
        assert created["tracks"] == 0
        assert isinstance(created["created_at"], int)

        listed = await api.rooms()
        assert listed == [created | {"participants": 0}]
        status, body = await api.call("GET", f"{API}/rooms/maths-5a")
        assert (status, body) == (200, created)

        status, body = await api.call("POST", f"{API}/rooms", {"name": "maths-5a"})
        assert_error(status, body, 409, "room_exists")
        assert await api.rooms() == listed  # the existing room kept its settings

        status, body = await api.call("POST", f"{API}/rooms", {"name": "art"})
        assert status == 201
        assert (body["max_participants"], body["empty_timeout"], body["metadata"]) == (None, 300, {})

        status, body = await api.call("DELETE", f"{API}/rooms/maths-5a")
        assert (status, body) == (204, None)
        assert [r["name"] for r in await api.rooms()] == ["art"]
        assert "maths-5a" not in kelian.node.routers
        for method in ("GET", "DELETE"):
            status, body = await api.call(method, f"{API}/rooms/maths-5a")
            assert_error(status, body, 404, "not_found")
        status, body = await api.call("GET", f"{API}/rooms/maths-5a/participants")
        assert_error(status, body, 404, "not_found")


async def test_rooms_created_by_a_join_are_listed_and_close_when_empty(kelian: Server) -> None:
    walk_in = kelian.client("box-1", "classroom", room="walk-in")
    async with admin(kelian) as api:
        try:
            await walk_in.connect()
            [room] = await api.rooms()
            assert room["name"] == "walk-in"
            assert (room["participants"], room["empty_timeout"], room["max_participants"]) == (1, 0, None)
        finally:
            await walk_in.close()
        assert await eventually(lambda: "walk-in" not in rooms_of(kelian).rooms)
        assert await api.rooms() == []


async def test_created_room_outlives_its_participants_until_empty_timeout(kelian: Server) -> None:
    async with admin(kelian) as api:
        for name, timeout in (("kept", 300), ("short", 1), ("zero", 0)):
            status, body = await api.call("POST", f"{API}/rooms", {"name": name, "empty_timeout": timeout})
            assert status == 201, body
        for name in ("kept", "zero"):
            client = kelian.client("box-1", "classroom", room=name)
            try:
                await client.connect()
            finally:
                await client.close()
        # a created room with 0 closes as soon as it is empty again; one with 1 s goes after that second
        assert await eventually(lambda: set(rooms_of(kelian).rooms) == {"kept"})
        [kept] = await api.rooms()
        assert (kept["name"], kept["participants"]) == ("kept", 0)


async def test_room_full_is_refused_over_the_websocket_and_whip(kelian: Server) -> None:
    async with admin(kelian) as api:
        status, body = await api.call("POST", f"{API}/rooms", {"name": "lesson", "max_participants": 1})
        assert status == 201, body
        first = kelian.client("teacher", "lecturer")
        second = kelian.client("student")
        again = kelian.client("teacher", "lecturer")  # the same identity reconnecting takes its own place
        try:
            await first.connect()
            with pytest.raises(ClientError) as refused:
                await second.connect()
            assert refused.value.code == "room_full"
            assert refused.value.message == "room lesson is full (1 participants)"

            headers = {"Authorization": f"Bearer {kelian.token('obs', 'lecturer')}"}
            headers["Content-Type"] = "application/sdp"
            async with api.session.post(f"{kelian.url}/whip/lesson", data="v=0\r\n", headers=headers) as r:
                assert r.status == 503, "an encoder comes back later (RFC 9110), rather than give up"
                assert r.headers["Retry-After"] == "10"
                assert "full" in await r.text()

            await again.connect()
            room = room_of(kelian)
            assert [p.identity for p in room.participants.values()] == ["teacher"]
            assert room.find("teacher")[0].sid == again.participant["sid"]
        finally:
            for client in (again, second, first):
                await client.close()


async def test_close_room_disconnects_everyone(kelian: Server) -> None:
    async with admin(kelian) as api, lesson(kelian) as live:
        [room] = await api.rooms()
        assert (room["participants"], room["tracks"]) == (2, 1)
        status, _ = await api.call("DELETE", f"{API}/rooms/lesson")
        assert status == 204
        for client in (live.teacher, live.student):
            assert await eventually(lambda c=client: bool(events(c, "disconnected")))  # type: ignore[misc]
            assert events(client, "disconnected") == [{"type": "disconnected", "reason": "room_closed"}]
        assert await api.rooms() == []
        assert await eventually(lambda: not kelian.node.transports)
        assert "lesson" not in kelian.node.routers


# -- participants -----------------------------------------------------------------------------------------


async def test_participants_are_listed(kelian: Server) -> None:
    async with admin(kelian) as api, lesson(kelian) as live:
        status, body = await api.call("GET", f"{API}/rooms/lesson")
        assert status == 200
        assert body["tracks"] == 1
        by_identity = {p["identity"]: p for p in body["participants"]}
        assert set(by_identity) == {"teacher", "student"}
        assert by_identity["teacher"]["role"] == "lecturer"
        assert by_identity["teacher"]["sid"] == live.teacher.participant["sid"]
        [track] = by_identity["teacher"]["tracks"]
        assert (track["kind"], track["muted"]) == ("video", False)
        assert track["id"] == live.tracks[0].id

        status, listed = await api.call("GET", f"{API}/rooms/lesson/participants")
        assert status == 200
        assert listed["participants"] == body["participants"]

        status, teacher = await api.call("GET", f"{API}/rooms/lesson/participants/teacher")
        assert (status, teacher) == (200, by_identity["teacher"])
        for path in ("participants/nobody", "participants/nobody/tracks/TR_1/mute"):
            method = "POST" if path.endswith("mute") else "GET"
            status, body = await api.call(method, f"{API}/rooms/lesson/{path}", {"muted": True})
            assert_error(status, body, 404, "not_found")
            assert "nobody" in body["error"]["message"]


async def test_remove_participant(kelian: Server) -> None:
    async with admin(kelian) as api, lesson(kelian) as live:
        status, body = await api.call("DELETE", f"{API}/rooms/lesson/participants/student")
        assert (status, body) == (204, None)
        assert await eventually(lambda: bool(events(live.student, "disconnected")))
        assert events(live.student, "disconnected") == [{"type": "disconnected", "reason": "removed"}]
        assert await eventually(lambda: bool(events(live.teacher, "participant_left")))
        [left] = events(live.teacher, "participant_left")
        assert left == {
            "type": "participant_left",
            "sid": live.student.participant["sid"],
            "reason": "removed",
        }
        assert not events(live.teacher, "disconnected")

        status, body = await api.call("GET", f"{API}/rooms/lesson/participants/student")
        assert_error(status, body, 404, "not_found")
        status, body = await api.call("DELETE", f"{API}/rooms/lesson/participants/student")
        assert_error(status, body, 404, "not_found")
        status, body = await api.call("GET", f"{API}/rooms/lesson/participants")
        assert [p["identity"] for p in body["participants"]] == ["teacher"]
        assert await eventually(lambda: len(kelian.node.transports) == 1)  # the teacher's publisher


async def test_mute_stops_forwarding_until_unmute(kelian: Server) -> None:
    async with admin(kelian) as api, lesson(kelian) as live:
        track_id = live.tracks[0].id
        producer = room_of(kelian).find_track(track_id)
        assert producer is not None
        stream = producer.streams[0]
        consumer = consumer_of(session_of(kelian, "student"))
        assert await eventually(lambda: consumer.packets > 0)
        mute = f"{API}/rooms/lesson/participants/teacher/tracks/{track_id}/mute"

        status, track = await api.call("POST", mute, {"muted": True})
        assert status == 200, track
        assert (track["id"], track["identity"], track["muted"]) == (track_id, "teacher", True)
        for client in (live.teacher, live.student):  # the owner hears of it too, to turn its camera off
            assert await eventually(lambda c=client: bool(events(c, "track_muted")))  # type: ignore[misc]
            assert events(client, "track_muted") == [{"type": "track_muted", "track": track, "by": None}]

        # the publisher keeps sending and the server keeps receiving, but nothing goes to the student
        forwarded, received = consumer.packets, stream.stats.packets
        assert await eventually(lambda: stream.stats.packets > received + 30)
        assert consumer.packets == forwarded

        # a subscriber joining now gets the track announced and nothing of it until unmute
        late = kelian.client("late")
        try:
            await late.connect()
            [remote] = await late.wait_for_tracks(1)
            late_consumer = consumer_of(session_of(kelian, "late"))
            assert await eventually(lambda: not late_consumer.paused)  # its answer is in
            received = stream.stats.packets
            assert await eventually(lambda: stream.stats.packets > received + 30)
            assert late_consumer.packets == 0
            status, body = await api.call("GET", f"{API}/rooms/lesson/participants/teacher")
            assert body["tracks"][0]["muted"] is True

            status, track = await api.call("POST", mute, {"muted": False})
            assert (status, track["muted"]) == (200, False)
            assert await eventually(lambda: consumer.packets > forwarded + 10)
            assert await eventually(lambda: late_consumer.packets > 10)
            await asyncio.wait_for(remote.track.recv(), 5)  # the late joiner decodes a picture
            await asyncio.wait_for(live.tracks[0].track.recv(), 5)
        finally:
            await late.close()
        assert [e["track"]["muted"] for e in events(live.student, "track_muted")] == [True, False]

        status, again = await api.call("POST", mute, {"muted": False})  # no change: no event
        assert (status, again["muted"]) == (200, False)
        status, body = await api.call(
            "POST", f"{API}/rooms/lesson/participants/teacher/tracks/TR_0/mute", {"muted": True}
        )
        assert_error(status, body, 404, "not_found")
        status, body = await api.call(
            "POST", f"{API}/rooms/nowhere/participants/teacher/tracks/{track_id}/mute", {"muted": True}
        )
        assert_error(status, body, 404, "not_found")
        for bad in ({"muted": "yes"}, {}, {"muted": True, "why": "noise"}, [True]):
            status, body = await api.call("POST", mute, bad)
            assert_error(status, body, 400, "invalid_request")
        assert producer.paused is False


# -- tokens -----------------------------------------------------------------------------------------------


async def test_minted_token_joins(kelian: Server) -> None:
    async with admin(kelian) as api:
        request = {
            "room": "lesson",
            "identity": "box-7",
            "role": "classroom",
            "name": "Classroom 7",
            "ttl": 600,
        }
        status, body = await api.call("POST", f"{API}/tokens", request)
        assert status == 201, body
        assert (body["room"], body["identity"]) == ("lesson", "box-7")
        claims = verify(body["token"], API_KEY, API_SECRET, room="lesson")
        assert (claims.identity, claims.name, str(claims.role)) == ("box-7", "Classroom 7", "classroom")
        assert body["expires_at"] == claims.expires_at

        status, body = await api.call(
            "POST",
            f"{API}/tokens",
            {"room": "lesson", "identity": "watcher", "role": "viewer", "grants": {"subscribe": False}},
        )
        assert status == 201, body
        assert verify(body["token"], API_KEY, API_SECRET).grants.subscribe is False

        client = Client(kelian.url, (await api.call("POST", f"{API}/tokens", request))[1]["token"])
        try:
            joined = await client.connect()
            assert joined["participant"]["name"] == "Classroom 7"
        finally:
            await client.close()


async def test_bad_token_requests(kelian: Server) -> None:
    good = {"room": "lesson", "identity": "box-7", "role": "classroom"}
    bad_bodies: list[tuple[Any, str]] = [
        (good | {"role": "headmaster"}, "unknown role"),
        (good | {"role": 3}, "role"),
        ({"room": "lesson", "role": "student"}, "identity"),
        (good | {"identity": ""}, "identity"),
        (good | {"room": "a/b"}, "'/'"),
        (good | {"ttl": 0}, "ttl"),
        (good | {"ttl": "3600"}, "ttl"),
        (good | {"ttl": True}, "ttl"),
        (good | {"name": 7}, "name"),
        (good | {"grants": ["publish"]}, "grants"),
        (good | {"role": "recorder", "grants": {"publish": True}}, "cannot be granted publish"),
        (good | {"grants": {"publish": "yes"}}, "true or false"),
        (good | {"expires": 5}, "unknown field 'expires'"),
    ]
    async with admin(kelian) as api:
        for body, hint in bad_bodies:
            status, answer = await api.call("POST", f"{API}/tokens", body)
            assert_error(status, answer, 400, "invalid_request")
            assert hint in answer["error"]["message"], (body, answer)


# -- refusals ---------------------------------------------------------------------------------------------


async def test_bad_credentials_are_refused_and_change_nothing(kelian: Server) -> None:
    attempts: list[dict[str, str]] = [
        {},
        basic(API_KEY, "not-the-secret"),
        basic("APIother", API_SECRET),
        basic(API_SECRET, API_KEY),
        basic(API_KEY, API_SECRET + "x"),
        basic(API_KEY, "sécret"),
        basic(API_KEY, ""),
        {"Authorization": "Basic !!!not-base64!!!"},
        {"Authorization": "Basic " + base64.b64encode(API_KEY.encode()).decode()},  # no colon
        {"Authorization": "Basic"},
        {"Authorization": "Bearer " + kelian.token("x", "admin")},
    ]
    async with admin(kelian) as api, lesson(kelian) as live:
        before = await api.rooms()
        track_id = live.tracks[0].id
        requests: list[tuple[str, str, Any]] = [
            ("GET", f"{API}/rooms", None),
            ("POST", f"{API}/rooms", {"name": "sneaky"}),
            ("GET", f"{API}/rooms/lesson", None),
            ("GET", f"{API}/rooms/nowhere", None),  # 401, not 404: strangers do not learn which rooms exist
            ("DELETE", f"{API}/rooms/lesson", None),
            ("GET", f"{API}/rooms/lesson/participants", None),
            ("GET", f"{API}/rooms/lesson/participants/student", None),
            ("DELETE", f"{API}/rooms/lesson/participants/student", None),
            ("POST", f"{API}/rooms/lesson/participants/teacher/tracks/{track_id}/mute", {"muted": True}),
            ("POST", f"{API}/tokens", {"room": "lesson", "identity": "x", "role": "admin"}),
        ]
        for method, path, body in requests:
            for attempt in attempts:
                async with api.session.request(method, kelian.url + path, json=body, headers=attempt) as r:
                    assert r.status == 401, (method, path, attempt, await r.text())
                    assert r.headers["WWW-Authenticate"] == 'Basic realm="kelian"'
                    answer = await r.json()
                    assert answer["error"]["code"] == "unauthorized"
        assert await api.rooms() == before
        assert not events(live.student, "disconnected")
        assert not events(live.student, "track_muted")


async def test_bad_room_bodies_are_refused_and_change_nothing(kelian: Server) -> None:
    bad: list[tuple[Any, str]] = [
        ([{"name": "x"}], "JSON object"),
        ("just a string", "JSON object"),
        ({}, "missing field 'name'"),
        ({"name": 5}, "name"),
        ({"name": ""}, "name"),
        ({"name": "a/b"}, "'/'"),
        ({"name": ".."}, "'..'"),
        ({"name": "tab\there"}, "control"),
        ({"name": " padded"}, "spaces"),
        ({"name": "x" * 129}, "at most 128"),
        ({"name": "x", "max_participants": 0}, "at least 1"),
        ({"name": "x", "max_participants": "30"}, "integer"),
        ({"name": "x", "max_participants": True}, "integer"),
        ({"name": "x", "max_participants": 2.5}, "integer"),
        ({"name": "x", "empty_timeout": -1}, "at least 0"),
        ({"name": "x", "empty_timeout": 1.5}, "integer"),
        ({"name": "x", "empty_timeout": 10**9}, "at most"),
        ({"name": "x", "metadata": ["maths"]}, "metadata"),
        ({"name": "x", "metadata": {"grade": 5}}, "grade"),
        ({"name": "x", "metadata": {"": "x"}}, "metadata key"),
        ({"name": "bad\ud800"}, "lone UTF-16 surrogate (U+D800)"),
        ({"name": "x", "metadata": {"teacher": "Li \ud83d"}}, "surrogate"),
        ({"name": "x", "metadata": {"k\x85": "x"}}, "control character"),
        ({"name": "x", "metadata": {"notes": "x" * 1025}}, "notes"),
        ({"name": "x", "metadata": {str(i): "x" for i in range(33)}}, "at most 32"),
        ({"name": "x", "max_participant": 30}, "unknown field 'max_participant'"),
    ]
    async with admin(kelian) as api:
        for body, hint in bad:
            status, answer = await api.call("POST", f"{API}/rooms", body)
            assert_error(status, answer, 400, "invalid_request")
            assert hint in answer["error"]["message"], (body, answer)
        for raw in ("", "{", "name=x", "[" * 100_000, '{"name": ' + "[" * 5000 + "]" * 5000 + "}"):
            status, answer = await api.call("POST", f"{API}/rooms", data=raw)
            assert_error(status, answer, 400, "invalid_request")
            assert answer["error"]["message"].startswith("the body must be JSON")
        assert await api.rooms() == []
        assert not rooms_of(kelian).rooms


async def test_unknown_api_paths_and_methods_answer_json(kelian: Server) -> None:
    async with admin(kelian) as api:
        status, body = await api.call("GET", f"{API}/desks")
        assert_error(status, body, 404, "not_found")
        async with api.session.put(f"{kelian.url}{API}/rooms", json={}, headers=AUTH) as r:
            assert r.status == 405
            assert set(r.headers["Allow"].split(",")) >= {"GET", "POST"}
            assert (await r.json())["error"]["code"] == "method_not_allowed"
        big = {"name": "x", "metadata": {"k": "x" * (2 * 1024 * 1024)}}
        status, body = await api.call("POST", f"{API}/rooms", big)
        assert_error(status, body, 413, "too_large")
        assert await api.rooms() == []


# -- the OpenAPI document ---------------------------------------------------------------------------------

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ALTERNATIVES = re.compile(r"\(\?P<(\w+)>([\w-]+(?:\|[\w-]+)+)\)")  # (?P<kind>whip|whep)


def served_operations(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) for every route: `{kind:whip|whep}` expands to both paths, `{x:regex}`
    becomes `{x}` (aiohttp's formatter), a static resource is `<prefix>/{path}`; the HEAD routes aiohttp
    adds to every GET are left out (we describe none)."""
    operations: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        resource = route.resource
        assert resource is not None
        info = resource.get_info()
        if isinstance(resource, web.StaticResource):
            paths = [info["prefix"] + "/{path}"]
        elif "formatter" in info:
            paths = [info["formatter"]]
            for name, alternatives in ALTERNATIVES.findall(info["pattern"].pattern):
                paths = [
                    p.replace(f"{{{name}}}", literal) for p in paths for literal in alternatives.split("|")
                ]
        else:
            paths = [info["path"]]
        operations.update((route.method, path) for path in paths)
    return operations


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


async def test_openapi_describes_exactly_the_served_routes(kelian: Server) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{kelian.url}/openapi.json") as r:
        assert r.status == 200
        document = await r.json()
    assert document["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }
    served = served_operations(kelian.runner.app)
    assert ("GET", "/static/{path}") in served and ("POST", "/dev/token") in served
    assert served - documented == set(), "served but not described"
    assert documented - served == set(), "described but not served"

    for path, item in document["paths"].items():
        in_path = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == in_path, (method, path)
            if path.startswith(API):
                assert operation["security"] == [{"apiKey": []}], (method, path)
                assert "401" in operation["responses"]
    for ref in refs(document):
        assert resolve(document, ref) is not None
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "basic",
        "description": document["components"]["securitySchemes"]["apiKey"]["description"],
    }


async def test_publishing_is_unaffected_by_api_defaults(kelian: Server) -> None:
    """A created room without limits behaves like a walk-in room: media flows to a late subscriber."""
    async with admin(kelian) as api:
        status, _ = await api.call("POST", f"{API}/rooms", {"name": "lesson"})
        assert status == 201
    teacher = kelian.client("teacher", "lecturer")
    student = kelian.client("student")
    try:
        await teacher.connect()
        await teacher.publish(video_track())
        await student.connect()
        [remote] = await student.wait_for_tracks(1)
        await asyncio.wait_for(remote.track.recv(), 5)
    finally:
        await student.close()
        await teacher.close()
