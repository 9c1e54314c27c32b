"""kelian without its compiled pieces (an install where no C compiler was found): the Python
references of sfu/_fanout.c and sfu/_delay.c, and libsrtp for sfu/_srtp.c, take over, and packets
are still forwarded, protected and estimated. Run in a process of its own, where importing the
compiled modules fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
sys.modules["sfu._fanout"] = None  # importing it now raises ImportError, as where it was never built
sys.modules["sfu._delay"] = None
sys.modules["sfu._srtp"] = None
import asyncio
from sfu import fanout, bwe
from benchmarks.consumer_cost import measure, vp8_packets
from sfu.bwe import BandwidthEstimator, DelayDetector
from sfu.twcc import Acknowledged

assert not fanout.COMPILED and fanout.Sender is None and bwe.CompiledDelayDetector is None
from sfu import srtp
assert srtp.GcmProtect is None
context = srtp.SrtpContext(srtp.AEAD_AES_128_GCM, bytes(28), True)
assert context._gcm is None
assert len(context.protect(bytes([0x80, 96]) + bytes(10) + b"payload")) == 12 + 7 + 16
slot = bytes([0x11, 0, 0, 0])
packet, at = fanout.router_terms(bytes([0x80, 96]) + bytes(10) + b"payload", 100, None, slot)
assert packet[1] == 100 and at == 17
asyncio.run(measure(3, vp8_packets(40), rounds=1))  # asserts that every Consumer forwarded every packet
estimator = bwe.new_estimator()
assert type(estimator) is BandwidthEstimator and type(estimator.delay) is DelayDetector
estimator.on_feedback(Acknowledged([0.0, 0.001], [0.02, 0.021], 2400, 0), 1.0)
assert estimator.feedbacks == 1
from loadtest.transport_cc import build_feedback
from sfu.twcc import SendHistory, acknowledged
history = SendHistory()
history.sent_at[7], history.sizes[7], history.next_seq = 5.0, 1000, 8
acked = acknowledged(build_feedback(1, 2, 7, [1000], 0)[12:], history)
assert acked.sent == [5.0] and acked.bytes == 1000 and acked.lost == 0
print("ok")
"""


def test_kelian_forwards_and_estimates_without_its_compiled_pieces() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
