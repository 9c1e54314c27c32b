"""A participant's session across a dropped WebSocket: resumed within the grace period, gone after it."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from kelian_server import Server, eventually, lesson

from signaling import ws as ws_module
from signaling.client import ClientError
from signaling.media import video_track


async def join(session: aiohttp.ClientSession, kelian: Server, token: str, **extra: Any) -> tuple[Any, dict]:
    socket = await session.ws_connect(kelian.url.replace("http", "ws") + "/ws")
    await socket.send_json({"type": "join", "token": token, "id": 1, **extra})
    while True:
        message = await socket.receive_json(timeout=5)
        if message.get("id") == 1:
            return socket, message


def participants(kelian: Server) -> dict[str, Any]:
    room = kelian.rooms.rooms.get("lesson")  # type: ignore[attr-defined]
    return {} if room is None else dict(room.participants)


async def test_a_dropped_socket_resumes_the_same_session_and_media_keeps_flowing(kelian: Server) -> None:
    async with lesson(kelian, video_track()) as live, aiohttp.ClientSession() as http:
        token = kelian.token("student-2")
        socket, joined = await join(http, kelian, token)
        sid = joined["participant"]["sid"]
        assert joined["resumed"] is False
        await socket.close()  # no "leave": a network drop as the server sees it
        assert await eventually(lambda: not participants(kelian)[sid].connected)
        assert sid in participants(kelian), "kept during the grace period"

        socket, joined = await join(http, kelian, token, resume=sid)
        assert joined["resumed"] is True and joined["participant"]["sid"] == sid
        assert participants(kelian)[sid].connected
        offer = await socket.receive_json(timeout=5)
        assert offer["type"] == "offer" and list(offer["tracks"].values()) == [live.tracks[0].id]
        left = [e for e in live.teacher.events if e["type"] == "participant_left"]
        assert not left, "the others never saw the student leave"
        await socket.close()


async def test_resume_needs_the_same_identity_and_a_live_session(kelian: Server) -> None:
    async with aiohttp.ClientSession() as http:
        socket, joined = await join(http, kelian, kelian.token("alice"))
        sid = joined["participant"]["sid"]
        await socket.close()
        await eventually(lambda: not participants(kelian)[sid].connected)
        other, joined = await join(http, kelian, kelian.token("mallory"), resume=sid)
        assert joined["resumed"] is False and joined["participant"]["sid"] != sid
        unknown, joined = await join(http, kelian, kelian.token("bob"), resume="PS_nonexistent")
        assert joined["type"] == "joined" and joined["resumed"] is False
        for s in (other, unknown):
            await s.close()


async def test_after_the_grace_period_the_participant_leaves(
    kelian: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_module, "RECONNECT_GRACE", 0.3)
    teacher = kelian.client("teacher", "lecturer")
    await teacher.connect()
    try:
        async with aiohttp.ClientSession() as http:
            socket, joined = await join(http, kelian, kelian.token("student"))
            sid = joined["participant"]["sid"]
            await socket.close()
            assert await eventually(lambda: sid not in participants(kelian), timeout=5)
            left = [e for e in teacher.events if e["type"] == "participant_left"]
            assert left == [{"type": "participant_left", "sid": sid, "reason": "disconnected"}]
            socket, joined = await join(http, kelian, kelian.token("student"), resume=sid)
            assert joined["resumed"] is False, "too late: a fresh session"
            await socket.close()
    finally:
        await teacher.close()


async def test_leave_ends_the_session_at_once(kelian: Server) -> None:
    async with aiohttp.ClientSession() as http:
        socket, joined = await join(http, kelian, kelian.token("student"))
        await socket.send_json({"type": "leave", "id": 2})
        assert (await socket.receive_json(timeout=5))["type"] == "left"
        assert joined["participant"]["sid"] not in participants(kelian)
        await socket.close()


async def test_shutdown_closes_sockets_as_going_away(kelian: Server) -> None:
    from signaling import server

    async with aiohttp.ClientSession() as http:
        socket, _ = await join(http, kelian, kelian.token("student"))
        await server.stop(kelian.runner, kelian.node)
        message = await socket.receive(timeout=5)
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1001


async def test_a_teacher_mutes_and_removes_a_student_but_a_student_cannot(kelian: Server) -> None:
    async with lesson(kelian, video_track(), student_role="classroom") as live:
        track = live.tracks[0].id
        with pytest.raises(ClientError, match="forbidden"):
            await live.student.request({"type": "mute", "track": track, "muted": True})
        with pytest.raises(ClientError, match="forbidden"):
            await live.student.request({"type": "remove", "identity": "teacher"})
        assert not live.tracks[0].info.get("muted")

        student_track = (await live.student.publish(video_track()))["tracks"][0]["id"]
        muted = await live.teacher.request({"type": "mute", "track": student_track, "muted": True})
        assert muted == {"type": "muted", "track": student_track, "muted": True, "id": muted["id"]}
        assert await eventually(
            lambda: any(e["type"] == "track_muted" and e["track"]["muted"] for e in live.student.events)
        )
        removed = await live.teacher.request({"type": "remove", "identity": "student"})
        assert removed["type"] == "removed"
        assert await eventually(
            lambda: any(e == {"type": "disconnected", "reason": "removed"} for e in live.student.events)
        )
        assert [p.identity for p in participants(kelian).values()] == ["teacher"]
