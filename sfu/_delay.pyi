# The interface of sfu/_delay.c: twins of sfu.twcc's pairing and sfu.bwe.DelayDetector.
from .twcc import SendHistory

class DelayDetector:
    state: str
    @property
    def threshold(self) -> float: ...
    def add(self, sent_times: list[float], arrival_times: list[float]) -> None: ...

def acknowledge(fci: bytes, history: SendHistory) -> tuple[list[float], list[float], int, int] | None: ...
