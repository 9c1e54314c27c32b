"""The media port's sockets: one for the event loop, and one that transport-cc feedback is steered
to, read in batches so that it never wakes the event loop by itself.

Every subscriber sends transport-cc feedback every 50-100 ms: with a few hundred subscribers that
is thousands of datagrams a second, each arriving on its own to a sleeping process. Measured on a
2-core VM, the wake-up (a context switch and an event-loop turn) cost more than working through the
message. The kernel can sort datagrams before any process sees them: sockets sharing a port with
SO_REUSEPORT form a group, and a classic BPF program attached to the group picks the socket of each
datagram. Ours sends transport-cc feedback (RTCP RTPFB, FMT 15) to socket 1 and everything else to
socket 0, the event loop's: media, STUN and DTLS, and the RTCP that wants a prompt answer (NACK,
PLI) or whose arrival time is measured (sender and receiver reports). Socket 1 is read in one go
every FEEDBACK_POLL seconds (node.py).

Python has no binding for SO_ATTACH_REUSEPORT_CBPF and the program is seven instructions, so it is
written here; where the kernel refuses it (not Linux, or too old), everything stays on socket 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import socket
import struct

log = logging.getLogger(__name__)

SO_ATTACH_REUSEPORT_CBPF = 51  # linux/asm-generic/socket.h (x86, ARM)
# Don't-fragment, whatever the path MTU cache says (Python 3.11 lacks the constants). Media packets
# are sized under any MTU; and Linux numbers IPv4 packets that may be fragmented with a hash over a
# shared table, which was 2-3% of the server's CPU with 50 subscribers (perf).
IP_MTU_DISCOVER, IP_PMTUDISC_PROBE = 10, 3
SOCKET_BUFFER = 8 * 1024 * 1024

# struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}: the datagram's UDP payload is at offset 0
_LDB_ABS, _JEQ_K, _AND_K, _RET_K = 0x30, 0x15, 0x54, 0x06
_PROGRAM = [
    (_LDB_ABS, 0, 0, 1),  # A = second byte: the first RTCP packet's type (SRTCP leaves it clear)
    (_JEQ_K, 0, 4, 205),  # not RTPFB -> socket 0
    (_LDB_ABS, 0, 0, 0),  # A = first byte: version, padding bit, feedback message type
    (_AND_K, 0, 0, 0xDF),  # without the padding bit
    (_JEQ_K, 0, 1, 0x80 | 15),  # version 2, FMT 15 (transport-cc) -> socket 1, else socket 0
    (_RET_K, 0, 0, 1),
    (_RET_K, 0, 0, 0),
]


def _attach(sock: socket.socket) -> None:
    code = b"".join(struct.pack("HBBI", *insn) for insn in _PROGRAM)
    buffer = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog {unsigned short len; struct sock_filter *filter}, padded to the pointer size
    fprog = struct.pack("HL", len(_PROGRAM), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)  # copied by the kernel


def bind_media_port(family: int, host: str, port: int) -> tuple[socket.socket, socket.socket | None]:
    """The media port's socket for the event loop and, where the kernel steers, the feedback socket.

    The port is first taken with a plain bind, so that another process already on it is an error
    (EADDRINUSE) rather than a silent member of our SO_REUSEPORT group.
    """
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.bind((host, port))
        port = probe.getsockname()[1]
    finally:
        probe.close()
    main = _socket(family, host, port, reuse_port=hasattr(socket, "SO_REUSEPORT"))
    try:
        _attach(main)  # before the second socket joins: no datagram may reach it unsteered
    except OSError as exc:
        log.info("feedback steering unavailable (%s): feedback wakes the event loop", exc)
        return main, None
    try:
        return main, _socket(family, host, port, reuse_port=True)
    except OSError:
        return main, None


def _socket(family: int, host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
    if family == socket.AF_INET:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
    return sock
