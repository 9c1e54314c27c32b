# The interface of sfu/_delay.c, the compiled twin of sfu.bwe.DelayDetector.

class DelayDetector:
    state: str
    @property
    def threshold(self) -> float: ...
    def add(self, sent_times: list[float], arrival_times: list[float]) -> None: ...
