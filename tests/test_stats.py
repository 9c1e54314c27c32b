"""Unit tests for sfu.stats: RFC 3550 A.1 sequence tracking, A.3 loss, A.8 jitter, 6.4.1 RTT.

Time is a controlled clock: sfu.stats' reference to the time module is replaced, so nothing else in
the process sees a fake clock. Times and timestamps are chosen to be exact binary fractions, so the
float arithmetic of the jitter estimate is exact and can be compared with ==.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

import sfu.stats
from sfu.stats import NTP_EPOCH_OFFSET, ReceiveStats, ntp_middle, ntp_now, rtt_from_report

WALL_CLOCK_BASE = 1_700_000_000.0


class Clock:
    """Stands in for the time module inside sfu.stats."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return WALL_CLOCK_BASE + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(sfu.stats, "time", fake)
    return fake


def feed(stats: ReceiveStats, seqs: Iterable[int], size: int = 100) -> None:
    for seq in seqs:
        stats.update(seq & 0xFFFF, 0, size)


# --- sequence tracking ---------------------------------------------------------------------------


def test_nothing_received() -> None:
    stats = ReceiveStats(90000)
    assert (stats.expected, stats.lost, stats.packets) == (0, 0, 0)


def test_in_order_sequence(clock: Clock) -> None:
    stats = ReceiveStats(90000)
    feed(stats, range(100, 110), size=1200)
    assert (stats.base_seq, stats.max_seq, stats.cycles) == (100, 109, 0)
    assert (stats.expected, stats.packets, stats.lost, stats.bytes) == (10, 10, 0, 12000)


def test_sequence_wrap_counts_cycles(clock: Clock) -> None:
    stats = ReceiveStats(90000)
    feed(stats, range(65530, 65536 + 6))  # 65530..65535, 0..5
    assert (stats.max_seq, stats.cycles) == (5, 1 << 16)
    assert (stats.expected, stats.lost) == (12, 0)
    assert stats.report_block()[2] == 65536 + 5  # extended highest sequence number
    feed(stats, range(65536 + 6, 2 * 65536 + 3))  # all the way round once more
    assert (stats.max_seq, stats.cycles) == (2, 2 << 16)
    assert (stats.expected, stats.lost) == (65536 + 9, 0)
    assert stats.report_block()[2] == (2 << 16) + 2


def test_late_packets_do_not_move_the_maximum(clock: Clock) -> None:
    stats = ReceiveStats(90000)
    feed(stats, [65534, 65535, 0, 1, 2])
    feed(stats, [65535])  # a duplicate from before the wrap: no second cycle
    assert (stats.max_seq, stats.cycles) == (2, 1 << 16)
    feed(stats, [4, 3])  # reordered after the wrap
    assert (stats.max_seq, stats.cycles) == (4, 1 << 16)


def test_wrap_with_a_gap_across_zero(clock: Clock) -> None:
    stats = ReceiveStats(90000)
    feed(stats, [65500, 65520, 10])  # forward jumps smaller than half the space
    assert (stats.max_seq, stats.cycles) == (10, 1 << 16)
    assert stats.expected == 65536 + 10 - 65500 + 1


def test_loss_counting_with_gaps(clock: Clock) -> None:
    stats = ReceiveStats(48000)
    feed(stats, [0, 1, 2, 3, 4, 8, 9])  # 5, 6, 7 lost
    assert (stats.expected, stats.packets, stats.lost) == (10, 7, 3)
    feed(stats, [6])  # one of them arrives late
    assert stats.lost == 2
    feed(stats, [20])
    assert (stats.expected, stats.lost) == (21, 12)


def test_duplicates_never_make_loss_negative(clock: Clock) -> None:
    stats = ReceiveStats(48000)
    feed(stats, [1, 2, 2, 2, 3])
    assert (stats.expected, stats.packets, stats.lost) == (3, 5, 0)
    assert stats.report_block()[:2] == (0, 0)


