"""A real kelian server on free loopback ports, started in the test's own event loop."""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
from aiohttp import web
from aiortc.mediastreams import MediaStreamTrack
from helpers import free_tcp_port

from classroom.tokens import mint
from sfu.node import Node
from signaling import appkeys, server
from signaling.client import Client, RemoteTrack, use_loopback_candidates
from signaling.config import Config
from signaling.media import video_track

API_KEY = "APItest"
API_SECRET = "test-secret-test-secret-test-secret"


@dataclass
class Server:
    url: str
    config: Config
    node: Node
    runner: web.AppRunner

    def token(self, identity: str, role: str = "classroom", room: str = "lesson", **kwargs: object) -> str:
        return mint(API_KEY, API_SECRET, room=room, identity=identity, role=role, **kwargs)  # type: ignore[arg-type]

    def client(
        self, identity: str, role: str = "classroom", room: str = "lesson", binary: bool = False
    ) -> Client:
        return Client(self.url, self.token(identity, role, room), binary=binary)

    @property
    def rooms(self) -> object:
        return self.runner.app[appkeys.ROOMS]


@pytest_asyncio.fixture
async def kelian() -> AsyncIterator[Server]:
    use_loopback_candidates()
    async with running_server("127.0.0.1") as instance:
        yield instance


@asynccontextmanager
async def running_server(
    host: str,
    media_host: str | None = None,
    media_port: int = 0,
    announced: str | None = None,
    **settings: Any,
) -> AsyncIterator[Server]:
    """A server with HTTP (and media, unless `media_host` says otherwise) on `host`: loopback, or an
    address in a test's own namespace. `announced` puts another address in its ICE candidate;
    `settings` are other Config fields (limits, say)."""
    with tempfile.TemporaryDirectory(prefix="kelian-media-") as media:
        # nothing kept past the test, and no recorder unless the test asks for one
        defaults = {
            "database": ":memory:",
            "recordings": f"{media}/recordings",
            "library": f"{media}/library",
            "auto_record": False,
        }
        config = Config(
            http_host=host,
            http_port=free_tcp_port(),
            media_host=media_host or host,
            media_port=media_port,
            announced_address=announced,
            api_key=API_KEY,
            api_secret=API_SECRET,
            **(defaults | settings),
        )
        runner, node = await server.start(config)
        try:
            yield Server(f"http://{host}:{config.http_port}", config, node, runner)
        finally:
            await server.stop(runner, node)


@dataclass
class Lesson:
    """A lecturer publishing and a student receiving everything it published."""

    teacher: Client
    student: Client
    tracks: list[RemoteTrack]


@asynccontextmanager
async def lesson(
    kelian: Server,
    *tracks: MediaStreamTrack,
    student_role: str = "student",
    video_codec: str | None = None,
) -> AsyncIterator[Lesson]:
    """The teacher connects and publishes ``tracks`` (one test-pattern video by default), then the
    student connects and waits for all of them; both are closed on the way out, whatever happens."""
    published = tracks or (video_track(),)
    teacher = kelian.client("teacher", "lecturer")
    student = kelian.client("student", student_role)
    try:
        await teacher.connect()
        await teacher.publish(*published, video_codec=video_codec)
        await student.connect()
        yield Lesson(teacher, student, await student.wait_for_tracks(len(published)))
    finally:
        try:
            await student.close()
        finally:
            await teacher.close()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` every ``interval`` seconds for at most ``timeout`` seconds (and a bounded
    number of times); whether it became true. Follow it with the assertion the test means."""
    if timeout < 0 or interval <= 0:
        raise ValueError("eventually needs timeout >= 0 and interval > 0")
    deadline = time.monotonic() + timeout
    for _ in range(math.ceil(timeout / interval)):
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(interval, remaining))
    return predicate()
