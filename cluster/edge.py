"""A room spread over workers or nodes: its origin, and the edges that serve more of its viewers.

A live lecture outgrows the process that holds it long before its signaling does: what costs is
forwarding each packet to each viewer. So the room stays whole in one place, its **origin** (the
worker that holds it), which keeps everything that is the lesson's (who is in it, roles, the
stage, moderation, chat and questions, the count); and once that worker is busy the front sends
further viewers to another worker or node, an **edge**, which serves only their media:

- Each viewer's socket ends at the edge, which opens one of its own to the origin and passes the
  viewer's messages on, so the origin has a session for it like any other (it joins, chats, asks,
  raises a hand, is admitted, moved, removed, counted), marked as having its media elsewhere: the
  origin never subscribes it. What the origin says to it comes back through the edge as it is.
- The edge answers what is about the viewer's own media itself: the subscriber offers it makes
  and their answers, subscribing and unsubscribing, the size a track is shown at.
- One link per room and edge, a WebSocket from the edge to the origin, keeps the edge's mirror of
  the room: who publishes (role, grants), what (each track piped from the origin's Node to the
  edge's by sfu.pipe, plain RTP between the two media ports) and the stage. The edge's room applies
  the lesson's kind to its own viewers with it, exactly as the origin would, and says nothing to
  anyone but offers: the origin speaks for the room.

A viewer invited to speak publishes to the origin (its publish is passed on; the origin's answer
names the origin's media port), so what it sends reaches everyone, edges included, through the
origin. Mediasoup's pipeToRouter carries the media the same way; LiveKit's open-source server keeps
a room on one node.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from classroom import kinds
from classroom.errors import ClassroomError
from classroom.kinds import RoomKind
from classroom.limits import TokenBucket
from classroom.participant import Participant
from classroom.room import Room, RoomOptions
from classroom.rooms import Rooms
from classroom.tokens import Claims, Grants, Role
from sfu.node import Node
from sfu.pipe import PipeError, PipeTransport, pipe_in, pipe_out, pipe_to, stop_piping
from signaling import appkeys
from signaling.messages import HANDLERS
from signaling.ws import (
    MAX_MESSAGE,
    RECONNECT_GRACE,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    Codec,
    Outbox,
    join_claims,
)

from . import proxy

log = logging.getLogger(__name__)

ORIGIN = "X-Kelian-Origin"  # front to an edge worker: this viewer's room is held there (a front's URL)
EDGE = "X-Kelian-Edge"  # edge to origin: this session's media are the edge's
LINK = "/internal/edge/{room}"
MEDIA = frozenset({"answer", "subscribe", "unsubscribe", "track_settings"})  # answered by the edge
LINK_TIMEOUT = 10.0  # seconds an edge waits for the origin's first word
MIRROR = "mirror:"  # an edge room's key for the mirror of an origin's publisher


# -- the origin's side --------------------------------------------------------------------------


def mirror(room: Room, pipe: PipeTransport, piped: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What an edge needs to serve `room`'s viewers: who publishes (as the lesson's kind judges
    them), each track as piped to the edge (piped now if new), and the stage."""
    owners, live = [], set()
    for participant in room.participants.values():
        tracks = []
        for producer in participant.producers.values():
            if producer.closed:
                continue
            description = piped.get(producer.id)
            if description is None:
                description = piped[producer.id] = pipe_out(pipe, producer)
            live.add(producer.id)
            tracks.append(description)
        if tracks:
            owners.append(
                {
                    "sid": participant.sid,
                    "identity": participant.identity,
                    "name": participant.claims.name,
                    "role": str(participant.role),
                    "classroom": participant.classroom,
                    "grants": participant.grants.to_dict(),
                    "tracks": tracks,
                }
            )
    for gone in set(piped) - live:  # closed: its pipe Consumers closed with it
        del piped[gone]
    return {"owners": owners, "stage": sorted(room.stage)}


def close_idle(pipe: PipeTransport) -> None:
    """A pipe no room uses any more goes (the other end's goes when its own rooms are done)."""
    if not pipe.consumers and not pipe.producers:
        pipe.close("no room uses the pipe")


def media_address(raw: str) -> tuple[str, int]:
    """An edge's media address, "host:port" (IPv6 in brackets); ValueError for anything else."""
    host, _, port = raw.rpartition(":")
    address = ipaddress.ip_address(host.strip("[]"))
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} is out of range")
    return str(address), number


