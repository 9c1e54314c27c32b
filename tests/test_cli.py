"""The kelian command: token minting, usage errors, and the serve wiring (with a stand-in server)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import time
import types
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import cluster
import signaling
from classroom.tokens import Role, verify
from signaling.cli import main
from signaling.config import Config
from signaling.logs import setup_logging

KEY = "APIclitest"
SECRET = "cli-test-secret-long-enough-for-hs256-0123456789"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No KELIAN_* variable from the developer's shell may leak into these tests."""
    for name in list(os.environ):
        if name.startswith("KELIAN_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def creds(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KELIAN_API_KEY", KEY)
    clean_env.setenv("KELIAN_API_SECRET", SECRET)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@dataclass
class FakeServer:
    """Records the configs serve() was called with; ``behaviour`` runs inside the server coroutine."""

    configs: list[Config] = field(default_factory=list)
    behaviour: Callable[[], Awaitable[None]] | None = None


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    """Stand in for signaling.server so serve's wiring is tested without the media stack."""
    fake = FakeServer()
    module = types.ModuleType("signaling.server")

    async def serve(config: Config) -> None:
        fake.configs.append(config)
        if fake.behaviour is not None:
            await fake.behaviour()

    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "signaling.server", module)
    monkeypatch.setattr(signaling, "server", module, raising=False)
    front = types.ModuleType("cluster.front")  # a front before several workers: the same stand-in

    async def serve_workers(config: Config, workers: int) -> None:
        await serve(config)

    front.serve = serve_workers  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cluster.front", front)
    monkeypatch.setattr(cluster, "front", front, raising=False)
    return fake


def test_token_is_printed_alone_and_verifies(creds: None, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["token", "--room", "math-101", "--identity", "alice", "--role", "classroom", "--name", "Box 3"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.endswith("\n") and out.count("\n") == 1
    claims = verify(out.strip(), KEY, SECRET, room="math-101")
    assert (claims.identity, claims.name, claims.role) == ("alice", "Box 3", Role.CLASSROOM)


def test_token_ttl(creds: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--room", "r", "--identity", "i", "--role", "viewer", "--ttl", "60"]) == 0
    claims = verify(capsys.readouterr().out.strip(), KEY, SECRET)
    assert abs(claims.expires_at - time.time() - 60) < 5
    assert main(["token", "--room", "r", "--identity", "i", "--role", "viewer", "--ttl", "0"]) == 2


def test_token_without_credentials_fails(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["token", "--room", "r", "--identity", "i", "--role", "student"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("kelian: error:") and "KELIAN_API_SECRET" in err


def test_token_with_only_a_key_fails(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("KELIAN_API_KEY", KEY)
    assert main(["token", "--room", "r", "--identity", "i", "--role", "student"]) == 2
    assert capsys.readouterr().err.startswith("kelian: error:")


def test_bad_role_is_a_usage_error(creds: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--room", "r", "--identity", "i", "--role", "headmaster"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "kelian" in err and "error" in err and "headmaster" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["token", "--room", "r"],
        ["token", "--room", "", "--identity", "i", "--role", "tutor"],
    ],
)
def test_usage_errors_exit_2(creds: None, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "serve" in capsys.readouterr().out


def test_serve_with_dev_credentials_prints_them_and_runs_server(
    clean_env: pytest.MonkeyPatch,
    fake_server: FakeServer,
    restore_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["serve", "--http-port", "9876", "--media-port", "9877", "--log-level", "warning"])
    out, _err = capsys.readouterr()
    assert code == 0
    [config] = fake_server.configs
    assert (config.http_port, config.media_port, config.dev_credentials) == (9876, 9877, True)
    assert "DEVELOPMENT" in out
    assert config.api_key in out and config.api_secret in out
    assert "http://127.0.0.1:9876/" in out
    assert logging.getLogger().level == logging.WARNING


def test_serve_with_real_credentials_prints_nothing(
    creds: None, fake_server: FakeServer, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve"]) == 0
    assert capsys.readouterr().out == ""
    assert [c.api_key for c in fake_server.configs] == [KEY]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, asyncio.CancelledError])
def test_serve_interrupted_exits_0(
    creds: None, fake_server: FakeServer, restore_logging: None, stop: type[BaseException]
) -> None:
    async def behaviour() -> None:
        await asyncio.sleep(0)
        raise stop

    fake_server.behaviour = behaviour
    assert main(["serve"]) == 0


def test_serve_bad_config_exit_2(
    creds: None, fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--http-port", "abc"]) == 2
    assert capsys.readouterr().err.startswith("kelian: error: --http-port")
    assert fake_server.configs == []  # the server was never started


def test_python_dash_m_signaling(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KELIAN_")}
    env.update(KELIAN_API_KEY=KEY, KELIAN_API_SECRET=SECRET)
    result = subprocess.run(
        [sys.executable, "-m", "signaling", "token", "--room", "r", "--identity", "i", "--role", "admin"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert verify(result.stdout.strip(), KEY, SECRET).grants.admin


def test_json_logs_one_object_per_line_with_extras(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("debug", "json", stream=stream)
    log = logging.getLogger("kelian.test")
    log.info("joined %s", "math-101", extra={"room": "math-101", "identity": "alice"})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    first = json.loads(lines[0])
    assert first["message"] == "joined math-101"
    assert (first["level"], first["logger"], first["room"], first["identity"]) == (
        "info",
        "kelian.test",
        "math-101",
        "alice",
    )
    assert "time" in first
    second = json.loads(lines[1])
    assert second["level"] == "error" and "RuntimeError: boom" in second["exception"]
    assert len(lines) == 2


def test_text_logs_show_extras_and_setup_is_idempotent(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream=io.StringIO())
    setup_logging("info", "text", stream=stream)
    logging.getLogger("kelian.test").info("hello", extra={"room": "r1"})
    assert stream.getvalue().count("hello") == 1
    assert "room=r1" in stream.getvalue()


def test_serve_takes_the_media_and_recording_settings(
    creds: None, fake_server: FakeServer, restore_logging: None
) -> None:
    args = ["serve", "--recordings", "/srv/rec", "--library", "/srv/lib", "--auto-record", "false"]
    assert main([*args, "--database", ":memory:", "--webhook-urls", "http://127.0.0.1:9/hook"]) == 0
    [config] = fake_server.configs
    assert (config.recordings, config.library, config.auto_record) == ("/srv/rec", "/srv/lib", False)
    assert config.database == ":memory:" and config.webhook_urls == ("http://127.0.0.1:9/hook",)
