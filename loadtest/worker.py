"""The processes of a load run: one for the participants that only publish, and workers that each
drive a share of those that subscribe (and may publish too) on their own asyncio loop.

Each peer comes as a plain dict, the plan's participant with its token: ``identity``, ``token``,
``camera`` (a name, see loadtest.options.Participant, or None), ``layers`` (its layers as
[rid, width, height, bit/s], low to high), ``audio``; a subscribing one also ``at`` (seconds after the
start), ``size`` (its layout's), ``watch``, ``videos`` (the video tracks it waits for) and ``probe``
(the [publisher identity, kind] pairs whose track it decodes, see Plan.probes).

A worker talks to the parent over a multiprocessing pipe, in plain dicts: ``ready`` once it is loaded
(the publishers: once they publish, with their track ids), then it waits for the parent's go, which
carries the wall-clock start and end of the run (publishers wait for ``stop`` instead), and at the end
it sends ``done`` with each peer's ``stats()``, its join failures and its own CPU use. A subscribers'
worker also sends, every PROGRESS_EVERY seconds of the run, a small ``progress`` message: its peers
joined so far, and the packets and freezes they have received so far (counters it already keeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from .clips import Layer
from .peer import Peer, prepare_clips
from .procstat import CpuClock, rss_bytes

__all__ = ["publishers_main", "subscribers_main"]

JOIN_TIMEOUT = 10.0  # seconds for one subscriber to connect and receive every video track
CLOSE_TIMEOUT = 5.0
CLOSE_WAIT = 60.0  # for the parent's "close": as long as it waits for any worker's figures
GO_TIMEOUT = 120.0  # a worker whose parent never says go gives up
PROGRESS_EVERY = 1.0  # seconds between two progress messages
SETTLE_EVERY = 0.25  # seconds between two looks for tracks published after a subscriber joined


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


def _layers(spec: dict[str, Any]) -> tuple[Layer, ...]:
    """The layers of the peer's camera, low to high (the plan's, see Plan.layers); () for none."""
    return tuple(Layer(str(rid), int(w), int(h), int(bitrate)) for rid, w, h, bitrate in spec["layers"])


def _prepare(peers: list[dict[str, Any]]) -> None:
    """Encode every clip these peers will publish, before the run (once per process)."""
    for peer in peers:
        if peer["layers"] or peer["audio"]:
            prepare_clips(_layers(peer), peer["audio"])


async def _publish(peer: Peer, spec: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Publish what the spec says; the tracks the server gave it: id -> publisher and kind."""
    layers = _layers(spec) or None
    reply = await peer.publish(
        video=layers is not None,
        audio=spec["audio"],
        simulcast=layers is not None and len(layers) > 1,
        layers=layers,
        timeout=JOIN_TIMEOUT,
    )
    return {
        track["id"]: {"publisher": spec["identity"], "kind": str(track.get("kind", ""))}
        for track in reply.get("tracks", [])
        if isinstance(track, dict) and isinstance(track.get("id"), str)
    }


