"""The organisation in Redis: the Store protocol's second implementation, for several machines.

`RedisStore` keeps exactly what `SqliteStore` keeps and answers the same way (the same errors and
messages, records by id, children by id), so the switchover and the admin API do not know which one
they have. `organisation_store` is the one place that chooses between them.

Keys, under a prefix (``kelian:`` by default):

``rec:{kind}:{id}``           a hash: ``body`` (the record as JSON, as SqliteStore keeps it), ``refs``
                              (a JSON list of ``"kind:id"`` it points at, so a rewrite or a delete
                              takes exactly those out of the reverse index), ``parent``, and for a
                              lesson ``ends`` (its ends_at, for the in-session filter).
``ids:{kind}``                a sorted set of ids, every score 0: `all` in id order straight from
                              Redis (equal scores sort by the bytes, as SQLite's ORDER BY id does).
``kids:{kind}:{parent}``      the same for one parent's children (a school's classrooms).
``starts:{kind}:{parent}``    a school's lessons scored by starts_at: see below.
``longest:{kind}:{parent}``   the longest lesson of that school, in seconds: see below.
``refs:{kind}:{id}``          who points at a record, as ``"kind:id"`` members, every score 0: `delete`
                              refuses while it is not empty and names its first three, which sort by
                              kind then id as SqliteStore's ``ORDER BY kind, id`` (no kind is a prefix
                              of another, so ``"kind:id"`` sorts as the pair).
``audit:seq``                 the switchover counter (INCR): numbers only grow, whichever node writes.
``audits``                    the switchover log, a sorted set scored by number (``"number:json"``
                              members), trimmed to MAX_AUDITS. Scored, not a list: two nodes that
                              INCR in one order and push in the other would otherwise misorder it.

Lessons in session at a moment are an interval query (starts_at <= at < ends_at), which one Redis
index cannot answer by itself: a sorted set orders one number. Lessons are scored by starts_at, and
each school remembers its longest lesson (an upper bound: it only grows while the school has
lessons, and is dropped with its last one), so every lesson in session at ``at`` started within
[at - longest, at]; that range is read and the few it holds are kept if ends_at > at. A range up to
``at`` alone would read every lesson of the term so far, and one scored by ends_at every lesson still
to come, where a switchover at midday wants the dozen of this hour.

Every write and every multi-key read is a Lua script rather than WATCH/MULTI/EXEC. A `put` has to
see whether each record it points at is there and write everything in the same instant, whatever the
other nodes do, and a script runs whole with nothing in between: there is nothing to watch, no retry
loop that a busy node (a switchover writing a district's lessons) could starve, and a 10,000-row
import is one round trip rather than a read of every key it touches and a transaction after it. The
price is that Redis serves nothing else while one runs: about 20 microseconds a record, a fifth of a
second for a 10,000-lesson import (far below Redis's 5 s busy-script limit). Redis does not undo a
script that fails, so the put script checks everything before its first write, and Redis refuses a
script for want of memory only at its first write, never halfway. The scripts compute most key names
from the data (an old parent read from the record), so they need one Redis (a primary, with replicas
or Sentinel), not Redis Cluster.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from . import store as base
from .model import ORDER, RECORDS, Lesson, Problem, Record, parse, references
from .store import BatchError, InUse, SqliteStore

# Take a stored record out of every index and reverse index; whether there was one. Shared by the
# put script (a rewrite drops the old parent and references first) and the delete script.
_UNINDEX = """
local function unindex(p, kind, id)
  local key = p .. 'rec:' .. kind .. ':' .. id
  local old = redis.call('HMGET', key, 'parent', 'refs', 'ends')
  if old[1] then
    redis.call('ZREM', p .. 'kids:' .. kind .. ':' .. old[1], id)
    if old[3] then
      local starts = p .. 'starts:' .. kind .. ':' .. old[1]
      redis.call('ZREM', starts, id)
      if redis.call('ZCARD', starts) == 0 then
        redis.call('DEL', p .. 'longest:' .. kind .. ':' .. old[1])
      end
    end
  end
  if old[2] then
    local me = kind .. ':' .. id
    for _, ref in ipairs(cjson.decode(old[2])) do
      redis.call('ZREM', p .. 'refs:' .. ref, me)
    end
  end
  redis.call('ZREM', p .. 'ids:' .. kind, id)
  return redis.call('DEL', key) == 1
end
"""

# ARGV: prefix, the number of references to check, those ("kind:id"), then seven fields a record:
# kind, id, body, parent ("" for none), refs (JSON list of "kind:id"), starts_at and ends_at ("" but
# for lessons). Returns the positions (from 1) of the references that are not there, having written
# nothing; or an empty list, having written every record in order (a later one of the same id wins).
_PUT = (
    _UNINDEX
    + """
