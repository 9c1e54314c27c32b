"""transport-cc feedback parsing and the delay/loss-based estimator, on simulated links."""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest
from helpers import estimator_state
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.transport_cc import build_feedback
from sfu.bwe import MIN_BITRATE, BandwidthEstimator, Regression
from sfu.twcc import Acknowledged, FeedbackError, SendHistory, parse_feedback


def feedback(base: int, statuses: list[int], deltas: bytes, reference: int = 1) -> bytes:
    """A feedback FCI with one two-bit status vector chunk per 7 statuses."""
    head = struct.pack("!HH", base, len(statuses)) + reference.to_bytes(3, "big", signed=True) + b"\x00"
    chunks = b""
    for i in range(0, len(statuses), 7):
        group = (statuses[i : i + 7] + [0] * 7)[:7]
        value = 0xC000
        for j, s in enumerate(group):
            value |= s << (12 - 2 * j)
        chunks += struct.pack("!H", value)
    return head + chunks + deltas


def test_status_vector_with_small_large_and_lost() -> None:
    fci = feedback(100, [1, 1, 0, 2, 1], bytes([4, 8]) + struct.pack("!h", -4) + bytes([0]))
    assert parse_feedback(fci) == (100, [260, 268, None, 264, 264])  # 250 us ticks from 64 ms


def test_run_length_and_one_bit_vector_chunks() -> None:
    head = struct.pack("!HH", 0xFFFE, 17) + (0).to_bytes(3, "big") + b"\x00"
    run = struct.pack("!H", (1 << 13) | 3)  # three small deltas
    vector = struct.pack("!H", 0x8000 | 0b10000000000001)  # 14 one-bit: received, 12 lost, received
    fci = head + run + vector + bytes([1, 1, 1, 2, 2])
    base, arrivals = parse_feedback(fci)
    assert base == 0xFFFE and len(arrivals) == 17
    assert arrivals[:4] == [1, 2, 3, 5] and arrivals[-1] == 7
    assert arrivals.count(None) == 12


def test_one_run_of_small_deltas_is_summed_at_once() -> None:
    head = struct.pack("!HH", 7, 5) + (2).to_bytes(3, "big") + b"\x00"
    run = struct.pack("!H", (1 << 13) | 5)
    assert parse_feedback(head + run + bytes([3, 0, 1, 255, 2])) == (7, [515, 515, 516, 771, 773])
    with pytest.raises(FeedbackError):
        parse_feedback(head + run + bytes([3, 0, 1]))


@pytest.mark.parametrize(
    "fci",
    [
        b"\x00" * 7,
        feedback(1, [1, 1], bytes([1])),
        feedback(1, [3], b"\x00\x00"),
        struct.pack("!HH", 0, 20) + bytes(4),
        struct.pack("!HH", 0, 20) + bytes(4) + struct.pack("!H", 0x8000),
    ],
)
def test_malformed_feedback_is_refused(fci: bytes) -> None:
    with pytest.raises(FeedbackError):
        parse_feedback(fci)


def test_history_pairs_feedback_with_what_was_sent() -> None:
    history = SendHistory()
    for seq in (1, 2, 3):
        history.sent_at[seq], history.sizes[seq] = seq / 100, 1000 + seq
    history.next_seq = 4
    acked = history.acknowledge(1, [20, None, 22, 23, 24, 25, 26, 27, 28])  # 4 to 9 were never sent
    assert acked == Acknowledged(sent=[0.01, 0.03], arrived=[0.005, 0.0055], bytes=2004, lost=1)
    assert history.acknowledge(0xFFFF, [1, 2, 3]).sent == [0.01], "sequence numbers wrap"


def acknowledged(packets: list[tuple[float, int, float | None]]) -> Acknowledged:
    """(send time, size, arrival or None) per packet, as SendHistory.acknowledge would give them."""
    received = [p for p in packets if p[2] is not None]
    return Acknowledged(
        [p[0] for p in received],
        [p[2] for p in received],  # type: ignore[misc]
        sum(p[1] for p in received),
        len(packets) - len(received),
    )


def simulate(capacity: int, seconds: float, start: int, loss_every: int = 0) -> list[tuple[float, int]]:
    """Send at the estimate through a link of `capacity` bit/s (a FIFO); feedback every 100 ms.

    Returns (time, estimate) after each feedback.
    """
    bwe = BandwidthEstimator(start)
    now, link_free, seq = 0.0, 0.0, 0
    trace = []
    pending: list[tuple[float, int, float | None]] = []
    while now < seconds:
        size = 1200
        gap = size * 8 / bwe.estimate  # paced at the estimate
        seq += 1
        lost = bool(loss_every) and seq % loss_every == 0
        link_free = max(link_free, now) + size * 8 / capacity
        arrival = None if lost else link_free + 0.02  # 20 ms propagation
        pending.append((now, size, arrival))
        now += gap
        if pending and now - pending[0][0] >= 0.1:
            bwe.on_feedback(acknowledged(pending), now)
            trace.append((now, bwe.estimate))
            pending = []
    return trace


