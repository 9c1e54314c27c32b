"""The receive side of transport-wide congestion control, as a browser subscriber does it.

The server numbers every packet it sends a subscriber with the transport-wide sequence extension
(draft-holmer-rmcat-transport-wide-cc-extensions-01) and estimates the link from the feedback
(sfu/twcc.py parses it, sfu/bwe.py estimates). A light subscriber that keeps the extension in its
answer must send that feedback, or the server estimates its link from silence. So: every received
packet's sequence number and arrival time go into a list (one append on the packet path), and
every FEEDBACK_INTERVAL the list becomes RTPFB FMT=15 messages (`build_feedback`).

Choices where the draft leaves them open: arrival times are kept in 250 us ticks counted from a
64 ms reference, so quantization never accumulates over a message; a packet reported lost that
arrives later is not reported again (it is counted as `late`); a message holds at most
MAX_RECEIVED received packets, to stay within one datagram; all three chunk kinds are used, each
where it is the shortest; padding is zero bytes, without the RTCP P bit.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from time import monotonic
from typing import Any

from sfu.rtp import extension_offset
from sfu.twcc import DELTA_UNIT_US, REFERENCE_UNIT_US, RTPFB_TWCC

from .rtcp import RTCP_RTPFB

FEEDBACK_INTERVAL = 0.1  # seconds between feedback messages, libwebrtc's default
TICKS_PER_REFERENCE = REFERENCE_UNIT_US // DELTA_UNIT_US
MAX_RUN = 0x1FFF  # the longest run a run-length chunk holds
VECTOR_ONE_BIT = 14  # symbols in a one-bit status vector chunk
VECTOR_TWO_BIT = 7
MAX_RECEIVED = 400  # per message: at most ~1 kB of deltas and chunks
MAX_STATUS = 0xFFFF  # the status count field
MAX_UNREPORTED_GAP = 0x4000  # more missing than this since the last feedback: report from the new packets
NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA = 0, 1, 2
_U16 = struct.Struct("!H")
_I16 = struct.Struct("!h")
_HEADER = struct.Struct("!BBHIIHH")  # RTCP header, sender and media SSRC, base sequence, status count


def transport_seq(packet: bytes, ext_id: int) -> int:
    """The transport-wide sequence number of a received RTP packet, or -1 without one.

    The server appends the element as the last word of a one-byte-form block
    (sfu.rtp.insert_extension_slot) and sends no CSRCs, so that is looked at first; any other
    layout goes through the general parser.
    """
    if packet[0] & 0x1F == 0x10 and len(packet) >= 16:
        end = 16 + 4 * ((packet[14] << 8) | packet[15])
        if end <= len(packet) and packet[end - 4] == (ext_id << 4) | 1:
            return (packet[end - 3] << 8) | packet[end - 2]
    offset = extension_offset(packet, ext_id)
    return -1 if offset < 0 else (packet[offset] << 8) | packet[offset + 1]


def _chunks(symbols: list[int]) -> bytes:
    """Packet status chunks: a run-length chunk for a run of 14 or more, for one that ends the list,
    and for one of 7 or more where a large delta would force two-bit vectors; else a one-bit vector
    of 14 where none of them has a large delta, else a two-bit vector of 7. Vectors past the last
    status are padded with zeros."""
    n = len(symbols)
    if n <= MAX_RUN and symbols.count(symbols[0]) == n:  # the usual feedback: all received, in time
        return _U16.pack(symbols[0] << 13 | n)
    out = bytearray()
    i = 0
    while i < n:
        symbol = symbols[i]
        limit = min(n - i, MAX_RUN)
        run = 1
        while run < limit and symbols[i + run] == symbol:
            run += 1
        window = symbols[i : i + VECTOR_ONE_BIT]
        large = LARGE_DELTA in window
        if run >= VECTOR_ONE_BIT or run == n - i or (large and run >= VECTOR_TWO_BIT):
            out += _U16.pack(symbol << 13 | run)
            i += run
        elif not large:
            chunk = 0x8000
            for k, s in enumerate(window):
                chunk |= s << (13 - k)
            out += _U16.pack(chunk)
            i += VECTOR_ONE_BIT
        else:
            chunk = 0xC000
            for k, s in enumerate(symbols[i : i + VECTOR_TWO_BIT]):
                chunk |= s << (12 - 2 * k)
            out += _U16.pack(chunk)
            i += VECTOR_TWO_BIT
    return bytes(out)


def build_feedback(
    sender_ssrc: int, media_ssrc: int, base_seq: int, arrivals: Sequence[int | None], fb_count: int
) -> bytes:
    """One transport-cc feedback message (RTPFB, FMT=15) about `len(arrivals)` packets from
    `base_seq` on: each one's arrival time in microseconds (any fixed origin), or None if lost.

    The reference time is the first arrival's, floored to 64 ms; each receive delta (250 us ticks)
    is from the previous received packet, one byte if 0 to 255 ticks, else two signed. Raises
    ValueError if no packet was received, there are too many, or a delta exceeds 8.19 s either way:
    the caller starts a new message there.
    """
    if len(arrivals) > MAX_STATUS:
        raise ValueError(f"{len(arrivals)} packets: one feedback message reports at most {MAX_STATUS}")
    first = next((at for at in arrivals if at is not None), None)
    if first is None:
        raise ValueError("a feedback message reports at least one received packet")
    reference = first // REFERENCE_UNIT_US
    previous = reference * TICKS_PER_REFERENCE
    symbols: list[int] = []
    deltas = bytearray()
    symbol, small = symbols.append, deltas.append  # the loop runs once per packet reported
    for at in arrivals:
        if at is None:
            symbol(NOT_RECEIVED)
            continue
        ticks = at // DELTA_UNIT_US
        delta = ticks - previous
        previous = ticks
        if 0 <= delta <= 0xFF:
            symbol(SMALL_DELTA)
            small(delta)
        elif -0x8000 <= delta <= 0x7FFF:
            symbol(LARGE_DELTA)
            deltas += _I16.pack(delta)
        else:
            raise ValueError("a receive delta beyond 8.19 s does not fit one message")
    body = ((reference & 0xFFFFFF) << 8 | (fb_count & 0xFF)).to_bytes(4, "big") + _chunks(symbols) + deltas
    body += bytes(-len(body) % 4)  # zero padding to a whole word, as the draft has it
    words = (_HEADER.size + len(body)) // 4 - 1
    header = _HEADER.pack(
        0x80 | RTPFB_TWCC, RTCP_RTPFB, words, sender_ssrc, media_ssrc, base_seq & 0xFFFF, len(arrivals)
    )
    return header + body


def _pieces(times: list[int | None]) -> list[tuple[int, int]]:
    """Where each message begins and ends in `times` when one cannot hold them all: at most
    MAX_RECEIVED received packets and MAX_STATUS in all each, and no delta beyond two bytes. A piece
    with nothing received is left out: its packets are lost, and a message cannot say only that."""
    pieces: list[tuple[int, int]] = []
    begin, count, previous = 0, 0, -1
    for i, at in enumerate(times):
        if at is not None:
            ticks = at // DELTA_UNIT_US
            if count == MAX_RECEIVED or (count and abs(ticks - previous) > 0x7FFF):
                pieces.append((begin, i))
                begin, count = i, 0
            previous = ticks
            count += 1
        if i + 1 - begin == MAX_STATUS:
            if count:
                pieces.append((begin, i + 1))
            begin, count = i + 1, 0
    if count:
        pieces.append((begin, len(times)))
    return pieces


class FeedbackSender:
    """The arrivals of one subscriber connection since the last feedback, and the feedback itself.

    `record` is the packet path; `feedback` runs every FEEDBACK_INTERVAL on the peer's clock. Sequence
    numbers are unwrapped to plain ints, so a message may span the 16-bit wrap.
    """

    __slots__ = (
        "arrivals",
        "ext_id",
        "fb_count",
        "highest",
        "late",
        "lost",
        "messages",
        "next_seq",
        "origin",
        "reported",
        "sender_ssrc",
        "sent_bytes",
    )

    def __init__(self, sender_ssrc: int, ext_id: int) -> None:
        self.sender_ssrc = sender_ssrc
        self.ext_id = ext_id
        self.arrivals: list[tuple[int, float]] = []  # (transport seq, monotonic seconds), in arrival order
        self.origin = monotonic()
        self.highest: int | None = None  # unwrapped: the newest sequence number seen
        self.next_seq: int | None = None  # unwrapped: the first one not reported yet
        self.fb_count = 0
        self.messages = self.sent_bytes = self.reported = self.lost = self.late = 0

    def record(self, packet: bytes) -> None:
        """The packet path: one append (a packet without the extension is left out later)."""
        self.arrivals.append((transport_seq(packet, self.ext_id), monotonic()))

    def _unwrap(self, log: list[tuple[int, float]]) -> dict[int, int]:
        """Unwrapped sequence number -> arrival in microseconds since `origin`, first arrival kept;
        packets already reported (as lost) are counted late and left out."""
        highest = self.highest
        if highest is None:
            highest = next((seq for seq, _ in log if seq >= 0), None)
            if highest is None:
                return {}
        floor = self.next_seq
        origin = self.origin
        arrivals: dict[int, int] = {}
        for seq, at in log:
            if seq < 0:
                continue
            step = (seq - highest) & 0xFFFF
            unwrapped = highest + (step - 0x10000 if step >= 0x8000 else step)
            if unwrapped > highest:
                highest = unwrapped
            if floor is not None and unwrapped < floor:
                self.late += 1
            elif unwrapped not in arrivals:
                arrivals[unwrapped] = int((at - origin) * 1e6)
        self.highest = highest
        return arrivals

    def feedback(self, media_ssrc: int = 0) -> list[bytes]:
        """Messages reporting every packet since the last ones (usually one; none if nothing came)."""
        log, self.arrivals = self.arrivals, []
        if not log:
            return []
        arrivals = self._unwrap(log)
        if not arrivals:
            return []
        first, end = min(arrivals), max(arrivals)
        start = (
            first if self.next_seq is None or first - self.next_seq > MAX_UNREPORTED_GAP else self.next_seq
        )
        self.next_seq = end + 1
        times = [arrivals.get(seq) for seq in range(start, end + 1)]
        fits = len(arrivals) <= MAX_RECEIVED and len(times) <= MAX_STATUS
        pieces = [(0, len(times))] if fits else _pieces(times)
        try:
            messages = self._build(media_ssrc, start, times, pieces)
        except ValueError:  # a delta beyond 8 s: rare enough to be found only by trying
            pieces = _pieces(times)
            messages = self._build(media_ssrc, start, times, pieces)
        reported = sum(stop - begin for begin, stop in pieces)
        self.reported += reported
        self.lost += reported - len(arrivals)
        self.messages += len(messages)
        self.sent_bytes += sum(len(m) for m in messages)
        return messages

    def _build(
        self, media_ssrc: int, start: int, times: list[int | None], pieces: list[tuple[int, int]]
    ) -> list[bytes]:
        messages = [
            build_feedback(self.sender_ssrc, media_ssrc, start + begin, times[begin:stop], self.fb_count + n)
            for n, (begin, stop) in enumerate(pieces)
        ]
        self.fb_count = (self.fb_count + len(messages)) & 0xFF
        return messages

    def stats(self) -> dict[str, Any]:
        return {
            "feedbacks_sent": self.messages,
            "bytes_sent": self.sent_bytes,
            "packets_reported": self.reported,
            "lost_reported": self.lost,
            "late": self.late,
        }
