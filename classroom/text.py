"""Untrusted text, checked where it enters: names from tokens, the admin API, URLs and messages.

Python strings can hold what UTF-8 cannot (a lone UTF-16 surrogate, which JSON's "\\ud83d" escape
makes), and what a log line or a URL must not (control characters). Such a string accepted in one
place fails later in another: a display name with a lone surrogate was broadcast to a room, the JSON
encoder raised, and every later join to that room failed. So every name is checked once, here, by
the same rules, and refused with a message that says what to change.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_NAME = 128  # room names and identities: they appear in URL paths and logs
MAX_DISPLAY_NAME = 256
MAX_JSON_DEPTH = 32  # no request kelian takes nests deeper than a few levels

# C0 and C1 control characters, DEL, and lone surrogates (U+D800-U+DFFF never stand alone in
# well-formed text, and cannot be encoded as UTF-8).
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The same, but tabs and line breaks pass: free text such as a room's metadata.
_BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# What log lines show escaped: every control character, line breaks included, and lone surrogates.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class TextError(ValueError):
    """Text that kelian will not take; the message says what and why."""


def name(value: Any, what: str, limit: int = MAX_NAME) -> str:
    """A room name or identity: 1 to `limit` characters, no '/', no control characters or lone
    surrogates, no spaces at either end, not '.' or '..' (both become URL path segments)."""
    text = display_name(value, what, limit)
    if "/" in text or text in (".", ".."):
        raise TextError(f"{what} {_show(text)} must not contain '/' nor be '.' or '..'")
    if text != text.strip():
        raise TextError(f"{what} {_show(text)} must not start or end with spaces")
    return text


def display_name(value: Any, what: str = "name", limit: int = MAX_DISPLAY_NAME) -> str:
    """A name people read: 1 to `limit` characters, no control characters or lone surrogates."""
    if not isinstance(value, str) or not value:
        raise TextError(f"{what} must be a non-empty string")
    return _checked(value, what, limit, _BAD_NAME)


def free_text(value: Any, what: str, limit: int) -> str:
    """Text such as metadata: up to `limit` characters; tabs and line breaks allowed, other control
    characters and lone surrogates not."""
    if not isinstance(value, str):
        raise TextError(f"{what} must be a string, got {type(value).__name__}")
    return _checked(value, what, limit, _BAD_TEXT)


def _checked(value: str, what: str, limit: int, bad: re.Pattern[str]) -> str:
    if len(value) > limit:
        raise TextError(f"{what} must be at most {limit} characters, got {len(value)}")
    if found := bad.search(value):
        raise TextError(f"{what} {_show(value)} contains {_describe(found.group())}, which is not allowed")
    return value


def parse_json(data: str | bytes) -> Any:
    """json.loads for untrusted input: every failure is a ValueError, nesting is bounded.

    json.loads recurses once per level, so a 100,000-deep "[[[[..." would raise RecursionError (and
    log a traceback) where a plain "not JSON" is the answer; it is refused before parsing instead.
    """
    if _depth(data) > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(data)
    except RecursionError:  # pragma: no cover: _depth bounds it first
        raise ValueError("JSON nested too deeply") from None


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)  # strings, skipped whole


def _depth(data: str | bytes) -> int:
    """How deep arrays and objects nest (brackets inside strings do not count), in linear time."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if "[" not in text and "{" not in text:
        return 0
    deepest = level = 0
    for match in _JSON_TOKENS.finditer(text):
        char = match.group()
        if char in "[{":
            level += 1
            if level > deepest:
                deepest = level
                if deepest > MAX_JSON_DEPTH:
                    break
        elif char in "]}":
            level = max(0, level - 1)
    return deepest


def for_log(value: object, limit: int | None = 200) -> str:
    """A value from outside (a room name, an identity, a reason) made safe for one log line: control
    characters and line breaks escaped, so nobody can forge a line, and long values cut."""
    text = str(value)
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _describe(char: str) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone UTF-16 surrogate (U+{code:04X})"
    return f"a control character (U+{code:04X})"
