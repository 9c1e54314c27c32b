"""The media port's two sockets: the kernel steers transport-cc feedback to the batch-read one and
everything else to the event loop's, and a port someone else holds is an error, not a shared port."""

from __future__ import annotations

import socket
import struct

import pytest

from sfu.media_port import bind_media_port

RTP = bytes([0x80, 96]) + bytes(10)
TWCC = bytes([0x8F, 205]) + struct.pack("!HII", 4, 1, 2) + bytes(8)
TWCC_PADDED = bytes([0xAF, 205]) + struct.pack("!HII", 4, 1, 2) + bytes(8)  # libwebrtc sets P
NACK = bytes([0x81, 205]) + struct.pack("!HII", 3, 1, 2) + bytes(4)
PLI = bytes([0x81, 206]) + struct.pack("!HII", 2, 1, 2)
REMB = bytes([0x8F, 206]) + struct.pack("!HII", 4, 1, 0) + b"REMB" + bytes(4)
SR = bytes([0x80, 200]) + struct.pack("!HI", 6, 1) + bytes(20)
RR = bytes([0x80, 201]) + struct.pack("!HI", 1, 1)
STUN = bytes([0x00, 0x01]) + bytes(18)
DTLS = bytes([22, 0xFE, 0xFD]) + bytes(10)
SHORT = b"\x8f"


def received(sock: socket.socket) -> set[bytes]:
    got = set()
    while True:
        try:
            got.add(sock.recv(2048))
        except BlockingIOError:
            return got


def test_transport_cc_feedback_is_steered_to_the_second_socket_and_nothing_else_is() -> None:
    main, feedback = bind_media_port(socket.AF_INET, "127.0.0.1", 0)
    try:
        if feedback is None:
            pytest.skip("this kernel does not steer SO_REUSEPORT groups with classic BPF")
        port = main.getsockname()[1]
        assert feedback.getsockname() == main.getsockname()
        others = [RTP, NACK, PLI, REMB, SR, RR, STUN, DTLS, SHORT]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            for data in [TWCC, TWCC_PADDED, *others]:
                peer.sendto(data, ("127.0.0.1", port))
            # a second address: steering goes by content, not by who sends it
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.sendto(TWCC + b"\x00\x00\x00\x00", ("127.0.0.1", port))
                other.sendto(RTP + b"\x01", ("127.0.0.1", port))
        assert received(feedback) == {TWCC, TWCC_PADDED, TWCC + bytes(4)}
        assert received(main) == {*others, RTP + b"\x01"}
    finally:
        main.close()
        if feedback is not None:
            feedback.close()


def test_a_port_in_use_is_refused_even_by_a_socket_that_allows_port_sharing() -> None:
    for reuse_port in (False, True):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
            if reuse_port:
                holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            holder.bind(("127.0.0.1", 0))
            with pytest.raises(OSError):
                bind_media_port(socket.AF_INET, "127.0.0.1", holder.getsockname()[1])


def test_ipv6_gets_the_same_two_sockets() -> None:
    try:
        main, feedback = bind_media_port(socket.AF_INET6, "::1", 0)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as peer:
            peer.sendto(TWCC, ("::1", main.getsockname()[1]))
            peer.sendto(RTP, ("::1", main.getsockname()[1]))
        if feedback is not None:
            assert received(feedback) == {TWCC}
        assert received(main) == ({RTP} if feedback is not None else {TWCC, RTP})
    finally:
        main.close()
        if feedback is not None:
            feedback.close()


def test_without_steering_everything_comes_to_the_event_loops_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(sock: socket.socket) -> None:
        raise OSError(92, "Protocol not available")

    monkeypatch.setattr("sfu.media_port._attach", refuse)
    main, feedback = bind_media_port(socket.AF_INET, "127.0.0.1", 0)
    try:
        assert feedback is None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            for data in (TWCC, RTP, NACK):
                peer.sendto(data, main.getsockname())
        assert received(main) == {TWCC, RTP, NACK}
    finally:
        main.close()
