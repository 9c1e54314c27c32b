"""The organisation in Redis (school.redis_store), past what the Store contract (test_school_store.py)
checks on both stores: a Redis restarted loses nothing, two nodes writing at once never leave a
half-written batch or a lesson whose school is gone, a Redis that is not there fails at start, and
a server given --redis-url keeps its organisation there for the next server to see."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from classroom_peers import api, org
from helpers import free_tcp_port, require_system, wait_for_redis
from kelian_server import running_server

from school import importer
from school.model import ORDER, RECORDS, Lesson, parse
from school.redis_store import RedisStore, RedisUnavailable, organisation_store
from school.store import BatchError, InUse, SqliteStore

PREFIX = "kelian:"
T0 = 1_788_220_800  # 2026-09-01T00:00:00Z


class OwnRedis:
    """A redis-server of the test's own, appending every write to a file in `workdir` (what a
    deployment that keeps the organisation in Redis runs), that the test can stop and start again."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            require_system("redis-server", "redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, port: int | None = None) -> None:
        """On `port` (a restart: the same one), else on a free one; another free one if that was
        taken meanwhile (the data is in the directory, not the port)."""
        for attempt in range(3):
            self.port = port if port is not None and attempt == 0 else free_tcp_port()
            with (self.workdir / "redis.log").open("ab") as log:
                self.process = subprocess.Popen(
                    [
                        *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                        *("--protected-mode", "yes", "--dir", str(self.workdir), "--daemonize", "no"),
                        *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
                    ],
                    cwd=self.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if await asyncio.to_thread(wait_for_redis, "127.0.0.1", self.port, 5.0, self.process):
                return
            await self.stop()
        log_text = (self.workdir / "redis.log").read_text(errors="replace")
        pytest.fail(f"redis-server did not start:\n{log_text}")

    async def stop(self) -> int | None:
        """SIGTERM, on which Redis writes its append-only file out and exits; its exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 30)
        return process.returncode


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(url, PREFIX)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def snapshot(store: RedisStore) -> dict[str, Any]:
    """Everything the store answers: every record of every kind, and the audit."""
    out: dict[str, Any] = {kind: [r.to_dict() for r in await store.all(kind)] for kind in ORDER}
    out["audits"] = await store.audits(100)
    return out


async def consistent(url: str) -> None:
    """Every index and reverse index agrees with the records, read straight from Redis: a record is
    in its kind's ids and its parent's children, its parent and everything it names are there and
    know it, and nothing in an index points at a record that is not."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        keys = [key.removeprefix(PREFIX) async for key in client.scan_iter(f"{PREFIX}*", count=1000)]
        records: dict[tuple[str, str], dict[str, str]] = {}
        for key in keys:
            if key.startswith("rec:"):
                _, kind, record_id = key.split(":", 2)
                records[kind, record_id] = await client.hgetall(PREFIX + key)
        for (kind, record_id), stored in records.items():
            record = parse(kind, json.loads(stored["body"]))
            me = f"{kind}:{record_id}"
            assert record.id == record_id
            assert await client.zscore(f"{PREFIX}ids:{kind}", record_id) == 0
            assert stored.get("parent") == record.parent_id
            if record.parent:
                assert (record.parent, str(record.parent_id)) in records, f"{me}'s {record.parent} is gone"
                assert await client.zscore(f"{PREFIX}kids:{kind}:{record.parent_id}", record_id) == 0
            for ref in json.loads(stored["refs"]):
                ref_kind, ref_id = ref.split(":", 1)
                assert (ref_kind, ref_id) in records, f"{me} names {ref}, which is gone"
                assert await client.zscore(f"{PREFIX}refs:{ref}", me) == 0
            if isinstance(record, Lesson):
                assert int(stored["ends"]) == record.ends_at
                starts = f"{PREFIX}starts:{kind}:{record.parent_id}"
                assert await client.zscore(starts, record_id) == record.starts_at
                longest = await client.get(f"{PREFIX}longest:{kind}:{record.parent_id}")
                assert int(longest) >= record.ends_at - record.starts_at
            else:
                assert "ends" not in stored
        for key in keys:
            what, _, rest = key.partition(":")
            if what in ("ids", "kids", "starts"):
                kind = rest.split(":", 1)[0]
                for member in await client.zrange(PREFIX + key, 0, -1):
                    assert (kind, member) in records, f"{key} lists {member}, which is gone"
                    if what != "ids":
                        assert records[kind, member].get("parent") == rest.split(":", 1)[1]
            elif what == "refs":
                for user in await client.zrange(PREFIX + key, 0, -1):
                    user_kind, user_id = user.split(":", 1)
                    assert (user_kind, user_id) in records, f"{key} is used by {user}, which is gone"
                    assert rest in json.loads(records[user_kind, user_id]["refs"])
            elif what == "longest":
                assert await client.zcard(f"{PREFIX}starts:{rest}") > 0, f"{key} outlived its lessons"
            else:
                assert what in ("rec", "audit", "audits"), f"a key of no known kind: {key}"
    finally:
        await client.aclose()


async def test_a_restarted_redis_loses_nothing(tmp_path: Path) -> None:
    server = OwnRedis(tmp_path)
    await server.start()
    try:
        async with opened(server.url) as node:
            await node.put(importer.from_json(org(T0 + 1800)).records)
            await node.put(importer.from_json({"districts": [{"id": "d2", "name": "第二区"}]}).records)
            for n in range(3):
                await node.add_audit({"scope": {"school": "s1"}, "to": "online", "n": n})
            before = await snapshot(node)
            port = server.port
            assert await server.stop() == 0, "Redis saved and exited on SIGTERM"
            await server.start(port)
            async with opened(server.url) as fresh:
                assert await snapshot(fresh) == before
                assert [r.id for r in await fresh.children("lesson", "s1", at=T0 + 1800)] == ["s1-maths"]
                assert [r.id for r in await fresh.children("school", "d1")] == ["s1", "s2"]
                with pytest.raises(
                    InUse, match="classroom 's1-a' is used by lesson 's1-maths', student 's1-ann'"
                ):
                    await fresh.delete("classroom", "s1-a")
                assert await fresh.add_audit({"to": "offline"}) == 4, "the numbering carries on"
            if server.port == port:  # a node connected through the restart carries on by itself
                district = await node.get("district", "d2")
                assert district is not None and district.to_dict()["name"] == "第二区"
                await node.put([parse("school", {"id": "s3", "district": "d2"})])  # its scripts again
                assert [s.id for s in await node.children("school", "d2")] == ["s3"]
        await consistent(server.url)
    finally:
        await server.stop()


async def test_two_nodes_writing_at_once_stay_consistent(redis_url: str) -> None:
    """One node deletes a school while another puts a classroom and a lesson of it, many times over:
    either the delete wins (the batch is refused whole) or the batch does (the delete is refused)."""
    async with opened(redis_url) as one, opened(redis_url) as two:
        await one.put([parse("district", {"id": "d1"})])
        outcomes: dict[str, int] = {"deleted": 0, "kept": 0}
        for n in range(120):
            school, classroom, lesson = f"s{n}", f"c{n}", f"l{n}"
            await one.put([parse("school", {"id": school, "district": "d1"})])
            batch = [
                parse("classroom", {"id": classroom, "school": school}),
                parse("lesson", {"id": lesson, "school": school, "classrooms": [classroom],
                                 "starts_at": T0, "ends_at": T0 + 3600}),
            ]  # fmt: skip
            deleting, putting = one.delete("school", school), two.put(batch)
            if n % 2:
                put_result, delete_result = await asyncio.gather(putting, deleting, return_exceptions=True)
            else:
                delete_result, put_result = await asyncio.gather(deleting, putting, return_exceptions=True)
            if delete_result is True:
                assert isinstance(put_result, BatchError), put_result
                assert [p.error for p in put_result.problems] == [
                    f"classroom {classroom!r} names school {school!r}, which is not there",
                    f"lesson {lesson!r} names school {school!r}, which is not there",
                ]
                assert await two.get("classroom", classroom) is None, "nothing of a refused batch"
                assert await two.get("lesson", lesson) is None
                outcomes["deleted"] += 1
            else:
                assert isinstance(delete_result, InUse), delete_result
                assert put_result is None
                assert [r.id for r in await one.children("lesson", school, at=T0)] == [lesson]
                assert [r.id for r in await one.children("classroom", school)] == [classroom]
                outcomes["kept"] += 1
            for record in await one.all("lesson"):
                assert await two.get("school", record.parent_id or "") is not None
        assert outcomes["deleted"] and outcomes["kept"], outcomes  # both orders really happened
        await consistent(redis_url)


async def test_two_nodes_number_their_audits_apart(redis_url: str) -> None:
    async with opened(redis_url) as one, opened(redis_url) as two:
        numbers = await asyncio.gather(
            *(node.add_audit({"node": i % 2, "i": i}) for i, node in enumerate([one, two] * 40))
        )
        assert sorted(numbers) == list(range(1, 81))
        audits = await two.audits(100)
        assert [a["number"] for a in audits] == list(range(80, 0, -1)), "newest first, whoever wrote"
        by_number = {a["number"]: a["i"] for a in audits}
        assert all(by_number[number] == i for i, number in enumerate(numbers))


async def test_open_fails_at_once_where_no_redis_listens() -> None:
    port = free_tcp_port()  # nothing listens there
    store = RedisStore(f"redis://:sekrit@127.0.0.1:{port}/0")
    try:
        with pytest.raises(
            RedisUnavailable, match=f"the organisation's Redis at redis://:\\*\\*\\*@127.0.0.1:{port}/0"
        ):
            await store.open()
    finally:
        await store.close()
    assert isinstance(RedisUnavailable("x"), ConnectionError)


async def test_a_rewrite_keeps_the_in_session_bound_tight(redis_url: str) -> None:
    """The longest-lesson bound grows with a school's longest lesson and goes with its last one."""
    async with opened(redis_url) as store:
        await store.put(importer.from_json(org(T0)).records)  # lessons of 3600 s
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            assert await client.get(f"{PREFIX}longest:lesson:s1") == "3600"
            lesson = await store.get("lesson", "s1-maths")
            assert lesson is not None
            await store.put([parse("lesson", {**lesson.to_dict(), "ends_at": T0 + 86_400})])
            assert await client.get(f"{PREFIX}longest:lesson:s1") == str(86_400 + 600)
            assert await store.delete("lesson", "s1-maths") is True
            assert await client.get(f"{PREFIX}longest:lesson:s1") is None
        finally:
            await client.aclose()
        await consistent(redis_url)


def test_the_organisation_goes_where_the_configuration_says(tmp_path: Path) -> None:
    chosen = organisation_store(str(tmp_path / "kelian.db"), None)
    assert isinstance(chosen, SqliteStore)
    chosen = organisation_store(str(tmp_path / "kelian.db"), "redis://127.0.0.1:6399/2")
    assert isinstance(chosen, RedisStore) and chosen.url == "redis://127.0.0.1:6399/2"
    assert set(RECORDS) == set(ORDER)


async def test_servers_with_a_redis_url_share_the_organisation(redis_url: str) -> None:
    now = time.time()
    async with (
        running_server("127.0.0.1", redis_url=redis_url) as first,
        running_server("127.0.0.1", redis_url=redis_url) as second,
    ):
        assert first.config.database == second.config.database == ":memory:"  # nothing shared there
        status, body = await api(first, "POST", "/import", org(now))
        assert status == 200, body
        status, body = await api(second, "GET", f"/lessons?school=s1&at={now}")
        assert status == 200 and [lesson["id"] for lesson in body["lessons"]] == ["s1-maths"]
        status, body = await api(second, "PUT", "/classrooms/s1-c", {"school": "s1", "name": "三班"})
        assert status == 201, body
        status, body = await api(first, "GET", "/classrooms?school=s1")
        assert [c["id"] for c in body["classrooms"]] == ["s1-a", "s1-b", "s1-c"]
        status, body = await api(first, "DELETE", "/classrooms/s1-a")
        assert status == 409 and body["error"]["code"] == "in_use"
    async with running_server("127.0.0.1", redis_url=redis_url) as third:  # a restart, too
        status, body = await api(third, "GET", "/lessons/s2-maths")
        assert status == 200 and body["classrooms"] == ["s2-a", "s2-b"]
    await consistent(redis_url)
