"""`kelian loadtest` against a real server: a small live run, and the usage errors."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from kelian_server import API_KEY, API_SECRET, Server

from loadtest.procstat import listening_pid
from loadtest.report import percentile
from signaling.cli import main


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KELIAN_"):
            monkeypatch.delenv(name)


async def test_live_run_reports_every_track_without_loss(
    kelian: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_env: None
) -> None:
    report_path = tmp_path / "report.json"
    argv = ["loadtest", "--url", kelian.url, "--api-key", API_KEY, "--api-secret", API_SECRET]
    argv += ["--preset", "live", "--subscribers", "4", "--processes", "2", "--duration", "4"]
    argv += ["--server-pid", str(os.getpid()), "--report", str(report_path)]
    # the server runs on this test's loop: the command (which blocks) runs in a thread beside it
    status = await asyncio.wait_for(asyncio.to_thread(main, argv), 120)
    out = capsys.readouterr().out
    assert status == 0, out

    report = json.loads(report_path.read_text())
    assert report["run"]["publishers"] == 1 and report["run"]["processes"] == 2
    assert report["joins"]["joined"] == 4 and report["joins"]["failures"] == []
    tracks = report["tracks"].values()
    assert sorted(t["kind"] for t in tracks) == ["audio", "video"]
    for track in tracks:
        assert track["publisher"] == "publisher0"
        assert track["subscribers"] == 4
        assert track["packets"] > 0 and track["bitrate_kbps"] > 0
        assert track["loss_percent"] == 0
    video = next(t for t in tracks if t["kind"] == "video")
    assert 0 < video["first_frame_ms"]["p50"] <= video["first_frame_ms"]["p99"] < 4000
    server = report["server"]
    assert server["pid"] == os.getpid() and server["cpu_percent"] > 0 and server["rss_mb"] > 0
    assert server["forwarded_packets"] > 0 and server["forwarded_packets_per_cpu_second"] > 0
    assert [w["worker"] for w in report["workers"]] == ["worker0", "worker1", "publishers"]
    assert all(w["peers"] for w in report["workers"])
    assert "ttff50ms" in out and "server: pid" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subscribers", "-1"], "--subscribers: must be between 0 and"),
        (["--duration", "0"], "--duration: must be a positive number"),
        (["--processes", "0"], "--processes: must be between 1 and"),
        (["--preset", "fusion"], "--preset: invalid choice: 'fusion'"),
        (["--layout", "grid9"], "--layout: invalid choice: 'grid9'"),
        (["--url", "http://192.0.2.1:8700"], "'192.0.2.1' is not loopback"),
        (["--url", "http://192.0.2.1:8700", "--allow-host", "192.0.2.2"], "'192.0.2.1' is not loopback"),
        (["--url", "ws://127.0.0.1:8700"], "--url must be an http:// or https:// address"),
        (["--subscribers", "100", "--duration", "5"], "take 10 s to join, not less than --duration 5"),
        (["--publishers", "0", "--subscribers", "0"], "nothing to run"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], no_env: None
) -> None:
    assert main(["loadtest", "--api-key", "k", "--api-secret", "s", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_credentials_are_required(capsys: pytest.CaptureFixture[str], no_env: None) -> None:
    assert main(["loadtest"]) == 2
    assert "KELIAN_API_KEY" in capsys.readouterr().err


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0


async def test_the_server_is_found_by_its_port(kelian: Server) -> None:
    assert listening_pid(kelian.config.http_port) == os.getpid()
