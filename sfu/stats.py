"""Receiver statistics: RFC 3550 appendix A.1 (sequence tracking) and A.8 (interarrival jitter).

Kept per incoming stream, so it runs once per received packet, not per forwarded copy; the methods
are plain arithmetic on slots.
"""

from __future__ import annotations

import time

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970


def ntp_now() -> int:
    """64-bit NTP timestamp of the wall clock, as sender reports carry it."""
    t = time.time() + NTP_EPOCH_OFFSET
    return (int(t) << 32) | int((t % 1) * (1 << 32))


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits (LSR in report blocks, RFC 3550 6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


class ReceiveStats:
    """What a receiver report says about one incoming stream."""

    __slots__ = (
        "base_seq",
        "bytes",
        "clock_rate",
        "cycles",
        "expected_prior",
        "jitter",
        "last_sr_arrival",
        "last_sr_ntp",
        "last_sr_rtp",
        "max_seq",
        "packets",
        "received_prior",
        "transit",
    )

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.base_seq = -1
        self.max_seq = 0
        self.cycles = 0
        self.packets = 0
        self.bytes = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0
        self.transit: float | None = None
        self.last_sr_ntp = 0  # full 64-bit NTP of the last sender report
        self.last_sr_rtp = 0
        self.last_sr_arrival = 0.0  # monotonic seconds

    def update(self, seq: int, timestamp: int, size: int) -> None:
        self.packets += 1
        self.bytes += size
        if self.base_seq < 0:
            self.base_seq = self.max_seq = seq
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if seq < self.max_seq:
                    self.cycles += 1 << 16
                self.max_seq = seq
        transit = time.monotonic() * self.clock_rate - timestamp
        if self.transit is not None:
            d = abs(transit - self.transit)
            if d < self.clock_rate * 10:  # a timestamp jump (new source) is not jitter
                self.jitter += (d - self.jitter) / 16
        self.transit = transit

    @property
    def expected(self) -> int:
        return 0 if self.base_seq < 0 else self.cycles + self.max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.packets)

    def report_block(self) -> tuple[int, int, int, int, int, int]:
        """(fraction_lost, packets_lost, highest_sequence, jitter, lsr, dlsr) for a report now."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.packets - self.received_prior
        self.expected_prior, self.received_prior = expected, self.packets
        lost_interval = expected_interval - received_interval
        fraction = (
            0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        )
        lsr = dlsr = 0
        if self.last_sr_arrival:
            lsr = ntp_middle(self.last_sr_ntp)
            dlsr = int((time.monotonic() - self.last_sr_arrival) * 65536)
        return (
            min(fraction, 255),
            min(self.lost, 0x7FFFFF),
            (self.cycles + self.max_seq) & 0xFFFFFFFF,
            int(self.jitter),
            lsr,
            dlsr,
        )

    def on_sender_report(self, ntp: int, rtp_timestamp: int) -> None:
        self.last_sr_ntp = ntp
        self.last_sr_rtp = rtp_timestamp
        self.last_sr_arrival = time.monotonic()


def rtt_from_report(lsr: int, dlsr: int) -> float | None:
    """Round-trip time in seconds from a report block about our own stream (RFC 3550 6.4.1)."""
    if not lsr:
        return None
    now = ntp_middle(ntp_now())
    rtt = ((now - lsr - dlsr) & 0xFFFFFFFF) / 65536
    return rtt if rtt < 60 else None
