"""`kelian loadtest` against a real server: small live, fusion and dual-teacher runs, a publisher
killed half way, and the usage errors. Each run lasts a few seconds: fusion is shrunk with --boxes,
dual-teacher with --subscribers (its box count)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from kelian_server import API_KEY, API_SECRET, Server, eventually

from loadtest import run as loadtest_run
from loadtest.procstat import listening_pid
from loadtest.report import percentile, track_table
from signaling.cli import main


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KELIAN_"):
            monkeypatch.delenv(name)


async def _loadtest(kelian: Server, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """Run `kelian loadtest` against the fixture; its exit status and JSON report."""
    report_path = tmp_path / "report.json"
    argv = ["loadtest", "--url", kelian.url, "--api-key", API_KEY, "--api-secret", API_SECRET]
    argv += [*args, "--report", str(report_path)]
    # the server runs on this test's loop: the command (which blocks) runs in a thread beside it
    status = await asyncio.wait_for(asyncio.to_thread(main, argv), 120)
    return status, json.loads(report_path.read_text())


FUSION = ["--preset", "fusion", "--boxes", "2", "--processes", "2"]
DUAL_TEACHER = ["--preset", "dual-teacher", "--subscribers", "2", "--processes", "1"]
EVERYONE = ("lecturer", "box0", "box1")


@pytest.mark.parametrize(
    ("args", "expected", "sizes"),
    [
        # fusion: everyone sees and hears the two others, at grid3 (426x240): the half layer
        (FUSION, {(who, kind): 2 for who in EVERYONE for kind in ("video", "audio")},
         dict.fromkeys(EVERYONE, "640x360")),
        # dual-teacher (a dual_teacher room): a box's camera and microphone go to the lecturer only, the
        # lecturer's to both boxes; the lecturer's layer at speaker size is the estimate's to choose
        # within 3 s, the boxes' is 180p
        (DUAL_TEACHER, {(who, kind): 1 for who in EVERYONE for kind in ("video", "audio")}
         | {("lecturer", "video"): 2, ("lecturer", "audio"): 2}, {"box0": "320x180", "box1": "320x180"}),
    ],
    ids=["fusion", "dual-teacher"],
)  # fmt: skip
async def test_classroom_presets_reach_every_subscriber_without_loss(
    args: list[str],
    expected: dict[tuple[str, str], int],
    sizes: dict[str, str],
    kelian: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_env: None,
) -> None:
    status, report = await _loadtest(kelian, tmp_path, *args, "--duration", "3")
    assert status == 0, capsys.readouterr().out
    assert report["run"]["publishers"] == 3 and report["run"]["subscribers"] == 3
    assert report["joins"]["joined"] == 3 and report["workers"]
    assert report["joins"]["failures"] == [] and report["publisher_problems"] == []
    tracks = report["tracks"].values()
    assert {(t["publisher"], t["kind"]): t["subscribers"] for t in tracks} == expected
    for track in tracks:
        assert track["packets"] > 0 and track["bitrate_kbps"] > 0, track
        assert track["loss_percent"] == 0 and track["ended_early"] == 0, track
        probe = track["probe"]  # one subscriber decoded it
        assert probe["decoded_frames"] > 0 and probe["decode_errors"] == 0, track
        assert probe["problem"] is None, track
        if track["kind"] == "video" and track["publisher"] in sizes:
            assert probe["size"] == sizes[track["publisher"]], track


@pytest.mark.slow
async def test_live_run_reports_every_track_without_loss(
    kelian: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_env: None
) -> None:
    args = ["--preset", "live", "--subscribers", "4", "--processes", "2", "--duration", "7"]
    args += ["--resolution", "960x544", "--bitrate", "1200"]
    status, report = await _loadtest(kelian, tmp_path, *args, "--server-pid", str(os.getpid()))
    out = capsys.readouterr().out
    assert status == 0, out

    assert report["run"]["publishers"] == 1 and report["run"]["processes"] == 2
    assert report["joins"]["joined"] == 4 and report["joins"]["failures"] == []
    tracks = report["tracks"].values()
    assert sorted(t["kind"] for t in tracks) == ["audio", "video"]
    for track in tracks:
        assert track["publisher"] == "publisher0"
        assert track["subscribers"] == 4
        assert track["packets"] > 0 and track["bitrate_kbps"] > 0
        assert track["loss_percent"] == 0
        assert track["freezes"] >= track["steady_freezes"] == 0
        probe = track["probe"]  # subscriber0, the first to join, decoded it
        assert probe["subscriber"] == "subscriber0" and probe["problem"] is None, probe
        assert probe["decoded_frames"] > 0 and probe["decode_errors"] == 0, probe
    video = next(t for t in tracks if t["kind"] == "video")
    assert video["probe"]["size"] == "960x544", "speaker layout: the full simulcast layer, as asked"
    assert not any("decoded" in w for w in report["warnings"]), report["warnings"]
    assert 0 < video["first_frame_ms"]["p50"] <= video["first_frame_ms"]["p99"] < 4000
    server = report["server"]
    # measured once the last subscriber (0.3 s in) has joined and settled (3 s): 3.3 s to the end
    assert server["measured_from"] == 3.3 and server["measured_seconds"] == 3.7
    assert server["pid"] == os.getpid() and server["cpu_percent"] > 0 and server["rss_mb"] > 0
    assert server["forwarded_packets"] > 0 and server["forwarded_packets_per_cpu_second"] > 0
    assert [w["worker"] for w in report["workers"]] == ["worker0", "worker1", "publishers"]
    assert all(w["peers"] for w in report["workers"])
    assert "ttff50ms" in out and "server (the last" in out


@pytest.mark.slow
async def test_a_publisher_killed_half_way_is_reported(
    kelian: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_env: None,
) -> None:
    spawned: list[loadtest_run.Worker] = []
    spawn = loadtest_run._spawn

    def recording(*args: Any) -> loadtest_run.Worker:
        spawned.append(spawn(*args))
        return spawned[-1]

    monkeypatch.setattr(loadtest_run, "_spawn", recording)

    async def kill_when_joined() -> None:
        def everyone_in() -> bool:
            room = kelian.rooms.rooms.get("loadtest")  # type: ignore[attr-defined]
            return room is not None and len(room.participants) == 3

        assert await eventually(everyone_in, 60)
        await asyncio.sleep(1.5)  # of the 4 s: frames flow for a while, then stop long before the end
        os.kill(next(w.process.pid for w in spawned if w.name == "publishers"), signal.SIGKILL)

    killer = asyncio.create_task(kill_when_joined())
    args = ["--preset", "live", "--subscribers", "2", "--processes", "1", "--duration", "4"]
    status, report = await _loadtest(kelian, tmp_path, *args)
    await killer
    out = capsys.readouterr().out
    assert status == 1, out  # the run ends by itself, reports, and says it went wrong

    assert report["joins"]["joined"] == 2
    tracks = report["tracks"].values()
    assert sorted(t["kind"] for t in tracks) == ["audio", "video"]
    assert all(t["packets"] > 0 for t in tracks)
    # both by their frames stopping: the server keeps a dropped session for its reconnect grace, so
    # it does not end them itself within the run; one voice in the room is always forwarded, so its
    # silence means something
    for track in tracks:
        assert track["ended_early"] == 2 and 1000 < track["stopped_ms"] < 4000, track
    problems = {p["problem"] for p in report["publisher_problems"]}
    assert {p["identity"] for p in report["publisher_problems"]} == {"publisher0"}
    assert "its worker died before the end of the run" in problems
    assert any(p.startswith("ended early: ") for p in problems)
    assert any("publishers exited" in w for w in report["warnings"])
    assert "publishers that failed or ended early:" in out


@pytest.mark.slow
async def test_find_capacity_steps_up_and_reports_the_largest_load_held(
    kelian: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_env: None
) -> None:
    args = ["--find-capacity", "--start", "2", "--step", "2", "--max-subscribers", "4", "--duration", "2"]
    status, report = await _loadtest(kelian, tmp_path, *args, "--processes", "1")
    captured = capsys.readouterr()
    assert status == 0, captured.out
    capacity, steps = report["capacity"], report["steps"]
    assert capacity["steps"] == [2, 4] and capacity["server_cpu_known"]
    assert [s["subscribers"] for s in steps] == [2, 4][: len(steps)]
    for step in steps:  # each step a fresh room of its own, everyone joined
        assert step["report"]["run"]["room"] == f"loadtest-{step['subscribers']}"
        assert step["joined"] == step["subscribers"] and step["report"]["run"]["duration"] == pytest.approx(
            step["subscribers"] / 10 + 2
        )
    held = [s["subscribers"] for s in steps if s["held"]]
    assert held and capacity["largest_held"] == max(held), steps
    assert capacity["subscribers_per_core"] > 0
    assert "largest load held: " in captured.out and "srv_cpu%" in captured.out
    # the live status line: a new line each second, stderr not being a terminal
    # (what the line counts depends on when each worker's once-a-second progress arrived: not checked)
    assert "step 1/2: 2 subscriber(s)" in captured.err and "step 2/2: 4 subscriber(s)" in captured.err
    assert re.search(r"\[[#.]{20}\] 1/2\.2 s  joined [0-2]/2  packets \d+  freezes \d+\n", captured.err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subscribers", "-1"], "--subscribers: must be between 0 and"),
        (["--duration", "0"], "--duration: must be a positive number"),
        (["--processes", "0"], "--processes: must be between 1 and"),
        (["--preset", "film"], "--preset: invalid choice: 'film'"),
        (["--preset", "fusion", "--publishers", "2"], "--publishers does not apply to --preset fusion"),
        (["--boxes", "3"], "--boxes does not apply to --preset live"),
        (["--preset", "dual-teacher", "--layout", "grid3"], "--layout does not apply to --preset dual"),
        (["--preset", "dual-teacher", "--duration", "2"], "31 subscribers at --join-rate 10/s take 3.1 s"),
        (["--layout", "grid9"], "--layout: invalid choice: 'grid9'"),
        (["--url", "http://192.0.2.1:8700"], "'192.0.2.1' is not loopback"),
        (["--url", "http://192.0.2.1:8700", "--allow-host", "192.0.2.2"], "'192.0.2.1' is not loopback"),
        (["--url", "ws://127.0.0.1:8700"], "--url must be an http:// or https:// address"),
        (["--subscribers", "100", "--duration", "5"], "take 10 s to join, not less than --duration 5"),
        (["--publishers", "0", "--subscribers", "0"], "nothing to run"),
        (["--find-capacity", "--step", "0"], "--step must be at least 1 with --find-capacity"),
        (["--find-capacity", "--start", "5", "--max-subscribers", "4"], "--max-subscribers 4 is below"),
        (["--find-capacity", "--subscribers", "4"], "--subscribers does not apply to --find-capacity"),
        (["--step", "2"], "--step only applies with --find-capacity"),
        (["--resolution", "1280"], "--resolution: expected WIDTHxHEIGHT such as 1280x720"),
        (["--resolution", "1366x768"], "--resolution: width and height must be multiples of 8"),
        (["--bitrate", "fast"], "--bitrate: expected kbit/s"),
        (["--bitrate", "10"], "--bitrate: must be between 50 and 50000 kbit/s"),
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


def test_silent_audio_is_judged_only_where_every_voice_is_forwarded() -> None:
    """Five voices, three forwarded: a silent one is normal unless its publisher is gone."""
    published = {f"A{i}": {"publisher": f"box{i}", "kind": "audio"} for i in range(5)}

    def peer(loudest: int) -> dict[str, Any]:
        idle = {"A0": 3000.0}  # A0 silent for the last 3 s, the others heard to the end
        tracks = {
            track_id: {"kind": "audio", "packets": 100, "seconds": 5.0, "idle_ms": idle.get(track_id, 20.0)}
            for track_id in published
        }
        return {"subscriber": {"tracks": tracks}, "max_audio_streams": loudest}

    assert track_table(published, [peer(3)])["A0"]["ended_early"] == 0
    assert track_table(published, [peer(3)], gone=["box0"])["A0"]["ended_early"] == 1
    assert track_table(published, [peer(0)])["A0"]["ended_early"] == 1, "0: all forwarded"
    assert track_table(published, [peer(5)])["A1"]["ended_early"] == 0


def test_mixed_layout_gives_each_layer_a_third_and_transport_cc_can_be_declined() -> None:
    import argparse

    from loadtest.options import add_arguments, plan_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = ["--api-key", "k", "--api-secret", "s", "--subscribers", "6", "--layout", "mixed"]
    plan = plan_from_args(parser.parse_args([*args, "--no-transport-cc"]))
    viewers = [p.layout for p in plan.participants if p.layout is not None]
    assert viewers == ["speaker", "grid3", "grid5"] * 2
    assert plan.layout == "mixed" and plan.transport_cc is False
    assert plan_from_args(parser.parse_args(args)).transport_cc is True


def test_resolution_and_bitrate_size_the_presenters_cameras() -> None:
    import argparse

    from loadtest.options import add_arguments, plan_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def plan(*args: str) -> Any:
        return plan_from_args(parser.parse_args(["--api-key", "k", "--api-secret", "s", *args]))

    lecturer = plan().participants[0]
    assert plan().layers(lecturer) == (
        ("q", 320, 180, 150_000),
        ("h", 640, 360, 500_000),
        ("f", 1280, 720, 1_500_000),
    ), "the defaults are the clips' (loadtest.clips.SIMULCAST_LAYERS)"
    single = plan("--no-simulcast")
    assert single.layers(single.participants[0]) == (("", 640, 360, 1_000_000),)
    sized = plan("--resolution", "1920x1080", "--bitrate", "3000")
    assert sized.layers(lecturer)[-1] == ("f", 1920, 1080, 3_000_000)
    assert sized.layers(lecturer)[0] == ("q", 480, 270, 300_000)
    dual = plan("--preset", "dual-teacher", "--resolution", "640x360")
    assert dual.layers(dual.participants[0])[-1][1:3] == (640, 360)
    assert dual.layers(dual.participants[1]) == (("", 320, 180, 150_000),), "a box sends 180p"
    assert dual.layers(next(p for p in plan().participants if p.camera is None)) == ()


async def test_a_server_not_found_on_this_machine_is_measured_from_its_metrics(
    kelian: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    """As for a remote server: its CPU and memory come from the process figures on /metrics."""
    monkeypatch.setattr(loadtest_run, "listening_pid", lambda port: None)
    args = ["--preset", "live", "--subscribers", "2", "--processes", "1", "--duration", "3"]
    status, report = await _loadtest(kelian, tmp_path, *args)
    assert status == 0
    server = report["server"]
    assert server["pid"] is None and server["source"] == "/metrics"
    assert server["cpu_percent"] > 0 and server["rss_mb"] > 0 and server["forwarded_packets"] > 0


def test_a_quiet_run_still_reads_its_workers_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's progress pipe that nobody read filled after about four and a half minutes of a
    --quiet run; the worker blocked on it and every subscriber it carried went silent."""

    class Worker:
        drained = 0

        def drain(self) -> None:
            self.drained += 1

    clock = [0.0]
    monkeypatch.setattr(loadtest_run.time, "time", lambda: clock[0])
    monkeypatch.setattr(loadtest_run.time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    worker = Worker()
    loadtest_run._wait_showing(10.0, None, 0.0, [worker], None)  # type: ignore[arg-type,list-item]
    assert worker.drained >= 9
