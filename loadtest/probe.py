"""A decoding probe: the one subscriber of a track that decodes it, to prove the stream is valid.

Light subscribers only count packets: decoding is what a load test cannot afford per peer, and
counting says nothing about whether the frames a server rewrites (sequence numbers, simulcast layer
switches, VP8 picture ids) still decode. So one subscriber per track also decodes it, with aiortc's
own pieces put together as its RTCRtpReceiver does: `RtpPacket.parse`, the codec's depayloader, the
`JitterBuffer` that reassembles frames, and the codec's decoder. Reassembly is cheap and stays on the
event loop, in packet order; decoding runs in one thread per process, shared by every probe in it, in
order. One thread, not one per probe: a lecturer in the dual-teacher preset probes thirty classrooms'
cameras and voices, and sixty decoder threads contending for the GIL stalled the worker's event loop
for most of a second (its subscribers saw freezes that were the load tool's). A probe that falls more
than MAX_BACKLOG frames behind stops and says so, rather than stall the loop or grow memory: its
figures would then measure the load tool, not the stream.

Frames before the first one that decodes are not held against the stream (a subscriber joins
mid-stream and waits for a keyframe; InStream asks for one); after it, a frame that raises or
decodes to nothing is a decode error.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from aiortc.codecs import depayload, get_decoder
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from av import VideoFrame

__all__ = ["Probe"]


def _decode_forever(frames: queue.SimpleQueue[tuple[Probe, JitterFrame]]) -> None:
    while True:
        probe, frame = frames.get()
        probe.decode(frame)


class _Decoding:
    """The process's one decoder thread, started with the first frame."""

    def __init__(self) -> None:
        self.frames: queue.SimpleQueue[tuple[Probe, JitterFrame]] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def put(self, item: tuple[Probe, JitterFrame]) -> None:
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.thread = threading.Thread(
                        target=_decode_forever, args=(self.frames,), name="probe-decoder", daemon=True
                    )
                    self.thread.start()
        self.frames.put(item)


_decoding = _Decoding()

VIDEO_CAPACITY = 128  # packets the jitter buffer holds: a 720p keyframe and its neighbours
AUDIO_CAPACITY = 16
MAX_BACKLOG = 60  # frames waiting for the decoder thread before the probe gives up
NO_FRAME_GRACE = 3.0  # seconds of probing without a decoded frame before that is a problem


class Probe:
    """Decodes one received track (its decrypted RTP packets, fed in arrival order)."""

    def __init__(self, kind: str, codec: str, clock: int) -> None:
        self.kind = kind
        self.parameters = RTCRtpCodecParameters(
            mimeType=f"{kind}/{codec}", clockRate=clock, channels=2 if kind == "audio" else None
        )
        video = kind == "video"
        self.buffer = JitterBuffer(VIDEO_CAPACITY if video else AUDIO_CAPACITY, is_video=video)
        self.started = time.monotonic()
        # written by the decoder thread only; plain ints, read from the loop for stats
        self.decoded = self.errors = 0
        self.bad_packets = 0  # the loop's own count: packets aiortc cannot parse
        self.width: int | None = None
        self.height: int | None = None
        self.problem: str | None = None
        self.stopped = False  # no more frames are taken (fell behind, closed, or no decoder)
        self.taken = 0  # frames handed to the decoder thread (written by the loop only)
        self.handled = 0  # frames the decoder thread is done with (written by that thread only)
        self._origin: int | None = None  # the first frame's RTP timestamp: pts count from it
        try:
            self._decoder: Decoder | None = get_decoder(self.parameters)
        except ValueError:
            self._decoder = None
            self.problem = f"no decoder for {codec}"
            self.stopped = True

    def feed(self, data: bytes) -> None:
        """One received RTP packet, on the loop: reassembled here, decoded in the thread once whole.

        A packet aiortc cannot parse counts as a decode error: a server never forwards one."""
        if self.stopped:
            return
        try:
            packet = RtpPacket.parse(data)
            payload = depayload(self.parameters, packet.payload) if packet.payload else b""
        except ValueError:
            self.bad_packets += 1
            return
        # where aiortc's JitterBuffer looks for the depayloaded bytes
        packet._data = payload  # type: ignore[attr-defined]
        frame = self.buffer.add(packet)[1]
        if frame is None or not frame.data:  # padding only: nothing to decode
            return
        if self.taken - self.handled >= MAX_BACKLOG:
            self.problem = "fell behind"
            self.close()
            return
        if self._origin is None:
            self._origin = frame.timestamp
        frame.timestamp = (frame.timestamp - self._origin) & 0xFFFFFFFF
        self.taken += 1
        _decoding.put((self, frame))

    def decode(self, frame: JitterFrame) -> None:
        """In the decoder thread: one frame, in order; nothing once the probe fell behind."""
        decoder = self._decoder
        if decoder is not None and self.problem != "fell behind":
            try:
                frames = decoder.decode(frame)
            except Exception:  # av.FFmpegError mostly; whatever a corrupt frame causes is its error
                frames = []
            if frames:
                self.decoded += len(frames)
                last = frames[-1]
                if isinstance(last, VideoFrame):
                    self.width, self.height = last.width, last.height
            elif self.decoded:
                self.errors += 1
        self.handled += 1

    def close(self, timeout: float = 0.0) -> None:
        """Take no more frames; the thread decodes those it holds (at most MAX_BACKLOG). Waits up to
        `timeout` seconds for that (0 on the event loop: never block it)."""
        self.stopped = True
        deadline = time.monotonic() + timeout
        while self.handled < self.taken and time.monotonic() < deadline:
            time.sleep(0.01)

    def stats(self) -> dict[str, Any]:
        """What it decoded. ``problem`` says why these figures prove nothing: the probe fell behind,
        or frames came for NO_FRAME_GRACE seconds and none decoded. A track that carried no frame at
        all is no decoding problem (the server forwards only the loudest voices)."""
        problem = self.problem
        waited = time.monotonic() - self.started >= NO_FRAME_GRACE
        if problem is None and self.taken and not self.decoded and waited:
            problem = "no frame decoded"
        return {
            "decoded_frames": self.decoded,
            "decode_errors": self.errors + self.bad_packets,
            "width": self.width,
            "height": self.height,
            "problem": problem,
        }
