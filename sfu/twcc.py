"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

Each packet a Transport sends carries a transport-wide sequence number; the subscriber reports when
each one arrived. aiortc has no parser for this RTCP message and no other Python library does, so
it is written here: the feedback format is small and fully specified.

`SendHistory` keeps, per sequence number, when we sent it and how big it was, in two preallocated
lists (one store each on the packet path); `parse_feedback` turns a feedback message into arrival
times that `SendHistory.acknowledge` pairs with those send times for the estimator (bwe.py).
"""

from __future__ import annotations

from struct import Struct

RTPFB_TWCC = 15
HISTORY = 4096  # packets remembered; about 1 s at 30 Mbit/s, far longer than feedback takes
HISTORY_MASK = HISTORY - 1
DELTA_UNIT_US = 250
REFERENCE_UNIT_US = 64_000

_U16 = Struct("!H")
_I16 = Struct("!h")


class FeedbackError(ValueError):
    """A feedback message that does not parse: dropped, counted, never fatal."""


def parse_feedback(fci: bytes) -> list[tuple[int, int | None]]:
    """(sequence number, arrival time in microseconds or None if lost) for each reported packet.

    Arrival times share an arbitrary origin (the reference time); only their differences matter.
    """
    if len(fci) < 8:
        raise FeedbackError("transport-cc feedback shorter than its header")
    base, count = _U16.unpack_from(fci, 0)[0], _U16.unpack_from(fci, 2)[0]
    reference = int.from_bytes(fci[4:7], "big", signed=True) * REFERENCE_UNIT_US
    symbols: list[int] = []
    pos = 8
    while len(symbols) < count:
        if pos + 2 > len(fci):
            raise FeedbackError("transport-cc feedback ends inside its packet chunks")
        chunk = _U16.unpack_from(fci, pos)[0]
        pos += 2
        if not chunk & 0x8000:  # run length: one symbol repeated
            symbol, run = (chunk >> 13) & 0x3, chunk & 0x1FFF
            symbols.extend([symbol] * min(run, count - len(symbols)))
        elif not chunk & 0x4000:  # status vector of 14 one-bit symbols
            symbols.extend((chunk >> (13 - i)) & 0x1 for i in range(14))
        else:  # status vector of 7 two-bit symbols
            symbols.extend((chunk >> (12 - 2 * i)) & 0x3 for i in range(7))
    del symbols[count:]
    result: list[tuple[int, int | None]] = []
    arrival = reference
    for i, symbol in enumerate(symbols):
        seq = (base + i) & 0xFFFF
        if symbol == 0:
            result.append((seq, None))
            continue
        if symbol == 1:
            if pos + 1 > len(fci):
                raise FeedbackError("transport-cc feedback ends inside its receive deltas")
            arrival += fci[pos] * DELTA_UNIT_US
            pos += 1
        elif symbol == 2:
            if pos + 2 > len(fci):
                raise FeedbackError("transport-cc feedback ends inside its receive deltas")
            arrival += _I16.unpack_from(fci, pos)[0] * DELTA_UNIT_US
            pos += 2
        else:
            raise FeedbackError("transport-cc feedback uses the reserved status symbol")
        result.append((seq, arrival))
    return result


# One acknowledged (or lost) packet: (send time in seconds on our monotonic clock, size in bytes,
# arrival in seconds on the receiver's clock with an arbitrary origin, or None if lost). A plain
# tuple: hundreds of these per second per subscriber, where an object each would show in profiles.
PacketResult = tuple[float, int, float | None]


class SendHistory:
    """Send time and size by transport-wide sequence number, for the packets of one Transport."""

    __slots__ = ("next_seq", "sent_at", "sizes")

    def __init__(self) -> None:
        self.next_seq = 1
        self.sent_at = [0.0] * HISTORY
        self.sizes = [0] * HISTORY

    def acknowledge(self, reports: list[tuple[int, int | None]]) -> list[PacketResult]:
        """Pair feedback with what we sent; sequence numbers we have forgotten are skipped."""
        results = []
        newest = (self.next_seq - 1) & 0xFFFF
        for seq, arrival_us in reports:
            if (newest - seq) & 0xFFFF >= HISTORY:  # too old, or not sent yet
                continue
            index = seq & HISTORY_MASK
            sent = self.sent_at[index]
            if not sent:
                continue
            results.append((sent, self.sizes[index], None if arrival_us is None else arrival_us / 1e6))
        return results
