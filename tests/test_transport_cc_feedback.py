"""The light peer's transport-cc feedback (loadtest/transport_cc.py), read back by the server's parser.

Every message is parsed with `sfu.twcc.parse_feedback`, which is what the server runs: whatever the
peer writes must come back as the same packets, lost or at the same 250 us tick.
"""

from __future__ import annotations

import random
import struct

import pytest

from loadtest.transport_cc import (
    MAX_RECEIVED,
    MAX_STATUS,
    FeedbackSender,
    _pieces,
    build_feedback,
    transport_seq,
)
from sfu.rtp import insert_extension_slot, one_byte_element
from sfu.twcc import RTPFB_TWCC, parse_feedback

SENDER, MEDIA = 0x1234, 0x5678


def parsed(message: bytes) -> list[tuple[int, int | None]]:
    """The message checked as an RTCP packet, then parsed as the server does (FCI from byte 12)."""
    assert message[0] == 0x80 | RTPFB_TWCC and message[1] == 205
    assert len(message) % 4 == 0 and (struct.unpack_from("!H", message, 2)[0] + 1) * 4 == len(message)
    assert struct.unpack_from("!II", message, 4) == (SENDER, MEDIA)
    base, arrivals = parse_feedback(message[12:])
    return [((base + i) & 0xFFFF, None if t is None else t * 250) for i, t in enumerate(arrivals)]


