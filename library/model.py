"""A library item: a recorded lesson or a micro-lesson cut from one, its catalogue and its review.

The catalogue is what schools search by (stage, grade, subject, teacher, school, date, tags); the
review is a small state machine, because a lesson a reviewer has not passed must never reach a
student's screen: draft -> in review -> published or rejected (with a reason); a rejected item goes
back to review once mended, a published one may be withdrawn to draft. Anything else is refused
with the states it could go to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from classroom import text

STAGES = ("primary", "junior", "senior")  # 小学, 初中, 高中
KINDS = ("lesson", "micro")
MAX_MICRO = 300.0  # seconds: a micro-lesson is at most five minutes
MAX_TAGS = 20
# action -> {from state: to state}
REVIEW: dict[str, dict[str, str]] = {
    "submit": {"draft": "in_review", "rejected": "in_review"},
    "publish": {"in_review": "published"},
    "reject": {"in_review": "rejected"},
    "withdraw": {"published": "draft", "in_review": "draft"},
}
DONE = {"submit": "submitted", "publish": "published", "reject": "rejected", "withdraw": "withdrawn"}
EDITABLE = ("title", "stage", "grade", "subject", "teacher", "school", "tags", "date")


class ItemError(ValueError):
    """A field or a step the library will not take; the message says which and why."""


@dataclass
class Item:
    id: str
    kind: str  # lesson | micro
    title: str
    status: str = "finishing"  # finishing -> draft -> in_review -> published | rejected; failed
    stage: str | None = None
    grade: str | None = None
    subject: str | None = None
    teacher: str | None = None
    school: str | None = None
    date: str | None = None  # YYYY-MM-DD, the lesson's
    tags: list[str] = field(default_factory=list)
    duration: float = 0.0
    lesson: str | None = None  # a micro-lesson's lesson
    start: float = 0.0  # a micro-lesson's span in its lesson, seconds
    recording: str | None = None  # the recording's folder, <room>/<start time>
    progress: float = 0.0  # of the finishing job
    reason: str | None = None  # why it was rejected, or why finishing failed
    reviewer: str | None = None
    created_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def visible_to_everyone(self) -> bool:
        return self.status == "published"


def catalogue(body: dict[str, Any], partial: bool = False) -> dict[str, Any]:
    """The catalogue fields of a request, checked; unknown fields are refused."""
    unknown = sorted(set(body) - set(EDITABLE))
    if unknown:
        raise ItemError(f"unknown field {unknown[0]!r}; the catalogue has {', '.join(EDITABLE)}")
    out: dict[str, Any] = {}
    try:
        for key in ("title", "grade", "subject", "teacher", "school"):
            if key in body:
                out[key] = None if body[key] is None and key != "title" else text.display_name(body[key], key)
    except text.TextError as exc:
        raise ItemError(str(exc)) from None
    if "stage" in body:
        if body["stage"] not in (*STAGES, None):
            raise ItemError(f"stage is one of {', '.join(STAGES)}, got {body['stage']!r}")
        out["stage"] = body["stage"]
    if "date" in body:
        date = body["date"]
        if date is not None and not (isinstance(date, str) and len(date) == 10 and date[4] == date[7] == "-"):
            raise ItemError(f"date is YYYY-MM-DD, got {date!r}")
        out["date"] = date
    if "tags" in body:
        tags = body["tags"]
        if not isinstance(tags, list) or len(tags) > MAX_TAGS:
            raise ItemError(f"tags is a list of at most {MAX_TAGS} words")
        try:
            out["tags"] = sorted({text.display_name(t, "tag", 64) for t in tags})
        except text.TextError as exc:
            raise ItemError(str(exc)) from None
    if not partial and "title" not in out:
        raise ItemError("an item needs a title")
    return out


def review(item: Item, action: str, reviewer: str | None, reason: str | None) -> None:
    """Move `item` along the review: ItemError for a step its state does not allow."""
    steps = REVIEW.get(action)
    if steps is None:
        raise ItemError(f"action is one of {', '.join(REVIEW)}, got {action!r}")
    if item.status not in steps:
        allowed = [a for a, s in REVIEW.items() if item.status in s]
        raise ItemError(
            f"a {item.status} item cannot be {DONE[action]}"
            + (f": it can be {', '.join(DONE[a] for a in allowed)}" if allowed else "")
        )
    if action == "reject" and not (isinstance(reason, str) and reason.strip()):
        raise ItemError("a rejection needs a reason, for the teacher")
    if action in ("publish", "reject") and not (isinstance(reviewer, str) and reviewer.strip()):
        raise ItemError("say who reviewed it (reviewer)")
    item.status = steps[item.status]
    item.reason = reason.strip() if action == "reject" and isinstance(reason, str) else None
    if isinstance(reviewer, str) and reviewer.strip():
        item.reviewer = reviewer.strip()
