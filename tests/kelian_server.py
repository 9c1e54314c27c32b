"""A real kelian server on free loopback ports, started in the test's own event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio
from aiohttp import web
from helpers import free_tcp_port

from sfu.node import Node
from signaling import appkeys, server
from signaling.client import Client, use_loopback_candidates
from signaling.config import Config
from signaling.tokens import mint

API_KEY = "APItest"
API_SECRET = "test-secret-test-secret-test-secret"


@dataclass
class Server:
    url: str
    config: Config
    node: Node
    runner: web.AppRunner

    def token(self, identity: str, role: str = "student", room: str = "lesson", **kwargs: object) -> str:
        return mint(API_KEY, API_SECRET, room=room, identity=identity, role=role, **kwargs)  # type: ignore[arg-type]

    def client(
        self, identity: str, role: str = "student", room: str = "lesson", binary: bool = False
    ) -> Client:
        return Client(self.url, self.token(identity, role, room), binary=binary)

    @property
    def rooms(self) -> object:
        return self.runner.app[appkeys.ROOMS]


@pytest_asyncio.fixture
async def kelian() -> AsyncIterator[Server]:
    use_loopback_candidates()
    config = Config(
        http_host="127.0.0.1",
        http_port=free_tcp_port(),
        media_host="127.0.0.1",
        media_port=0,
        api_key=API_KEY,
        api_secret=API_SECRET,
    )
    runner, node = await server.start(config)
    try:
        yield Server(f"http://127.0.0.1:{config.http_port}", config, node, runner)
    finally:
        await server.stop(runner, node)
