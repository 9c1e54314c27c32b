"""Many machines: the nodes of a kelian cluster, and which node holds which room, in Redis.

Each node (a front and its workers, cluster.front) announces itself every second under a key that
expires after NODE_TTL seconds: a node that stops (killed, cut off) is gone from the cluster
within that time, with nothing to clean up. A room belongs to one node, claimed in one atomic step
(a Lua script, so two nodes asked for the same new room at once cannot both take it); a room whose
node is gone is claimed afresh by the next node that needs it, so its participants, rejoining,
find it again on a live node. A node being drained takes no new room.

The node that receives a participant, a WHIP or WHEP request or an admin call for a room held by
another node relays it there (cluster.front), over the other node's front as any client would
reach it; only the media goes straight to the holding node's worker, as its SDP says.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

HEARTBEAT = 1.0  # seconds between a node's announcements
NODE_TTL = 3.0  # seconds after its last announcement that a node counts as gone

# KEYS[1] the room's key; ARGV[1] the node key prefix, ARGV[2] the node taking it, ARGV[3] the rooms
# counter prefix. The room's node if it is alive, else the given one's (claimed now), whose count of
# rooms goes up: what the next claim's "least loaded" sees at once. One script: atomic.
CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[1] .. owner) == 1 then
    return owner
end
if owner then
    redis.call('DECR', ARGV[3] .. owner)
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('INCR', ARGV[3] .. ARGV[2])
redis.call('EXPIRE', ARGV[3] .. ARGV[2], 86400)
return ARGV[2]
"""
# KEYS[1] the room's key; ARGV[1] the node letting go (only its own claim goes), ARGV[2] the counter
# prefix.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DECR', ARGV[2] .. ARGV[1])
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass
class NodeInfo:
    id: str
    url: str  # where other nodes reach its front
    load: int = 0  # media transports on all its workers
    draining: bool = False
    rooms: int = 0  # held now (from the cluster's count, not its announcement)


RELAYED = "X-Kelian-Relayed"  # a node's request to another: served there, never relayed again


def relay_mark(api_secret: str) -> str:
    """What a node puts in RELAYED: only nodes with the cluster's API secret can make it."""
    return hmac.new(api_secret.encode(), b"kelian relay", hashlib.sha256).hexdigest()


