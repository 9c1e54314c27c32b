"""Chat and questions: what participants write to each other and ask their teachers.

A chat message goes to the room, to the sender's classroom (a box, its tutor and its students, in a
dual-teacher lesson), or to the lecturers (a classroom writing to the front). A question goes to
the lecturers, or first to the asker's tutor, who answers it, dismisses it or passes it up; the
asker is told what became of it. Both keep their last entries so that a late joiner, or a
reconnecting box, sees the conversation it missed. Each identity has its own rate, so one child
holding down the enter key floods nobody, and leaving and joining again does not reset it.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import text
from .errors import ClassroomError
from .limits import TokenBucket
from .permissions import LECTURE, Action, Subject, authorize, classroom_of
from .tokens import Role

if TYPE_CHECKING:
    from .participant import Participant
    from .room import Room

MAX_CHAT = 1000  # characters of one chat message or answer
MAX_QUESTION = 500
HISTORY = 200  # chat messages the room keeps
LATE = 50  # of which a joining participant gets the last it may read
MAX_QUESTIONS = 500  # kept; past it the oldest closed question is dropped
# Chat and questions together, per identity: a burst of a few, then one a second.
RATE = 1.0
BURST = 5
SCOPES = ("room", "classroom", "lecturer")  # where a chat message goes
ASK = ("lecturer", "tutor")  # whom a question is for


def _now_ms() -> int:
    return int(time.time() * 1000)


def _sender(participant: Participant | None) -> dict[str, Any] | None:
    if participant is None:
        return None  # the school's system, through the admin API
    return {
        "sid": participant.sid,
        "identity": participant.identity,
        "name": participant.name,
        "role": str(participant.role),
    }


@dataclass
class Post:
    """What someone wrote: a chat message or a question."""

    id: str
    author: Participant | None  # None: the school's system (admin API)
    source: dict[str, Any] | None  # the author as the others see it
    to: str
    classroom: str | None  # the author's: a classroom's chat, and a tutor's reach
    text: str
    at: int

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.source,
            "to": self.to,
            "classroom": self.classroom,
            "text": self.text,
            "at": self.at,
        }

    def by_author(self, viewer: Subject) -> bool:
        return self.author is not None and viewer.identity == self.author.identity


@dataclass
class Message(Post):
    """To the room, the author's classroom, or the lecturers."""

    def reaches(self, viewer: Subject) -> bool:
        if self.by_author(viewer) or self.to == "room":
            return True
        if self.to == "classroom":
            return classroom_of(viewer) == self.classroom
        return viewer.role in LECTURE  # to the lecturers


@dataclass
class Question(Post):
    """To the lecturers or the author's tutor; answered, dismissed or passed up."""

    status: str = "open"  # open | answered | dismissed
    answer: str | None = None
    by: dict[str, Any] | None = None  # who answered or dismissed it

    def info(self) -> dict[str, Any]:
        return super().info() | {"status": self.status, "answer": self.answer, "by": self.by}

    def reaches(self, viewer: Subject) -> bool:
        """The asker, the tutor of its classroom, and the lecturers once it is for them."""
        if self.by_author(viewer):
            return True
        if viewer.role is Role.TUTOR:
            return self.classroom is not None and classroom_of(viewer) == self.classroom
        return viewer.role in LECTURE and self.to == "lecturer"


