"""Fixtures shared by the whole suite. Helpers that are not fixtures live in tests/helpers.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
from browser import browser  # noqa: F401  (fixture)
from helpers import free_tcp_port, require_system, wait_for_redis
from kelian_server import kelian  # noqa: F401  (fixture)
from netns import netns  # noqa: F401  (fixture)

# Fuzz tests (tests/test_fuzz.py) are deterministic by default, so CI cannot fail at random:
# derandomized, a fixed number of examples, no example database. KELIAN_FUZZ_EXAMPLES=100000 runs a
# long random search by hand (`make fuzz`).
_FUZZ_EXAMPLES = int(os.environ.get("KELIAN_FUZZ_EXAMPLES", "0") or 0)
hypothesis.settings.register_profile(
    "kelian",
    derandomize=not _FUZZ_EXAMPLES,
    max_examples=_FUZZ_EXAMPLES or 300,
    deadline=None,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.data_too_large],
)
hypothesis.settings.load_profile("kelian")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a slow end-to-end test, run by CI and `make test-all`")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the slowest end-to-end tests out unless KELIAN_SLOW=1 (CI sets it; so does make test-all),
    so that `make test` stays quick on a laptop while CI still runs everything."""
    if os.environ.get("KELIAN_SLOW") == "1":
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a throwaway redis-server for the whole session (a real one: fakes hide pub/sub details).

    No persistence, bound to loopback, in its own temp dir. Tests that need an empty database should
    use ``redis_url`` instead.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        require_system("redis-server", "redis-server is not installed (apt-get install redis-server)")
    workdir: Path = tmp_path_factory.mktemp("redis")
    log_path = workdir / "redis.log"
    for _attempt in range(3):  # the free port can be taken between choosing and binding it
        port = free_tcp_port()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(workdir),
                    "--daemonize",
                    "no",
                ],
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_for_redis("127.0.0.1", port, timeout=5.0, process=process) and process.poll() is None:
            break
        _stop(process)
    else:
        pytest.fail(f"redis-server did not answer PING within 5 s:\n{log_path.read_text(errors='replace')}")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session redis_server with its database flushed, so tests do not see each other's keys."""
    host_port = redis_server.removeprefix("redis://").split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        reply = sock.recv(64)
    assert reply.startswith(b"+OK"), reply
    return redis_server
