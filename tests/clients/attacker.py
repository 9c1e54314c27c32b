"""A hostile or broken client, in a process of its own so that its CPU is not the server's.

    python attacker.py connections PORT SOURCE COUNT SECONDS   idle TCP connections from SOURCE
    python attacker.py republish URL TOKEN SECONDS             publish, swapping every track, in a loop
    python attacker.py messages URL TOKEN COUNT                join, then pings as fast as it can send

Prints one line of what it did. Loopback only: URL and SOURCE are the test's.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import time

import aiohttp

OFFER = """v=0\r
o=- 1 1 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE {mids}\r
{sections}"""
SECTION = """m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r
c=IN IP4 0.0.0.0\r
a=mid:{mid}\r
a=sendonly\r
a=ice-ufrag:abcd\r
a=ice-pwd:abcdefghijklmnopqrstuvwx\r
a=fingerprint:sha-256 {fp}\r
a=setup:actpass\r
a=rtcp-mux\r
a=rtpmap:{pt} {codec}\r
"""
FINGERPRINT = ":".join(["5B"] * 32)


def offer(prefix: str) -> str:
    """A camera and a microphone whose mids start with `prefix`: a new one closes the old tracks."""
    sections = [
        SECTION.format(kind="video", pt=96, mid=f"{prefix}0", fp=FINGERPRINT, codec="VP8/90000"),
        SECTION.format(kind="audio", pt=111, mid=f"{prefix}1", fp=FINGERPRINT, codec="opus/48000/2"),
    ]
    return OFFER.format(mids=f"{prefix}0 {prefix}1", sections="".join(sections))


async def connections(port: int, source: str, count: int, seconds: float) -> str:
    opened = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((source, 0))
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        opened.append(sock)
    await asyncio.sleep(seconds)
    for sock in opened:
        sock.close()
    return f"opened {len(opened)}"


async def republish(url: str, token: str, seconds: float) -> str:
    async with aiohttp.ClientSession() as http, http.ws_connect(_ws(url)) as ws:
        await ws.send_json({"type": "join", "token": token, "id": 0})
        replies: dict[str, int] = {}
        end = time.monotonic() + seconds
        for i in range(100_000):
            if time.monotonic() > end or ws.closed:
                break
            await ws.send_json({"type": "publish", "sdp": offer("ab"[i % 2]), "id": i + 1})
            while True:  # events may come between: wait for this request's reply
                message = await ws.receive(timeout=5)
                if message.type != aiohttp.WSMsgType.TEXT:
                    return f"cut off after {i} publishes: {replies}"
                data = json.loads(message.data)
                if data.get("id") == i + 1:
                    key = data.get("code", data["type"])
                    replies[key] = replies.get(key, 0) + 1
                    break
        return f"replies {replies}"


async def messages(url: str, token: str, count: int) -> str:
    async with aiohttp.ClientSession() as http, http.ws_connect(_ws(url)) as ws:
        await ws.send_json({"type": "join", "token": token})
        sent = 0
        for _ in range(count):
            if ws.closed:
                break
            try:
                await ws.send_str('{"type": "ping"}')
            except ConnectionError:
                break
            sent += 1
        kinds: dict[str, int] = {}
        while True:
            try:
                message = await ws.receive(timeout=3)
            except TimeoutError:
                break
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            key = data.get("reason") or data.get("code") or data["type"]
            kinds[key] = kinds.get(key, 0) + 1
        return f"sent {sent}, got {kinds}"


def _ws(url: str) -> str:
    return re.sub(r"^http", "ws", url) + "/ws"


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "connections":
        result = asyncio.run(connections(int(args[0]), args[1], int(args[2]), float(args[3])))
    elif mode == "republish":
        result = asyncio.run(republish(args[0], args[1], float(args[2])))
    elif mode == "messages":
        result = asyncio.run(messages(args[0], args[1], int(args[2])))
    else:
        raise SystemExit(f"unknown attack {mode!r}")
    print(result, flush=True)


if __name__ == "__main__":
    main()