class NodeRegistry:
    def __init__(
        self,
        url: str,
        node: NodeInfo,
        load: Callable[[], int] = lambda: 0,
        held: Callable[[], list[str]] = list,
        prefix: str = "kelian:",
    ) -> None:
        self.redis: aioredis.Redis = aioredis.from_url(url, decode_responses=True)
        self.node = node
        self.load = load  # media transports of this node now
        self.held = held  # the rooms this node holds now
        self._claims = asyncio.Lock()  # a reassertion and a drain never interleave
        self.prefix = prefix
        self._claim = self.redis.register_script(CLAIM)
        self._release = self.redis.register_script(RELEASE)
        self._beat: asyncio.Task[None] | None = None

    def _node_key(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def _room_key(self, room: str) -> str:
        return f"{self.prefix}room:{room}"

    @property
    def _members_key(self) -> str:
        return f"{self.prefix}nodes"

    def _count_key(self, node_id: str) -> str:
        return f"{self.prefix}rooms:{node_id}"

    async def start(self) -> None:
        """Announce this node now (a wrong URL fails here, at start), then every HEARTBEAT."""
        await self.announce()
        self._beat = asyncio.create_task(self._beating())

    async def announce(self) -> None:
        self.node.load = self.load()
        info = json.dumps(self.node.__dict__)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._node_key(self.node.id), info, px=int(NODE_TTL * 1000))
            pipe.sadd(self._members_key, self.node.id)  # where nodes() looks, rather than a SCAN
            await pipe.execute()

    async def _beating(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.announce()
                await self.reassert()
            except (aioredis.RedisError, OSError) as exc:  # Redis restarting: announce again next beat
                log.warning("node %s: heartbeat failed: %s", self.node.id, exc)

    async def reassert(self) -> None:
        """Claim again the rooms this node holds: a Redis that restarted without them (no
        persistence) learns them back within a beat, so no other node opens a second copy."""
        async with self._claims:
            held = self.held()
            if not held or self.node.draining:
                return
            args = [self._node_key(""), self.node.id, self._count_key("")]
            async with self.redis.pipeline(transaction=False) as pipe:
                for room in held:
                    await self._claim(keys=[self._room_key(room)], args=args, client=pipe)
                owners = await pipe.execute()
        for room, owner in zip(held, owners, strict=True):
            if owner != self.node.id:
                log.error("room %s is open here and on node %s: its participants should rejoin", room, owner)

    async def stop(self) -> None:
        """Leave the cluster at once (a clean stop), rather than after NODE_TTL."""
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        with contextlib.suppress(aioredis.RedisError, OSError):
            await self.redis.delete(self._node_key(self.node.id))
            await self.redis.srem(self._members_key, self.node.id)
        await self.redis.aclose()

    async def nodes(self) -> dict[str, NodeInfo]:
        """The live nodes, by id."""
        found: dict[str, NodeInfo] = {}
        members = sorted(str(m) for m in await self.redis.smembers(self._members_key))
        announcements = await self.redis.mget([self._node_key(m) for m in members]) if members else []
        for member, raw in zip(members, announcements, strict=True):
            if raw is None:  # its announcement lapsed: gone from the cluster
                await self.redis.srem(self._members_key, member)
                continue
            with contextlib.suppress(ValueError, TypeError):
                info = NodeInfo(**json.loads(raw))
                found[info.id] = info
        if found:
            counts = await self.redis.mget([self._count_key(n) for n in found])
            for info, count in zip(found.values(), counts, strict=True):
                info.rooms = int(count or 0)
        return found

    async def claim(self, room: str) -> NodeInfo:
        """The node of `room`: the one holding it, or, if none alive does, the least-loaded live node
        that is not draining (this one if it is the least loaded), which takes it."""
        holder = await self.locate(room)
        if holder is not None:
            return holder
        nodes = await self.nodes()
        open_nodes = [n for n in nodes.values() if not n.draining] or [self.node]
        chosen = min(open_nodes, key=lambda n: (n.load, n.rooms, n.id != self.node.id, n.id))
        owner = await self._claim(
            keys=[self._room_key(room)], args=[self._node_key(""), chosen.id, self._count_key("")]
        )
        return nodes.get(owner) or (self.node if owner == self.node.id else chosen)

    async def claim_many(self, rooms: list[str]) -> dict[str, NodeInfo]:
        """The node of each of `rooms`, as `claim` gives it, in one round trip for all (a
        switchover's lessons). Rooms placed at once are empty yet: they are spread by how many each
        node holds, their weight (the transports) comes later."""
        nodes = await self.nodes()
        open_nodes = [n for n in nodes.values() if not n.draining] or [self.node]
        held = {n.id: n.rooms for n in open_nodes}
        args = [self._node_key(""), "", self._count_key("")]
        async with self.redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                chosen = min(open_nodes, key=lambda n: (held[n.id], n.load, n.id != self.node.id, n.id))
                held[chosen.id] += 1
                args[1] = chosen.id
                await self._claim(keys=[self._room_key(room)], args=list(args), client=pipe)
            owners = await pipe.execute()
        everyone = nodes | {self.node.id: self.node}
        return {room: everyone.get(owner) or self.node for room, owner in zip(rooms, owners, strict=True)}

    async def locate(self, room: str) -> NodeInfo | None:
        """The live node holding `room`, if any."""
        owner = await self.redis.get(self._room_key(room))
        if owner is None:
            return None
        if owner == self.node.id:
            return self.node
        raw = await self.redis.get(self._node_key(str(owner)))
        if raw is None:
            return None
        try:
            return NodeInfo(**json.loads(raw))
        except (ValueError, TypeError):
            return None

    async def drain(self, rooms: list[str]) -> None:
        """Take no new room and give these up, at once for the whole cluster to see."""
        async with self._claims:
            self.node.draining = True
            await self.announce()
            for room in rooms:
                await self.release(room)

    async def release(self, room: str) -> None:
        """This node no longer holds `room`."""
        with contextlib.suppress(aioredis.RedisError, OSError):
            await self._release(keys=[self._room_key(room)], args=[self.node.id, self._count_key("")])
