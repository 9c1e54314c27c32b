"""The recorder process: plain RTP from the server's media port in, a Matroska file per track out.

    python -m recorder --dir DIR

It runs apart from the server so that a crash here never touches forwarding and the muxing work
stays off the server's event loop. Over stdin and stdout, one JSON object a line:

- it prints ``{"event": "ready", "port": P}``: the loopback UDP port the server sends RTP to;
- the server says ``{"cmd": "track", "ssrc": ..., "track": "TR_1", "kind": "video", "codec": "VP8",
  "clock": 90000, "participant": "box-1", "source": "camera", "file": "<name>"}`` for each track to
  record (before or after its packets arrive), ``{"cmd": "end", "ssrc": ...}`` when one ends, and
  ``{"cmd": "stop"}`` at the end;
- it prints ``{"event": "file", ...}`` as each track's file is closed, and ``{"event": "stopped"}``.

A lost packet is asked for again (NACK) and waited for (recorder.reorder); only a frame still
missing a packet after that is given up, and a keyframe asked for (PLI), as when a track has none
yet. A receiver report goes out every second: the server hears from it that it is alive, as from
any peer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
from pathlib import Path
from typing import Any

from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket

from .reorder import Reorder
from .track import TrackFile, TrackInfo

REPORT_EVERY = 1.0
PLI_EVERY = 0.5  # seconds between keyframe requests for one track
OUR_SSRC = 0x6B656C69  # "keli"
RR = struct.pack("!BBHI", 0x80, 201, 1, OUR_SSRC)


def pli(media_ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x81, 206, 2, OUR_SSRC, media_ssrc)


def nack(media_ssrc: int, lost: list[int]) -> bytes:
    return bytes(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=OUR_SSRC, media_ssrc=media_ssrc, lost=lost))


Packet = tuple[int, int, bool, bytes]  # sequence number, timestamp, marker, payload


class Recorder(asyncio.DatagramProtocol):
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.tracks: dict[int, TrackFile] = {}
        self.order: dict[int, Reorder[Packet]] = {}
        self.pending: dict[int, list[bytes]] = {}  # packets of an SSRC not announced yet (a few)
        self.server: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.last_pli: dict[int, float] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server = addr
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        if 192 <= data[1] <= 223:
            self._rtcp(data)
            return
        ssrc = int.from_bytes(data[8:12], "big")
        track = self.tracks.get(ssrc)
        if track is None:
            queue = self.pending.setdefault(ssrc, [])
            if len(queue) < 256:
                queue.append(data)
            return
        self._rtp(track, data)

    def _rtp(self, track: TrackFile, data: bytes) -> None:
        header = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10:  # header extension
            if len(data) < header + 4:
                return
            header += 4 + 4 * int.from_bytes(data[header + 2 : header + 4], "big")
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)  # padding
        if header > end:
            return
        seq = int.from_bytes(data[2:4], "big")
        packet = (seq, int.from_bytes(data[4:8], "big"), bool(data[1] & 0x80), data[header:end])
        order = self.order.setdefault(track.info.ssrc, Reorder())
        now = asyncio.get_running_loop().time()
        self._write(track, order.push(seq, packet, now))
        if order.missing and (lost := order.to_ask(now)):
            self._send(nack(track.info.ssrc, lost))

    def _write(self, track: TrackFile, packets: list[Packet]) -> None:
        wants_keyframe = False
        for packet in packets:
            try:
                wants_keyframe |= track.on_rtp(*packet)
            except (ValueError, OSError) as exc:  # a frame the muxer refused: skip it, keep the file
                message = {"event": "error", "track": track.info.track, "message": str(exc)}
                print(json.dumps(message), flush=True)
                wants_keyframe = True
        if wants_keyframe:
            self._ask_keyframe(track.info.ssrc)

    def _rtcp(self, data: bytes) -> None:
        i = 0
        while i + 4 <= len(data):
            length = (int.from_bytes(data[i + 2 : i + 4], "big") + 1) * 4
            if data[i + 1] == 200 and i + 28 <= len(data):  # sender report
                ssrc = int.from_bytes(data[i + 4 : i + 8], "big")
                ntp = int.from_bytes(data[i + 8 : i + 16], "big")
                rtp = int.from_bytes(data[i + 16 : i + 20], "big")
                if (track := self.tracks.get(ssrc)) is not None:
                    track.on_sender_report(ntp, rtp)
            i += length

    def _ask_keyframe(self, ssrc: int) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self.last_pli.get(ssrc, -PLI_EVERY) < PLI_EVERY:
            return
        self.last_pli[ssrc] = loop.time()
        self._send(pli(ssrc))

    def _send(self, packet: bytes) -> None:
        if self.transport is not None and self.server is not None:
            self.transport.sendto(packet, self.server)

    def add(self, command: dict[str, Any]) -> None:
        info = TrackInfo(
            ssrc=int(command["ssrc"]),
            track=str(command["track"]),
            kind=str(command["kind"]),
            codec=str(command["codec"]),
            clock=int(command["clock"]),
            participant=str(command["participant"]),
            source=str(command["source"]),
            role=str(command.get("role", "")),
        )
        name = Path(str(command["file"])).name  # a name in our directory, never a path elsewhere
        self.tracks[info.ssrc] = TrackFile(info, self.directory / name)
        for data in self.pending.pop(info.ssrc, []):
            self._rtp(self.tracks[info.ssrc], data)
        if info.kind == "video":
            self._ask_keyframe(info.ssrc)

    def end(self, ssrc: int) -> dict[str, Any] | None:
        track = self.tracks.pop(ssrc, None)
        order = self.order.pop(ssrc, None)
        if track is None:
            return None
        if order is not None:
            self._write(track, order.flush())
            track.meta["recovered"] = order.recovered
        return track.close()

    async def report(self) -> None:
        while True:
            self._send(RR)
            await asyncio.sleep(REPORT_EVERY)


async def run(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    transport, recorder = await loop.create_datagram_endpoint(
        lambda: Recorder(directory), local_addr=("127.0.0.1", 0)
    )
    reports = asyncio.create_task(recorder.report())
    port = transport.get_extra_info("sockname")[1]
    print(json.dumps({"event": "ready", "port": port}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            try:
                command = json.loads(line)
                if command["cmd"] == "track":
                    recorder.add(command)
                elif command["cmd"] == "end":
                    if (meta := recorder.end(int(command["ssrc"]))) is not None:
                        print(json.dumps({"event": "file"} | meta), flush=True)
                elif command["cmd"] == "stop":
                    break
            except (ValueError, KeyError, TypeError) as exc:
                print(json.dumps({"event": "error", "message": f"bad command: {exc}"}), flush=True)
    finally:
        reports.cancel()
        for ssrc in list(recorder.tracks):
            if (meta := recorder.end(ssrc)) is not None:
                print(json.dumps({"event": "file"} | meta), flush=True)
        transport.close()
        print(json.dumps({"event": "stopped"}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recorder")
    parser.add_argument("--dir", required=True, help="where the files go")
    args = parser.parse_args(argv)
    asyncio.run(run(Path(args.dir)))
    return 0
