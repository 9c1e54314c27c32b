"""Many light peers (loadtest.peer) in a process of their own, driven over stdin and stdout.

    python crowd.py            reads one JSON line: {"url": ..., "peers": [{"token": ..., "audio": bool,
                               "video": bool, "expect": tracks}]}

It connects every peer (those with "audio" publish a microphone, with "video" a camera), waits
until each receives the `expect` tracks its lesson sends it, and prints {"event": "ready"}. Then,
one command a line:

    mark      note each peer's freezes so far, and print {"event": "marked"}
    report    print {"event": "report", "peers": [...]}: per peer its identity, whether it is still
              connected, the "mode" events it got, and its received audio since the mark (packets,
              freezes: gaps over 200 ms), and "stalls": how many times since the mark this process
              itself did not run for over STALL seconds (a machine shared with the server and the
              rest of a test suite): a gap then is the harness's, not the server's
    close     leave and exit

A process of its own so that the clients' CPU is not the server's, as with kelian loadtest.
Loopback only: the URL is the test's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp

from loadtest.peer import Peer

BATCH = 10  # peers joining at once
STALL = 0.1  # seconds this process's loop may be late before it counts as stalled


class Stalls:
    """Counts the times this process's event loop ran more than STALL late."""

    def __init__(self) -> None:
        self.count = 0

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.02)
            if loop.time() - before - 0.02 > STALL:
                self.count += 1


def audio_in(peer: Peer) -> dict[str, int]:
    """Packets and freezes over every audio track the peer receives."""
    side = peer.stats()["subscriber"] or {"tracks": {}}
    tracks = [t for t in side["tracks"].values()]
    return {
        "packets": sum(int(t["packets"]) for t in tracks),
        "freezes": sum(int(t["freezes"]) for t in tracks),
        "tracks": len(tracks),
    }


async def main() -> None:
    spec = json.loads(sys.stdin.readline())
    session = aiohttp.ClientSession()
    peers = [Peer(spec["url"], p["token"], session=session) for p in spec["peers"]]
    try:
        for start in range(0, len(peers), BATCH):
            await asyncio.gather(*(p.connect(30) for p in peers[start : start + BATCH]))
        for peer, p in zip(peers, spec["peers"], strict=True):
            if p.get("audio") or p.get("video"):
                await peer.publish(video=bool(p.get("video")), audio=bool(p.get("audio")), simulcast=False)
        for peer, p in zip(peers, spec["peers"], strict=True):
            if p.get("expect"):
                await peer.wait_for_tracks(int(p["expect"]), timeout=60)
        print(json.dumps({"event": "ready"}), flush=True)
        marks: dict[int, dict[str, int]] = {}
        loop = asyncio.get_running_loop()
        stalls = Stalls()
        watcher = asyncio.create_task(stalls.watch())
        stalls_at_mark = 0
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "mark":
                marks = {id(p): audio_in(p) for p in peers}
                stalls_at_mark = stalls.count
                print(json.dumps({"event": "marked"}), flush=True)
            elif line == "report":
                report: list[dict[str, Any]] = []
                for peer in peers:
                    now, then = audio_in(peer), marks.get(id(peer), {"packets": 0, "freezes": 0})
                    report.append(
                        {
                            "identity": peer.participant.get("identity"),
                            "disconnected": peer.disconnected,
                            "modes": [e for e in peer.events if e["type"] == "mode"],
                            "packets": now["packets"] - then["packets"],
                            "freezes": now["freezes"] - then["freezes"],
                            "tracks": now["tracks"],
                            "stalls": stalls.count - stalls_at_mark,
                        }
                    )
                print(json.dumps({"event": "report", "peers": report}), flush=True)
            else:  # "close", or the test went away
                watcher.cancel()
                break
    finally:
        for peer in peers:
            with contextlib.suppress(Exception):
                await peer.close()
        await session.close()


if __name__ == "__main__":
    asyncio.run(main())
