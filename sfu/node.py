"""Node: the process's one UDP media port, its Transports and Routers.

Every datagram enters through `datagram_received`. Known remote addresses go straight to their
Transport (RFC 7983 first-byte demultiplexing: STUN 0-3, DTLS 20-63, RTP/RTCP 128-191); STUN binding
requests from new addresses are matched to a Transport by ICE username. Anything else is dropped and
counted: junk on the port must never cost another participant anything.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, cast

from . import simulcast
from .consumer import Consumer
from .dtls import Certificate
from .ice import Address, IceError, binding_success, parse_binding_request
from .media_port import bind_media_port
from .router import Router
from .transport import WebRtcTransport

if TYPE_CHECKING:
    from ._delay import read_feedback
else:
    try:  # sfu/_delay.c: the usual report from datagram to estimate in C
        from ._delay import read_feedback
    except ImportError:
        read_feedback = None

log = logging.getLogger(__name__)

TICK = 1.0  # RTCP reports and consent checks
FEEDBACK_POLL = 0.05  # seconds between reads of the transport-cc feedback socket (media_port.py)
FEEDBACK_BIG_READ = 100  # datagrams in one read that make the next come sooner
MAX_FEEDBACK_READ = 2_000  # datagrams per read: bounds one turn of the loop
FEEDBACK_MTU = 4096
CONSENT_TIMEOUT = 30.0  # RFC 7675: consent expires 30 s after the last check
CONNECT_TIMEOUT = 30.0  # a Transport that never completes ICE


class Node(asyncio.DatagramProtocol):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8701,
        announced_address: str | None = None,
        max_bitrate: int = 3_000_000,
        consent_timeout: float = CONSENT_TIMEOUT,
    ) -> None:
        self.host = host
        self.port = port
        self.announced_address = announced_address or host
        self.max_bitrate = max_bitrate
        self.consent_timeout = consent_timeout
        self.certificate = Certificate()
        self.routers: dict[str, Router] = {}
        self.transports: dict[str, WebRtcTransport] = {}
        self.by_ufrag: dict[str, WebRtcTransport] = {}
        self.by_addr: dict[Address, WebRtcTransport] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self.fd = -1  # the media port's socket, once started: the compiled fan-out sends on it
        self._tick: asyncio.Task[None] | None = None
        # counters, read by the metrics collector
        self.packets_in = self.bytes_in = self.dropped = self.errors = 0
        self.stun_requests = self.nacks = self.plis = self.keyframe_requests = 0
        self.nacks_sent = 0  # to publishers, for packets that did not arrive
        self.repairs = 0  # lost packets that came back from publishers as RTX
        self.feedback_read = 0  # datagrams read from the transport-cc feedback socket
        self._feedback_socket: socket.socket | None = None
        self._feedback_timer: asyncio.TimerHandle | None = None
        # totals of closed Consumers, so that counters never go down
        self.retired = {"packets": 0, "bytes": 0, "retransmissions": 0, "errors": 0}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock, self._feedback_socket = bind_media_port(family, self.host, self.port)
        udp, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self._udp = udp
        self.port = sock.getsockname()[1]
        self._tick = asyncio.create_task(self._run_ticks())
        log.info("media on udp %s:%d (announced %s)", self.host, self.port, self.announced_address)

    async def stop(self) -> None:
        for transport in list(self.transports.values()):
            transport.close("server shutting down")
        if self._tick is not None:
            self._tick.cancel()
        if self._feedback_timer is not None:
            self._feedback_timer.cancel()
        if self._feedback_socket is not None:
            self._feedback_socket.close()
        if self._udp is not None:
            self._udp.close()

    # -- asyncio.DatagramProtocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.DatagramTransport, transport)
        self._udp = transport
        self.sendto = transport.sendto  # type: ignore[method-assign]
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1

    def sendto(self, data: bytes, addr: Address) -> None:  # replaced by the socket's own in connection_made
        raise ConnectionError("media port not started")

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.packets_in += 1
        self.bytes_in += len(data)
        if not data:
            self.dropped += 1
            return
        try:
            transport = self.by_addr.get(addr)
            if transport is not None and data[0] > 3:
                transport.on_datagram(data)
            elif data[0] < 2:
                self._on_stun(data, addr)
            else:
                self.dropped += 1
        except Exception:  # one bad packet must not stop the port
            self.errors += 1
            log.exception("datagram from %s dropped", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)

    def _on_stun(self, data: bytes, addr: Address) -> None:
        try:
            request = parse_binding_request(data)
            if request is None:
                return
            transport = self.by_ufrag.get(request.local_ufrag)
            if transport is None:
                raise IceError(f"unknown ICE username {request.local_ufrag!r}")
            response = binding_success(request, transport.ice_pwd, addr)
        except IceError as exc:
            self.dropped += 1
            log.debug("STUN from %s dropped: %s", addr, exc)
            return
        self.stun_requests += 1
        self.sendto(response, addr)
        transport.on_binding(addr, request.use_candidate)
        if self._feedback_timer is None and self._feedback_socket is not None:
            self._feedback_timer = asyncio.get_running_loop().call_later(FEEDBACK_POLL, self._read_feedback)

    # -- Transports and Routers ---------------------------------------------------------------------

    def create_transport(self) -> WebRtcTransport:
        transport = WebRtcTransport(self)
        self.transports[transport.id] = transport
        self.by_ufrag[transport.ice_ufrag] = transport
        return transport

    def forget(self, transport: WebRtcTransport) -> None:
        self.transports.pop(transport.id, None)
        self.by_ufrag.pop(transport.ice_ufrag, None)
        for addr in transport.addresses:
            if self.by_addr.get(addr) is transport:
                del self.by_addr[addr]

    def retire(self, consumer: Consumer) -> None:
        for key in self.retired:
            self.retired[key] += getattr(consumer, key)

    def consumer_totals(self) -> dict[str, int]:
        """Packets, bytes, retransmissions and errors of every Consumer this node has had."""
        totals = dict(self.retired)
        for transport in self.transports.values():
            for consumer in transport.consumers.values():
                for key in totals:
                    totals[key] += getattr(consumer, key)
        return totals

    def router(self, room: str) -> Router:
        router = self.routers.get(room)
        if router is None:
            router = self.routers[room] = Router(room)
        return router

    def close_router(self, room: str) -> None:
        router = self.routers.pop(room, None)
        if router is not None:
            router.close()

    def candidate(self) -> str:
        """The one host candidate every Transport shares (ICE-lite, RFC 8445 5.1.1)."""
        return f"1 1 udp 2130706431 {self.announced_address} {self.port} typ host"

    def _read_feedback(self) -> None:
        """Everything the kernel steered to the feedback socket since the last read, then the next
        read: sooner after a big batch, so that the socket's buffer (the kernel may cap it near
        200 kB) never overflows; not at all while no Transport has an address to send from."""
        self._feedback_timer = None
        sock = self._feedback_socket
        if sock is None:
            return
        if read_feedback is not None:
            now, by_addr, received = time.monotonic(), self.by_addr, self.datagram_received
            count, decrypted, size = read_feedback(
                sock.fileno(), by_addr, MAX_FEEDBACK_READ, now, received, self._on_plain_rtcp
            )
            self.packets_in += decrypted  # datagram_received counted the others
            self.bytes_in += size
        else:
            count = self._read_feedback_here(sock)
        self.feedback_read += count
        if self.by_addr:
            delay = FEEDBACK_POLL if count < FEEDBACK_BIG_READ else FEEDBACK_POLL / 5
            self._feedback_timer = asyncio.get_running_loop().call_later(delay, self._read_feedback)

    def _read_feedback_here(self, sock: socket.socket) -> int:
        """read_feedback's reference, where sfu/_delay.c was not built: every datagram through
        datagram_received."""
        recv, received = sock.recvfrom, self.datagram_received
        count = 0
        try:
            while count < MAX_FEEDBACK_READ:
                data, addr = recv(FEEDBACK_MTU)
                count += 1
                received(data, addr)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:  # an ICMP error queued on the socket: nothing to read this time
            log.debug("feedback socket: %s", exc)
        return count

    def _on_plain_rtcp(self, transport: WebRtcTransport, plain: bytes) -> None:
        """What read_feedback decrypted but did not take: the transport's own way, as datagram_received
        guards it."""
        try:
            transport.on_plain_rtcp(plain)
        except Exception:  # one bad packet must not stop the port
            self.errors += 1
            log.exception("RTCP from %s dropped", transport.remote_addr)

    async def _run_ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.tick(time.monotonic())
            except Exception:
                log.exception("tick failed")

    def tick(self, now: float) -> None:
        for transport in list(self.transports.values()):
            if transport.state == "new" and now - transport.created > CONNECT_TIMEOUT:
                transport.close("ICE did not connect")
            elif transport.state != "new" and now - transport.last_consent > self.consent_timeout:
                transport.close("consent expired: the peer went silent")
            else:
                transport.send_reports(self.max_bitrate)
        for router in list(self.routers.values()):
            router.tick(now, TICK)
        for transport in list(self.transports.values()):
            if transport.state == "connected" and transport.simulcast_consumers():
                simulcast.allocate(transport, now)
