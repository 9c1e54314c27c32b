"""A Python participant: join a room, publish tracks, receive everyone else's.

For classroom boxes, tests and load tests. It speaks the same WebSocket protocol as the browser
client and uses aiortc's RTCPeerConnection, one to publish and one to receive, as the server expects.

Reconnection is the client's job, as kelian.js does it: when the socket drops without the server
ending the session ("disconnected"), it joins again, through each of its URLs in turn (the nodes of
a cluster, or one load balancer), asking to resume its session; where that session is gone (its
node died, or was drained), it starts a new one and publishes the same tracks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from .channel import Channel, RequestError
from .media import EncodedTrack

log = logging.getLogger(__name__)

ClientError = RequestError  # the server answered a request with an error reply
RECONNECT_DELAYS = (0.0, 0.3, 0.7, 1.5, 2.5, 4.0, 4.0, 5.0, 5.0, 5.0)  # seconds; about 28 in all
# a reconnection stops for good on these: trying again cannot help (as kelian.js)
FINAL_ERRORS = frozenset({"unauthorized", "forbidden", "room_full", "room_closed", "room_locked", "denied"})
Publication = tuple[tuple[MediaStreamTrack, ...], list[str] | None, str | None]


@dataclass
class RemoteTrack:
    track: MediaStreamTrack
    id: str  # the server's track (Producer) id
    info: dict[str, Any] = field(default_factory=dict)


def use_loopback_candidates() -> None:
    """Make aiortc gather only 127.0.0.1, so a client talking to a loopback server stays on loopback.

    aioice leaves loopback out of its host candidates; tests and load tests must not touch any other
    interface.
    """
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


class Client:
    def __init__(
        self, url: str | Sequence[str], token: str, *, binary: bool = False, reconnect: bool = True
    ) -> None:
        self.urls = [u.rstrip("/") for u in ([url] if isinstance(url, str) else url)]
        self.url = self.urls[0]  # the one it is connected through
        self.token = token
        self.binary = binary
        self.reconnect = reconnect
        self.state = "new"  # connected, reconnecting, closed
        self.reconnections = 0
        self._published: list[Publication] = []
        self._relay = MediaRelay()
        self._reconnecting: asyncio.Task[None] | None = None
        self.participant: dict[str, Any] = {}
        self.room: dict[str, Any] = {}
        self.grants: dict[str, bool] = {}  # what it may do now; moderators change it ("permissions")
        self.lesson: dict[str, Any] = {}  # hand, invitation, chat and questions when it joined
        self.joined = asyncio.Event()
        self.events: list[dict[str, Any]] = []
        self.tracks: dict[str, RemoteTrack] = {}
        self.track_added = asyncio.Event()
        self.on_event: list[Callable[[dict[str, Any]], None]] = []
        self.publisher: RTCPeerConnection | None = None
        self.subscriber: RTCPeerConnection | None = None
        self._session: aiohttp.ClientSession | None = None
        self._channel: Channel | None = None
        self._track_infos: dict[str, dict[str, Any]] = {}
        # offers with the socket they came on: one from before a new session is not answered
        self._offers: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self._offer_task: asyncio.Task[None] | None = None
        self._socket = 0  # counts the sockets this client has opened
        self._media_socket = 1  # offers from this socket on are for the media session we have
        self._media = asyncio.Lock()  # held while a reconnection decides what the media are

    # -- connection ------------------------------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> dict[str, Any]:
        self._session = aiohttp.ClientSession()
        self._offer_task = asyncio.create_task(self._answer_offers())
        joined = await self._join(self.url, None, timeout)
        self.state = "connected"
        return joined  # or "waiting_room": wait_admitted() waits for a moderator

    async def _join(self, url: str, resume: str | None, timeout: float) -> dict[str, Any]:
        assert self._session is not None
        self._socket += 1
        socket = self._socket

        async def on_event(message: dict[str, Any]) -> None:
            await self._dispatch(message, socket)

        self._channel = await Channel.open(
            self._session, url, on_event, binary=self.binary, timeout=timeout, on_close=self._lost
        )
        message = {"type": "join", "token": self.token} | ({"resume": resume} if resume else {})
        joined = await self.request(message, timeout=timeout)
        self.url = url
        if joined["type"] == "joined":
            self._joined(joined)
        return joined

    def _lost(self) -> None:
        """The socket ended, not by us: join again in the background, once at a time."""
        if not self.reconnect or self.state != "connected" or self._reconnecting is not None:
            return
        self.state = "reconnecting"
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        sid = self.participant.get("sid")
        start = self.urls.index(self.url) if self.url in self.urls else 0
        order = self.urls[start:] + self.urls[:start]  # the same node first: it may be a blip
        try:
            for delay in RECONNECT_DELAYS:
                await asyncio.sleep(delay)
                for url in order:
                    if self.state != "reconnecting":
                        return
                    async with self._media:  # no offer is answered until we know whose it is
                        try:
                            joined = await self._join(url, sid, timeout=5.0)
                        except RequestError as exc:
                            if exc.code in FINAL_ERRORS:
                                self.state = "closed"
                                return
                            continue
                        except (OSError, aiohttp.ClientError, TimeoutError, ConnectionError):
                            continue
                        if not joined.get("resumed"):
                            self._media_socket = self._socket
                            await self._restart_media()
                    self.reconnections += 1
                    self.state = "connected"
                    return
            self.state = "closed"
        finally:
            self._reconnecting = None

    async def _restart_media(self) -> None:
        """A new session: new PeerConnections, the same tracks published again."""
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await pc.close()
        self.publisher = self.subscriber = None
        self.tracks.clear()
        for tracks, sources, codec in self._published:
            await self._publish(tracks, sources, codec)

    async def wait_admitted(self, timeout: float = 10.0) -> None:
        """In a room with a waiting room: until a moderator admits this client ("joined" follows)."""
        await asyncio.wait_for(self.joined.wait(), timeout)

    def _joined(self, joined: dict[str, Any]) -> None:
        self.participant = joined["participant"]
        self.room = joined["room"]
        self.grants = joined["grants"]
        self.lesson = joined.get("lesson", {})
        for p in self.room.get("participants", []):
            for t in p.get("tracks", []):
                self._track_infos[t["id"]] = t
        self.joined.set()

    async def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send a message with an id and wait for the reply that carries it back (ClientError if refused)."""
        if self._channel is None:
            raise ConnectionError("not connected")
        return await self._channel.request(message, timeout)

    async def send(self, message: dict[str, Any]) -> None:
        if self._channel is None:
            raise ConnectionError("not connected")
        await self._channel.send(message)

    async def _dispatch(self, message: dict[str, Any], socket: int) -> None:
        """An event (anything but a reply) from the server."""
        kind = message.get("type")
        self.events.append(message)
        if kind == "offer":
            self._offers.put_nowait((socket, message["sdp"]))
        elif kind == "track_published":
            self._track_infos[message["track"]["id"]] = message["track"]
        elif kind == "joined":  # admitted from the waiting room
            self._joined(message)
        elif kind == "permissions":
            self.grants = message["grants"]
        elif kind == "disconnected":  # the server ended the session: not to be resumed
            self.state = "closed"
        for callback in self.on_event:
            callback(message)

    # -- publishing ------------------------------------------------------------------------------

    async def publish(
        self, *tracks: MediaStreamTrack, sources: list[str] | None = None, video_codec: str | None = None
    ) -> dict[str, Any]:
        """Publish tracks on a new publisher connection; returns the server's reply with track ids.

        `video_codec` ("VP8" or "H264") must match what an EncodedTrack carries: aiortc packetizes
        pre-encoded frames with the negotiated codec's packetizer.
        """
        reply = await self._publish(tracks, sources, video_codec)
        self._published.append((tracks, sources, video_codec))  # published again after a new join
        return reply

    async def _publish(
        self, tracks: tuple[MediaStreamTrack, ...], sources: list[str] | None, video_codec: str | None
    ) -> dict[str, Any]:
        pc = self.publisher = RTCPeerConnection()
        source_by_mid: dict[str, str] = {}
        for i, track in enumerate(tracks):
            # through a relay: aiortc stops the track it sends when its PeerConnection closes, and a
            # new session after a rejoin publishes the same tracks again
            transceiver = pc.addTransceiver(
                self._relay.subscribe(track, buffered=False), direction="sendonly"
            )
            if track.kind == "video" and video_codec is not None:
                capabilities = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences(
                    [
                        c
                        for c in capabilities
                        if c.mimeType.lower() in (f"video/{video_codec.lower()}", "video/rtx")
                    ]
                )
            if isinstance(track, EncodedTrack):
                _forward_keyframe_requests(transceiver.sender, track)
            if sources:
                source_by_mid[str(i)] = sources[i]
        await pc.setLocalDescription(await pc.createOffer())
        reply = await self.request(
            {"type": "publish", "sdp": pc.localDescription.sdp, "sources": source_by_mid}
        )
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        return reply

    # -- subscribing -----------------------------------------------------------------------------

    async def _answer_offers(self) -> None:
        while True:
            socket, sdp = await self._offers.get()
            async with self._media:
                if socket < self._media_socket:
                    continue  # for the session before a rejoin: its PeerConnection is gone
                try:
                    await self._answer(sdp)
                except ConnectionError:
                    return  # closing: the offer came as the connection went
                except Exception:
                    log.exception("could not answer the server's offer")

    async def _answer(self, sdp: str) -> None:
        if self.subscriber is None:
            pc = self.subscriber = RTCPeerConnection()

            @pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                info = self._track_infos.get(track.id, {})
                self.tracks[track.id] = RemoteTrack(track, track.id, info)
                self.track_added.set()

        pc = self.subscriber
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        for transceiver in pc.getTransceivers():
            # aiortc's receive-side estimator starts near 30 kbit/s and climbs slowly, and REMB built
            # on it would hold simulcast subscribers on the lowest layer on any link. It has no
            # switch, so it is removed; the server then caps layers by its own estimate only.
            transceiver.receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
        await pc.setLocalDescription(await pc.createAnswer())
        await self.send({"type": "answer", "sdp": pc.localDescription.sdp})

    async def wait_for_tracks(self, count: int, timeout: float = 10.0) -> list[RemoteTrack]:
        async def wait() -> None:
            while len(self.tracks) < count:
                self.track_added.clear()
                await self.track_added.wait()

        await asyncio.wait_for(wait(), timeout)
        return list(self.tracks.values())

    # -- leaving ---------------------------------------------------------------------------------

    async def set_track_settings(
        self, track_id: str, width: int = 0, height: int = 0, enabled: bool = True
    ) -> None:
        """Tell the server the size this track is shown at (0 x 0: as large as it comes), or to stop it."""
        message = {"type": "track_settings", "track": track_id, "width": width, "height": height}
        await self.request(message | {"enabled": enabled})

    async def subscribe(self, target: str, subscribed: bool = True) -> list[str]:
        """Receive (or stop receiving) a track by id, or every track of a participant by sid."""
        key = "participant" if target.startswith("PS_") else "track"
        reply = await self.request({"type": "subscribe" if subscribed else "unsubscribe", key: target})
        return list(reply["tracks"])

    # -- the lesson (docs/protocol.md, "The lesson") ----------------------------------------------

    async def set_stage(self, identity: str, on: bool) -> list[str]:
        """The lecturer: bring `identity` on stage, or send it back; who is on stage now."""
        return list((await self.request({"type": "stage", "identity": identity, "on": on}))["stage"])

    async def raise_hand(self) -> int:
        """Put a hand up; its place in the queue."""
        return int((await self.request({"type": "raise_hand"}))["position"])

    async def lower_hand(self, identity: str | None = None) -> None:
        """Lower one's own hand, or (a moderator) someone else's."""
        await self.request({"type": "lower_hand"} | ({"identity": identity} if identity else {}))

    async def invite(self, identity: str, to: str = "speak") -> None:
        """A moderator invites `identity` to speak, or (the lecturer) on stage."""
        await self.request({"type": "invite", "identity": identity, "to": to})

    async def answer_invitation(self, accept: bool) -> dict[str, Any]:
        return await self.request({"type": "accept_invitation" if accept else "decline_invitation"})

    async def send_back(self, identity: str) -> None:
        """Off stage, hand down, and back to what its role may do when it joins."""
        await self.request({"type": "send_back", "identity": identity})

    async def set_permissions(self, identity: str, **changes: bool) -> dict[str, bool]:
        """Let `identity` publish, subscribe or chat (publish_data), or stop it; its grants now."""
        reply = await self.request({"type": "set_permissions", "identity": identity} | changes)
        return dict(reply["grants"])

    async def mute_all(self, kind: str = "audio") -> int:
        """Mute every microphone (or camera) but the lecturers' (a tutor: its classroom's)."""
        return int((await self.request({"type": "mute_all", "kind": kind}))["tracks"])

    async def lock(self, locked: bool = True) -> None:
        await self.request({"type": "lock", "locked": locked})

    async def admit(self, identity: str, admit: bool = True) -> None:
        """Let `identity` in from the waiting room, or turn it away."""
        await self.request({"type": "admit" if admit else "deny", "identity": identity})

    async def chat(self, text: str, to: str = "room") -> dict[str, Any]:
        """Write to the room, one's classroom, or the lecturers; the message as sent."""
        return dict((await self.request({"type": "chat", "text": text, "to": to}))["message"])

    async def delete_chat(self, message_id: str) -> None:
        await self.request({"type": "delete_chat", "message": message_id})

    async def ask(self, text: str, to: str = "lecturer") -> dict[str, Any]:
        """Ask the lecturers (or one's tutor) a question; the question as asked."""
        return dict((await self.request({"type": "ask", "text": text, "to": to}))["question"])

    async def settle_question(self, question_id: str, action: str, text: str | None = None) -> dict[str, Any]:
        """A moderator answers ("answer", with an optional text), dismisses or forwards a question."""
        message = {"type": f"{action}_question", "question": question_id}
        reply = await self.request(message | ({"text": text} if text is not None else {}))
        return dict(reply["question"])

    async def close(self) -> None:
        self.state = "closed"
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self._channel is not None:
            if not self._channel.closed:
                with contextlib.suppress(Exception):
                    await self.send({"type": "leave"})
            await self._channel.close()
        if self._offer_task is not None:
            self._offer_task.cancel()
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await pc.close()
        if self._session is not None:
            await self._session.close()


def _forward_keyframe_requests(sender: Any, track: EncodedTrack) -> None:
    """aiortc flags a keyframe for its encoder on PLI/FIR; a replayed clip must seek instead."""
    original = sender._send_keyframe

    def send_keyframe() -> None:
        original()
        track.request_keyframe()

    sender._send_keyframe = send_keyframe
