"""Fronts, workers and nodes for the tests: the Config of a front in a test folder, and `kelian serve`
as a process of its own (a node of a Redis cluster, or a server measured as in production)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
from kelian_server import API_KEY, API_SECRET, free_tcp_port

from signaling.config import Config


def front_config(folder: Path, **settings: Any) -> Config:
    """A front on a free loopback port, its state in `folder` (one database file its workers share),
    no recorder unless asked; `settings` are other Config fields."""
    defaults: dict[str, Any] = {
        "http_host": "127.0.0.1",
        "http_port": free_tcp_port(),
        "media_host": "127.0.0.1",
        "media_port": 0,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "database": str(folder / "kelian.db"),
        "recordings": str(folder / "recordings"),
        "library": str(folder / "library"),
        "auto_record": False,
    }
    return Config(**(defaults | settings))


async def serve_node(redis_url: str, folder: Path, *flags: str) -> tuple[str, asyncio.subprocess.Process]:
    """`kelian serve --redis-url ... --workers 1` as a process of its own (more `flags` if given),
    and its URL once /healthz answers."""
    return await serve_process(folder, "--redis-url", redis_url, *flags)


async def serve_process(folder: Path, *flags: str) -> tuple[str, asyncio.subprocess.Process]:
    """`kelian serve --workers 1` as a process of its own, as it runs in production (its own heap
    and garbage collector, not the test runner's), its state in `folder`; its URL once /healthz
    answers."""
    folder.mkdir()
    port = free_tcp_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KELIAN_")}
    env |= {"KELIAN_API_KEY": API_KEY, "KELIAN_API_SECRET": API_SECRET}
    command = ["-m", "signaling", "serve", "--workers", "1", "--http-host", "127.0.0.1"]
    command += ["--http-port", str(port), "--media-port", "0", "--database", str(folder / "kelian.db")]
    command += ["--recordings", str(folder / "recordings"), "--library", str(folder / "library")]
    command += ["--auto-record", "false", *flags]
    process = await asyncio.create_subprocess_exec(sys.executable, *command, env=env, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as r:
                if r.status == 200:
                    return url, process
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    process.kill()
    raise AssertionError("kelian serve did not start")
