"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

Each packet a Transport sends carries a transport-wide sequence number; the subscriber reports when
each one arrived. aiortc has no parser for this RTCP message and no other Python library does, so
it is written here: the feedback format is small and fully specified.

`SendHistory` keeps, per sequence number, when we sent it and how big it was, in two preallocated
lists (one store each on the packet path); `parse_feedback` turns a feedback message into arrival
times that `SendHistory.acknowledge` pairs with those send times for the estimator (bwe.py). About
ten messages a second come from every subscriber, so both build flat lists of numbers, never an
object per packet: this was a third of the server's CPU with 50 subscribers.
"""

from __future__ import annotations

from array import array
from itertools import accumulate
from struct import Struct
from typing import NamedTuple

RTPFB_TWCC = 15
HISTORY = 4096  # packets remembered; about 1 s at 30 Mbit/s, far longer than feedback takes
HISTORY_MASK = HISTORY - 1
DELTA_UNIT_US = 250
REFERENCE_UNIT_US = 64_000

TICKS_PER_REFERENCE = REFERENCE_UNIT_US // DELTA_UNIT_US
TICK = DELTA_UNIT_US / 1e6  # seconds
SMALL_DELTA, LARGE_DELTA = 1, 2  # packet status symbols; 0 is "not received", 3 is reserved

_HEAD = Struct("!HHxxxxH")  # base sequence, status count, reference time and count, first chunk
_U16 = Struct("!H")
_I16 = Struct("!h")


class FeedbackError(ValueError):
    """A feedback message that does not parse: dropped, counted, never fatal."""


def parse_feedback(fci: bytes) -> tuple[int, list[int | None]]:
    """The first reported sequence number, and each reported packet's arrival in 250 us ticks (None if
    it was lost), in sequence order.

    Ticks share an arbitrary origin (the reference time); only their differences matter. Browsers
    mostly send one run-length chunk of "received, small delta": that message is summed in one call.
    """
    size = len(fci)
    if size < 10:
        raise FeedbackError("transport-cc feedback shorter than its header")
    base, count, chunk = _HEAD.unpack_from(fci, 0)
    reference = int.from_bytes(fci[4:7], "big", signed=True) * TICKS_PER_REFERENCE
    if chunk >> 13 == SMALL_DELTA and chunk & 0x1FFF >= count:  # a run of small deltas covers all
        if 10 + count > size:
            raise FeedbackError("transport-cc feedback ends inside its receive deltas")
        arrivals: list[int | None] = list(accumulate(fci[10 : 10 + count], initial=reference))
        del arrivals[0]
        return base, arrivals
    symbols: list[int] = []
    pos = 8
    while len(symbols) < count:
        if pos + 2 > size:
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
    arrivals = []
    arrival = reference
    for symbol in symbols:
        if symbol == SMALL_DELTA:
            if pos + 1 > size:
                raise FeedbackError("transport-cc feedback ends inside its receive deltas")
            arrival += fci[pos]
            pos += 1
        elif symbol == LARGE_DELTA:
            if pos + 2 > size:
                raise FeedbackError("transport-cc feedback ends inside its receive deltas")
            arrival += _I16.unpack_from(fci, pos)[0]
            pos += 2
        elif symbol:
            raise FeedbackError("transport-cc feedback uses the reserved status symbol")
        else:
            arrivals.append(None)
            continue
        arrivals.append(arrival)
    return base, arrivals


class Acknowledged(NamedTuple):
    """What one feedback message says about packets we still remember: the send time (seconds, our
    monotonic clock) and arrival time (seconds, the receiver's clock with an arbitrary origin) of
    each received one, in sequence order, in two lists rather than a tuple per packet (hundreds per
    second per subscriber); the bytes they carried, and how many were reported lost."""

    sent: list[float]
    arrived: list[float]
    bytes: int
    lost: int


class SendHistory:
    """Send time and size by transport-wide sequence number, for the packets of one Transport.

    Typed arrays, not lists: the compiled fan-out (sfu/_fanout.c) writes a slot of each for every
    packet it sends, in place; a list would cost it a float and an int object per packet, and a
    cache miss freeing the ones they replace (4% of the server's CPU at 200 subscribers). The next
    number is the first item of an array of one for the same reason.
    """

    __slots__ = ("_next", "sent_at", "sizes")

    def __init__(self) -> None:
        self._next = array("H", [1])
        self.sent_at = array("d", bytes(8 * HISTORY))
        self.sizes = array("I", bytes(4 * HISTORY))

    @property
    def next_seq(self) -> int:
        return self._next[0]

    @next_seq.setter
    def next_seq(self, value: int) -> None:
        self._next[0] = value & 0xFFFF

    def acknowledge(self, base: int, arrivals: list[int | None]) -> Acknowledged:
        """Pair parsed feedback with what we sent; sequence numbers we have forgotten are skipped."""
        sent_at, sizes = self.sent_at, self.sizes
        newest = (self.next_seq - 1) & 0xFFFF
        behind = (newest - base) & 0xFFFF  # how far the first reported packet is behind the newest
        if len(arrivals) - 1 <= behind < HISTORY and None not in arrivals:
            # The usual message: all received, all remembered. Slices and a comprehension, no loop.
            start = base & HISTORY_MASK
            end = start + len(arrivals)
            times, lengths = sent_at[start:end].tolist(), sizes[start:end]
            if end > HISTORY:
                times += sent_at[: end - HISTORY].tolist()
                lengths += sizes[: end - HISTORY]
            if 0.0 not in times:  # else some were never sent: the general way skips them
                return Acknowledged(times, [t * TICK for t in arrivals], sum(lengths), 0)  # type: ignore[operator]
        sent: list[float] = []
        arrived: list[float] = []
        acked = lost = 0
        seq = base
        for ticks in arrivals:
            if (newest - seq) & 0xFFFF < HISTORY:  # else too old, or not sent yet
                index = seq & HISTORY_MASK
                at = sent_at[index]
                if not at:
                    pass
                elif ticks is None:
                    lost += 1
                else:
                    sent.append(at)
                    arrived.append(ticks * TICK)
                    acked += sizes[index]
            seq = (seq + 1) & 0xFFFF
        return Acknowledged(sent, arrived, acked, lost)


def acknowledged(fci: bytes, history: SendHistory) -> Acknowledged:
    """A feedback message's packets paired with what `history` says we sent; FeedbackError if it
    does not parse. The reference: where sfu/_delay.c was built, the estimator pairs a report in its
    own compiled pass (bwe.CompiledBandwidthEstimator) and comes here only with one that pass cannot
    parse, so that the errors are this parser's."""
    base, arrivals = parse_feedback(fci)
    return history.acknowledge(base, arrivals)
