"""Network namespaces a test makes for itself: a host at the far end of a veth pair whose link the
test shapes with tc (netem for loss, tbf for a bandwidth cap), as a school's uplink would be.

Needs root and iproute2; without them the tests skip (and fail in CI, which has both).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import require_system


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


@dataclass
class Namespace:
    """`name` holds `inside` (address `inside_ip`); `outside` (address `host_ip`) is its peer here."""

    name: str
    outside: str
    inside: str
    host_ip: str
    inside_ip: str

    def shape_to_inside(self, qdisc: str) -> None:
        """Shape what the host sends into the namespace, e.g. "tbf rate 600kbit burst 20kb latency 100ms"."""
        _run("tc", "qdisc", "replace", "dev", self.outside, "root", *qdisc.split())

    def shape_from_inside(self, qdisc: str) -> None:
        """Shape what the namespace sends out, e.g. "netem loss 5%"."""
        _run(
            "ip",
            "netns",
            "exec",
            self.name,
            "tc",
            "qdisc",
            "replace",
            "dev",
            self.inside,
            "root",
            *qdisc.split(),
        )

    def wrapper(self, program: str, folder: Path) -> Path:
        """A script that runs `program` with its arguments inside the namespace."""
        path = folder / f"in-{self.name}"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {self.name} {program} "$@"\n')
        path.chmod(0o755)
        return path


@pytest.fixture
def netns() -> Iterator[Namespace]:
    if os.geteuid() != 0:
        require_system("root", "network-namespace tests need root (CAP_NET_ADMIN)")
    for program in ("ip", "tc"):
        if shutil.which(program) is None:
            require_system("iproute2", f"{program} is not installed (apt-get install iproute2)")
    tag = f"{os.getpid() % 10000}{random.randrange(100)}"
    subnet = random.randrange(1, 250)
    space = Namespace(f"kl{tag}", f"klo{tag}", f"kli{tag}", f"10.213.{subnet}.1", f"10.213.{subnet}.2")
    try:
        _run("ip", "netns", "add", space.name)
        _run("ip", "link", "add", space.outside, "type", "veth", "peer", "name", space.inside)
        _run("ip", "link", "set", space.inside, "netns", space.name)
        _run("ip", "addr", "add", f"{space.host_ip}/30", "dev", space.outside)
        _run("ip", "link", "set", space.outside, "up")
        inside = ("ip", "netns", "exec", space.name)
        _run(*inside, "ip", "addr", "add", f"{space.inside_ip}/30", "dev", space.inside)
        _run(*inside, "ip", "link", "set", space.inside, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        subprocess.run(["ip", "netns", "del", space.name], capture_output=True, check=False)
        require_system("netns", f"could not set up a network namespace: {exc}")
    try:
        yield space
    finally:
        subprocess.run(["ip", "link", "del", space.outside], capture_output=True, timeout=10, check=False)
        subprocess.run(["ip", "netns", "del", space.name], capture_output=True, timeout=10, check=False)


@dataclass
class LossyRelay:
    """A UDP hop that drops a share of what one host sends, at random (seeded).

    The kernel these tests run on has no netem, so random loss is made here: the server's media
    port listens on loopback, the relay on the namespace-facing address with the same port number,
    and the server announces that address. Each client gets its own upstream socket, so the server
    still tells clients apart by address.
    """

    listen: tuple[str, int]
    target: tuple[str, int]
    lossy_host: str
    loss: float
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    dropped: int = 0
    forwarded: int = 0
    _down: Any = None
    _up: dict[tuple[str, int], Any] = field(default_factory=dict)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._down, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self._from_client), local_addr=self.listen
        )

    def _from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[0] == self.lossy_host and self.rng.random() < self.loss:
            self.dropped += 1
            return
        up = self._up.get(addr)
        if up is None:
            self._up[addr] = None  # connecting: this first datagram is lost, ICE retransmits
            asyncio.get_running_loop().create_task(self._connect(addr))
            return
        self.forwarded += 1
        up.sendto(data)

    async def _connect(self, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Side(lambda data, _: self._down.sendto(data, addr)), remote_addr=self.target
        )
        self._up[addr] = transport

    def close(self) -> None:
        for transport in [self._down, *self._up.values()]:
            if transport is not None:
                transport.close()


class _Side(asyncio.DatagramProtocol):
    def __init__(self, receive: Any) -> None:
        self.receive = receive

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.receive(data, addr)
