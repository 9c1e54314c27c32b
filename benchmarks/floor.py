"""The floor under forwarding on the machine the benchmark runs on: what sending a packet costs
before kelian does anything. `make bench` prints it beside kelian's own cost per forwarded packet;
`python -m benchmarks.floor` alone.

- a C sender (benchmarks/floor.c, compiled here with the system's cc) of 1200-byte datagrams to
  RECEIVERS loopback sockets: the kernel's part, CPU per datagram, a sendto each (the floor), and
  also with sendmmsg BATCH at a time, as the compiled fan-out sends ("c_sendmmsg_us"; on a VM that
  pays for each entry into the kernel it is the cheaper, and kelian's ratio to the floor owes that
  difference to it);
- Python's `socket.sendto` doing the same: the interpreter's share of one send;
- SRTP protect (AEAD_AES_128_GCM, libsrtp through pylibsrtp) of one 1200-byte packet.

A forwarded packet costs at least one send and one protect: C send + protect is the floor a server
on this machine cannot beat, whatever its language, as long as it protects with libsrtp. kelian
protects AES-GCM with its own sfu/_srtp.c (a quarter of libsrtp's bookkeeping); its cost, measured
the same way, is printed beside the floor ("kelian_protect_us"), which keeps libsrtp's.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pylibsrtp import Policy, Session

SOURCE = Path(__file__).with_name("floor.c")
RECEIVERS = 50
BATCH = 16  # sfu/_fanout.c BATCH
DATAGRAMS = 200_000
PAYLOAD = 1200


def c_send_us(
    receivers: int = RECEIVERS, datagrams: int = DATAGRAMS, batches: tuple[int, ...] = (0,)
) -> list[float] | None:
    """CPU microseconds per datagram of the C sender, compiled once and run for each of `batches`
    (0: a sendto each, else sendmmsg of that many), or None without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory(prefix="kelian-floor-") as folder:
        binary = Path(folder) / "floor"
        subprocess.run([compiler, "-O2", "-o", str(binary), str(SOURCE)], check=True)
        runs = [
            subprocess.run(
                [str(binary), str(receivers), str(datagrams), str(batch)],
                check=True,
                capture_output=True,
                text=True,
            )
            for batch in batches
        ]
    return [float(r.stdout) for r in runs]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def python_send_us(receivers: int = RECEIVERS, datagrams: int = DATAGRAMS) -> float:
    """CPU microseconds per `socket.sendto` to loopback receivers, drained by a forked child."""
    sinks = []
    for _ in range(receivers):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        sinks.append(sink)
    addresses = [s.getsockname() for s in sinks]
    drain = os.fork()
    if drain == 0:  # the child: read everything, forever, until killed
        import selectors

        selector = selectors.DefaultSelector()
        for sink in sinks:
            selector.register(sink, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select(1.0):
                try:
                    while True:
                        key.fileobj.recv(2048)  # type: ignore[union-attr]
                except BlockingIOError:
                    pass
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    packet = bytes(PAYLOAD)
    try:
        start = _cpu()
        for n in range(datagrams):
            sender.sendto(packet, addresses[n % receivers])
        spent = _cpu() - start
    finally:
        os.kill(drain, signal.SIGKILL)
        os.waitpid(drain, 0)
        sender.close()
        for sink in sinks:
            sink.close()
    return spent / datagrams * 1e6


def protect_us(packets: int = 20_000) -> float:
    """CPU microseconds per SRTP protect (AEAD_AES_128_GCM, libsrtp) of a 1200-byte RTP packet."""
    policy = Policy(
        key=bytes(28), ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_128_GCM
    )
    return _time_protect(Session(policy=policy).protect, packets)


def _time_protect(protect: Callable[[bytes], object], packets: int) -> float:
    """CPU microseconds per `protect` of a 1200-byte RTP packet, the packets made beforehand (each
    its own sequence number: libsrtp refuses to protect one twice)."""
    body = (0x1234).to_bytes(4, "big") + bytes(PAYLOAD - 12)
    made = [
        bytes([0x80, 96]) + (n & 0xFFFF).to_bytes(2, "big") + (n * 3000).to_bytes(4, "big") + body
        for n in range(packets)
    ]
    start = time.process_time()
    for packet in made:
        bytes(protect(packet))  # pylibsrtp's returns bytes; SrtpContext's a view of its buffer, copied
    return (time.process_time() - start) / packets * 1e6


def kelian_protect_us(packets: int = 20_000) -> float | None:
    """The same, through the SrtpContext kelian's transports send with (sfu/_srtp.c where built)."""
    from sfu.srtp import AEAD_AES_128_GCM, SrtpContext

    context = SrtpContext(AEAD_AES_128_GCM, bytes(28), True)
    if context._gcm is None:
        return None
    return _time_protect(context.protect, packets)


def run() -> dict[str, float | None]:
    c_send, batched = c_send_us(batches=(0, BATCH)) or (None, None)
    protect = protect_us()
    ours = kelian_protect_us()
    return {
        "c_send_us": None if c_send is None else round(c_send, 2),
        "c_sendmmsg_us": None if batched is None else round(batched, 2),
        "python_sendto_us": round(python_send_us(), 2),
        "srtp_protect_us": round(protect, 2),
        "kelian_protect_us": None if ours is None else round(ours, 2),
        # what a forwarded packet cannot cost less than here: one send and one protect
        "floor_us": None if c_send is None else round(c_send + protect, 2),
    }


if __name__ == "__main__":
    print(run())
    sys.exit(0)
