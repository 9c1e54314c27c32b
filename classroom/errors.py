"""The classroom's error codes: one table, with the form each takes on the wire.

A refusal is a ClassroomError with a code; the WebSocket sends it as an `error` event with that
code, WHIP/WHEP and the admin API answer with the HTTP status the table gives. Entry points never
invent codes or statuses of their own, so a client sees the same reason however it came in.
"""

from __future__ import annotations

from dataclasses import dataclass


class ClassroomError(Exception):
    """A request that cannot be served; `code` is a key of ERRORS."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP status of this refusal (WHIP/WHEP, the admin API)."""
        return http_status(self.code)


@dataclass(frozen=True)
class ErrorCode:
    status: int  # HTTP
    meaning: str


ERRORS: dict[str, ErrorCode] = {
    "bad_message": ErrorCode(400, "a message or body kelian cannot read, or a field of the wrong type"),
    "unknown_type": ErrorCode(400, "a message type the server does not know"),
    "bad_sdp": ErrorCode(400, "an offer or answer that cannot be used"),
    "unsupported_media_type": ErrorCode(415, "a WHIP/WHEP body that is not application/sdp"),
    "too_large": ErrorCode(413, "a body over its limit"),
    "unauthorized": ErrorCode(401, "no token, or one that does not verify"),
    "forbidden": ErrorCode(403, "the role or the room does not allow it"),
    "not_found": ErrorCode(404, "no such room, participant, track or session"),
    "not_joined": ErrorCode(409, "a request before join or after the session ended"),
    "already_joined": ErrorCode(409, "join on a connection that has joined"),
    "unexpected": ErrorCode(409, "an answer when no offer waits for one"),
    "room_closed": ErrorCode(409, "the room is being closed"),
    "nothing_to_play": ErrorCode(409, "WHEP: nothing is being published (by that participant)"),
    "exists": ErrorCode(409, "a room of that name exists"),
    "in_use": ErrorCode(409, "admin API: a record other records point at (delete or change them first)"),
    "illegal_step": ErrorCode(409, "a library item's review step its state does not allow"),
    "room_exists": ErrorCode(409, "admin API: a room of that name exists"),
    "invalid_request": ErrorCode(400, "admin API: a body or field it cannot take"),
    "method_not_allowed": ErrorCode(405, "a method the path does not take"),
    "room_full": ErrorCode(503, "the room has as many participants as it may"),
    "room_locked": ErrorCode(403, "the room is locked: only those already in it may come back"),
    "lesson_offline": ErrorCode(403, "a student or viewer joining a lesson that is in person (offline)"),
    "stage_full": ErrorCode(409, "as many participants are on stage as may be"),
    "too_many_tracks": ErrorCode(409, "more tracks than one participant may publish or receive"),
    "unavailable": ErrorCode(503, "the worker or node of the room is being replaced: try again"),
    "recorder_unavailable": ErrorCode(503, "the recorder process could not be started"),
    "rate_limited": ErrorCode(429, "more requests than the session's rate"),
    "join_timeout": ErrorCode(408, "a socket that did not join in time"),
    "internal": ErrorCode(500, "a server bug"),
}


def http_status(code: str) -> int:
    entry = ERRORS.get(code)
    return entry.status if entry is not None else 400