async def follow_origin(request: web.Request, room: Room, node: Node) -> web.WebSocketResponse:
    """An edge follows `room` until either side closes the link: the room's mirror now and after each
    change (coalesced: one message for a burst), its tracks piped to the edge's media address."""
    try:
        address = media_address(request.query.get("media", ""))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"media: {exc}\n") from None
    link = web.WebSocketResponse(heartbeat=20.0)
    await link.prepare(request)
    request.app[appkeys.SOCKETS].add(link)  # closed on shutdown, as participants' are
    pipe = pipe_to(node, address)
    piped: dict[str, dict[str, Any]] = {}
    dirty = asyncio.Event()
    room.on_change.append(dirty.set)

    async def tell() -> None:
        hello = {"media": [node.announced_address, node.port], "kind": room.kind.name, "mode": room.mode.mode}
        await link.send_json(hello | mirror(room, pipe, piped))
        while not link.closed:
            await dirty.wait()
            dirty.clear()
            await link.send_json(mirror(room, pipe, piped))

    teller = asyncio.get_running_loop().create_task(tell())
    try:
        async for message in link:
            if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
    finally:
        teller.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await teller
        room.on_change.remove(dirty.set)
        for producer in room.producers():
            if producer.id in piped:
                stop_piping(pipe, producer)
        close_idle(pipe)
        room.release_if_empty()
    return link


# -- the edge's side ----------------------------------------------------------------------------


class EdgeKind(RoomKind):
    """A lesson's kind as an edge applies it: who watches whom as at the origin; but a viewer hears
    of nobody from the edge (the origin tells it of everyone, the edge's viewers of its own links)."""

    def __init__(self, kind: RoomKind) -> None:
        self.kind = kind
        self.name = kind.name  # type: ignore[misc]

    def watches(self, room: Room, viewer: Participant, owner: Participant) -> bool:
        return self.kind.watches(room, viewer, owner)

    def sees(self, room: Room, viewer: Participant, other: Participant) -> bool:
        return False


class EdgeRoom(Room):
    """A room as an edge serves it: its own viewers, whose signaling is the origin's, and mirrors of
    the origin's publishers with their tracks piped in. It tells nobody anything but offers."""

    def __init__(self, name: str, rooms: Rooms, kind: str) -> None:
        options = RoomOptions(empty_timeout=0.0, kind=kind, recording="never")
        super().__init__(name, rooms.node, self._gone, options, rooms.max_audio_streams, rooms.limits)
        self.rooms = rooms
        self.kind = EdgeKind(kinds.kind(kind))
        # the origin's publishers, by sid; in `participants` under MIRROR + sid, so that a viewer of
        # this edge who publishes (invited to speak) is both: its session here, its tracks mirrored
        self.mirrors: dict[str, Participant] = {}
        self.pipe: PipeTransport | None = None
        self.ready = asyncio.Event()
        self.link: asyncio.Task[None] | None = None

    async def broadcast(
        self, message: dict[str, Any], skip: Participant | None = None, about: Participant | None = None
    ) -> None:
        return  # the origin tells the room, edge viewers included, through their sessions there

    def _count_changed(self) -> None:
        return  # the origin counts everyone

    def viewers(self) -> list[Participant]:
        return [p for p in self.participants.values() if self.mirrors.get(p.sid) is not p]

    async def leave(self, participant: Participant, reason: str = "left") -> None:
        await super().leave(participant, reason)
        if not self.viewers():
            self.shut()

    def follow(self, state: dict[str, Any]) -> None:
        """Make the mirror what the origin says, then each viewer's subscriptions what the kind says."""
        assert self.pipe is not None
        self.stage = {str(identity) for identity in state.get("stage", ())}
        seen = set()
        for owner in state.get("owners", ()):
            sid = str(owner["sid"])
            seen.add(sid)
            mirror = self.mirrors.get(sid)
            claims = Claims(
                room=self.name,
                identity=str(owner["identity"]),
                name=owner.get("name"),
                role=Role(owner["role"]),
                grants=Grants(**owner["grants"]),
                expires_at=math.inf,
                classroom=owner.get("classroom"),
            )
            if mirror is None:
                mirror = Participant(self, claims, None, "mirror", sid=sid)
                self.mirrors[sid] = self.participants[MIRROR + sid] = mirror
            mirror.claims, mirror.grants = claims, claims.grants
            tracks = {str(t["track"]): t for t in owner["tracks"]}
            for track, producer in list(mirror.producers.items()):
                if track not in tracks:
                    del mirror.producers[track]
                    producer.close()
            for track, description in tracks.items():
                if track not in mirror.producers:
                    try:
                        mirror.producers[track] = pipe_in(self.router, self.pipe, description)
                    except PipeError as exc:
                        log.warning("room %s: %s", self.name, exc)
        for sid in set(self.mirrors) - seen:
            self._drop_mirror(sid)
        for viewer in self.viewers():
            self.reconcile(viewer)
            self._spawn(self.negotiate(viewer))

    def _drop_mirror(self, sid: str) -> None:
        mirror = self.mirrors.pop(sid)
        self.participants.pop(MIRROR + sid, None)
        for producer in list(mirror.producers.values()):
            producer.close()
        mirror.producers.clear()

    def shut(self) -> None:
        """No viewer left, or the origin gone: the mirror, its piped tracks and the link go."""
        if self.closed and self.rooms.rooms.get(self.name) is not self:
            return
        self.closed = True
        if self.link is not None and self.link is not asyncio.current_task():
            self.link.cancel()
        for sid in list(self.mirrors):
            self._drop_mirror(sid)
        if self.pipe is not None:
            close_idle(self.pipe)
        self._gone(self)

    def _gone(self, room: Room) -> None:
        if self.rooms.rooms.get(self.name) is self:
            del self.rooms.rooms[self.name]
            self.node.close_router(self.name)


