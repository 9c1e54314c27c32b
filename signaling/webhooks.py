"""Webhooks: what happened, POSTed to the school's systems, signed, retried, never in the way.

Lessons starting and ending, participants joining and leaving, switchovers: a school's system learns
of them without polling. An event is queued where it happens, by a synchronous call that never
waits, and each URL has a sender task of its own that posts its events in order, retrying with
exponential backoff while the receiver fails or cannot be reached. A receiver that stays down fills
its own queue, whose oldest events are then dropped and counted; media and signaling never wait on
it, and one slow receiver never delays another.

Each request carries ``X-Kelian-Signature: sha256=<hex>``, the HMAC-SHA256 of the body with the API
secret, so the receiver knows it came from this server (the body's ``at`` and ``id`` let it refuse a
replay), and ``X-Kelian-Event`` naming the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import Counter, deque
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

QUEUE = 10_000  # events waiting for one URL; past it the oldest go
ATTEMPTS = 8  # per event and URL: about four minutes of backoff in all
FIRST_DELAY = 1.0
MAX_DELAY = 60.0
TIMEOUT = 10.0  # seconds one POST may take


def signature(secret: str, body: bytes) -> str:
    """The X-Kelian-Signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    def __init__(
        self,
        urls: tuple[str, ...],
        secret: str,
        *,
        attempts: int = ATTEMPTS,
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
        queue: int = QUEUE,
    ) -> None:
        self.urls = urls
        self.secret = secret
        self.attempts, self.first_delay, self.max_delay = attempts, first_delay, max_delay
        self.queues: dict[str, deque[dict[str, Any]]] = {url: deque(maxlen=queue) for url in urls}
        self._wake = {url: asyncio.Event() for url in urls}
        self.counts: Counter[str] = Counter()  # sent, failed (gave up), dropped (queue full), retries
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def emit(self, event: str, **fields: Any) -> None:
        """Queue `event` for every URL; returns at once."""
        if not self.urls:
            return
        message = {"id": "WH_" + secrets.token_urlsafe(12), "event": event, "at": round(time.time(), 3)}
        message |= fields
        for url, queue in self.queues.items():
            if len(queue) == queue.maxlen:
                self.counts["dropped"] += 1
            queue.append(message)
            self._wake[url].set()

    async def start(self) -> None:
        if not self.urls:
            return
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))
        self._tasks = [asyncio.create_task(self._send_all(url)) for url in self.urls]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    async def _send_all(self, url: str) -> None:
        queue, wake = self.queues[url], self._wake[url]
        while True:
            await wake.wait()
            wake.clear()
            while queue:
                await self._deliver(url, queue.popleft())

    async def _deliver(self, url: str, message: dict[str, Any]) -> None:
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Kelian-Event": str(message["event"]),
            "X-Kelian-Signature": signature(self.secret, body),
        }
        assert self._session is not None
        delay = self.first_delay
        for attempt in range(1, self.attempts + 1):
            try:
                async with self._session.post(url, data=body, headers=headers) as response:
                    if response.status < 300:
                        self.counts["sent"] += 1
                        return
                    if response.status < 500 and response.status != 429:
                        log.warning("webhook %s refused %s: HTTP %d", url, message["event"], response.status)
                        self.counts["failed"] += 1
                        return  # a 4xx will not change by asking again
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = str(exc) or type(exc).__name__
            if attempt == self.attempts:
                break
            self.counts["retries"] += 1
            log.debug("webhook %s: %s; again in %.1f s", url, problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)
        log.warning(
            "webhook %s gave up on %s after %d attempts: %s", url, message["event"], self.attempts, problem
        )
        self.counts["failed"] += 1
