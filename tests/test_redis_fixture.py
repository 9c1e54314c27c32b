"""The shared fixtures and helpers: a real redis-server, system requirements, free ports."""

from __future__ import annotations

import socket

import pytest
import redis.asyncio as aioredis
from helpers import free_tcp_port, free_udp_port, require_system


async def test_redis_server_answers_ping_and_stores(redis_server: str) -> None:
    assert redis_server.startswith("redis://127.0.0.1:") and redis_server.endswith("/0")
    client = aioredis.from_url(redis_server)
    try:
        assert await client.ping() is True
        await client.set("kelian:test", b"hello")
        assert await client.get("kelian:test") == b"hello"
    finally:
        await client.aclose()


async def test_redis_url_is_flushed(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        assert await client.get("kelian:test") is None  # set by the test above, flushed since
        assert await client.dbsize() == 0
    finally:
        await client.aclose()


def test_require_system_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KELIAN_REQUIRE_SYSTEM", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        require_system("chromium", "chromium is not installed")
    monkeypatch.setenv("KELIAN_REQUIRE_SYSTEM", "1")
    with pytest.raises(pytest.fail.Exception, match="chromium"):
        require_system("chromium", "chromium is not installed")


def test_free_ports_are_bindable() -> None:
    for kind, port in ((socket.SOCK_STREAM, free_tcp_port()), (socket.SOCK_DGRAM, free_udp_port())):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", port))