def test_congestion_is_met_with_a_cut_within_two_seconds() -> None:
    trace = simulate(capacity=600_000, seconds=6.0, start=1_500_000)
    cut = next(t for t, rate in trace if rate < 600_000)
    assert cut < 2.0, f"below the 600 kbit/s link only after {cut:.1f} s"
    late = [rate for t, rate in trace if t > 4.0]
    assert max(late) < 900_000 and min(late) > 250_000, "it settles around the link's capacity"


def test_an_ample_link_is_probed_upward_gradually() -> None:
    trace = simulate(capacity=50_000_000, seconds=5.0, start=500_000)
    final = trace[-1][1]
    assert 600_000 < final < 500_000 * 1.08**5 * 1.1, "about 8% a second, no jumps"


def test_heavy_loss_cuts_the_rate() -> None:
    trace = simulate(capacity=50_000_000, seconds=3.0, start=1_000_000, loss_every=5)  # 20% loss
    assert trace[-1][1] < 700_000 and trace[-1][1] >= MIN_BITRATE


def test_a_calm_link_may_try_a_bigger_layer_but_not_right_after_a_cut() -> None:
    bwe = BandwidthEstimator(1_000_000)
    now = 0.0
    for _ in range(30):  # 3 s of calm: 100 packets every 100 ms, well within the link
        batch = [(now + i * 0.001, 1200, now + i * 0.001 + 0.02) for i in range(100)]
        now += 0.1
        bwe.on_feedback(acknowledged(batch), now)
    assert bwe.layer_budget(now) == int(bwe.estimate * 1.5)
    bwe.delay.state = "overuse"
    bwe.on_feedback(acknowledged([(now, 1200, now + 0.02)]), now)
    assert bwe.layer_budget(now) == bwe.estimate, "the link just said no: no tries for a while"
    assert bwe.layer_budget(now + 11) == int(bwe.estimate * 1.5)


def test_the_running_regression_matches_a_full_fit() -> None:
    import random

    rng = random.Random(3)
    fit = Regression(20)
    points: list[tuple[float, float]] = []
    for i in range(1000):
        x, y = 3_600_000 + i * 33.3, rng.uniform(-50, 50) + i * 0.1  # an hour into a lesson
        points.append((x, y))
        slope = fit.add(x, y)
        if i >= 19:
            window = points[-20:]
            mx = sum(p[0] for p in window) / 20
            my = sum(p[1] for p in window) / 20
            exact = sum((p[0] - mx) * (p[1] - my) for p in window) / sum((p[0] - mx) ** 2 for p in window)
            assert slope == pytest.approx(exact, rel=1e-6, abs=1e-9)
        else:
            assert slope is None


