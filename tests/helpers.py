"""Helpers shared by tests; plain functions so tests and fixtures can both import them."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Any, NoReturn

import pytest

__all__ = ["free_tcp_port", "free_udp_port", "redis_ping", "require_system", "wait_for_redis"]


def require_system(name: str, reason: str) -> NoReturn:
    """Skip when a system dependency is missing, but fail in CI.

    A developer without chromium should still be able to run the rest of the suite; CI sets
    KELIAN_REQUIRE_SYSTEM=1 so that a missing package cannot turn real tests into silent skips.
    ``name`` is the missing program, put in front of the reason so the report says what to install.
    """
    message = f"{name}: {reason}" if name and name not in reason else reason
    if os.environ.get("KELIAN_REQUIRE_SYSTEM") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_tcp_port() -> int:
    """A TCP port that was free a moment ago; a race with other processes is possible, so retry on bind."""
    return _free_port(socket.SOCK_STREAM)


def free_udp_port() -> int:
    """A UDP port that was free a moment ago; same caveat as free_tcp_port."""
    return _free_port(socket.SOCK_DGRAM)


def redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING; raw RESP so it works before any client library is set up."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def wait_for_redis(
    host: str, port: int, timeout: float = 5.0, process: subprocess.Popen[bytes] | None = None
) -> bool:
    """Poll until Redis answers or ``timeout`` seconds pass; bounded so a broken server fails fast.

    With ``process``, give up as soon as it exits (e.g. its port was taken) instead of waiting it out.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_ping(host, port):
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def send_through_python(transport: Any) -> None:
    """Make `transport`'s Consumers send through Python (Consumer.send, then transport.sendto) rather
    than the compiled fan-out, which sends on the socket itself: for a test that loses or inspects
    packets by replacing transport.sendto."""
    transport.sender = None
    for consumer in transport.consumers.values():
        consumer.sender = None


def estimator_state(e: Any) -> tuple[Any, ...]:
    """Everything a bandwidth estimator decides with, for comparing the compiled one with the
    reference (sfu/bwe.py, sfu/_delay.c)."""
    return (
        e.estimate,
        e.delivered,
        e.acked_bytes,
        e.feedbacks,
        e.loss,
        e.capacity,
        e.last_cut,
        e.last_trouble,
        e.last_loss_cut,
        e.delay.state,
        e.delay.threshold,
    )
