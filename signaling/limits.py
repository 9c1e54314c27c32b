"""Bounds on what one client can make the server hold or do, and the count of what they refused.

One broken or hostile client must not take a lesson down: it cannot open more than its share of
connections, keep a socket open without joining, send messages faster than a person clicks, or make
the server wait on a socket it does not read. Each bound is set well above what a real lesson does
(Config, docs/security.md), and each refusal is counted for /metrics (kelian_refused_total).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from classroom.limits import Refusals
from classroom.text import for_log

log = logging.getLogger(__name__)

# Publishing renegotiates every subscriber of the room, so it is limited on its own, below the
# general message rate: a person publishes a camera, a microphone and a screen, and toggles them.
PUBLISH_RATE = 2.0  # publish and unpublish requests per second, sustained...
PUBLISH_BURST = 20  # ...after this many at once
# A client that keeps sending after being told it is rate-limited is disconnected: after this many
# refused messages without a pause.
RATE_LIMIT_STRIKES = 1_000


class ConnectionGate:
    """Counts TCP connections in all and per address; refuses one over either bound at once, before
    aiohttp reads a byte of it. An idle connection costs a file descriptor, and 20,000 of them once
    left /healthz, joins and the admin API unreachable."""

    def __init__(self, total: int, per_address: int, refusals: Refusals) -> None:
        self.total = total
        self.per_address = per_address
        self.refusals = refusals
        self.open: Counter[str] = Counter()
        self.count = 0

    def admit(self, address: str) -> bool:
        if self.count >= self.total:
            self._refuse("connection_limit", address)
            return False
        if self.open[address] >= self.per_address:
            self._refuse("address_limit", address)
            return False
        self.open[address] += 1
        self.count += 1
        return True

    def release(self, address: str) -> None:
        self.count -= 1
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]

    def _refuse(self, reason: str, address: str) -> None:
        self.refusals[reason] += 1
        log.warning("refused a connection from %s: %s", for_log(address), reason.replace("_", " "))

    def wrap(self, factory: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for loop.create_server that puts this gate in front of `factory`'s."""
        return lambda: _GatedProtocol(self, factory())


class _GatedProtocol(asyncio.Protocol):
    """Stands between the event loop and aiohttp's protocol: a refused connection is aborted in
    connection_made and aiohttp never hears of it; an admitted one is handed on whole."""

    __slots__ = ("_address", "_gate", "_inner")

    def __init__(self, gate: ConnectionGate, inner: asyncio.BaseProtocol) -> None:
        self._gate = gate
        self._inner: Any = inner
        self._address: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = _host(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self._gate.admit(address):
            self._inner = None
            transport.abort()  # type: ignore[attr-defined]  # a TCP transport: sends RST, frees the fd now
            return
        self._address = address
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is not None:
            self._gate.release(self._address)
            self._address = None
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


def _host(address: str) -> str:
    """IPv4-mapped IPv6 addresses count as the IPv4 address they are."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped or parsed)