class Chat:
    def __init__(self, room: Room) -> None:
        self.room = room
        self.messages: deque[Message] = deque(maxlen=HISTORY)
        self.questions: dict[str, Question] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._ids = itertools.count(1)

    # -- chat ----------------------------------------------------------------------------------------

    async def post(self, sender: Participant | None, body: Any, to: Any = "room") -> Message:
        """Send a chat message (`sender` None: the school's system, to the room)."""
        if to not in SCOPES:
            raise ClassroomError("bad_message", f'"to" is one of {", ".join(SCOPES)}')
        classroom = classroom_of(sender) if sender is not None else None
        if to == "classroom" and classroom is None:
            raise ClassroomError(
                "bad_message", "you belong to no classroom: write to the room or the lecturer"
            )
        words = self._text(sender, body, MAX_CHAT, "a chat message")
        message = Message(f"CM_{next(self._ids)}", sender, _sender(sender), to, classroom, words, _now_ms())
        self.messages.append(message)
        await self._tell(message.reaches, {"type": "chat", "message": message.info()})
        return message

    async def delete(self, by: Participant | None, message_id: str) -> None:
        message = next((m for m in self.messages if m.id == message_id), None)
        if message is None or (by is not None and not message.reaches(by)):
            raise ClassroomError("not_found", f"no chat message {message_id!r}")
        authorize(by, Action.MODERATE_CHAT, message.author)
        self.messages.remove(message)
        await self._tell(message.reaches, {"type": "chat_deleted", "message": message.id, "by": _sender(by)})

    # -- questions -----------------------------------------------------------------------------------

    async def ask(self, asker: Participant, body: Any, to: Any = "lecturer") -> Question:
        if to not in ASK:
            raise ClassroomError("bad_message", '"to" is "lecturer" or "tutor"')
        classroom = classroom_of(asker)
        if to == "tutor" and classroom is None:
            raise ClassroomError("bad_message", "you belong to no classroom: ask the lecturer")
        words = self._text(asker, body, MAX_QUESTION, "a question")
        question = Question(f"QU_{next(self._ids)}", asker, _sender(asker), to, classroom, words, _now_ms())
        self._keep(question)
        await self._tell(question.reaches, {"type": "question", "question": question.info()})
        return question

    async def settle(
        self, by: Participant | None, question_id: str, action: str, answer: Any = None
    ) -> Question:
        """A moderator answers a question, dismisses it, or (a tutor) passes it up to the lecturers."""
        question = self.questions.get(question_id)
        if question is None or (by is not None and not question.reaches(by)):
            raise ClassroomError("not_found", f"no question {question_id!r}")
        authorize(by, Action.MODERATE_CHAT, question.author)
        if action == "forward":
            if question.to == "lecturer":
                raise ClassroomError("unexpected", "the question is already the lecturer's")
            question.to = "lecturer"
        elif action in ("answer", "dismiss"):
            if action == "answer" and answer is not None:
                question.answer = self._text(None, answer, MAX_CHAT, "an answer")
            question.status = "answered" if action == "answer" else "dismissed"
            question.by = _sender(by)
        else:
            raise ClassroomError("bad_message", "a question is answered, dismissed or forwarded")
        await self._tell(question.reaches, {"type": "question", "question": question.info()})
        return question

    def _keep(self, question: Question) -> None:
        if len(self.questions) >= MAX_QUESTIONS:
            closed = next((q for q in self.questions.values() if q.status != "open"), None)
            oldest = closed or next(iter(self.questions.values()))
            del self.questions[oldest.id]
        self.questions[question.id] = question

    # -- for everyone ------------------------------------------------------------------------------

    def history(self, viewer: Participant | None) -> dict[str, Any]:
        """What a joining participant (None: the admin API) gets of the conversation so far."""
        messages = [m.info() for m in self.messages if viewer is None or m.reaches(viewer)]
        questions = [q.info() for q in self.questions.values() if viewer is None or q.reaches(viewer)]
        return {"chat": messages[-LATE:] if viewer is not None else messages, "questions": questions}

    def _text(self, sender: Participant | None, body: Any, limit: int, what: str) -> str:
        """The text of a message: checked, then the sender's rate."""
        if sender is not None:
            authorize(sender, Action.CHAT)
        if not isinstance(body, str) or not body.strip():
            raise ClassroomError("bad_message", f'{what} needs a non-empty "text"')
        if len(body) > limit:
            raise ClassroomError(
                "too_large", f"{what} is at most {limit} characters, this one has {len(body)}"
            )
        try:
            body = text.free_text(body.strip(), what, limit)
        except text.TextError as exc:
            raise ClassroomError("bad_message", str(exc)) from None
        if sender is not None:
            bucket = self._buckets.setdefault(sender.identity, TokenBucket(RATE, BURST))
            if not bucket.take():
                self.room.limits.refusals["chat_rate"] += 1
                raise ClassroomError(
                    "rate_limited",
                    f"at most {BURST} chat messages and questions at once, then {RATE:g} a second",
                )
        return body

    async def _tell(self, reaches: Any, message: dict[str, Any]) -> None:
        for participant in list(self.room.participants.values()):
            if participant.send is not None and reaches(participant):
                await participant.notify(message)
