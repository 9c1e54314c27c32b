"""Webhooks: a real receiver on loopback gets lessons, participants and switchovers, signed; a
failing receiver is retried with backoff, a refusing one is not, and a dead one never blocks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web
from classroom_peers import api, org, roster
from helpers import free_tcp_port
from kelian_server import API_SECRET, eventually, running_server

from loadtest.peer import Peer
from signaling import appkeys
from signaling.webhooks import Webhooks, signature


class Receiver:
    """An HTTP endpoint that records what it is sent, answering each with the next of `statuses`."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.port = free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        self.arrived.set()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 204)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate(self.events()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                return bool(predicate(self.events()))
        return True


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def test_lessons_participants_and_switchovers_reach_the_school_signed() -> None:
    async with (
        receiving(Receiver()) as receiver,
        running_server("127.0.0.1", webhook_urls=(receiver.url,)) as kelian,
    ):
        await api(kelian, "POST", "/import", org(time.time()))
        tokens = await roster(kelian, "s1-maths")
        box = Peer(kelian.url, tokens["box-s1-a"])
        await box.connect()
        status, audit = await api(kelian, "POST", "/switchover", {"school": "s1", "mode": "online"})
        assert status == 200
        await box.close()
        adhoc = Peer(kelian.url, kelian.token("visitor", "viewer", room="open-day"))
        await adhoc.connect()
        await adhoc.close()  # a room made by a join ends when its last participant leaves

        def kinds(events: list[dict[str, Any]]) -> list[str]:
            return [e["event"] for e in events]

        assert await receiver.wait_for(lambda events: "lesson_ended" in kinds(events))
        events = receiver.events()
        assert kinds(events) == [
            "lesson_started",
            "participant_joined",
            "mode_changed",
            "switchover",
            "participant_left",
            "lesson_started",
            "participant_joined",
            "participant_left",
            "lesson_ended",
        ]
        started, joined, changed, switched, left = events[:5]
        assert (changed["room"], changed["mode"], changed["recording"]) == ("s1-maths", "online", True)
        assert (started["room"], started["lesson"], started["school"], started["district"]) == (
            "s1-maths",
            "s1-maths",
            "s1",
            "d1",
        )
        who = joined["participant"]
        assert (who["identity"], who["role"], who["classroom"]) == ("box-s1-a", "classroom", "box-s1-a")
        assert switched["switch"] == audit["switch"] and switched["clients_told"] == 1
        assert left["reason"] == "left"
        assert (events[-1]["room"], events[-1]["lesson"]) == ("open-day", None)
        assert len({e["id"] for e in events}) == len(events)
        for headers, body in receiver.received:
            assert headers["X-Kelian-Signature"] == signature(API_SECRET, body)
            assert headers["X-Kelian-Event"] == json.loads(body)["event"]
        hooks = kelian.runner.app[appkeys.WEBHOOKS]
        assert await eventually(lambda: hooks.counts["sent"] == 9), "the last answer is counted"
        async with aiohttp.ClientSession() as http, http.get(f"{kelian.url}/metrics") as r:
            metrics = await r.text()
        assert 'kelian_webhooks_total{result="sent"} 9.0' in metrics
        assert 'kelian_switchovers_total{mode="online"} 1.0' in metrics
        assert "kelian_switchover_clients_told_total 1.0" in metrics


async def test_a_failing_receiver_is_retried_and_a_refusing_one_is_not() -> None:
    async with receiving(Receiver([503, 503, 200, 400])) as receiver:
        hooks = Webhooks((receiver.url,), "secret", first_delay=0.01, max_delay=0.05)
        await hooks.start()
        try:
            hooks.emit("first", n=1)
            hooks.emit("second", n=2)
            assert await receiver.wait_for(lambda events: len(events) == 4)
            assert [e["event"] for e in receiver.events()] == ["first", "first", "first", "second"]
            await asyncio.sleep(0.05)
            assert (hooks.counts["sent"], hooks.counts["failed"], hooks.counts["retries"]) == (1, 1, 2)
        finally:
            await hooks.stop()


async def test_a_dead_receiver_never_holds_anything_up() -> None:
    dead = f"http://127.0.0.1:{free_tcp_port()}/hook"  # nothing listens there
    hooks = Webhooks((dead,), "secret", first_delay=0.01, max_delay=0.02, attempts=3, queue=10)
    await hooks.start()
    try:
        for n in range(1000):  # emit only queues (it is not even a coroutine)
            hooks.emit("participant_joined", n=n)
        assert hooks.counts["dropped"] >= 980, "past the queue, the oldest go"
        assert len(hooks.queues[dead]) <= 10
        for _ in range(200):
            if hooks.counts["failed"] >= 1:
                break
            await asyncio.sleep(0.02)
        assert hooks.counts["failed"] >= 1 and hooks.counts["sent"] == 0
    finally:
        await hooks.stop()