# --- report blocks -------------------------------------------------------------------------------


def test_report_block_fraction_lost_per_interval(clock: Clock) -> None:
    stats = ReceiveStats(90000)
    feed(stats, range(0, 10))
    fraction, lost, highest, _, _, _ = stats.report_block()
    assert (fraction, lost, highest) == (0, 0, 9)

    feed(stats, [10, 11, 16, 17, 18, 19])  # 12..15 lost: 4 of 10 in this interval
    fraction, lost, highest, _, _, _ = stats.report_block()
    assert (fraction, lost, highest) == ((4 << 8) // 10, 4, 19)  # 102/256

    feed(stats, range(20, 30))  # a clean interval: the earlier loss stays in the cumulative count
    fraction, lost, _, _, _, _ = stats.report_block()
    assert (fraction, lost) == (0, 4)

    fraction, lost, highest, _, _, _ = stats.report_block()  # nothing arrived since the last report
    assert (fraction, lost, highest) == (0, 4, 29)


def test_report_block_fraction_lost_across_wrap(clock: Clock) -> None:
    stats = ReceiveStats(90000)
    feed(stats, range(65526, 65536))
    assert stats.report_block()[0] == 0
    feed(stats, [0, 1, 9])  # expected 65536..65545 (10), received 3
    fraction, lost, highest, _, _, _ = stats.report_block()
    assert (fraction, lost, highest) == ((7 << 8) // 10, 7, 65536 + 9)


def test_report_block_fraction_when_everything_is_lost(clock: Clock) -> None:
    stats = ReceiveStats(90000)
    feed(stats, [0])
    stats.report_block()
    feed(stats, [1000])  # 999 lost, 1 received
    fraction, lost, _, _, _, _ = stats.report_block()
    assert fraction == (999 << 8) // 1000 and fraction <= 255
    assert lost == 999


def test_report_block_lsr_and_dlsr(clock: Clock) -> None:
    stats = ReceiveStats(90000)
    feed(stats, [1])
    assert stats.report_block()[4:] == (0, 0)  # no sender report yet
    sr_ntp = (3_900_000_000 << 32) | 0x12345678
    stats.on_sender_report(sr_ntp, 123456)
    assert (stats.last_sr_ntp, stats.last_sr_rtp, stats.last_sr_arrival) == (sr_ntp, 123456, 1000.0)
    clock.advance(0.5)
    _, _, _, _, lsr, dlsr = stats.report_block()
    assert lsr == ntp_middle(sr_ntp) == ((3_900_000_000 & 0xFFFF) << 16) | 0x1234
    assert dlsr == 32768  # 0.5 s in 1/65536 s units


# --- jitter ----------------------------------------------------------------------------------------


def test_jitter_is_zero_for_perfectly_paced_packets(clock: Clock) -> None:
    stats = ReceiveStats(48000)
    ts = 0xFFFFF000  # the timestamp wraps after a few packets: no jitter from that either
    for seq in range(200):
        stats.update(seq, (ts + seq * 750) & 0xFFFFFFFF, 100)
        clock.advance(1 / 64)  # 750 ticks at 48 kHz, exactly
    assert stats.jitter == 0.0
    assert stats.report_block()[3] == 0


def test_jitter_is_zero_with_constant_network_delay(clock: Clock) -> None:
    stats = ReceiveStats(90000)
    for seq in range(50):
        clock.now = 2000.0 + seq / 32 + 0.25  # every packet 250 ms late: still no jitter
        stats.update(seq, 90000 + seq * 2812, 100)  # 2812.5 ticks per 1/32 s, rounded
    assert stats.jitter < 1.0  # only the timestamp rounding (0.5 tick) remains


def test_jitter_grows_with_uneven_arrivals(clock: Clock) -> None:
    stats = ReceiveStats(48000)
    history = []
    for seq in range(64):
        stats.update(seq, seq * 1500, 100)  # 1/32 s of media per packet...
        clock.advance(1 / 64 if seq % 2 else 3 / 64)  # ...arriving alternately 750 ticks early/late
        history.append(stats.jitter)
    assert history[0] == 0.0
    assert history[1] == 750 / 16  # J += (|D| - J) / 16 with |D| = 750 ticks
    assert history[2] == history[1] + (750 - history[1]) / 16
    assert all(a < b for a, b in itertools.pairwise(history[1:]))
    assert 700 < history[-1] < 750  # converging on |D|
    assert stats.report_block()[3] == int(history[-1])


def test_timestamp_jump_is_not_jitter(clock: Clock) -> None:
    stats = ReceiveStats(90000)
    stats.update(1, 0, 100)
    clock.advance(1 / 32)
    stats.update(2, 2812, 100)
    before = stats.jitter
    clock.advance(1 / 32)
    stats.update(3, 50 * 90000, 100)  # a new source 50 s ahead: ignored by the estimate
    assert stats.jitter == before


# --- NTP and round-trip time -----------------------------------------------------------------------


def test_ntp_now_and_middle(clock: Clock) -> None:
    clock.now = 0.5  # wall clock 1_700_000_000.5
    value = ntp_now()
    assert value >> 32 == int(WALL_CLOCK_BASE) + NTP_EPOCH_OFFSET
    assert value & 0xFFFFFFFF == 0x80000000
    assert ntp_middle(value) == ((value >> 32) & 0xFFFF) << 16 | 0x8000


def ntp_at(seconds: float) -> int:
    return (int(seconds) << 32) | int((seconds % 1) * (1 << 32))


@pytest.mark.parametrize(
    ("sent", "delay", "now", "expected"),
    [
        (3_900_000_000.0, 0.5, 3_900_000_000.75, 0.25),
        (3_900_000_000.5, 0.0, 3_900_000_000.5625, 0.0625),
        (3_900_000_000.25, 1.0, 3_900_000_001.25, 0.0),
        (3_900_065_535.875, 0.125, 3_900_065_536.25, 0.25),  # the 16-bit seconds field wraps
    ],
)
def test_rtt_from_report(
    monkeypatch: pytest.MonkeyPatch, sent: float, delay: float, now: float, expected: float
) -> None:
    monkeypatch.setattr(sfu.stats, "ntp_now", lambda: ntp_at(now))
    lsr, dlsr = ntp_middle(ntp_at(sent)), int(delay * 65536)
    assert rtt_from_report(lsr, dlsr) == pytest.approx(expected, abs=1 / 65536)


def test_rtt_without_sender_report_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sfu.stats, "ntp_now", lambda: ntp_at(3_900_000_010.0))
    assert rtt_from_report(0, 0) is None
    assert rtt_from_report(0, 12345) is None


def test_implausible_rtt_is_discarded(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 3_900_000_100.0
    monkeypatch.setattr(sfu.stats, "ntp_now", lambda: ntp_at(now))
    # the peer claims to have held the report longer than it has existed: would be negative
    assert rtt_from_report(ntp_middle(ntp_at(now - 1)), 2 * 65536) is None
    # a report block about a sender report from 90 s ago
    assert rtt_from_report(ntp_middle(ntp_at(now - 90)), 0) is None
    assert rtt_from_report(ntp_middle(ntp_at(now - 59)), 0) == pytest.approx(59, abs=1e-4)


def test_rtt_round_trip_through_report_block(clock: Clock) -> None:
    """Our own sender report echoed back in a receiver report block gives the path delay."""
    sent = ntp_now()
    receiver = ReceiveStats(90000)
    clock.advance(0.040)  # 40 ms to the receiver
    receiver.on_sender_report(sent, 0)
    receiver.update(1, 0, 100)
    clock.advance(0.200)  # the receiver holds it 200 ms
    _, _, _, _, lsr, dlsr = receiver.report_block()
    clock.advance(0.060)  # 60 ms back
    assert rtt_from_report(lsr, dlsr) == pytest.approx(0.100, abs=1e-3)