async def _publishers(spec: dict[str, Any], pipe: Connection) -> None:
    clock = CpuClock()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    peers: list[Peer] = []
    names: list[str] = []
    failures: list[dict[str, Any]] = []
    tracks: dict[str, dict[str, str]] = {}
    try:
        for one in spec["peers"]:
            peer = Peer(spec["url"], one["token"], host=spec["bind"], session=session)
            try:
                await peer.connect(JOIN_TIMEOUT)
                tracks |= await _publish(peer, one)
            except Exception as exc:
                failures.append({"identity": one["identity"], "error": _error(exc)})
                await _close_all([peer])
                continue
            peers.append(peer)
            names.append(one["identity"])
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
    """One subscriber's join: connect, publish if it does, receive every video track the others
    publish, and size each for the layout (or turn it off, if the participant does not watch it)."""

    def __init__(self, spec: dict[str, Any], peer: Peer, at: float, last_join: float, steady: float) -> None:
        self.spec, self.identity, self.peer, self.at = spec, spec["identity"], peer, at
        # wall-clock times: the last subscriber's join (the others' tracks may come until then) and
        # the start of the steady part of the run (freezes before it are the joins')
        self.last_join, self.steady = last_join, steady
        self.started = 0.0  # monotonic, when connecting began
        self.join_ms: float | None = None
        self.error: str | None = None
        self.published: dict[str, dict[str, str]] = {}
        self.hidden: set[str] = set()  # video tracks it turned off: not reported
        self.settled: set[str] = set()  # video tracks it sized or turned off
        self.probed: set[str] = set()

    async def run(self) -> None:
        """Join; then, until the run ends, size (or turn off) and probe the tracks published later."""
        videos = self.spec["videos"]
        await asyncio.sleep(max(0.0, self.at - time.time()))
        self.started = time.monotonic()
        try:
            await self.peer.connect(JOIN_TIMEOUT)
            if self.spec["layers"] or self.spec["audio"]:
                self.published = await _publish(self.peer, self.spec)
            # the lecturer of dual-teacher waits for every classroom's camera: they join after it
            deadline = self.started + max(0.0, self.last_join - time.time()) + JOIN_TIMEOUT
            while (seen := len(self._videos(watched=True))) < videos:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{seen} of {videos} video tracks after {JOIN_TIMEOUT:g} s")
                await asyncio.sleep(0.05)
            await self._settle()
            self.join_ms = round((time.monotonic() - self.started) * 1000, 1)
        except asyncio.CancelledError:
            self.error = "still joining when the run ended"
            raise
        except Exception as exc:
            self.error = _error(exc)
            return
        while True:  # a classroom that joins after this one: its camera is turned off here too
            await asyncio.sleep(SETTLE_EVERY)
            await self._settle()

    def _videos(self, watched: bool = False) -> list[dict[str, Any]]:
        watch = set(self.spec["watch"])
        videos = [t for t in self.peer.tracks() if t.get("kind") == "video"]
        return [t for t in videos if not watch or t.get("identity") in watch] if watched else videos

    async def _settle(self) -> None:
        """Size every video track not sized yet for the layout, or turn it off if not watched; probe
        the tracks this participant is the probe of."""
        (width, height), watch = self.spec["size"], set(self.spec["watch"])
        for track in self._videos():
            track_id = str(track["id"])
            if track_id in self.settled:
                continue
            self.settled.add(track_id)
            if watch and track.get("identity") not in watch:
                self.hidden.add(track_id)
                await self.peer.set_track_settings(track_id, 0, 0, enabled=False)
            else:
                await self.peer.set_track_settings(track_id, width, height)
        self.probe()

    def probe(self) -> None:
        """Decode the tracks this participant is the probe of. The room announces a publisher's tracks
        before the offer that carries them, so every one announced so far is known."""
        wanted = {(str(who), str(kind)) for who, kind in self.spec.get("probe", ())}
        for info in list(self.peer.track_infos.values()):
            track_id = str(info.get("id"))
            if track_id in self.probed or track_id in self.hidden:
                continue
            if (info.get("identity"), info.get("kind")) in wanted:
                self.probed.add(track_id)
                self.peer.probe(track_id)

    def stats(self) -> dict[str, Any]:
        """The peer's stats, with what only the worker knows: the tracks it published, seconds each
        track was received, the time from starting to join to its first keyframe, the time since its
        last frame (``idle_ms``) and whether the server said it was unpublished."""
        out = {"identity": self.identity, "join_ms": self.join_ms, "error": self.error, **self.peer.stats()}
        out["published"] = self.published
        out["max_audio_streams"] = self.peer.room.get("max_audio_streams")
        subscriber = self.peer.subscriber
        if subscriber is not None:
            now = time.monotonic()
            steady = now - (time.time() - self.steady)  # the steady part's start, on the monotonic clock
            unpublished = {
                e["track"].get("id")
                for e in self.peer.events
                if e.get("type") == "track_unpublished" and isinstance(e.get("track"), dict)
            }
            for track_id in self.hidden:
                out["subscriber"]["tracks"].pop(track_id, None)
            for stream in subscriber.by_mid.values():
                track = out["subscriber"]["tracks"].get(stream.track_id)
                if track is None:
                    continue
                track["seconds"] = round(now - stream.subscribed, 3)
                track["idle_ms"] = round((now - stream.last_frame) * 1000, 1) if stream.last_frame else None
                track["steady_freezes"] = sum(1 for at in stream.freeze_times if at >= steady)
                track["unpublished"] = stream.track_id in unpublished
                if stream.first_keyframe is not None and self.started:
                    first = stream.subscribed + stream.first_keyframe - self.started
                    track["first_frame_ms"] = round(first * 1000, 1)
        return out


def _progress(joiners: list[Joiner]) -> dict[str, Any]:
    """What the parent shows while the run goes: cheap sums over counters the streams keep."""
    packets = freezes = 0
    for j in joiners:
        subscriber = j.peer.subscriber
        for stream in subscriber.by_mid.values() if subscriber is not None else ():
            packets += stream.packets
            freezes += stream.freezes
    joined = sum(1 for j in joiners if j.join_ms is not None)
    return {"event": "progress", "joined": joined, "packets": packets, "freezes": freezes}


async def _report_progress(joiners: list[Joiner], pipe: Connection) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        with contextlib.suppress(OSError):  # the parent may be gone: the run's end still comes
            pipe.send(_progress(joiners))


async def _subscribers(spec: dict[str, Any], pipe: Connection) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    joiners: list[Joiner] = []
    try:
        await asyncio.to_thread(_prepare, spec["peers"])
        pipe.send({"event": "ready"})
        go = await _recv(pipe, GO_TIMEOUT)
        if go is None or go.get("event") != "go":
            return
        start, end = float(go["start_at"]), float(go["end_at"])
        last_join, steady = float(go["last_join_at"]), float(go["steady_at"])
        joiners = [
            Joiner(
                one,
                Peer(
                    spec["url"],
                    one["token"],
                    host=spec["bind"],
                    session=session,
                    transport_cc=spec["transport_cc"],
                ),
                start + one["at"],
                last_join,
                steady,
            )
            for one in spec["peers"]
        ]
        await asyncio.sleep(max(0.0, start - time.time()))
        clock = CpuClock()
        tasks = [asyncio.create_task(j.run()) for j in joiners]
        progress = asyncio.create_task(_report_progress(joiners, pipe))
        await asyncio.wait(tasks, timeout=max(0.0, end - time.time()))
        await asyncio.sleep(max(0.0, end - time.time()))
        progress.cancel()
        for task in [*tasks, progress]:
            task.cancel()
        await asyncio.gather(*tasks, progress, return_exceptions=True)
        stats = [j.stats() for j in joiners]
        cpu = clock.read() | {"rss_mb": round(rss_bytes() / 2**20, 1)}
        failures = [{"identity": j.identity, "error": j.error} for j in joiners if j.error]
        pipe.send({"event": "done", "peers": stats, "failures": failures, "cpu": cpu})
        # Leave only when every worker has its figures: our publishing peers leaving would end their
        # tracks for the other workers' subscribers an instant before those take theirs.
        await _recv(pipe, CLOSE_WAIT)
    finally:
        await _close_all([j.peer for j in joiners])
        await session.close()
