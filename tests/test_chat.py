"""Chat and questions: who reads what, the history a late joiner gets, sizes and the rate limit,
moderators deleting, and a question's way from the asker to its tutor, the lecturer and back."""

from __future__ import annotations

from typing import Any

import pytest
from classroom_peers import api, events, peers, token
from kelian_server import Server, eventually

from classroom import chat
from loadtest.peer import Peer, PeerError

ROOM = "/rooms/lesson"


def texts(peer: Peer) -> list[str]:
    return [e["message"]["text"] for e in events(peer, "chat")]


async def code_of(peer: Peer, message: dict[str, Any]) -> str:
    with pytest.raises(PeerError) as caught:
        await peer.request(message)
    return caught.value.code


DUAL_CLASS = [
    ("lecturer", "lecturer", {}),
    ("box-1", "classroom", {}),
    ("box-2", "classroom", {}),
    ("tutor-1", "tutor", {"classroom": "box-1"}),
    ("ann", "student", {"classroom": "box-1"}),
    ("bob", "student", {"classroom": "box-2"}),
]


async def test_chat_reaches_the_room_a_classroom_or_the_lecturer(kelian: Server) -> None:
    async with peers(kelian, *DUAL_CLASS, kind="dual_teacher") as everyone:
        lecturer, box1, box2, tutor1, ann, bob = everyone
        sent = await lecturer.request({"type": "chat", "text": "  good morning  "})
        message = sent["message"]
        assert message["text"] == "good morning" and message["to"] == "room"
        assert message["from"]["identity"] == "lecturer" and message["id"].startswith("CM_")
        assert await eventually(lambda: all("good morning" in texts(p) for p in everyone[1:]))

        await ann.request({"type": "chat", "text": "which page?", "to": "classroom"})
        assert await eventually(lambda: "which page?" in texts(tutor1) and "which page?" in texts(box1))
        await box2.request({"type": "chat", "text": "we cannot hear", "to": "lecturer"})
        assert await eventually(lambda: "we cannot hear" in texts(lecturer))
        assert await eventually(lambda: "we cannot hear" in texts(box2)), "the sender sees its own"
        await lecturer.request({"type": "chat", "text": "sync"})  # everything before it has arrived
        assert await eventually(lambda: all("sync" in texts(p) for p in everyone[1:]))
        for outsider in (box2, bob, lecturer):
            assert "which page?" not in texts(outsider), "a classroom's chat stays in it"
        for outsider in (box1, tutor1, ann, bob):
            assert "we cannot hear" not in texts(outsider), "a note to the lecturer reaches only it"
        assert await code_of(lecturer, {"type": "chat", "text": "x", "to": "classroom"}) == "bad_message"
        assert await code_of(ann, {"type": "chat", "text": "x", "to": "everyone"}) == "bad_message"


async def test_a_late_joiner_gets_the_last_messages_it_may_read(kelian: Server) -> None:
    async with peers(
        kelian, ("lecturer", "lecturer", {}), ("box-1", "classroom", {}), kind="dual_teacher"
    ) as (
        _lecturer,
        box1,
    ):
        for n in range(chat.LATE + 3):
            room = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
            await room.chat.post(None, f"notice {n}")
        await box1.request({"type": "chat", "text": "ours", "to": "classroom"})
        late = Peer(kelian.url, token(kelian, "box-2", "classroom", "dual_teacher"))
        ann = Peer(kelian.url, token(kelian, "ann", "student", "dual_teacher", classroom="box-1"))
        try:
            history = (await late.connect())["lesson"]["chat"]
            assert len(history) == chat.LATE and history[-1]["text"] == f"notice {chat.LATE + 2}"
            assert "ours" not in [m["text"] for m in history]
            history = (await ann.connect())["lesson"]["chat"]
            assert history[-1]["text"] == "ours" and history[-1]["classroom"] == "box-1"
        finally:
            await late.close()
            await ann.close()
        status, body = await api(kelian, "GET", f"{ROOM}/chat")
        assert status == 200 and len(body["chat"]) == chat.LATE + 4, "the admin API reads everything kept"


async def test_sizes_and_the_rate_limit(kelian: Server) -> None:
    async with peers(kelian, ("teacher", "lecturer", {}), ("ann", "student", {}), kind="fusion") as (_, ann):
        too_long = "x" * (chat.MAX_CHAT + 1)
        with pytest.raises(PeerError, match=f"at most {chat.MAX_CHAT} characters"):
            await ann.request({"type": "chat", "text": too_long})
        assert await code_of(ann, {"type": "chat", "text": too_long}) == "too_large"
        assert await code_of(ann, {"type": "ask", "text": "?" * (chat.MAX_QUESTION + 1)}) == "too_large"
        for bad in ("", "   ", 42, None, ["hi"]):
            assert await code_of(ann, {"type": "chat", "text": bad}) == "bad_message", bad
        assert await code_of(ann, {"type": "chat", "text": "bell\x07"}) == "bad_message"
        for n in range(chat.BURST):
            await ann.request({"type": "chat", "text": f"spam {n}"})
        assert await code_of(ann, {"type": "chat", "text": "one more"}) == "rate_limited"
        assert await code_of(ann, {"type": "ask", "text": "and a question?"}) == "rate_limited"
        assert kelian.rooms.rooms["lesson"].limits.refusals["chat_rate"] == 2  # type: ignore[attr-defined]
        # leaving and coming back does not refill the bucket
        await ann.close()
        again = Peer(kelian.url, token(kelian, "ann", "student", "fusion"))
        try:
            await again.connect()
            assert await code_of(again, {"type": "chat", "text": "me again"}) == "rate_limited"
        finally:
            await again.close()