class Edges:
    """The rooms this worker serves as an edge, each linked to its origin."""

    def __init__(self, rooms: Rooms, session: aiohttp.ClientSession, headers: dict[str, str]) -> None:
        self.rooms = rooms
        self.session = session
        self.headers = headers  # what the origin's front takes as the cluster's own

    async def room(self, name: str, origin: str, kind: str | None) -> EdgeRoom:
        """The edge room `name` of the room held at `origin`, linked and mirrored."""
        room = self.rooms.rooms.get(name)
        if room is not None and not isinstance(room, EdgeRoom):
            raise ClassroomError("unavailable", f"room {name} moved here while you joined: join again")
        if room is None or room.closed:
            room = EdgeRoom(name, self.rooms, kind or "live")
            self.rooms.rooms[name] = room
            room.link = asyncio.get_running_loop().create_task(self._follow(room, origin, kind))
        try:
            await asyncio.wait_for(room.ready.wait(), LINK_TIMEOUT)
        except TimeoutError:
            room.shut()
            raise ClassroomError("unavailable", "the lesson's origin does not answer: join again") from None
        if room.closed:
            raise ClassroomError("unavailable", "the lesson's origin is gone: join again")
        return room

    async def _follow(self, room: EdgeRoom, origin: str, kind: str | None) -> None:
        """Follow the room at `origin`; if its first viewer is ours, the origin opens it of `kind`
        (the viewer's token's), as that viewer's own join there would."""
        node = room.node
        media = f"[{node.announced_address}]" if ":" in node.announced_address else node.announced_address
        url = f"{origin}{LINK.format(room=room.name)}"
        params = {"media": f"{media}:{node.port}"} | ({"kind": kind} if kind else {})
        try:
            async with self.session.ws_connect(
                url, params=params, headers=self.headers, heartbeat=20.0
            ) as link:
                async for message in link:
                    if message.type != WSMsgType.TEXT:
                        break
                    state = message.json()
                    if room.pipe is None:
                        host, port = state["media"]
                        room.pipe = pipe_to(node, (str(host), int(port)))
                        room.mode.mode = str(state.get("mode", room.mode.mode))
                        room.kind = EdgeKind(kinds.kind(str(state["kind"])))
                    room.follow(state)
                    room.ready.set()
        except (aiohttp.ClientError, OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("room %s: the link to its origin failed: %s", room.name, exc)
        finally:
            room.ready.set()  # whoever waits hears that it is closed
            room.shut()


class EdgeViewer:
    """One viewer's socket at an edge: its media here, everything else the origin's."""

    def __init__(
        self, request: web.Request, client: web.WebSocketResponse, edges: Edges, origin: str
    ) -> None:
        self.request = request
        self.client = client
        self.edges = edges
        self.origin = origin
        self.config = config = request.app[appkeys.CONFIG]
        self.codec = Codec(binary=client.ws_protocol == SUBPROTOCOL_MSGPACK)
        rooms = edges.rooms
        self.outbox = Outbox(
            client, self.codec, request.transport, config.send_queue, config.send_timeout, rooms.refusals
        )
        self.messages = TokenBucket(config.message_rate, config.message_burst)
        self.room: EdgeRoom | None = None
        self.claims: Claims | None = None
        self.participant: Participant | None = None

    async def send(self, message: dict[str, Any]) -> None:
        self.outbox.put(message)

    async def serve(self) -> None:
        try:
            try:
                first = await self.client.receive(timeout=self.config.join_timeout)
            except TimeoutError:  # the front sends its join on at once: only a stalled one waits
                raise ClassroomError("join_timeout", "no join in time") from None
            self.claims = join_claims(self.codec.decode(first), self.config)
            self.room = await self.edges.room(self.claims.room, self.origin, self.claims.kind)
        except ClassroomError as exc:
            await self.send({"type": "error", "code": exc.code, "message": exc.message})
            await self.client.close(code=1013, message=b"try again")
            return
        protocols = (self.client.ws_protocol,) if self.client.ws_protocol else (SUBPROTOCOL_JSON,)
        try:
            upstream = await self.edges.session.ws_connect(
                self.origin + "/ws",
                protocols=protocols,
                headers=self.edges.headers | {EDGE: "1"},
                max_msg_size=MAX_MESSAGE,
            )
        except (aiohttp.ClientError, OSError):
            await self.client.close(code=1013, message=b"try again")
            return
        async with upstream:
            await proxy.pass_frame(first, upstream)
            down = asyncio.create_task(self._down(upstream))
            up = asyncio.create_task(self._up(upstream))
            done, pending = await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            ended = down in done  # the origin closed: the session is over there
            code = (upstream.close_code if ended else self.client.close_code) or 1000
            await asyncio.sleep(0)  # the last messages queued reach the outbox's writer
            if not upstream.closed:
                await upstream.close(code=code)
            if not self.client.closed:
                await self.client.close(code=code)
        self.outbox.close()
        participant, room = self.participant, self.room
        if participant is not None and room is not None and not participant.closed:
            if ended:
                await room.leave(participant, "left")
            else:
                room.detach(participant, RECONNECT_GRACE)

    async def _down(self, upstream: aiohttp.ClientWebSocketResponse) -> None:
        """What the origin says to the viewer, passed on; a "joined" starts its media here."""
        room = self.room
        assert room is not None
        async for frame in upstream:
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return
            message = self.codec.decode(frame)
            kind = message["type"]
            resumed = False
            if kind == "joined":
                try:
                    resumed = await self._joined(message)
                except ClassroomError as exc:
                    self.outbox.put({"type": "error", "code": exc.code, "message": exc.message})
                    return
            self.outbox.put(message)
            if kind == "joined" and self.participant is not None:
                if not resumed:
                    room.subscribe_all(self.participant)
                await room.negotiate(self.participant)
            elif kind in ("left", "disconnected") and self.participant is not None:
                participant, self.participant = self.participant, None
                await room.leave(participant, str(message.get("reason", "left")))

    async def _joined(self, message: dict[str, Any]) -> bool:
        """The origin took the viewer in (or back): its media session here, under the same sid;
        whether it goes on from before."""
        room, claims = self.room, self.claims
        assert room is not None and claims is not None
        sid = str(message["participant"]["sid"])
        here = room.participants.get(sid)
        if message.get("resumed") and here is not None and not here.closed:
            self.participant = here
            await room.resume(here, self.send, self)
            return True
        message["resumed"] = False  # its media start afresh here: the client publishes again
        self.participant = await room.join(claims, self.send, sid=sid)
        self.participant.channel = self
        return False

    async def _up(self, upstream: aiohttp.ClientWebSocketResponse) -> None:
        """The viewer's messages: about its media, answered here; the rest, the origin's."""
        async for frame in self.client:
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return
            request_id = None
            try:
                message = self.codec.decode(frame)
                request_id = message.get("id")
                if message["type"] not in MEDIA:
                    await proxy.pass_frame(frame, upstream)
                    if message["type"] == "leave" and self.participant is not None and self.room:
                        participant, self.participant = self.participant, None
                        await self.room.leave(participant)  # a client may not wait for "left"
                    continue
                if not self.messages.take():
                    raise ClassroomError("rate_limited", "too many messages a second: slow down")
                if self.participant is None or self.room is None:
                    raise ClassroomError("not_joined", 'send "join" with a token first')
                reply = await HANDLERS[message["type"]](self.room, self.participant, message)
            except ClassroomError as exc:
                reply = {"type": "error", "code": exc.code, "message": exc.message}
            except Exception:  # a bug answers this message, as signaling.ws does, and ends nothing
                log.exception("an edge viewer's message failed")
                reply = {"type": "error", "code": "internal", "message": "internal error"}
            if reply is not None:
                self.outbox.put(reply | ({"id": request_id} if request_id is not None else {}))


async def serve_viewer(request: web.Request, edges: Edges, origin: str) -> web.WebSocketResponse:
    """A viewer's socket the front sent here, as an edge of the room held at `origin`."""
    client = proxy.client_socket()
    await client.prepare(request)
    request.app[appkeys.SOCKETS].add(client)
    await EdgeViewer(request, client, edges, origin).serve()
    return client
