"""What operators see: /healthz, /metrics, and the SRTP profiles the server speaks."""

from __future__ import annotations

import asyncio
import gc
import time

import aiohttp
import pytest
from aiortc import rtcdtlstransport
from kelian_server import Server, eventually, lesson

from loadtest import procstat


async def scrape(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def test_healthz(kelian: Server) -> None:
    async with aiohttp.ClientSession() as session, session.get(kelian.url + "/healthz") as r:
        body = await r.json()
    assert r.status == 200
    assert body["status"] == "ok"
    assert body["media"]["port"] == kelian.node.port


async def test_metrics_count_rooms_participants_and_packets(kelian: Server) -> None:
    async with lesson(kelian) as live:
        remote = live.tracks[0]
        for _ in range(10):
            await asyncio.wait_for(remote.track.recv(), 5)
        metrics = await scrape(kelian.url)
        assert metrics["kelian_rooms"] == 1
        assert metrics["kelian_participants"] == 2
        assert metrics['kelian_transports{state="connected"}'] == 2
        assert metrics["kelian_producers"] == 1
        assert metrics["kelian_consumers"] == 1
        assert metrics["kelian_packets_sent_total"] > 10
        assert metrics["kelian_bytes_sent_total"] > 10_000
        assert metrics["kelian_datagrams_received_total"] > 10
        assert metrics["kelian_keyframe_requests_total"] >= 1
        for name in ("kelian_nacks_total", "kelian_plis_total", "kelian_dropped_datagrams_total"):
            assert name in metrics
        assert metrics["kelian_forwarding_errors_total"] == 0
    await eventually(lambda: not kelian.node.transports)  # the scrape below checks what is left
    after = await scrape(kelian.url)
    assert after["kelian_rooms"] == 0
    sent = metrics["kelian_packets_sent_total"]
    assert after["kelian_packets_sent_total"] >= sent, "counters never go down"


async def test_metrics_say_when_the_loop_stalls_and_the_collector_pauses(kelian: Server) -> None:
    """A stall of the event loop and a full garbage collection stop every packet of the process:
    /metrics counts both, so that a freeze all subscribers saw at once has its cause on the graph."""
    before = await scrape(kelian.url)
    await asyncio.sleep(0.3)  # the probe's timer is set
    time.sleep(0.4)  # the loop held, as a long callback would hold it
    gc.collect()
    await asyncio.sleep(0.6)  # the probe wakes up late, and again on time
    after = await scrape(kelian.url)
    late = 'kelian_event_loop_lag_seconds_bucket{le="0.25"}'
    total = "kelian_event_loop_lag_seconds_count"
    stalls_after = after[total] - after[late]
    assert stalls_after - (before.get(total, 0) - before.get(late, 0)) >= 1, "the 0.4 s stall is counted"
    full = 'kelian_gc_pause_seconds_count{generation="2"}'
    assert after[full] >= before.get(full, 0) + 1, "the full collection is counted"


@pytest.mark.parametrize(
    ("client_profiles", "expected"),
    [
        (
            [rtcdtlstransport.SRTP_AEAD_AES_128_GCM, rtcdtlstransport.SRTP_AES128_CM_SHA1_80],
            b"SRTP_AEAD_AES_128_GCM",
        ),
        ([rtcdtlstransport.SRTP_AES128_CM_SHA1_80], b"SRTP_AES128_CM_SHA1_80"),
    ],
)
async def test_srtp_profiles(
    kelian: Server, monkeypatch: pytest.MonkeyPatch, client_profiles: list[object], expected: bytes
) -> None:
    """GCM when the peer offers it (cheaper per packet), AES-CM with HMAC-SHA1-80 for peers without it."""
    monkeypatch.setattr(rtcdtlstransport, "SRTP_PROFILES", client_profiles)
    async with lesson(kelian) as live:
        await asyncio.wait_for(live.tracks[0].track.recv(), 5)
        profiles = {t.srtp_profile.name for t in kelian.node.transports.values() if t.srtp_profile}
        assert profiles == {expected}


async def test_metrics_behind_a_token_when_one_is_set(
    kelian: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    kelian.config.metrics_token = "metrics-token-0123456789"
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with session.get(kelian.url + "/metrics", headers=headers) as r:
                assert r.status == 401 and "Bearer" in r.headers["WWW-Authenticate"]
        good = {"Authorization": "Bearer metrics-token-0123456789"}
        async with session.get(kelian.url + "/metrics", headers=good) as r:
            assert r.status == 200 and "kelian_" in await r.text()
    monkeypatch.setenv("KELIAN_METRICS_TOKEN", "metrics-token-0123456789")
    read = await asyncio.to_thread(procstat.server_metric, kelian.url, "process_cpu_seconds_total")
    assert read is not None, "as kelian loadtest reads it, with the same variable"