async def test_moderators_delete_and_others_may_not(kelian: Server) -> None:
    people = [("teacher", "lecturer", {}), ("ann", "student", {}), ("bob", "student", {})]
    async with peers(kelian, *people, kind="fusion") as (teacher, ann, bob):
        rude = (await ann.request({"type": "chat", "text": "rude"}))["message"]["id"]
        assert await code_of(bob, {"type": "delete_chat", "message": rude}) == "forbidden"
        assert await code_of(ann, {"type": "delete_chat", "message": rude}) == "forbidden"
        reply = await teacher.request({"type": "delete_chat", "message": rude})
        assert (reply["type"], reply["message"]) == ("chat_deleted", rude)
        assert await eventually(lambda: [e["message"] for e in events(bob, "chat_deleted")] == [rude])
        assert await code_of(teacher, {"type": "delete_chat", "message": rude}) == "not_found"
        late = Peer(kelian.url, token(kelian, "carl", "student", "fusion"))
        try:
            assert (await late.connect())["lesson"]["chat"] == [], "a deleted message is not replayed"
        finally:
            await late.close()
        status, body = await api(kelian, "POST", f"{ROOM}/chat", {"text": "the bell rings at ten"})
        assert status == 201 and body["from"] is None
        assert await eventually(lambda: "the bell rings at ten" in texts(ann))
        assert (await api(kelian, "DELETE", f"{ROOM}/chat/{body['id']}"))[0] == 204
        assert (await api(kelian, "DELETE", f"{ROOM}/chat/{body['id']}"))[0] == 404
        status, body = await api(kelian, "POST", f"{ROOM}/chat", {"text": ""})
        assert status == 400 and body["error"]["code"] == "invalid_request"


async def test_a_question_goes_to_the_tutor_up_to_the_lecturer_and_back(kelian: Server) -> None:
    async with peers(kelian, *DUAL_CLASS, kind="dual_teacher") as everyone:
        lecturer, box1, _box2, tutor1, ann, bob = everyone
        asked = (await ann.request({"type": "ask", "text": "why is the sky blue?", "to": "tutor"}))[
            "question"
        ]
        assert (asked["status"], asked["to"], asked["classroom"]) == ("open", "tutor", "box-1")
        qid = asked["id"]

        def seen(peer: Peer) -> list[dict[str, Any]]:
            return [e["question"] for e in events(peer, "question") if e["question"]["id"] == qid]

        assert await eventually(lambda: bool(seen(tutor1)))
        assert not seen(lecturer) and not seen(bob) and not seen(box1), "the tutor's until passed up"
        for who in (bob, box1):
            assert await code_of(who, {"type": "answer_question", "question": qid}) == "not_found"
        reply = await tutor1.request({"type": "forward_question", "question": qid})
        assert reply["question"]["to"] == "lecturer"
        assert await code_of(tutor1, {"type": "forward_question", "question": qid}) == "unexpected"
        assert await eventually(lambda: bool(seen(lecturer)))
        await lecturer.request({"type": "answer_question", "question": qid, "text": "Rayleigh scattering"})
        assert await eventually(lambda: seen(ann)[-1:] != [] and seen(ann)[-1]["status"] == "answered")
        answered = seen(ann)[-1]
        assert answered["answer"] == "Rayleigh scattering" and answered["by"]["identity"] == "lecturer"
        assert not seen(bob)

        other = (await bob.request({"type": "ask", "text": "can we go home?"}))["question"]
        assert await code_of(tutor1, {"type": "dismiss_question", "question": other["id"]}) == "not_found"
        status, body = await api(kelian, "GET", f"{ROOM}/questions")
        assert [q["id"] for q in body["questions"]] == [qid, other["id"]]
        status, body = await api(kelian, "POST", f"{ROOM}/questions/{other['id']}", {"action": "dismiss"})
        assert status == 200 and body["status"] == "dismissed" and body["by"] is None
        assert await eventually(
            lambda: any(e["question"]["status"] == "dismissed" for e in events(bob, "question"))
        )
        status, body = await api(kelian, "POST", f"{ROOM}/questions/{other['id']}", {"action": "shrug"})
        assert status == 400
        assert (await api(kelian, "POST", f"{ROOM}/questions/QU_999", {"action": "dismiss"}))[0] == 404
        assert await code_of(ann, {"type": "ask", "text": "x", "to": "janitor"}) == "bad_message"
        assert await code_of(lecturer, {"type": "ask", "text": "x", "to": "tutor"}) == "bad_message"


async def test_live_viewers_ask_and_only_the_asker_and_presenters_see_it(kelian: Server) -> None:
    people = [("presenter", "lecturer", {}), ("vera", "viewer", {}), ("walt", "viewer", {})]
    async with peers(kelian, *people, kind="live") as (presenter, vera, walt):
        question = (await vera.request({"type": "ask", "text": "is this on the test?"}))["question"]
        assert await eventually(lambda: bool(events(presenter, "question")))
        await presenter.request({"type": "dismiss_question", "question": question["id"]})
        assert await eventually(lambda: events(vera, "question")[-1:] != [])
        assert events(vera, "question")[-1]["question"]["status"] == "dismissed"
        assert not events(walt, "question")
        assert (await walt.request({"type": "chat", "text": "hello all"}))["type"] == "chat_sent"
        assert await eventually(lambda: "hello all" in texts(vera) and "hello all" in texts(presenter))
