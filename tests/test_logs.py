"""Logs that cannot be forged or flooded: untrusted text escaped, repeats left out, no token bytes."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
from kelian_server import Server

from signaling.logs import RepeatFilter, TextFormatter, setup_logging


def record(message: str, *args: object, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("kelian.test", level, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_crlf_in_a_name_cannot_forge_a_line() -> None:
    line = TextFormatter().format(
        record("whip session for %s", "evil\r\n2026-12-07 INFO forged", room="a\nb")
    )
    assert "\n" not in line and "\r" not in line
    assert "evil\\x0d\\x0a2026-12-07 INFO forged" in line and "room=a\\x0ab" in line


def test_a_traceback_keeps_its_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        made = logging.LogRecord(
            "kelian.test", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info()
        )
    lines = TextFormatter().format(made).splitlines()
    assert lines[0].endswith("failed") and lines[-1] == "ValueError: boom"


def test_repeats_are_left_out_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("signaling.logs.time.monotonic", lambda: clock[0])
    repeats = RepeatFilter(burst=3, window=10.0)
    kept = [repeats.filter(record("bad offer from %s", i)) for i in range(50)]
    assert kept == [True] * 3 + [False] * 47
    assert repeats.filter(record("another kind")), "other messages still get through"
    assert repeats.filter(record("info is never limited", level=logging.INFO))
    clock[0] += 11
    later = record("bad offer from %s", 51)
    assert repeats.filter(later) and "47 more like it left out" in later.getMessage()


async def test_a_malformed_request_is_one_warning_without_its_bytes(
    kelian: Server, caplog: pytest.LogCaptureFixture
) -> None:
    port = int(kelian.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    header = b"Authorization: Bearer SECRET-TOKEN-" + b"x" * 10_000
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n")
    await writer.drain()
    assert (await reader.read(100)).startswith(b"HTTP/1.0 400")
    writer.close()
    await asyncio.sleep(0.1)
    mine = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [(r.levelname, r.getMessage()) for r in mine] == [
        ("WARNING", "refused a malformed HTTP request: LineTooLong (400)")
    ]
    assert "SECRET-TOKEN" not in caplog.text and not mine[0].exc_info


def test_setup_logging_installs_the_repeat_filter() -> None:
    stream = io.StringIO()
    handler = setup_logging("info", "text", stream)
    log = logging.getLogger("kelian.flood")
    for i in range(100):
        log.warning("refused a bad message from %s", i)
    assert stream.getvalue().count("refused a bad message") == 10
    logging.getLogger().removeHandler(handler)