def expected(base: int, arrivals: list[int | None]) -> list[tuple[int, int | None]]:
    """What the parser must return: each arrival at its 250 us tick (the reference is a whole tick)."""
    return [((base + i) & 0xFFFF, None if at is None else at // 250 * 250) for i, at in enumerate(arrivals)]


def size(chunks: int, deltas: int) -> int:
    """Bytes of a message: 20 of header and fixed fields, two a chunk, the deltas, then zero padding."""
    n = 20 + 2 * chunks + deltas
    return n + -n % 4


def us(t: float) -> int:
    """What a FeedbackSender makes of a monotonic time, as the parser gives it back."""
    return int(t * 1e6) // 250 * 250


def round_trip(base: int, arrivals: list[int | None], fb_count: int = 0) -> bytes:
    message = build_feedback(SENDER, MEDIA, base, arrivals, fb_count)
    assert parsed(message) == expected(base, arrivals)
    return message


def test_in_order_packets_with_small_deltas() -> None:
    arrivals: list[int | None] = [1_000_000 + i * 1_000 for i in range(20)]
    message = round_trip(100, arrivals, fb_count=7)
    assert message[12 + 7] == 7, "the feedback packet count"
    assert len(message) == size(1, 20), "one run-length chunk, one byte a delta"


def test_reference_time_is_the_first_arrival_in_64_ms_units() -> None:
    message = round_trip(0, [None, 64_000 * 5 + 300, 64_000 * 5 + 900])
    assert int.from_bytes(message[16:19], "big") == 5
    assert parsed(message)[1] == (1, 64_000 * 5 + 250)


def test_lost_packets_single_and_in_runs() -> None:
    arrivals: list[int | None] = [10_000, None, 11_000, None, None, 12_000]
    arrivals += [None] * 40 + [20_000, 20_250]
    round_trip(5000, arrivals)


def test_a_first_packet_lost_and_a_last_packet_lost() -> None:
    round_trip(7, [None, None, 3_000, 4_000, None])


def test_sequence_numbers_wrap() -> None:
    arrivals: list[int | None] = [2_000_000 + i * 500 if i % 3 else None for i in range(30)]
    arrivals[0] = 2_000_000
    result = parsed(round_trip(65_530, arrivals))
    assert [seq for seq, _ in result[:8]] == [65_530, 65_531, 65_532, 65_533, 65_534, 65_535, 0, 1]


def test_large_and_negative_deltas() -> None:
    arrivals: list[int | None] = [
        1_000_000,
        1_070_000,  # +70 ms: past one byte of 250 us ticks
        1_069_000,  # reordered: arrived 1 ms before the previous number
        1_069_000,  # the same tick: a zero delta is small
        1_069_000 + 8_000_000,  # +8 s: near the two-byte limit
        1_069_000,  # -8 s
        1_069_255,
    ]
    message = round_trip(42, arrivals)
    assert len(message) == size(1, 1 + 2 + 2 + 1 + 2 + 2 + 1), "all seven in one two-bit vector"


def test_long_runs_split_into_run_length_chunks() -> None:
    received: list[int | None] = [5_000 + i * 250 for i in range(10_000)]
    message = round_trip(60_000, received)
    assert len(message) == size(2, 10_000), "8191 + 1809 received in two run-length chunks"
    lost: list[int | None] = [1_000] + [None] * 20_000 + [9_000]
    message = round_trip(1, lost)
    # a one-bit vector (the first and 13 lost), 8191 + 8191 + 3605 lost, a one-bit vector (the last)
    assert len(message) == size(5, 2)


def test_random_patterns_come_back_unchanged() -> None:
    rng = random.Random(15)
    for _ in range(300):
        count = rng.randint(1, 300)
        at = rng.randint(0, 10**9)
        arrivals: list[int | None] = []
        for _ in range(count):
            if rng.random() < rng.choice((0.0, 0.1, 0.5)):
                arrivals.append(None)
                continue
            at = max(0, at + rng.choice((rng.randint(0, 10_000), rng.randint(-2_000_000, 2_000_000))))
            arrivals.append(at)
        if all(a is None for a in arrivals):
            arrivals[0] = at
        round_trip(rng.randrange(0x10000), arrivals, rng.randrange(256))


def test_what_one_message_cannot_hold_is_refused() -> None:
    with pytest.raises(ValueError):
        build_feedback(SENDER, MEDIA, 0, [None, None], 0)
    with pytest.raises(ValueError):
        build_feedback(SENDER, MEDIA, 0, [0, 9_000_000], 0)
    with pytest.raises(ValueError):
        build_feedback(SENDER, MEDIA, 0, [0] + [None] * 0xFFFF, 0)


def packet(seq: int, ext_id: int = 3) -> bytes:
    """An RTP packet as the server sends it to a subscriber: the transport-cc element appended."""
    buf = bytearray(struct.pack("!BBHII", 0x80, 96, 1, 2, 3) + bytes(20))
    offset = insert_extension_slot(buf, one_byte_element(ext_id, 2))
    struct.pack_into("!H", buf, offset, seq)
    return bytes(buf)


def test_transport_seq_read_where_the_server_writes_it_and_elsewhere() -> None:
    assert transport_seq(packet(0xBEEF), 3) == 0xBEEF
    assert transport_seq(packet(7, ext_id=5), 3) == -1
    assert transport_seq(struct.pack("!BBHII", 0x80, 96, 1, 2, 3), 3) == -1
    # the element first, then another one: found by the general parser
    block = bytes([0x31, 0x12, 0x34, 0x40, 0x01, 0, 0, 0])
    other = struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + struct.pack("!HH", 0xBEDE, 2) + block
    assert transport_seq(other, 3) == 0x1234


def sender_with(arrivals: list[tuple[int, float]]) -> FeedbackSender:
    sender = FeedbackSender(SENDER, 3)
    sender.origin = 0.0
    sender.arrivals = list(arrivals)
    return sender


def reports(messages: list[bytes]) -> list[tuple[int, int | None]]:
    return [report for message in messages for report in parsed(message)]


def test_sender_reports_each_packet_once_across_the_wrap() -> None:
    sender = sender_with([(65_534, 1.0), (65_535, 1.001), (1, 1.003)])
    assert reports(sender.feedback(MEDIA)) == [
        (65_534, us(1.0)),
        (65_535, us(1.001)),
        (0, None),
        (1, us(1.003)),
    ]
    sender.arrivals = [(0, 1.004), (3, 1.005), (2, 1.006)]  # 0 was reported lost: it is late now
    assert reports(sender.feedback(MEDIA)) == [(2, us(1.006)), (3, us(1.005))]
    assert sender.late == 1 and sender.lost == 1 and sender.reported == 6 and sender.messages == 2
    assert sender.feedback(MEDIA) == [], "nothing arrived: nothing to say"


def test_sender_splits_what_does_not_fit_one_message() -> None:
    many = [(i, 1.0 + i * 0.0001) for i in range(MAX_RECEIVED + 10)]
    sender = sender_with([*many, (MAX_RECEIVED + 10, 20.0)])  # and one 19 s later
    messages = sender.feedback(MEDIA)
    assert len(messages) == 3
    assert [m[12 + 7] for m in messages] == [0, 1, 2], "fb packet count goes up by message"
    assert [seq for seq, _ in reports(messages)] == list(range(MAX_RECEIVED + 11))
    assert all(at is not None for _, at in reports(messages))
    assert max(len(m) for m in messages) < 1200


def test_a_long_silence_does_not_report_the_numbers_in_between() -> None:
    sender = sender_with([(10, 1.0)])
    sender.feedback(MEDIA)
    sender.arrivals = [(30_000, 2.0), (30_001, 2.001)]
    assert [seq for seq, _ in reports(sender.feedback(MEDIA))] == [30_000, 30_001]


def test_pieces_leave_out_stretches_with_nothing_received() -> None:
    times: list[int | None] = [0, *([None] * (2 * MAX_STATUS)), 5_000]
    pieces = _pieces(times)
    assert pieces == [(0, MAX_STATUS), (2 * MAX_STATUS, 2 * MAX_STATUS + 2)]
    for begin, stop in pieces:
        assert parsed(build_feedback(SENDER, MEDIA, begin, times[begin:stop], 0))


def test_packets_without_the_extension_are_left_out() -> None:
    sender = sender_with([(-1, 0.5)])
    assert sender.feedback(MEDIA) == [] and sender.highest is None
    sender.record(packet(9))
    sender.record(packet(10, ext_id=5))
    sender.record(packet(11))
    assert [seq for seq, _ in reports(sender.feedback(MEDIA))] == [9, 10, 11]
    assert sender.lost == 1
