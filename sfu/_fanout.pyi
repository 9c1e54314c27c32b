# The interface of sfu/_fanout.c (see sfu/fanout.py).
from typing import Any

from .twcc import SendHistory

class Sender:
    history: SendHistory | None
    def __init__(self, fd: int, fallback: Any) -> None: ...
    def key(self, protect: int = 0, session: int = 0, owner: object = None) -> None: ...
    def point(self, address: tuple[Any, ...]) -> bool: ...

class Forward:
    sender: Sender | None
    ext_table: bytes | None
    ssrc: int
    payload_type: int
    sync_seq: int
    seq_delta: int
    ts_delta: int
    last_seq: int
    last_ts: int
    packets: int
    bytes: int
    errors: int
    vp8_deltas: tuple[int, int] | None

def forward(consumers: list[Any], packet: bytes, seq: int, ts: int, twcc_at: int, sent_at: float) -> None: ...
def router_terms(packet: bytes, pt: int, ext_table: bytes | None, slot: bytes) -> tuple[bytes, int]: ...
def unprotect(function: int, session: int, packet: bytes) -> bytes | int: ...
