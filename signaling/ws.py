"""The participant WebSocket: join with a token, publish, answer subscriber offers, get events.

Messages are JSON objects with a "type", or msgpack maps when the client asks for the
"kelian.v1.msgpack" subprotocol. A request may carry an "id"; the reply (or error) carries it back.
A malformed message earns an error event and nothing else: the connection and the session stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import Any

import msgpack
from aiohttp import WSCloseCode, WSMsgType, web

from classroom import text
from classroom.errors import ClassroomError
from classroom.limits import Refusals, TokenBucket
from classroom.moderation import Waiter
from classroom.participant import Participant
from classroom.room import Room
from classroom.rooms import Rooms
from classroom.text import for_log
from classroom.tokens import Claims, TokenError, verify

from . import appkeys
from .config import Config
from .limits import PUBLISH_BURST, PUBLISH_RATE, RATE_LIMIT_STRIKES
from .messages import HANDLERS, string

log = logging.getLogger(__name__)

SUBPROTOCOL_JSON = "kelian.v1.json"
SUBPROTOCOL_MSGPACK = "kelian.v1.msgpack"
MAX_MESSAGE = 320 * 1024  # an SDP of MAX_SDP_BYTES and its JSON escapes
# How long a participant whose WebSocket dropped keeps its place and media, waiting to resume.
RECONNECT_GRACE = 20.0
# Set on a request by the cluster's socket hook: the session's media are an edge's (cluster.edge).
MEDIA_ELSEWHERE = "kelian.media_elsewhere"


def join_claims(message: dict[str, Any], config: Config) -> Claims:
    """What the token of a join says, verified: a worker's session, a front that places its room and
    an edge that serves it all read a join so. ClassroomError: no token, or one that does not hold."""
    token = string(message, "token", 8192)
    try:
        return verify(
            token, config.api_key, config.api_secret, room=message.get("room"), max_ttl=config.max_token_ttl
        )
    except TokenError as exc:
        code = "forbidden" if exc.status == 403 else "unauthorized"
        raise ClassroomError(code, exc.message) from None


class Codec:
    """JSON or msgpack framing, chosen once per connection."""

    def __init__(self, binary: bool) -> None:
        self.binary = binary

    def decode(self, msg: Any) -> dict[str, Any]:
        if self.binary:
            if msg.type != WSMsgType.BINARY:
                raise ClassroomError("bad_message", "this connection speaks msgpack: send binary frames")
            try:
                data = msgpack.unpackb(msg.data, raw=False, strict_map_key=True)
            except (ValueError, msgpack.UnpackException, TypeError) as exc:
                raise ClassroomError("bad_message", f"not msgpack: {exc}") from None
        else:
            if msg.type != WSMsgType.TEXT:
                raise ClassroomError("bad_message", "this connection speaks JSON: send text frames")
            try:
                data = text.parse_json(msg.data)
            except ValueError as exc:
                raise ClassroomError("bad_message", f"not JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ClassroomError("bad_message", 'a message is an object with a string "type"')
        return data

    async def send(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        """Send, or drop the message if the peer is already gone: its session is ending anyway.

        "disconnected" is the server ending the session (removed, room closed): the socket closes
        after it, so the client knows not to reconnect."""
        if ws.closed:
            return
        with contextlib.suppress(ConnectionError):
            if self.binary:
                await ws.send_bytes(msgpack.packb(message, use_bin_type=True))
            else:
                await ws.send_str(json.dumps(message, separators=(",", ":"), ensure_ascii=False))
            if message.get("type") == "disconnected":
                await ws.close(code=4000, message=str(message.get("reason", "")).encode()[:120])


class Outbox:
    """What the server has to say to one socket, sent in order by one task of its own.

    Nobody waits on a socket: a broadcast to a room only queues. A client that stops reading (its
    TCP window full) would otherwise hold every broadcast, and with it every join, of its room. One
    whose queue passes `limit` messages, or whose one message takes longer than `timeout` to go out,
    is cut off (its session may still resume from a new socket, as after any network drop).
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        codec: Codec,
        transport: asyncio.BaseTransport | None,
        limit: int,
        timeout: float,
        refusals: Refusals,
    ) -> None:
        self.ws = ws
        self.codec = codec
        self.transport = transport
        self.limit = limit
        self.timeout = timeout
        self.refusals = refusals
        self.queue: deque[dict[str, Any]] = deque()
        self.ready = asyncio.Event()
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    def put(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        if len(self.queue) >= self.limit:
            self._cut(f"{self.limit} messages waiting to be read")
            return
        self.queue.append(message)
        self.ready.set()

    async def _run(self) -> None:
        while not self.closed:
            if not self.queue:
                self.ready.clear()
                await self.ready.wait()
                continue
            message = self.queue.popleft()
            try:
                await asyncio.wait_for(self.codec.send(self.ws, message), self.timeout)
            except TimeoutError:
                self._cut(f"a message took over {self.timeout:g} s to go out")
            except Exception:  # an encoding bug must not end the writer: drop that message
                log.exception("could not send a %s message", for_log(message.get("type")))

    def _cut(self, why: str) -> None:
        self.closed = True
        self.queue.clear()
        self.ready.set()
        self.refusals["slow_client"] += 1
        log.warning("disconnected a client that does not read: %s", why)
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]  # TCP: a close frame would wait too

    def close(self) -> None:
        self.closed = True
        self.ready.set()


