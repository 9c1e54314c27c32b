"""The organisation lessons belong to: districts, schools, classrooms, teachers, students and lessons.

A school's own timetable system is the source of these records; kelian keeps a copy, keyed by the
ids that system uses, so that the school can update a record by sending it again and so that a
switchover knows, without asking anyone, which lessons and which connected clients a district or a
school covers. Every record is checked once, here, when it comes in (an id or name a log line or a
URL could not carry, a lesson ending before it starts, an unknown kind) and refused with a message
that names the field; the store keeps only records that passed.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from classroom import text
from classroom.tokens import KINDS


class Mode(StrEnum):
    OFFLINE = "offline"  # lessons in person, in their classrooms
    ONLINE = "online"  # lessons in their online rooms: students join from home


class Recording(StrEnum):
    NEVER = "never"
    ALWAYS = "always"
    ONLINE = "online"  # recorded while the lesson is online: what the city plans ask for


class RecordError(ValueError):
    """A record kelian will not keep; the message names the field and says what to change."""


MAX_MEMBERS = 2_000  # classrooms or students of one lesson
MAX_SECONDS = 253_402_300_799  # 9999-12-31: a time beyond it is a mistake, not a plan


def _id(value: Any, what: str) -> str:
    try:
        return text.name(value, what)
    except text.TextError as exc:
        raise RecordError(str(exc)) from None


def _name(value: Any, what: str) -> str:
    try:
        return text.display_name(value, what)
    except text.TextError as exc:
        raise RecordError(str(exc)) from None


def _optional_id(value: Any, what: str) -> str | None:
    return None if value is None or value == "" else _id(value, what)


def _seconds(value: Any, what: str) -> int:
    """Unix seconds, or an ISO 8601 time with its offset (a timetable's "2026-09-01T08:00+08:00")."""
    if isinstance(value, str):
        value = value.strip()
        if value.isdigit():
            value = int(value)
        else:
            try:
                when = datetime.datetime.fromisoformat(value)
            except ValueError:
                raise RecordError(f"{what} must be Unix seconds or an ISO 8601 time, got {value!r}") from None
            if when.tzinfo is None:
                raise RecordError(f"{what} {value!r} needs its UTC offset, such as +08:00")
            value = when.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_SECONDS:
        raise RecordError(f"{what} must be a time in Unix seconds, got {value!r}")
    return int(value)


def _ids(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # a CSV cell: "c1 c2" or "c1;c2"
        value = value.replace(";", " ").split()
    if not isinstance(value, (list, tuple)):
        raise RecordError(f"{what} must be a list of ids")
    if len(value) > MAX_MEMBERS:
        raise RecordError(f"{what} may list at most {MAX_MEMBERS}, got {len(value)}")
    ids = tuple(_id(v, what) for v in value)
    if len(set(ids)) != len(ids):
        raise RecordError(f"{what} lists an id twice")
    return ids


def _choice(value: Any, what: str, choices: type[StrEnum], default: StrEnum) -> Any:
    if value is None or value == "":
        return default
    try:
        return choices(value)
    except ValueError:
        raise RecordError(f"{what} must be one of {', '.join(choices)}, got {value!r}") from None


@dataclass(frozen=True)
class Record:
    """A record of the organisation. ``parent`` names the field that points up the tree (a school's
    district, a lesson's school): the store indexes it, and refuses a record whose parent is missing."""

    kind: ClassVar[str]
    parent: ClassVar[str | None] = None
    id: str

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @property
    def parent_id(self) -> str | None:
        return getattr(self, self.parent) if self.parent else None


@dataclass(frozen=True)
class District(Record):
    kind: ClassVar[str] = "district"
    name: str = ""
    mode: Mode = Mode.OFFLINE


@dataclass(frozen=True)
class School(Record):
    kind: ClassVar[str] = "school"
    parent: ClassVar[str | None] = "district"
    district: str = ""
    name: str = ""
    mode: Mode = Mode.OFFLINE


@dataclass(frozen=True)
class Classroom(Record):
    """A room of a school; its box is the identity of the device that publishes its camera and
    microphone (the identity in that device's tokens)."""

    kind: ClassVar[str] = "classroom"
    parent: ClassVar[str | None] = "school"
    school: str = ""
    name: str = ""
    box: str | None = None


@dataclass(frozen=True)
class Teacher(Record):
    kind: ClassVar[str] = "teacher"
    parent: ClassVar[str | None] = "school"
    school: str = ""
    name: str = ""


@dataclass(frozen=True)
class Student(Record):
    kind: ClassVar[str] = "student"
    parent: ClassVar[str | None] = "school"
    school: str = ""
    name: str = ""
    classroom: str | None = None  # the student's own classroom, if the school says


@dataclass(frozen=True)
class Lesson(Record):
    """One lesson of the timetable: its room is named by its id. ``mode`` set here overrides the
    school's, for a switchover of a list of lessons."""

    kind: ClassVar[str] = "lesson"
    parent: ClassVar[str | None] = "school"
    school: str = ""
    title: str = ""
    room_kind: str = "fusion"
    teacher: str | None = None  # the host
    classrooms: tuple[str, ...] = ()
    students: tuple[str, ...] = ()
    starts_at: int = 0
    ends_at: int = 0
    recording: Recording = Recording.ONLINE
    mode: Mode | None = None
    subject: str | None = None

    def in_session(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at


RECORDS: dict[str, type[Record]] = {
    r.kind: r for r in (District, School, Classroom, Teacher, Student, Lesson)
}
# the order a bulk import or a restore writes them in: parents before children
ORDER = ("district", "school", "classroom", "teacher", "student", "lesson")


def parse(kind: str, body: Any) -> Record:
    """A record of `kind` from a JSON object (the admin API) or a CSV row (an import): checked
    field by field; RecordError says which field is wrong."""
    if kind not in RECORDS:
        raise RecordError(f"kind must be one of {', '.join(RECORDS)}, got {kind!r}")
    if not isinstance(body, dict):
        raise RecordError(f"a {kind} is a JSON object")
    cls = RECORDS[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise RecordError(f"a {kind} has no field {', '.join(map(repr, unknown))}")
    values: dict[str, Any] = {"id": _id(body.get("id"), "id")}
    if "name" in known:
        values["name"] = _name(body.get("name") or values["id"], "name")
    if "mode" in known and kind != "lesson":
        values["mode"] = _choice(body.get("mode"), "mode", Mode, Mode.OFFLINE)
    if cls.parent:
        values[cls.parent] = _id(body.get(cls.parent), cls.parent)
    if kind == "classroom":
        values["box"] = _optional_id(body.get("box"), "box")
    if kind == "student":
        values["classroom"] = _optional_id(body.get("classroom"), "classroom")
    if kind == "lesson":
        values.update(_lesson_fields(body))
    return cls(**values)


def _lesson_fields(body: dict[str, Any]) -> dict[str, Any]:
    room_kind = body.get("room_kind") or "fusion"
    if room_kind not in KINDS:
        raise RecordError(f"room_kind must be one of {', '.join(KINDS)}, got {room_kind!r}")
    starts, ends = _seconds(body.get("starts_at"), "starts_at"), _seconds(body.get("ends_at"), "ends_at")
    if ends <= starts:
        raise RecordError("ends_at must be after starts_at")
    mode = body.get("mode")
    subject = body.get("subject")
    return {
        "title": _name(body.get("title") or body["id"], "title"),
        "room_kind": room_kind,
        "teacher": _optional_id(body.get("teacher"), "teacher"),
        "classrooms": _ids(body.get("classrooms"), "classrooms"),
        "students": _ids(body.get("students"), "students"),
        "starts_at": starts,
        "ends_at": ends,
        "recording": _choice(body.get("recording"), "recording", Recording, Recording.ONLINE),
        "mode": None if mode in (None, "") else _choice(mode, "mode", Mode, Mode.OFFLINE),
        "subject": None if subject in (None, "") else _name(subject, "subject"),
    }


def references(record: Record) -> list[tuple[str, str]]:
    """Every other record this one points at, as (kind, id): the store refuses a record whose
    references are missing, so a lesson never names a classroom that is not there."""
    refs: list[tuple[str, str]] = []
    if record.parent:
        refs.append((record.parent, str(record.parent_id)))
    if isinstance(record, Student) and record.classroom:
        refs.append(("classroom", record.classroom))
    if isinstance(record, Lesson):
        refs += [("teacher", record.teacher)] if record.teacher else []
        refs += [("classroom", c) for c in record.classrooms]
        refs += [("student", s) for s in record.students]
    return refs


@dataclass
class Problem:
    """One bad row of an import: where it is and what is wrong with it."""

    kind: str
    row: int  # from 1, in its file or list
    id: str | None
    error: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Batch:
    """Records to write together, all or nothing."""

    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, id) -> its row

    def located(self, problems: list[Problem]) -> list[Problem]:
        """The store's problems (which know a record, not its row) with their rows in the import."""
        return [dataclasses.replace(p, row=self.rows.get((p.kind, p.id or ""), p.row)) for p in problems]
