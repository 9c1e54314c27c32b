# The interface of sfu/_delay.c: twins of sfu.twcc's pairing, sfu.bwe.DelayDetector and the update
# of sfu.bwe.BandwidthEstimator.
from collections.abc import Callable
from typing import Any

from .twcc import Acknowledged, SendHistory

class DelayDetector:
    state: str
    @property
    def threshold(self) -> float: ...
    def add(self, sent_times: list[float], arrival_times: list[float]) -> None: ...

def acknowledge(fci: bytes, history: SendHistory) -> tuple[list[float], list[float], int, int] | None: ...

class Estimator:
    estimate: int
    last_cut: float
    last_trouble: float
    @property
    def delivered(self) -> int: ...
    @property
    def acked_bytes(self) -> int: ...
    @property
    def feedbacks(self) -> int: ...
    @property
    def loss(self) -> float: ...
    @property
    def last_loss_cut(self) -> float: ...
    @property
    def capacity(self) -> float | None: ...
    @property
    def delay(self) -> DelayDetector: ...
    def __init__(self, start: int = 1_000_000) -> None: ...
    def on_feedback(self, acked: Acknowledged, now: float) -> int: ...
    def fused(self, fci: bytes, history: SendHistory, now: float) -> int | None: ...

class FeedbackRoute:
    """What read_feedback needs of a transport: libsrtp's srtp_unprotect_rtcp and the transport's
    inbound session (addresses), the SrtpContext that owns the session, its estimator and history."""

    def __init__(
        self, unprotect: int, session: int, owner: object, estimator: Estimator, history: SendHistory
    ) -> None: ...

def read_feedback(
    fd: int,
    by_addr: dict[Any, Any],
    limit: int,
    now: float,
    on_datagram: Callable[[bytes, Any], None],
    on_rtcp: Callable[[Any, bytes], None],
) -> tuple[int, int, int]: ...