class Session:
    """One WebSocket connection, before and after join."""

    def __init__(self, rooms: Rooms, request: web.Request, ws: web.WebSocketResponse, codec: Codec) -> None:
        self.rooms = rooms
        self.config = config = request.app[appkeys.CONFIG]
        self.ws = ws
        self.request = request  # its transport is what a network cut takes away (tests abort it)
        self.codec = codec
        self.participant: Participant | None = None
        self.waiter: Waiter | None = None  # held in a room's waiting room
        self.outbox = Outbox(
            ws, codec, request.transport, config.send_queue, config.send_timeout, rooms.refusals
        )
        self.messages = TokenBucket(config.message_rate, config.message_burst)
        self.publishes = TokenBucket(PUBLISH_RATE, PUBLISH_BURST)
        self.strikes = 0  # messages refused in a row for their rate
        self.media_elsewhere = bool(request.get(MEDIA_ELSEWHERE))
        self._deadline: asyncio.TimerHandle | None = None
        self.expect_join()

    async def send(self, message: dict[str, Any]) -> None:
        """Queue a message for this socket (Outbox); it never waits on the client."""
        self.outbox.put(message)

    def expect_join(self) -> None:
        """A socket that has not joined within the join timeout is closed: it holds a connection
        and a file descriptor, and only a client that means to join needs one."""
        self._deadline = asyncio.get_running_loop().call_later(self.config.join_timeout, self._join_timeout)

    def _join_timeout(self) -> None:
        if self.participant is None and not self.ws.closed:
            self.rooms.refusals["join_timeout"] += 1
            self.outbox.put({"type": "error", "code": "join_timeout", "message": "no join in time"})
            self.outbox.put({"type": "disconnected", "reason": "join_timeout"})

    def admit(self, request_id: object) -> bool:
        """Whether a message may be handled (its rate). A refused request is answered with
        rate_limited (so an SDK's request does not hang), a refused event only the first time in a
        row; past RATE_LIMIT_STRIKES refusals in a row the client is cut off."""
        if self.messages.take():
            self.strikes = 0
            return True
        self.strikes += 1
        self.rooms.refusals["rate_limited"] += 1
        if self.strikes == 1 or request_id is not None:
            message = f"more than {self.config.message_rate:g} messages a second: slow down"
            error = {"type": "error", "code": "rate_limited", "message": message}
            self.outbox.put(error | ({"id": request_id} if request_id is not None else {}))
        if self.strikes >= RATE_LIMIT_STRIKES:
            self.outbox.put({"type": "disconnected", "reason": "rate_limited"})
        return False

    async def handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        request_id = message.get("id")
        reply: dict[str, Any] | None
        if kind == "ping":
            reply = {"type": "pong"}
        elif kind == "join":
            reply = await self.join(message)
        elif kind == "leave" and self.waiter is not None:
            await self._stop_waiting()
            reply = {"type": "left"}
        else:
            participant = self.participant
            if participant is None or participant.closed or participant.channel is not self:
                self.participant = None
                if self.waiter is not None:
                    raise ClassroomError("not_joined", "you are in the waiting room: a teacher admits you")
                raise ClassroomError("not_joined", 'send "join" with a token first')
            room = participant.room
            if kind in ("publish", "unpublish") and not self.publishes.take():
                self.rooms.refusals["rate_limited"] += 1
                raise ClassroomError("rate_limited", f"more than {PUBLISH_RATE:g} publish changes a second")
            if kind == "leave":
                await room.leave(participant)
                self.participant = None
                self.expect_join()
                reply = {"type": "left"}
            elif kind in HANDLERS:
                reply = await HANDLERS[kind](room, participant, message)
            else:
                raise ClassroomError("unknown_type", f"unknown message type {kind!r}")
        if reply is not None:
            if request_id is not None:
                reply["id"] = request_id
            await self.send(reply)
        if kind == "join" and self.participant is not None:
            await self._start_media(resumed=bool(reply and reply.get("resumed")))

    async def _start_media(self, resumed: bool) -> None:
        """Only after "joined": the client must know the room before the first subscriber offer."""
        participant = self.participant
        assert participant is not None
        if not resumed:
            participant.room.subscribe_all(participant)
        await participant.room.negotiate(participant)

    async def join(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.participant is not None:
            raise ClassroomError("already_joined", "this connection has joined already")
        if self.waiter is not None:
            raise ClassroomError("already_joined", "this connection waits in the waiting room")
        claims = join_claims(message, self.config)
        room = await self.rooms.open(claims.room, claims.kind)
        resumed = self._resumable(room, claims, message.get("resume"))
        if resumed is not None and resumed.media_elsewhere != self.media_elsewhere:
            resumed = None  # its media were an edge's and are to be here now, or the reverse: afresh
        if resumed is not None:
            await room.resume(resumed, self.send, self)
            participant = resumed
        elif room.moderation.must_wait(claims):
            return await self._wait(room, claims)
        else:
            participant = await room.join(claims, self.send)
            participant.channel = self
        self._joined(participant)
        return self._joined_reply(participant, resumed is not None)

    def _joined(self, participant: Participant) -> None:
        self.participant = participant
        participant.media_elsewhere = self.media_elsewhere
        if self._deadline is not None:
            self._deadline.cancel()

    @staticmethod
    def _joined_reply(participant: Participant, resumed: bool) -> dict[str, Any]:
        room = participant.room
        return {
            "type": "joined",
            "participant": participant.info(),
            "grants": participant.grants.to_dict(),  # what it may do now; moderators change it
            "room": room.snapshot(participant),
            "lesson": room.lesson(participant),
            "resumed": resumed,
        }

    async def _wait(self, room: Room, claims: Claims) -> dict[str, Any]:
        """Hold the join in the room's waiting room; "joined" follows when a moderator admits it."""
        room.check_join(claims)
        waiter = Waiter(claims, int(time.time() * 1000), self._admitted, self._turned_away, self.send)
        position = await room.moderation.wait(waiter)
        self.waiter = waiter
        if self._deadline is not None:
            self._deadline.cancel()
        return {"type": "waiting_room", "room": room.name, "position": position}

    async def _admitted(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None or self.ws.closed:
            return
        room = await self.rooms.open(waiter.claims.room)
        try:
            participant = await room.join(waiter.claims, self.send)
        except ClassroomError as exc:
            self.outbox.put({"type": "error", "code": exc.code, "message": exc.message})
            self.outbox.put({"type": "disconnected", "reason": exc.code})
            return
        participant.channel = self
        self._joined(participant)
        await self.send(self._joined_reply(participant, False))
        await self._start_media(resumed=False)

    async def _turned_away(self, reason: str) -> None:
        self.waiter = None
        self.outbox.put({"type": "disconnected", "reason": reason})

    async def _stop_waiting(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            room = self.rooms.rooms.get(waiter.claims.room)
            if room is not None:
                await room.moderation.stop_waiting(waiter)
            self.expect_join()

    @staticmethod
    def _resumable(room: Room, claims: Claims, sid: object) -> Participant | None:
        """The session a reconnecting client asks to resume, if it is still there and is its own.

        Anything else (unknown sid, grace period over, another identity's session) is a fresh join:
        the client sees "resumed": false and publishes again."""
        if not isinstance(sid, str):
            return None
        participant = room.participants.get(sid)
        if participant is None or participant.closed or participant.kind != "websocket":
            return None
        return participant if participant.identity == claims.identity else None

    async def close(self) -> None:
        """The socket is gone without a "leave": keep the participant for a while, it may resume."""
        if self._deadline is not None:
            self._deadline.cancel()
        self.outbox.close()
        await self._stop_waiting()
        participant, self.participant = self.participant, None
        if participant is not None and participant.channel is self and not participant.closed:
            participant.room.detach(participant, RECONNECT_GRACE)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    hook = request.app.get(appkeys.SOCKET_HOOK)
    if hook is not None and (served := await hook(request)) is not None:
        return served
    ws = web.WebSocketResponse(
        protocols=(SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK), max_msg_size=MAX_MESSAGE, heartbeat=20.0
    )
    await ws.prepare(request)
    request.app[appkeys.SOCKETS].add(ws)
    codec = Codec(binary=ws.ws_protocol == SUBPROTOCOL_MSGPACK or request.query.get("format") == "msgpack")
    session = Session(request.app[appkeys.ROOMS], request, ws, codec)
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
            request_id = None
            try:
                message = codec.decode(msg)
                request_id = message.get("id")
                if not session.admit(request_id):
                    continue
                await session.handle(message)
            except ClassroomError as exc:
                error = {"type": "error", "code": exc.code, "message": exc.message}
                if request_id is not None:
                    error["id"] = request_id
                await session.send(error)
            except Exception:
                log.exception("signaling message failed")
                error = {"type": "error", "code": "internal", "message": "internal error"}
                await session.send(error | ({"id": request_id} if request_id is not None else {}))
    finally:
        await session.close()
    return ws


async def close_all(app: web.Application) -> None:
    """On shutdown: close every socket now (1001 going away) rather than wait for clients to hang up.

    The clients reconnect to whichever node replaces this one; waiting would hold the shutdown for
    aiohttp's full timeout."""
    sockets = app[appkeys.SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
