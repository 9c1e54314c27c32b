"""How much one subscriber's link can take: a delay- and loss-based estimator of the GCC family.

The model is the one libwebrtc's send-side estimator follows (draft-ietf-rmcat-gcc-02, with the
trendline filter that replaced its Kalman filter): packets are grouped by send time; the growth of
one-way delay between groups, smoothed and fitted to a line, says whether a queue is building
(overuse), draining (underuse) or neither; an AIMD controller then cuts the rate to 85% of what was
actually delivered on overuse and otherwise raises it by 8% a second (slower near the last known
capacity). A loss-based controller caps it when more than 10% of packets are lost. There is no
padding probe: the rate rises while the network stays calm, and the layer allocator (simulcast.py)
only moves to a bigger layer when the estimate covers it, so the next layer is the probe.

No Python library implements GCC; aiortc has only a receive-side REMB estimator.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .twcc import Acknowledged, SendHistory, acknowledged

if TYPE_CHECKING:
    from ._delay import DelayDetector as CompiledDelayDetector
    from ._delay import Estimator as CompiledUpdate
else:
    try:
        from ._delay import DelayDetector as CompiledDelayDetector
        from ._delay import Estimator as CompiledUpdate
    except ImportError:  # no C compiler where kelian was installed: the Python references serve
        CompiledDelayDetector = CompiledUpdate = None

BURST = 0.005  # packets sent within 5 ms form one group
TRENDLINE_WINDOW = 20
SMOOTHING = 0.9
THRESHOLD_GAIN = 4.0
K_UP, K_DOWN = 0.0087, 0.039
OVERUSE_TIME = 0.010  # seconds the trend must stay over the threshold
BETA = 0.85  # on overuse: this share of the delivered rate
INCREASE_PER_SECOND = 1.08
LOSS_HIGH, LOSS_LOW = 0.10, 0.02
START_BITRATE = 1_000_000
MIN_BITRATE = 100_000
MAX_BITRATE = 20_000_000
RATE_WINDOW = 1.0  # seconds of acknowledged packets the delivered rate is measured over
CALM = 2.0  # seconds without overuse or loss before a bigger layer may be tried
PROBE_HEADROOM = 1.5  # ... one costing up to this much more than the estimate
HOLD_AFTER_CUT = 10.0  # no such tries for this long after a cut: the link just said no


class DelayDetector:
    """Trendline filter and adaptive-threshold overuse detector over packet groups.

    The reference: estimators use sfu/_delay.c's compiled twin where it was built, the same
    arithmetic in the same order (it was most of a transport-cc report's cost), and this otherwise.
    """

    __slots__ = (
        "accumulated",
        "deltas",
        "first_arrival",
        "group_arrival",
        "group_last_sent",
        "group_sent",
        "last_update",
        "over_count",
        "over_time",
        "prev_arrival",
        "prev_sent",
        "prev_trend",
        "smoothed",
        "state",
        "threshold",
        "trendline",
    )

    def __init__(self) -> None:
        self.group_sent: float | None = None  # first send time of the current group
        self.group_last_sent = 0.0
        self.group_arrival = 0.0  # last arrival in the current group
        self.prev_sent: float | None = None
        self.prev_arrival = 0.0
        self.first_arrival = 0.0
        self.accumulated = 0.0
        self.smoothed = 0.0
        self.trendline = Regression(TRENDLINE_WINDOW)
        self.deltas = 0
        self.threshold = 12.5  # ms
        self.last_update: float | None = None
        self.over_time = 0.0
        self.over_count = 0
        self.prev_trend = 0.0
        self.state = "normal"  # normal | overuse | underuse

    def add(self, sent_times: list[float], arrival_times: list[float]) -> None:
        """Received packets in send order, from one feedback message.

        Grouping runs per packet and the trendline per group (about once per video frame), for
        hundreds of messages a second: the whole detector runs here, its state in locals and
        written back once, because attribute traffic and calls were most of its cost.
        """
        first, last, arrived = self.group_sent, self.group_last_sent, self.group_arrival
        groups: list[float] = []  # (last send, last arrival) of each group this message closes
        for sent, arrival in zip(sent_times, arrival_times, strict=True):
            if first is not None and sent - first <= BURST:
                if sent > last:
                    last = sent
                if arrival > arrived:
                    arrived = arrival
                continue
            if first is not None:
                groups += (last, arrived)
            first = last = sent
            arrived = arrival
        self.group_sent, self.group_last_sent, self.group_arrival = first, last, arrived
        if groups:
            self._close_groups(groups)

    def _close_groups(self, groups: list[float]) -> None:
        """Each group's delay gradient into the trendline, its slope against the adaptive threshold."""
        prev_sent, prev_arrival = self.prev_sent, self.prev_arrival
        deltas, accumulated, smoothed = self.deltas, self.accumulated, self.smoothed
        threshold, prev_trend, state = self.threshold, self.prev_trend, self.state
        over_time, over_count, last_update = self.over_time, self.over_count, self.last_update
        first_arrival, fit = self.first_arrival, self.trendline.add
        for k in range(0, len(groups), 2):
            sent, arrival = groups[k], groups[k + 1]
            if prev_sent is None:
                prev_sent, prev_arrival = sent, arrival
                first_arrival = arrival
                continue
            send_delta = sent - prev_sent
            deltas = min(deltas + 1, 60)
            accumulated += (arrival - prev_arrival - send_delta) * 1000.0
            prev_sent, prev_arrival = sent, arrival
            smoothed = SMOOTHING * smoothed + (1 - SMOOTHING) * accumulated
            slope = fit((arrival - first_arrival) * 1000.0, smoothed)
            trend = prev_trend if slope is None else slope * deltas * THRESHOLD_GAIN
            # overuse only when the trend stays over the threshold for a while and is not falling
            if trend > threshold:
                over_time += send_delta
                over_count += 1
                if over_time > OVERUSE_TIME and over_count > 1 and trend >= prev_trend:
                    over_time, over_count = 0.0, 0
                    state = "overuse"
            else:
                over_time, over_count = 0.0, 0
                state = "underuse" if trend < -threshold else "normal"
            prev_trend = trend
            # the threshold follows the trend, slowly up and faster down, but not toward a spike
            elapsed_ms = 0.0 if last_update is None else min((arrival - last_update) * 1000.0, 100.0)
            last_update = arrival
            size = abs(trend)
            if size <= threshold + 15.0:
                k_gain = K_DOWN if size < threshold else K_UP
                threshold = min(max(threshold + k_gain * (size - threshold) * elapsed_ms, 6.0), 600.0)
        self.prev_sent, self.prev_arrival = prev_sent, prev_arrival
        self.deltas, self.accumulated, self.smoothed = deltas, accumulated, smoothed
        self.threshold, self.prev_trend, self.state = threshold, prev_trend, state
        self.over_time, self.over_count, self.last_update = over_time, over_count, last_update
        self.first_arrival = first_arrival


class Regression:
    """Least-squares slope over the last `window` points, kept up to date in O(1) per point.

    The trendline is refitted for every packet group of every subscriber; a 20-point fit each time
    was the largest cost of transport-cc processing. Sums are rebuilt now and then so that adding
    and removing floats for hours does not drift.
    """

    __slots__ = ("points", "sx", "sxx", "sxy", "sy", "updates", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.points: deque[tuple[float, float]] = deque()
        self.sx = self.sy = self.sxx = self.sxy = 0.0
        self.updates = 0

    def add(self, x: float, y: float) -> float | None:
        """Add a point; the slope once the window is full, else None."""
        points = self.points
        if len(points) == self.window:
            ox, oy = points.popleft()
            self.sx -= ox
            self.sy -= oy
            self.sxx -= ox * ox
            self.sxy -= ox * oy
        points.append((x, y))
        self.sx += x
        self.sy += y
        self.sxx += x * x
        self.sxy += x * y
        self.updates += 1
        if self.updates % 256 == 0:
            self.sx = sum(p[0] for p in points)
            self.sy = sum(p[1] for p in points)
            self.sxx = sum(p[0] * p[0] for p in points)
            self.sxy = sum(p[0] * p[1] for p in points)
        n = len(points)
        if n < self.window:
            return None
        den = n * self.sxx - self.sx * self.sx
        return (n * self.sxy - self.sx * self.sy) / den if den else 0.0


class Budget:
    """What both estimators share above the per-report update."""

    __slots__ = ()
    estimate: int
    last_trouble: float
    last_cut: float

    def on_feedback(self, acked: Acknowledged, now: float) -> int:  # each estimator's own
        raise NotImplementedError

    def layer_budget(self, now: float) -> int:
        """What the layer allocator may use: the estimate, or more after a calm spell.

        Without padding probes the estimate climbs only 8% a second, so a subscriber that enlarges
        a thumbnail would wait seconds for the big layer. After CALM seconds of a quiet link the
        allocator may try a layer up to PROBE_HEADROOM times the estimate: that layer's traffic is
        the probe. If the link cannot carry it, the cut that follows holds such tries off for
        HOLD_AFTER_CUT seconds, so a link just below a layer does not flap between two.
        """
        calm = now - self.last_trouble >= CALM and now - self.last_cut >= HOLD_AFTER_CUT
        return int(self.estimate * PROBE_HEADROOM) if calm else self.estimate

    def report(self, fci: bytes, history: SendHistory, now: float) -> int:
        """One transport-cc report (its FCI) about packets in `history`: the new estimate, or
        twcc.FeedbackError if it does not parse."""
        return self.on_feedback(acknowledged(fci, history), now)


class BandwidthEstimator(Budget):
    """The estimate for one Transport, fed with acknowledged packets from transport-cc feedback.

    The reference: where sfu/_delay.c was built, transports use CompiledBandwidthEstimator, whose
    update is the same arithmetic in the same order (tests/test_bwe.py compares the two)."""

    __slots__ = (
        "acked_bytes",
        "capacity",
        "delay",
        "delivered",
        "estimate",
        "feedbacks",
        "last_change",
        "last_cut",
        "last_loss_cut",
        "last_trouble",
        "loss",
        "messages",
    )

    def __init__(self, start: int = START_BITRATE) -> None:
        self.estimate = start
        self.delay: DelayDetector | CompiledDelayDetector = (
            DelayDetector() if CompiledDelayDetector is None else CompiledDelayDetector()
        )
        # (last arrival, bytes) of each feedback message in the last RATE_WINDOW
        self.messages: deque[tuple[float, int]] = deque()
        self.acked_bytes = 0  # their sizes summed
        self.delivered = 0  # bit/s acknowledged over RATE_WINDOW
        self.loss = 0.0
        self.capacity: float | None = None  # delivered rate at the last decrease
        self.last_change: float | None = None
        self.last_loss_cut = 0.0
        self.last_trouble = self.last_cut = float("-inf")
        self.feedbacks = 0

    def on_feedback(self, acked: Acknowledged, now: float) -> int:
        """Update from one feedback message; returns the new estimate in bit/s."""
        received = len(acked.sent)
        reported = received + acked.lost
        if not reported:
            return self.estimate
        self.feedbacks += 1
        self.loss = 0.7 * self.loss + 0.3 * (acked.lost / reported)
        if received:
            # in sequence order, which is send order but for retransmissions
            self.delay.add(acked.sent, acked.arrived)
            window = self.messages
            newest = acked.arrived[-1]
            window.append((newest, acked.bytes))
            self.acked_bytes += acked.bytes
            while newest - window[0][0] > RATE_WINDOW:
                self.acked_bytes -= window.popleft()[1]
            span = newest - window[0][0]
            if span >= 0.1:  # the first message's bytes arrived before the span began: leave them out
                self.delivered = int((self.acked_bytes - window[0][1]) * 8 / span)
        self._control(now)
        return self.estimate

    def _control(self, now: float) -> None:
        elapsed = 0.0 if self.last_change is None else min(now - self.last_change, 1.0)
        self.last_change = now
        state = self.delay.state
        if state != "normal" or self.loss >= LOSS_LOW:
            self.last_trouble = now
        if state == "overuse":
            basis = self.delivered or self.estimate
            target = int(BETA * basis)
            if target < self.estimate:
                self.estimate = target
                self.capacity = basis
                self.last_cut = now
            self.delay.state = "normal"  # one cut per detection; the next overuse cuts again
        elif state == "normal" and self.loss < LOSS_LOW:
            # what got through with no queue building is within the link: never estimate below it
            # (so a subscriber that starts on a big layer over a good link keeps it)
            self.estimate = max(self.estimate, self.delivered)
            near = self.capacity is not None and self.estimate > 0.9 * self.capacity
            if near:  # about one packet more per response time, as GCC's additive increase
                self.estimate += int(elapsed * 1200 * 8 / 0.2)
            else:
                self.estimate = int(self.estimate * INCREASE_PER_SECOND**elapsed)
        if self.loss > LOSS_HIGH and now - self.last_loss_cut > 0.3:
            self.estimate = int(self.estimate * (1 - 0.5 * self.loss))
            self.last_loss_cut = self.last_cut = now
        self.estimate = min(max(self.estimate, MIN_BITRATE), MAX_BITRATE)


if TYPE_CHECKING or CompiledUpdate is not None:

    class CompiledBandwidthEstimator(CompiledUpdate, Budget):  # the compiled on_feedback first
        """BandwidthEstimator with its update compiled (sfu/_delay.c): a report goes from its bytes
        to the new estimate in one call, and only one the compiled parser cannot read goes through
        the reference parser (twcc.acknowledged), which says why."""

        __slots__ = ()

        def report(self, fci: bytes, history: SendHistory, now: float) -> int:
            estimate = self.fused(fci, history, now)
            return self.on_feedback(acknowledged(fci, history), now) if estimate is None else estimate


def new_estimator(start: int = START_BITRATE) -> BandwidthEstimator | CompiledBandwidthEstimator:
    """A Transport's estimator: the compiled one where sfu/_delay.c was built."""
    return BandwidthEstimator(start) if CompiledUpdate is None else CompiledBandwidthEstimator(start)
