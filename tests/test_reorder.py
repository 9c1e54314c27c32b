"""The recorder's reordering: packets come out in sequence order, a hole is asked for again and
waited for, and given up only after its patience, never losing or repeating a packet."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.reorder import CAPACITY, PATIENCE, RENACK, TRIES, Reorder


def test_in_order_packets_go_straight_on() -> None:
    order: Reorder[int] = Reorder()
    assert [x for seq in range(65530, 65536 + 5) for x in order.push(seq & 0xFFFF, seq, 0.0)] == list(
        range(65530, 65541)
    )
    assert not order.held and not order.missing


def test_a_hole_is_asked_for_and_filled_by_the_resend() -> None:
    order: Reorder[int] = Reorder()
    assert order.push(10, 10, 0.0) == [10]
    assert order.push(13, 13, 0.01) == []  # 11 and 12 missing
    assert order.to_ask(0.01) == [11, 12]
    assert order.to_ask(0.02) == [], "not again before RENACK"
    assert order.push(14, 14, 0.05) == []
    assert order.to_ask(0.01 + RENACK) == [11, 12]
    assert order.push(12, 12, 0.2) == []
    assert order.push(11, 11, 0.21) == [11, 12, 13, 14]
    assert order.recovered == 2 and order.given_up == 0 and not order.missing


def test_a_hole_is_given_up_after_its_patience_and_asked_for_a_bounded_number_of_times() -> None:
    order: Reorder[int] = Reorder()
    order.push(0, 0, 0.0)
    order.push(2, 2, 0.0)
    asked = sum(len(order.to_ask(i * RENACK)) for i in range(3 * TRIES))
    assert asked == TRIES
    assert order.push(3, 3, PATIENCE - 0.01) == [], "still waiting"
    assert order.push(4, 4, PATIENCE) == [2, 3, 4]
    assert order.given_up == 1
    assert order.push(1, 1, PATIENCE + 0.1) == [], "too late: its frame went on without it"


def test_a_flood_behind_a_hole_does_not_wait_for_it() -> None:
    order: Reorder[int] = Reorder()
    order.push(0, 0, 0.0)
    out = [x for seq in range(2, CAPACITY + 3) for x in order.push(seq, seq, 0.0)]
    assert out and out[0] == 2 and out == sorted(out) and order.given_up == 1


def test_a_jump_far_ahead_restarts_the_order() -> None:
    order: Reorder[int] = Reorder()
    order.push(0, 0, 0.0)
    order.push(2, 2, 0.0)
    assert order.push(30000, 30000, 0.0) == [2, 30000]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 60), min_size=1, max_size=60, unique=True),
    st.integers(0, 0xFFFF),
    st.randoms(use_true_random=False),
)
def test_whatever_arrives_comes_out_once_and_in_order(kept: list[int], base: int, rng: object) -> None:
    order: Reorder[int] = Reorder()
    arrivals = sorted(kept)
    first, rest = arrivals[0], arrivals[1:]
    rng.shuffle(rest)  # type: ignore[attr-defined]
    out: list[int] = []
    for i, n in enumerate([first, *rest]):
        out += order.push((base + n) & 0xFFFF, n, i * 0.001)
    out += order.flush()
    assert out == sorted(out) and len(out) == len(set(out))
    assert set(out) <= set(kept) and first in out
