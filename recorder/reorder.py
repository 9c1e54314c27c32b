"""One RTP stream's packets back in sequence order, waiting a while for the lost ones to be resent.

A recording is not watched live, so it can afford what a player cannot: to wait up to a second for
a packet the network lost, asking the server for it again (generic NACK; the server answers from
its cache, and a packet the publisher lost upstream arrives late once the publisher resends it).
Only a hole still open after that wait reaches the depacketizer, which then drops the frame and
asks for a keyframe. Written here because the jitter buffers that exist (aiortc's, GStreamer's)
belong to a player: they pace playout and own the socket; this one only orders and waits.
"""

from __future__ import annotations

from typing import Generic, TypeVar

PATIENCE = 1.0  # seconds a hole is waited for before its frame is given up
RENACK = 0.12  # seconds between two requests for the same packet: about a loopback-to-publisher RTT
TRIES = 5  # requests per lost packet
CAPACITY = 1024  # packets held behind a hole at most (a few seconds of HD video)

T = TypeVar("T")


class Reorder(Generic[T]):
    def __init__(self) -> None:
        self.next: int | None = None  # the sequence number due next
        self.held: dict[int, T] = {}  # arrived ahead of a hole
        self.missing: dict[int, list[float]] = {}  # seq -> [first missed, last asked, times asked]
        self.given_up = 0
        self.recovered = 0

    def push(self, seq: int, item: T, now: float) -> list[T]:
        """Take a packet; what can go on now, in order."""
        if self.next is None:
            self.next = seq
        ahead = (seq - self.next) & 0xFFFF
        if ahead >= 0x8000 or seq in self.held:
            return []  # before what went on already (given up on, or a duplicate)
        if ahead > CAPACITY:  # the stream jumped (a restart): what was held goes on with its holes
            ready = self.flush()
            self.next = seq
            return ready + self.push(seq, item, now)
        if self.missing.pop(seq, None) is not None:
            self.recovered += 1
        self.held[seq] = item
        for gap in range(ahead):
            lost = (self.next + gap) & 0xFFFF
            if lost not in self.held and lost not in self.missing:
                self.missing[lost] = [now, -RENACK, 0]
        return self._release(now)

    def to_ask(self, now: float) -> list[int]:
        """The lost packets to ask for again now."""
        due = []
        for seq, state in self.missing.items():
            if state[2] < TRIES and now - state[1] >= RENACK:
                state[1] = now
                state[2] += 1
                due.append(seq)
        return due

    def flush(self) -> list[T]:
        """Everything held, in order, its holes given up: the stream ended or jumped."""
        ready = []
        while self.held:
            assert self.next is not None
            item = self.held.pop(self.next, None)
            if item is None:
                self.given_up += 1
            else:
                ready.append(item)
            self.next = (self.next + 1) & 0xFFFF
        self.missing.clear()
        return ready

    def _release(self, now: float) -> list[T]:
        ready: list[T] = []
        assert self.next is not None
        while True:
            item = self.held.pop(self.next, None)
            if item is None:
                # the packet due is lost: wait for it, unless it was waited for long enough
                state = self.missing.get(self.next)
                overdue = state is not None and now - state[0] >= PATIENCE
                if not self.held or not (overdue or len(self.held) > CAPACITY):
                    return ready
                self.missing.pop(self.next, None)
                self.given_up += 1
            else:
                ready.append(item)
            self.next = (self.next + 1) & 0xFFFF
