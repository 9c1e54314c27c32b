"""Logging setup: readable lines for a terminal, one JSON object per line for log collectors.

Structured context goes in ``extra=`` (``log.info("joined", extra={"room": r, "identity": i})``) so that
both formats show it and JSON consumers can filter on it without parsing the message.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from aiohttp import http_exceptions

from classroom.text import for_log

__all__ = ["JsonFormatter", "RepeatFilter", "TextFormatter", "quiet_bad_requests", "setup_logging"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_HANDLER_MARK = "_kelian_handler"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; non-JSON values are stringified rather than dropping the record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Classic log line with ``extra=`` fields appended as key=value, so context is not lost on a tty.

    The message and the fields are escaped (text.for_log): room names, identities and reasons come
    from clients, and a CRLF in one of them must not start a forged line. Only a traceback, below the
    line, keeps its line breaks.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = for_log(record.message, limit=None)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if not extras:
            return line
        head, sep, tail = line.partition("\n")  # keep tracebacks below the context, not in the middle
        context = " ".join(f"{k}={for_log(v)}" for k, v in extras.items())
        return f"{head} [{context}]{sep}{tail}"


class RepeatFilter(logging.Filter):
    """At most `burst` records of one kind (logger and message template) per `window` seconds; the
    next one after a quiet window says how many were left out. A client sending the same bad input
    a thousand times a second must not fill the disk or hide everything else."""

    def __init__(self, burst: int = 10, window: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        state = self._seen.get(key)
        if state is None or now - state[0] > self.window:
            suppressed = int(state[2]) if state is not None else 0
            self._seen[key] = [now, 1, 0]
            if len(self._seen) > 10_000:  # forget the oldest kinds rather than grow without end
                for old in list(self._seen)[:5_000]:
                    del self._seen[old]
            if suppressed:
                record.msg = (
                    f"{record.msg} ({suppressed} more like it left out in the last {self.window:g} s)"
                )
            return True
        state[1] += 1
        if state[1] <= self.burst:
            return True
        state[2] += 1
        return False


class _BadRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (an over-long line or header, not HTTP at all) as an
    ERROR with a traceback that quotes the bytes it got: a token from an Authorization header, in the
    log, at the client's command. One warning line without the bytes says enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, http_exceptions.HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "refused a malformed HTTP request: %s (%s)"
            record.args = (type(exc).__name__, exc.code)
            record.exc_info = record.exc_text = None
        return True


_BAD_REQUESTS = _BadRequestFilter()


def quiet_bad_requests() -> None:
    """Install the filter on aiohttp's server logger (once, whoever starts a server)."""
    logger = logging.getLogger("aiohttp.server")
    if _BAD_REQUESTS not in logger.filters:
        logger.addFilter(_BAD_REQUESTS)


def setup_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Install one handler on the root logger, replacing any this function installed before.

    Only our own handler is replaced, so calling it again (tests, reloads) does not duplicate lines and
    does not remove handlers that a test harness put there.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}; expected 'text' or 'json'")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RepeatFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    # Per-packet debug logging from the libraries we build on drowns our own; keep them at warning
    # unless kelian itself runs at debug.
    if numeric > logging.DEBUG:
        for noisy in ("aioice", "aiortc", "asyncio"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