local p = ARGV[1]
local checks = tonumber(ARGV[2])
local missing = {}
for i = 1, checks do
  if redis.call('EXISTS', p .. 'rec:' .. ARGV[2 + i]) == 0 then
    missing[#missing + 1] = i
  end
end
if #missing > 0 then
  return missing
end
for r = 3 + checks, #ARGV, 7 do
  local kind, id, body, parent, refs, starts, ends = unpack(ARGV, r, r + 6)
  local key = p .. 'rec:' .. kind .. ':' .. id
  local me = kind .. ':' .. id
  unindex(p, kind, id)
  redis.call('HSET', key, 'body', body, 'refs', refs)
  redis.call('ZADD', p .. 'ids:' .. kind, 0, id)
  for _, ref in ipairs(cjson.decode(refs)) do
    redis.call('ZADD', p .. 'refs:' .. ref, 0, me)
  end
  if parent ~= '' then
    redis.call('HSET', key, 'parent', parent)
    redis.call('ZADD', p .. 'kids:' .. kind .. ':' .. parent, 0, id)
    if ends ~= '' then
      redis.call('HSET', key, 'ends', ends)
      redis.call('ZADD', p .. 'starts:' .. kind .. ':' .. parent, starts, id)
      local longest = p .. 'longest:' .. kind .. ':' .. parent
      local span = tonumber(ends) - tonumber(starts)
      if span > tonumber(redis.call('GET', longest) or '0') then
        redis.call('SET', longest, string.format('%.17g', span))
      end
    end
  end
end
return {}
"""
)

# ARGV: prefix, kind, id. Up to three users ("kind:id") if others point at it (nothing deleted),
# else 1 if it was deleted, 0 if there was none.
_DELETE = (
    _UNINDEX
    + """
local p, kind, id = ARGV[1], ARGV[2], ARGV[3]
local users = redis.call('ZRANGE', p .. 'refs:' .. kind .. ':' .. id, 0, 2)
if #users > 0 then
  return users
end
if unindex(p, kind, id) then
  return 1
end
return 0
"""
)

# KEYS[1]: an index of ids (ids:{kind} or kids:{kind}:{parent}); ARGV: prefix, kind. Their bodies,
# in the index's order, read in one go so that a record written meanwhile is wholly in or out.
_BODIES = """
local p, kind = ARGV[1], ARGV[2]
local bodies = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local body = redis.call('HGET', p .. 'rec:' .. kind .. ':' .. id, 'body')
  if body then
    bodies[#bodies + 1] = body
  end
end
return bodies
"""

# ARGV: prefix, kind, parent, at. The bodies of the parent's lessons with starts_at <= at < ends_at:
# those that started within the longest lesson before `at` (floored: starts_at are whole seconds),
# then filtered by their ends.
_IN_SESSION = """
local p, kind, parent, at = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local longest = redis.call('GET', p .. 'longest:' .. kind .. ':' .. parent)
if not longest then
  return {}
end
local low = string.format('%.17g', math.floor(at - tonumber(longest)))
local bodies = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'starts:' .. kind .. ':' .. parent, low, ARGV[4])) do
  local found = redis.call('HMGET', p .. 'rec:' .. kind .. ':' .. id, 'body', 'ends')
  if found[1] and found[2] and tonumber(found[2]) > at then
    bodies[#bodies + 1] = found[1]
  end
end
return bodies
"""

# ARGV: prefix, the entry as JSON, how many to keep. Its number: the counter, the entry and the trim
# in one step, so no number is handed out without its entry.
_AUDIT = """
local p, keep = ARGV[1], tonumber(ARGV[3])
local n = redis.call('INCR', p .. 'audit:seq')
redis.call('ZADD', p .. 'audits', n, n .. ':' .. ARGV[2])
redis.call('ZREMRANGEBYSCORE', p .. 'audits', '-inf', n - keep)
return n
"""


class RedisUnavailable(ConnectionError):
    """The organisation's Redis does not answer (or refuses us): said at start, not mid-lesson."""


def _shown(url: str) -> str:
    """The URL without its password, for a message or a log line."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


class RedisStore:
    """The organisation in a Redis shared by several kelian nodes (see the module's docstring)."""

    def __init__(self, url: str, prefix: str = "kelian:") -> None:
        self.url = url
        self.prefix = prefix
        # A few quick retries ride out a dropped connection (a Redis restart, a failover); a Redis
        # that refuses connections fails in well under a second, one that does not answer at all
        # within the connect timeout a try, rather than holding a request or the start for ever.
        self._redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=5,
            socket_timeout=10,
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.25), 3),
        )
        self._put = self._redis.register_script(_PUT)
        self._delete = self._redis.register_script(_DELETE)
        self._bodies = self._redis.register_script(_BODIES)
        self._in_session = self._redis.register_script(_IN_SESSION)
        self._audit = self._redis.register_script(_AUDIT)
        self._closed = False

    async def open(self) -> None:
        """Connect, PING and load the scripts now, so that a wrong URL, a password Redis refuses or
        a Redis without scripting fails at start, not mid-lesson."""
        try:
            await self._redis.ping()
            for script in (self._put, self._delete, self._bodies, self._in_session, self._audit):
                await self._redis.script_load(script.script)
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"the organisation's Redis at {_shown(self.url)}: {exc}") from exc

    async def close(self) -> None:
        """Close the connections; safe to call twice."""
        if not self._closed:
            self._closed = True
            await self._redis.aclose()

    async def put(self, records: list[Record]) -> None:
        if not records:
            return
        ordered = sorted(records, key=lambda r: ORDER.index(r.kind))
        batch = {(r.kind, r.id) for r in ordered}
        wanted = [(r, kind, ref) for r in ordered for kind, ref in references(r) if (kind, ref) not in batch]
        checks = list(dict.fromkeys(f"{kind}:{ref}" for _, kind, ref in wanted))
        args: list[str | int] = [self.prefix, len(checks), *checks]
        for r in ordered:
            refs = json.dumps([f"{kind}:{ref}" for kind, ref in references(r)], ensure_ascii=False)
            slot = (str(r.starts_at), str(r.ends_at)) if isinstance(r, Lesson) else ("", "")
            body = json.dumps(r.to_dict(), ensure_ascii=False)
            args += [r.kind, r.id, body, r.parent_id or "", refs, *slot]
        missing = await self._put(args=args)
        if missing:
            gone = {checks[int(i) - 1] for i in missing}
            raise BatchError(
                [
                    Problem(r.kind, 0, r.id, f"{r.kind} {r.id!r} names {kind} {ref!r}, which is not there")
                    for r, kind, ref in wanted
                    if f"{kind}:{ref}" in gone
                ]
            )

    async def get(self, kind: str, record_id: str) -> Record | None:
        if kind not in RECORDS:
            return None
        body = cast(str | None, await self._redis.hget(self._key("rec", kind, record_id), "body"))
        return None if body is None else _record(kind, body)

    async def children(self, kind: str, parent_id: str, at: float | None = None) -> list[Record]:
        if kind not in RECORDS:
            return []
        if at is None:
            bodies = await self._bodies(keys=[self._key("kids", kind, parent_id)], args=[self.prefix, kind])
            return [_record(kind, body) for body in bodies]
        if kind != Lesson.kind or not math.isfinite(at):
            return []  # as SqliteStore: only lessons have times, and no lesson is in session at NaN
        bodies = await self._in_session(args=[self.prefix, kind, parent_id, repr(float(at))])
        return sorted((_record(kind, body) for body in bodies), key=lambda r: r.id)

    async def all(self, kind: str) -> list[Record]:
        if kind not in RECORDS:
            return []
        bodies = await self._bodies(keys=[f"{self.prefix}ids:{kind}"], args=[self.prefix, kind])
        return [_record(kind, body) for body in bodies]

    async def delete(self, kind: str, record_id: str) -> bool:
        if kind not in RECORDS:
            return False
        outcome = await self._delete(args=[self.prefix, kind, record_id])
        if isinstance(outcome, list):
            named = ", ".join(f"{k} {i!r}" for k, i in (user.split(":", 1) for user in outcome))
            raise InUse(f"{kind} {record_id!r} is used by {named}: delete or change them first")
        return bool(outcome)

    async def add_audit(self, entry: dict[str, Any]) -> int:
        return int(await self._audit(args=[self.prefix, json.dumps(entry), base.MAX_AUDITS]))

    async def audits(self, limit: int = 100) -> list[dict[str, Any]]:
        if limit == 0:
            return []
        members = cast(
            list[str], await self._redis.zrevrange(f"{self.prefix}audits", 0, limit - 1 if limit > 0 else -1)
        )
        out = []
        for member in members:
            number, body = member.split(":", 1)
            out.append({"number": int(number), **json.loads(body)})
        return out

    def _key(self, what: str, kind: str, name: str) -> str:
        return f"{self.prefix}{what}:{kind}:{name}"


def _record(kind: str, body: str) -> Record:
    """A stored record, checked again on the way out as SqliteStore does (a hand-edited key)."""
    return parse(kind, json.loads(body))


def organisation_store(database: str, redis_url: str | None) -> SqliteStore | RedisStore:
    """Where the organisation is kept: the Redis the nodes share when there is one (--redis-url),
    else the SQLite file. The only place that decides; the server and the cluster's front call it."""
    return RedisStore(redis_url) if redis_url else SqliteStore(database)


__all__ = ["RedisStore", "RedisUnavailable", "organisation_store"]
