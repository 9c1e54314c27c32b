"""Which simulcast layer each Consumer forwards, and which layers a publisher need send at all.

A subscriber says at what size it shows a track (LiveKit's adaptive stream): a projector wants the
full layer, a thumbnail in a 5x5 grid the quarter one. A Consumer takes the smallest layer that
covers that size, then the transport's bandwidth estimate caps the choice: its budget is shared
among its Consumers, largest views first, so a weak link drops thumbnails to the lowest layer
before it starves the speaker. Switching itself is the Consumer's (at the new layer's keyframe).

Runs on the Node's timer and on each size request, never per packet.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .consumer import Consumer
    from .producer import Producer, RtpStream
    from .transport import WebRtcTransport

ACTIVE_WINDOW = 1.5  # seconds without packets after which a layer the publisher stopped is unusable
PAUSE_AFTER = 3.0  # seconds a layer must be unwanted before the publisher is asked to stop it
COVER = 0.9  # a layer at 90% of the requested width or height still counts as covering it


def size_of(stream: RtpStream) -> tuple[int, int]:
    """A layer's picture size: read from its keyframes (VP8), else estimated from the layers above.

    Without a keyframe size (H.264, or no keyframe yet) each layer is taken as half the next one,
    which is how browsers configure simulcast (scaleResolutionDownBy 4, 2, 1).
    """
    if stream.width:
        return stream.width, stream.height
    streams = stream.producer.streams
    known = next((s for s in reversed(streams) if s.width), None)
    top_w, top_h = (known.width, known.height) if known else (1280, 720)
    top_index = known.index if known else len(streams) - 1
    scale = 2 ** (top_index - stream.index)
    return max(1, int(top_w / scale)), max(1, int(top_h / scale))


def usable(stream: RtpStream, now: float) -> bool:
    """Received lately, or stopped by us (so it comes back when asked for)."""
    return stream.paused_upstream or now - stream.last_packet < ACTIVE_WINDOW


def ranked(producer: Producer) -> list[RtpStream]:
    """Layers from smallest to largest, whatever order the publisher listed them in."""
    return sorted(producer.streams, key=lambda s: (math.prod(size_of(s)), s.index))


def preferred(consumer: Consumer, now: float) -> list[RtpStream]:
    """Usable layers no larger than needed for the consumer's view, smallest first.

    The last one is what the view alone would choose; the budget may force an earlier one.
    """
    layers = [s for s in ranked(consumer.producer) if usable(s, now)]
    if not layers:
        return []
    width, height = consumer.max_width, consumer.max_height
    if not width and not height:
        return layers
    for i, stream in enumerate(layers):
        w, h = size_of(stream)
        if w >= width * COVER and h >= height * COVER:
            return layers[: i + 1]
    return layers


def allocate(transport: WebRtcTransport, now: float | None = None) -> None:
    """Choose a layer for every simulcast Consumer on `transport`, within its bandwidth estimate."""
    now = time.monotonic() if now is None else now
    budget = transport.layer_budget(now)
    video = [c for c in transport.consumers.values() if c.kind == "video" and c.enabled and not c.closed]
    if budget is not None:
        budget -= sum(
            c.producer.streams[0].bitrate for c in transport.consumers.values() if c.kind == "audio"
        )
    # the biggest views first: they matter most to the person watching
    video.sort(key=lambda c: (c.max_width * c.max_height) or 1 << 30, reverse=True)
    for consumer in video:
        options = preferred(consumer, now)
        if not options:
            continue
        choice = options[-1]
        if budget is not None:
            fitting = [s for s in options if s.bitrate <= budget]
            choice = fitting[-1] if fitting else options[0]
            budget -= choice.bitrate
        consumer.select(choice)


def update_upstream(producer: Producer, now: float | None = None) -> bool:
    """Mark the layers nobody has wanted for PAUSE_AFTER seconds, and unmark wanted ones at once.

    Returns whether the set changed, so that the publisher is told (signaling carries it).
    """
    if len(producer.streams) < 2:
        return False
    now = time.monotonic() if now is None else now
    wanted = {
        id(s) for c in producer.consumers if c.enabled and not c.paused for s in (c.stream, c.target) if s
    }
    changed = False
    for stream in producer.streams:
        if id(stream) in wanted:
            stream.last_wanted = now
            if stream.paused_upstream:
                stream.paused_upstream = False
                changed = True
        elif not stream.paused_upstream and now - stream.last_wanted > PAUSE_AFTER:
            stream.paused_upstream = True
            changed = True
    return changed
