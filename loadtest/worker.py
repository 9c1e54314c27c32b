"""The processes of a load run: one for the publishers, and workers that each drive a share of the
subscribers on their own asyncio loop.

A worker talks to the parent over a multiprocessing pipe, in plain dicts: ``ready`` once it is loaded
(the publishers: once they publish, with their track ids), then it waits for the parent's go, which
carries the wall-clock start and end of the run (publishers wait for ``stop`` instead), and at the end
it sends ``done`` with each peer's ``stats()``, its join failures and its own CPU use.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from .peer import Peer
from .procstat import CpuClock, rss_bytes

__all__ = ["publishers_main", "subscribers_main"]

JOIN_TIMEOUT = 10.0  # seconds for one subscriber to connect and receive every video track
CLOSE_TIMEOUT = 5.0
GO_TIMEOUT = 120.0  # a worker whose parent never says go gives up


def publishers_main(spec: dict[str, Any], pipe: Connection) -> None:
    _run(lambda: _publishers(spec, pipe))


def subscribers_main(spec: dict[str, Any], pipe: Connection) -> None:
    _run(lambda: _subscribers(spec, pipe))


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _recv(pipe: Connection, timeout: float) -> dict[str, Any] | None:
    """The parent's next message, or None after `timeout` seconds (without blocking the loop)."""
    ready = await asyncio.to_thread(pipe.poll, max(0.0, timeout))
    return pipe.recv() if ready else None


async def _close_all(peers: list[Peer]) -> None:
    async def close(peer: Peer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(peer.close(), CLOSE_TIMEOUT)

    await asyncio.gather(*(close(p) for p in peers))


async def _publishers(spec: dict[str, Any], pipe: Connection) -> None:
    clock = CpuClock()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    peers: list[Peer] = []
    names: list[str] = []
    failures: list[dict[str, Any]] = []
    tracks: dict[str, dict[str, str]] = {}
    try:
        for identity, token in spec["peers"]:
            peer = Peer(spec["url"], token, host=spec["bind"], session=session)
            try:
                await peer.connect(JOIN_TIMEOUT)
                reply = await peer.publish(
                    video=True, audio=spec["audio"], simulcast=spec["simulcast"], timeout=JOIN_TIMEOUT
                )
            except Exception as exc:
                failures.append({"identity": identity, "error": _error(exc)})
                await _close_all([peer])
                continue
            peers.append(peer)
            names.append(identity)
            for track in reply.get("tracks", []):
                if isinstance(track, dict) and isinstance(track.get("id"), str):
                    tracks[track["id"]] = {"publisher": identity, "kind": str(track.get("kind", ""))}
        pipe.send({"event": "ready", "tracks": tracks, "failures": failures})
        clock = CpuClock()  # from here: encoding the clips is not the run's cost
        await _recv(pipe, spec["stop_by"] - time.time())  # "stop", or the bound
        stats = [{"identity": i, **p.stats()} for i, p in zip(names, peers, strict=True)]
        cpu = clock.read() | {"rss_mb": round(rss_bytes() / 2**20, 1)}
        await _close_all(peers)
        pipe.send({"event": "done", "peers": stats, "failures": failures, "cpu": cpu})
    finally:
        await _close_all(peers)
        await session.close()


class Joiner:
    """One subscriber's join: connect, receive every published video track, size each for the layout."""

    def __init__(self, identity: str, peer: Peer, at: float) -> None:
        self.identity, self.peer, self.at = identity, peer, at
        self.started = 0.0  # monotonic, when connecting began
        self.join_ms: float | None = None
        self.error: str | None = None

    async def run(self, videos: int, size: tuple[int, int]) -> None:
        await asyncio.sleep(max(0.0, self.at - time.time()))
        self.started = time.monotonic()
        try:
            await self.peer.connect(JOIN_TIMEOUT)
            deadline = self.started + JOIN_TIMEOUT
            while len(video := [t for t in self.peer.tracks() if t.get("kind") == "video"]) < videos:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(video)} of {videos} video tracks after {JOIN_TIMEOUT:g} s")
                await asyncio.sleep(0.05)
            for track in video:
                await self.peer.set_track_settings(str(track["id"]), *size)
            self.join_ms = round((time.monotonic() - self.started) * 1000, 1)
        except asyncio.CancelledError:
            self.error = "still joining when the run ended"
            raise
        except Exception as exc:
            self.error = _error(exc)

    def stats(self) -> dict[str, Any]:
        """The peer's stats, with what only the worker knows: seconds each track was received, and the
        time from starting to join to its first keyframe."""
        out = {"identity": self.identity, "join_ms": self.join_ms, "error": self.error, **self.peer.stats()}
        subscriber = self.peer.subscriber
        if subscriber is not None:
            now = time.monotonic()
            for stream in subscriber.by_mid.values():
                track = out["subscriber"]["tracks"].get(stream.track_id)
                if track is None:
                    continue
                track["seconds"] = round(now - stream.subscribed, 3)
                if stream.first_keyframe is not None and self.started:
                    first = stream.subscribed + stream.first_keyframe - self.started
                    track["first_frame_ms"] = round(first * 1000, 1)
        return out


async def _subscribers(spec: dict[str, Any], pipe: Connection) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    joiners: list[Joiner] = []
    try:
        pipe.send({"event": "ready"})
        go = await _recv(pipe, GO_TIMEOUT)
        if go is None or go.get("event") != "go":
            return
        start, end = float(go["start_at"]), float(go["end_at"])
        joiners = [
            Joiner(identity, Peer(spec["url"], token, host=spec["bind"], session=session), start + offset)
            for identity, token, offset in spec["peers"]
        ]
        await asyncio.sleep(max(0.0, start - time.time()))
        clock = CpuClock()
        width, height = spec["size"]
        tasks = [asyncio.create_task(j.run(spec["videos"], (width, height))) for j in joiners]
        await asyncio.wait(tasks, timeout=max(0.0, end - time.time()))
        await asyncio.sleep(max(0.0, end - time.time()))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stats = [j.stats() for j in joiners]
        cpu = clock.read() | {"rss_mb": round(rss_bytes() / 2**20, 1)}
        failures = [{"identity": j.identity, "error": j.error} for j in joiners if j.error]
        await _close_all([j.peer for j in joiners])
        pipe.send({"event": "done", "peers": stats, "failures": failures, "cpu": cpu})
    finally:
        await _close_all([j.peer for j in joiners])
        await session.close()
