"""A light WebRTC participant for tests, benchmarks and load tests: no aiortc media stack, no codecs.

aiortc cannot send simulcast and spends about 20 us of Python per received packet, so it can neither
publish three layers like a browser nor drive hundreds of subscribers from one process. This peer is
built from the server's own pieces instead, and does only what a kelian session needs. `Peer` is the
participant; each of its parts has a module:

- signaling.channel: the WebSocket, requests and replies, shared with the aiortc client;
- connection: ICE, DTLS and SRTP of one server transport on one UDP socket;
- clips, outstream, publisher: clips encoded once per process, packetized (VP8 in up to three rid
  simulcast layers, Opus with its RFC 6464 level) and paced in real time, with the RTCP a sender owes;
- subscriber, instream, transport_cc: answers to the server's offers, per-track counters that never
  decode (packets, loss, frames, keyframes and their VP8 size, freezes, latency from the sender
  reports the server relays), receiver reports and transport-cc feedback;
- probe: decoding of the tracks a peer is asked to `probe`, one decoder thread each;
- sdp, rtcp: what is read from the server's SDP and the RTCP messages written by hand.

One task per peer (the clock) paces every frame of every layer and sends the RTCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

import aiohttp

from sfu.sdp import SdpError, parse
from signaling.channel import Channel, RequestError

from .clips import SIMULCAST_LAYERS, SINGLE_LAYER, Layer, audio_clip, video_clip
from .connection import CONSENT_INTERVAL, Connection
from .outstream import OutStream
from .publisher import Publisher
from .sdp import server_candidate, transport_section
from .subscriber import Subscriber
from .transport_cc import FEEDBACK_INTERVAL

log = logging.getLogger(__name__)

PeerError = RequestError  # the server refused a request, or what it sent cannot be used
RTCP_INTERVAL = 1.0  # sender and receiver reports
EVENTS_KEPT = 256
MAX_LIFETIME = 24 * 3600.0  # the clock's own bound; a peer is closed long before
RID_RE = re.compile(r"[A-Za-z0-9_-]{1,8}")  # short enough for the one-byte extension form
# what publish() sends unless told otherwise
FPS, CLIP_SECONDS, KEYFRAME_INTERVAL = 30, 2.0, 30
AUDIO_AMPLITUDE, AUDIO_FREQUENCY, BURST_FRAMES = 8000, 440.0, 25

__all__ = ["Layer", "Peer", "PeerError", "prepare_clips"]


def prepare_clips(layers: Sequence[Layer], audio: bool) -> None:
    """Encode what publish() sends by default with these layers (and a microphone), ahead: publishing
    in the middle of a run then costs no encoding. Blocks for a second or so per clip."""
    for layer in layers:
        video_clip(layer.width, layer.height, layer.bitrate, FPS, CLIP_SECONDS, KEYFRAME_INTERVAL)
    if audio:
        audio_clip(CLIP_SECONDS, AUDIO_FREQUENCY, False, AUDIO_AMPLITUDE, BURST_FRAMES)


class Peer:
    """One participant: the WebSocket, and a publisher and a subscriber connection as needed.

    ``loss`` drops that fraction of received RTP before it is counted (seeded, so runs repeat), to
    exercise NACKs; ``remb`` makes the subscriber announce that many bit/s, which caps the simulcast
    layers the server chooses for it unless transport-cc feedback gives it an estimate of its own;
    ``transport_cc=False`` declines transport-cc, for subscribers that must cost the least. Many
    peers may share one aiohttp ``session``; give it a connector without a connection limit
    (``aiohttp.TCPConnector(limit=0)``), since every peer holds its WebSocket open and aiohttp's
    default allows 100.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        host: str = "127.0.0.1",
        session: aiohttp.ClientSession | None = None,
        loss: float = 0.0,
        remb: int | None = None,
        transport_cc: bool = True,
        max_lifetime: float = MAX_LIFETIME,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.host = host
        self.loss = loss
        self.remb = remb
        self.transport_cc = transport_cc
        self.max_lifetime = max_lifetime
        self.participant: dict[str, Any] = {}
        self.room: dict[str, Any] = {}
        self.grants: dict[str, Any] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.errors: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)  # error replies without an id
        self.track_infos: dict[str, dict[str, Any]] = {}  # every track the room has announced
        self.active_speakers: list[str] = []
        self.speaker_events = 0
        self.received: Counter[str] = Counter()  # the server's events by type (replies not counted)
        self.publisher: Publisher | None = None
        self.subscriber: Subscriber | None = None
        self.unusable = 0  # events we could not use (a bad offer); the channel counts bad frames
        self.disconnected: str | None = None  # the reason, once the server has ended the session
        self._own_session = session is None
        self._session = session
        self._channel: Channel | None = None
        self._clock: asyncio.Task[None] | None = None
        self._probing: set[str] = set()  # track ids to decode, once the subscriber exists
        self._tracks_changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._closed = False

    # -- signaling ----------------------------------------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> dict[str, Any]:
        """Open the WebSocket and join with the token; returns the `joined` reply."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._channel = await Channel.open(self._session, self.url, self._dispatch, timeout=timeout)
        joined = await self.request({"type": "join", "token": self.token}, timeout)
        if joined.get("type") == "joined":  # else "waiting_room": a "joined" event follows admission
            self._joined(joined)
        self._clock = asyncio.create_task(self._run_clock())
        return joined

    def _joined(self, joined: dict[str, Any]) -> None:
        self.participant = joined.get("participant") or {}
        self.room = joined.get("room") or {}
        self.grants = joined.get("grants") or {}
        for p in self.room.get("participants", []):
            for t in p.get("tracks", []) if isinstance(p, dict) else []:
                if isinstance(t, dict) and isinstance(t.get("id"), str):
                    self.track_infos[t["id"]] = t

    @property
    def sid(self) -> str:
        return str(self.participant.get("sid", ""))

    @property
    def bad_messages(self) -> int:
        """Messages from the server that could not be used: bad frames, and events we could not act on."""
        return self.unusable + (self._channel.bad_messages if self._channel is not None else 0)

    async def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send a message with an id and wait for its reply; PeerError if the server refused it."""
        if self._channel is None:
            raise ConnectionError("signaling is not connected")
        return await self._channel.request(message, timeout)

    async def send(self, message: dict[str, Any]) -> None:
        if self._channel is None:
            raise ConnectionError("signaling is not connected")
        await self._channel.send(message)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        """An event from the server (replies go to their requests): offers, layers, the room's news."""
        kind = message["type"]
        self.events.append(message)
        self.received[kind] += 1
        if kind == "offer":
            await self._answer(message)
        elif kind == "layers":
            if self.publisher is not None and message.get("track") == self.publisher.video_track:
                active = message.get("active")
                if isinstance(active, list):
                    self.publisher.set_layers([str(a) for a in active])
        elif kind in ("track_published", "track_unpublished", "track_muted"):
            track = message.get("track")
            if isinstance(track, dict) and isinstance(track.get("id"), str):
                self.track_infos[track["id"]] = track
        elif kind == "active_speakers":
            speakers = message.get("speakers")
            if isinstance(speakers, list):
                self.active_speakers = [str(s.get("sid")) for s in speakers if isinstance(s, dict)]
                self.speaker_events += 1
        elif kind == "transport_closed":
            which = self.publisher if message.get("transport") == "publisher" else self.subscriber
            if which is not None:
                which.connection.reason = str(message.get("reason", ""))
        elif kind == "joined":
            self._joined(message)
        elif kind == "permissions" and isinstance(message.get("grants"), dict):
            self.grants = message["grants"]
        elif kind == "disconnected":
            self.disconnected = str(message.get("reason", ""))
        elif kind == "error":
            self.errors.append(message)

    # -- publishing ---------------------------------------------------------------------------------------

    async def publish(
        self,
        video: bool = True,
        audio: bool = True,
        simulcast: bool = True,
        layers: Sequence[Layer] | None = None,
        *,
        fps: int = FPS,
        seconds: float = CLIP_SECONDS,
        keyframe_interval: int = KEYFRAME_INTERVAL,
        audio_bursts: bool = False,
        audio_amplitude: int = AUDIO_AMPLITUDE,
        audio_frequency: float = AUDIO_FREQUENCY,
        burst_frames: int = BURST_FRAMES,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Publish a camera (VP8, rid simulcast q/h/f by default) and a microphone (Opus) from clips
        encoded once per process; returns the server's `answer` reply once media is flowing.

        ``layers`` are low to high; without simulcast, one layer (640x360 by default) and no rid.
        """
        if self.publisher is not None:
            raise RuntimeError("this peer publishes already")
        if not video and not audio:
            raise ValueError("publish needs video or audio")
        chosen = tuple(layers or (SIMULCAST_LAYERS if simulcast else (SINGLE_LAYER,)))
        if simulcast and not 1 < len(chosen) <= 3:
            raise ValueError("simulcast takes two or three layers")
        if simulcast and (
            any(not RID_RE.fullmatch(layer.rid) for layer in chosen)
            or len({x.rid for x in chosen}) < len(chosen)
        ):
            raise ValueError("simulcast rids are distinct, of 1 to 8 letters, digits, - or _")
        if not 0 < fps <= 120:
            raise ValueError("fps must be between 1 and 120")
        if not simulcast:
            if len(chosen) != 1:
                raise ValueError("without simulcast, give one layer")
            chosen = (Layer("", chosen[0].width, chosen[0].height, chosen[0].bitrate),)
        # encoding is once per process, but it takes a second: not on the loop the server may share
        clips = [
            await asyncio.to_thread(
                video_clip, layer.width, layer.height, layer.bitrate, fps, seconds, keyframe_interval
            )
            for layer in (chosen if video else ())
        ]
        sound = (
            await asyncio.to_thread(
                audio_clip, seconds, audio_frequency, audio_bursts, audio_amplitude, burst_frames
            )
            if audio
            else None
        )
        publisher = Publisher(Connection("publisher", self._unexpected_rtp, lambda d: None), fps)
        publisher.connection.on_rtcp = publisher.on_rtcp
        await publisher.connection.open(self.host)
        mids = {"video": "0", "audio": "1" if video else "0"}
        for layer, clip in zip(chosen if video else (), clips, strict=True):
            publisher.add(OutStream("video", layer, clip, mids["video"], fps))
        if sound is not None:
            publisher.add(OutStream("audio", None, sound, mids["audio"], fps))
        offer = publisher.offer(mids)
        sources = {mids["video"]: "camera"} if video else {}
        if audio:
            sources[mids["audio"]] = "microphone"
        self.publisher = publisher
        try:
            reply = await self.request({"type": "publish", "sdp": offer, "sources": sources}, timeout)
            try:
                section = transport_section(parse(reply.get("sdp")))  # type: ignore[arg-type]
            except SdpError as exc:
                raise PeerError("bad_sdp", f"the server's answer: {exc}") from None
            for track in reply.get("tracks", []):
                if not isinstance(track, dict):
                    continue
                if track.get("kind") == "video":
                    publisher.video_track = track["id"]
                elif track.get("kind") == "audio":
                    publisher.audio_track = track["id"]
            publisher.connection.start(
                section.ice_ufrag or "",
                section.ice_pwd or "",
                section.fingerprints,
                server_candidate(section),
            )
            await asyncio.wait_for(publisher.connection.connected.wait(), timeout)
        except BaseException:
            publisher.connection.close()
            self.publisher = None
            raise
        self._wake.set()
        return reply

    def _unexpected_rtp(self, packet: bytes) -> None:
        """RTP on the publisher connection: the server sends none there."""
        if self.publisher is not None:
            self.publisher.connection.junk += 1

    # -- subscribing --------------------------------------------------------------------------------------

    async def _answer(self, message: dict[str, Any]) -> None:
        sdp, tracks = message.get("sdp"), message.get("tracks") or {}
        if not isinstance(sdp, str) or not isinstance(tracks, dict):
            self.unusable += 1
            return
        try:
            offer = parse(sdp)
            section = transport_section(offer)
            remote = server_candidate(section)
        except (SdpError, RequestError, ValueError) as exc:
            self.unusable += 1
            log.warning("cannot use the server's offer: %s", exc)
            return
        if self.subscriber is None:
            conn = Connection("subscriber", lambda p: None, lambda d: None, loss=self.loss)
            subscriber = Subscriber(conn, self.remb, self.transport_cc, self._probing)
            conn.on_rtp, conn.on_rtcp = subscriber.on_rtp, subscriber.on_rtcp
            await conn.open(self.host)
            self.subscriber = subscriber
        subscriber = self.subscriber
        answer = subscriber.answer(offer, {str(k): str(v) for k, v in tracks.items()})
        await self.send({"type": "answer", "sdp": answer})
        subscriber.connection.start(
            section.ice_ufrag or "", section.ice_pwd or "", section.fingerprints, remote
        )
        self._tracks_changed.set()

    def tracks(self) -> list[dict[str, Any]]:
        """The tracks we receive now: the room's info about each, with our mid and SSRC."""
        if self.subscriber is None:
            return []
        return [
            self.track_infos.get(s.track_id, {"id": s.track_id, "kind": s.kind})
            | {"mid": s.mid, "ssrc": s.ssrc}
            for s in self.subscriber.by_mid.values()
            if not s.ended
        ]

    async def wait_for_tracks(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until we receive at least `count` tracks (answered offers); returns them."""
        deadline = time.monotonic() + timeout
        while len(self.tracks()) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.tracks())} of {count} tracks after {timeout} s")
            self._tracks_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tracks_changed.wait(), remaining)
        return self.tracks()

    async def set_track_settings(self, track_id: str, width: int, height: int, enabled: bool = True) -> None:
        """Tell the server the size we show a track at: it picks the simulcast layer that covers it."""
        message = {"type": "track_settings", "track": track_id, "width": width, "height": height}
        await self.request(message | {"enabled": enabled})

    def probe(self, track_id: str) -> None:
        """Decode this received track, to prove it is valid (loadtest.probe): now if it arrives already,
        else from when it does. Its stats then carry a ``probe`` entry."""
        self._probing.add(track_id)
        if self.subscriber is not None:
            self.subscriber.probe(track_id)

    def request_keyframe(self, track_id: str) -> None:
        """Send a PLI for a received video track, as a decoder that lost its picture would."""
        if self.subscriber is None:
            raise KeyError(track_id)
        stream = next((s for s in self.subscriber.by_mid.values() if s.track_id == track_id), None)
        if stream is None:
            raise KeyError(track_id)
        stream.request_keyframe()

    # -- the clock: media pacing, RTCP, consent -----------------------------------------------------------

    async def _run_clock(self) -> None:
        """The peer's one task: sends every due frame, reports each second, sends transport-cc feedback
        every 100 ms, refreshes consent.

        Bounded by `max_lifetime` and by close(); each turn sleeps until the next thing is due.
        """
        loop = asyncio.get_running_loop()
        begun = loop.time()
        next_report = begun + RTCP_INTERVAL
        next_consent = begun + CONSENT_INTERVAL
        next_feedback = begun + FEEDBACK_INTERVAL
        while not self._closed and loop.time() - begun < self.max_lifetime:
            now = loop.time()
            due = min(next_report, next_consent)
            try:
                if self.publisher is not None:
                    due = min(due, self.publisher.pump(now))
                if self.subscriber is not None and self.subscriber.twcc is not None:
                    if now >= next_feedback:
                        next_feedback = max(next_feedback + FEEDBACK_INTERVAL, now + FEEDBACK_INTERVAL / 2)
                        self.subscriber.send_feedback()
                    due = min(due, next_feedback)
                if now >= next_report:
                    next_report = max(next_report + RTCP_INTERVAL, now + RTCP_INTERVAL / 2)
                    if self.publisher is not None:
                        self.publisher.report()
                    if self.subscriber is not None:
                        self.subscriber.report()
                if now >= next_consent:
                    next_consent = now + CONSENT_INTERVAL
                    for side in (self.publisher, self.subscriber):
                        if side is not None:
                            side.connection.consent(time.monotonic())
            except Exception:  # a bug here must show, but not stop the media of a long load test
                log.exception("peer clock step failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.001, due - loop.time()))

    # -- results and the end ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Everything counted so far, as plain dicts of numbers and strings (JSON-ready).

        ``publisher.streams`` is keyed by rid ("q", "h", "f"), "video" or "audio": packets, frames,
        keyframes, keyframe requests, NACKs answered, whether the server wants the layer (``active``),
        and the wall-clock/RTP mapping (``clock``) a load tool needs for one-way latency.
        ``subscriber.tracks`` is keyed by track id: packets, bytes, ``lost`` (RFC 3550: expected minus
        received, so recovered packets do not count), ``gaps``, frames, keyframes, the last VP8
        ``keyframe_size`` (which simulcast layer arrives), ``first_keyframe_ms`` after subscribing,
        ``max_frame_gap_ms`` and ``freezes`` (gaps over 200 ms), jitter, ``latency_ms`` from the
        sender reports the server relays, and ``probe`` (None unless the track is probed: frames
        decoded, decode errors, the last decoded size, a problem); ``subscriber.transport_cc`` counts
        the feedback sent (None if the answer did not take transport-cc).
        """
        return {
            "sid": self.sid,
            "publisher": None if self.publisher is None else self.publisher.stats(),
            "subscriber": None if self.subscriber is None else self.subscriber.stats(),
            "active_speakers": list(self.active_speakers),
            "speaker_events": self.speaker_events,
            "received": dict(self.received),
            "bad_messages": self.bad_messages,
            "disconnected": self.disconnected,
            "errors": [dict(e) for e in self.errors],
        }

    async def close(self) -> None:
        """Leave, and close both connections (DTLS close_notify) and the socket; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._channel is not None:
            if not self._channel.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.send({"type": "leave"}), 2.0)
            await self._channel.close()
        for side in (self.publisher, self.subscriber):
            if side is not None:
                side.connection.close()
        if self.subscriber is not None:
            self.subscriber.close()
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._clock
        if self._own_session and self._session is not None:
            await self._session.close()