@pytest.mark.parametrize("seed", range(6))
def test_the_compiled_delay_detector_decides_as_the_reference(seed: int) -> None:
    """sfu/_delay.c against bwe.DelayDetector, report by report, through congestion and calm: the
    same state after every report, the same threshold (the same arithmetic in the same order)."""
    import random

    from helpers import require_system

    from sfu.bwe import CompiledDelayDetector, DelayDetector

    if CompiledDelayDetector is None:
        require_system("cc", "sfu/_delay.c was not compiled at install (a C compiler and Python's headers)")
    reference, compiled = DelayDetector(), CompiledDelayDetector()
    rng = random.Random(seed)
    now, link_free, states = 0.0, 0.0, set()
    for report in range(600):
        capacity = 400_000 if (report // 100) % 2 else 5_000_000  # congested and calm in turns
        sent, arrived = [], []
        for _ in range(rng.randint(1, 40)):
            now += rng.choice([0.0001, 0.0002, 0.004, 0.010, 0.020, 0.033])
            link_free = max(link_free, now) + 1200 * 8 / capacity
            if rng.random() < 0.97:  # some are lost: not reported as received
                sent.append(now)
                arrived.append(link_free + 0.02 + rng.uniform(0, 0.003))
        reference.add(sent, arrived)
        compiled.add(sent, arrived)
        assert compiled.state == reference.state, f"report {report}"
        assert compiled.threshold == pytest.approx(reference.threshold, rel=1e-9, abs=1e-12)
        states.add(reference.state)
        if reference.state == "overuse":  # as the rate controller does after its cut
            reference.state = compiled.state = "normal"
    assert {"overuse", "normal"} <= states, "the reports went through congestion and calm"


_arrival = st.none() | st.integers(0, 3_000_000)  # microseconds, or lost


def _report(base: int, arrivals: list[int | None]) -> bytes:
    """A well-formed report (the load tool's builder, as a browser would send), or random bytes
    where it cannot build one (no packet received, a delta too large)."""
    try:
        return build_feedback(1, 2, base, sorted(arrivals, key=lambda a: a or 0), 0)[12:]
    except ValueError:
        return bytes((arrivals and [len(arrivals)]) or [])


def _history(rng: Any, fci: bytes, ahead: int) -> SendHistory:
    """What we sent: most of the packets `fci` reports (and random others), the newest `ahead`
    past its first."""
    history = SendHistory()
    base, count = struct.unpack_from("!HH", fci) if len(fci) >= 4 else (0, 0)
    others = [rng.randrange(0x10000) for _ in range(rng.randint(0, 100))]
    for seq in [*range(base, base + count), *others]:
        if rng.random() < 0.9:
            history.sent_at[seq & 4095] = rng.uniform(1, 1000)
            history.sizes[seq & 4095] = rng.randint(50, 1300)
    history.next_seq = base + ahead
    return history


@settings(max_examples=int(os.environ.get("KELIAN_FUZZ_EXAMPLES") or 300), deadline=None)
@given(
    fci=st.binary(min_size=0, max_size=80)
    | st.builds(_report, st.integers(0, 0xFFFF), st.lists(_arrival, max_size=40)),
    ahead=st.integers(0, 0xFFFF) | st.integers(0, 80),
    seed=st.integers(0, 2**32),
)
def test_the_compiled_pairing_reads_reports_as_the_reference(fci: bytes, ahead: int, seed: int) -> None:
    """sfu/_delay.c's `acknowledge` against parse_feedback + SendHistory.acknowledge: the same
    packets, times, bytes and losses for any report and history, and None wherever the reference
    refuses the report."""
    import random

    from helpers import require_system

    try:
        from sfu._delay import acknowledge
    except ImportError:
        require_system("cc", "sfu/_delay.c was not compiled at install (a C compiler and Python's headers)")
    history = _history(random.Random(seed), fci, ahead)
    found = acknowledge(fci, history)
    try:
        base, arrivals = parse_feedback(fci)
    except FeedbackError:
        assert found is None
        return
    assert found is not None and Acknowledged(*found) == history.acknowledge(base, arrivals)


@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_estimator_decides_as_the_reference(seed: int) -> None:
    """sfu/_delay.c's Estimator against bwe.BandwidthEstimator, fed the same transport-cc reports
    (their bytes, as a subscriber sends them) about a stream paced at the estimate through a link that
    is congested and calm in turns, with loss: the same estimate, rates, loss and detector after
    every report, and the same refusal of a malformed one."""
    import random

    from helpers import require_system

    from sfu.bwe import CompiledUpdate, new_estimator

    if CompiledUpdate is None:
        require_system("cc", "sfu/_delay.c was not compiled at install (a C compiler and Python's headers)")
    reference, compiled = BandwidthEstimator(800_000), new_estimator(800_000)
    assert type(compiled) is not BandwidthEstimator
    rng = random.Random(seed)
    history = SendHistory()
    now, link_free, cuts = 0.0, 0.0, 0
    pending: list[tuple[int, int | None]] = []
    for report in range(400):
        capacity = 500_000 if (report // 60) % 2 else 4_000_000
        loss = 0.15 if report % 97 < 8 else 0.01
        while not pending or now - history.sent_at[pending[0][0] & 4095] < 0.1:
            seq = history.next_seq
            size = rng.randint(200, 1200)
            history.sent_at[seq & 4095], history.sizes[seq & 4095] = now, size
            history.next_seq = seq + 1
            link_free = max(link_free, now) + size * 8 / capacity
            arrival = None if rng.random() < loss else int((link_free + 0.02) * 1e6)
            pending.append((seq, arrival))
            now += size * 8 / reference.estimate * rng.uniform(0.5, 1.5)
        arrivals = [a for _, a in pending]
        if all(a is None for a in arrivals):
            arrivals[-1] = int((link_free + 0.02) * 1e6)
        fci = build_feedback(1, 2, pending[0][0] & 0xFFFF, arrivals, report & 0xFF)[12:]
        pending = []
        got = (reference.report(fci, history, now), compiled.report(fci, history, now))
        assert got[0] == got[1], f"report {report}"
        assert estimator_state(compiled) == estimator_state(reference), f"report {report}"
        cuts += reference.last_cut == now
        if report % 50 == 7:  # a malformed report changes neither
            for estimator in (reference, compiled):
                with pytest.raises(FeedbackError):
                    estimator.report(fci[:9], history, now)
            assert estimator_state(compiled) == estimator_state(reference)
    assert cuts >= 3, "the reports went through congestion"
    # and an Acknowledged from the reference parser (a report the compiled one leaves to it)
    acked = acknowledged([(now, 1000, now + 0.02), (now + 0.001, 900, None)])
    assert compiled.on_feedback(acked, now + 0.1) == reference.on_feedback(acked, now + 0.1)
    assert estimator_state(compiled) == estimator_state(reference)
