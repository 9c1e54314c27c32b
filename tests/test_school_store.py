"""The organisation's records, their stores and bulk import: what is checked, what survives a
restart, and that a bad import leaves nothing behind. The store tests are the Store protocol's
contract, run against both stores: SQLite (the embedded default) and Redis (shared by nodes)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from school import importer
from school import store as store_module
from school.model import Lesson, Mode, RecordError, Recording, parse
from school.redis_store import RedisStore
from school.store import BatchError, InUse, SqliteStore

AnyStore = SqliteStore | RedisStore
T0 = 1_788_220_800  # 2026-09-01T00:00:00Z

TREE = {
    "districts": [{"id": "haidian", "name": "海淀区"}],
    "schools": [{"id": "s1", "district": "haidian", "name": "第一小学"}],
    "classrooms": [
        {"id": "c1", "school": "s1", "name": "五年级一班", "box": "box-c1"},
        {"id": "c2", "school": "s1", "name": "五年级二班", "box": "box-c2"},
    ],
    "teachers": [{"id": "t1", "school": "s1", "name": "王老师"}],
    "students": [{"id": "ann", "school": "s1", "name": "Ann", "classroom": "c1"}],
    "lessons": [
        {
            "id": "maths-5",
            "school": "s1",
            "title": "数学",
            "room_kind": "dual_teacher",
            "teacher": "t1",
            "classrooms": ["c1", "c2"],
            "students": ["ann"],
            "starts_at": T0 + 8 * 3600,
            "ends_at": T0 + 9 * 3600,
        }
    ],
}


@pytest.fixture(params=["sqlite", "redis"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], AnyStore]:
    """A maker of store objects on one place: each call is another process's view of the same
    SQLite file, or another node's of the same (flushed) Redis."""
    if request.param == "sqlite":
        return lambda: SqliteStore(str(tmp_path / "kelian.db"))
    url: str = request.getfixturevalue("redis_url")
    return lambda: RedisStore(url)


@pytest_asyncio.fixture
async def store(new_store: Callable[[], AnyStore]) -> AsyncIterator[AnyStore]:
    opened = new_store()
    await opened.open()
    yield opened
    await opened.close()


async def test_records_survive_a_restart(store: AnyStore, new_store: Callable[[], AnyStore]) -> None:
    batch = importer.from_json(TREE)
    assert batch.problems == []
    await store.put(batch.records)
    await store.add_audit({"to": "online"})
    await store.close()
    again = new_store()  # the same file, the same Redis: what a restarted server opens
    await again.open()
    try:
        lesson = await again.get("lesson", "maths-5")
        assert isinstance(lesson, Lesson)
        assert lesson.classrooms == ("c1", "c2") and lesson.recording is Recording.ONLINE
        assert lesson.in_session(T0 + 8.5 * 3600) and not lesson.in_session(T0 + 9 * 3600)
        assert [c.id for c in await again.children("classroom", "s1")] == ["c1", "c2"]
        assert [s.id for s in await again.all("school")] == ["s1"]
        school = await again.get("school", "s1")
        assert school is not None and school.to_dict()["mode"] == Mode.OFFLINE
        assert await again.get("lesson", "nope") is None
        assert [a["to"] for a in await again.audits()] == ["online"]
        with pytest.raises(InUse, match="used by lesson 'maths-5'"):  # who uses what, kept too
            await again.delete("teacher", "t1")
    finally:
        await again.close()


async def test_a_batch_with_a_missing_reference_writes_nothing(store: AnyStore) -> None:
    tree = {**TREE, "lessons": [{**TREE["lessons"][0], "classrooms": ["c1", "c9"]}]}
    batch = importer.from_json(tree)
    with pytest.raises(BatchError) as caught:
        await store.put(batch.records)
    (problem,) = batch.located(caught.value.problems)
    assert (problem.kind, problem.row, problem.id) == ("lesson", 1, "maths-5")
    assert "classroom 'c9'" in problem.error
    assert await store.all("district") == [], "not even the good rows"


async def test_a_record_in_use_is_not_deleted(store: AnyStore) -> None:
    await store.put(importer.from_json(TREE).records)
    with pytest.raises(InUse, match="used by lesson 'maths-5'"):
        await store.delete("classroom", "c2")
    with pytest.raises(InUse, match="school 's1'"):
        await store.delete("district", "haidian")
    assert await store.delete("lesson", "maths-5") is True
    assert await store.delete("classroom", "c2") is True
    assert await store.delete("classroom", "c2") is False


def test_an_import_reports_every_bad_row() -> None:
    bad = {
        "schools": [
            {"id": "s1", "district": "haidian"},
            {"id": "s/2", "district": "haidian"},
            {"id": "s3"},
            {"id": "s1", "district": "haidian"},
        ],
        "districts": [{"id": "haidian"}],
        "lessons": [
            {"id": "x", "school": "s1", "starts_at": T0, "ends_at": T0},
            {"id": "y", "school": "s1", "starts_at": T0, "ends_at": T0 + 1, "room_kind": "seminar"},
            {"id": "z", "school": "s1", "starts_at": "2026-09-01T08:00", "ends_at": T0 + 1},
            {"id": "w", "school": "s1", "starts_at": T0, "ends_at": T0 + 1, "colour": "red"},
        ],
        "timetable": [],
    }
    problems = [(p.kind, p.row, p.error) for p in importer.from_json(bad).problems]
    assert ("import", 0, "unknown list 'timetable': expected districts, schools, classrooms, "
            "teachers, students, lessons") in problems  # fmt: skip
    rows = {(kind, row) for kind, row, _ in problems}
    assert rows >= {("school", 2), ("school", 3), ("school", 4), ("lesson", 1), ("lesson", 2)}
    assert ("lesson", 3) in rows and ("lesson", 4) in rows
    errors = " | ".join(e for _, _, e in problems)
    for expected in (
        "must not contain '/'",
        "district must be a non-empty string",
        "'s1' is in the import twice",
        "ends_at must be after starts_at",
        "room_kind must be one of fusion, dual_teacher, live",
        "needs its UTC offset",
        "has no field 'colour'",
    ):
        assert expected in errors


async def test_a_csv_timetable_with_iso_times_and_lists(store: AnyStore) -> None:
    await store.put(importer.from_json({k: v for k, v in TREE.items() if k != "lessons"}).records)
    csv_text = (
        "\ufeffid,school,title,room_kind,teacher,classrooms,starts_at,ends_at,recording\n"
        "p1,s1,语文,fusion,t1,c1;c2,2026-09-01T08:00:00+08:00,2026-09-01T08:45:00+08:00,always\n"
        "p2,s1,英语,live,,c1 c2,1788220800,1788223500,\n"
    )
    batch = importer.from_csv("lesson", csv_text)
    assert batch.problems == []
    await store.put(batch.records)
    p1 = await store.get("lesson", "p1")
    assert isinstance(p1, Lesson)
    assert p1.classrooms == ("c1", "c2") and p1.starts_at == T0 and p1.ends_at == T0 + 45 * 60
    assert p1.recording is Recording.ALWAYS and p1.title == "语文"
    p2 = await store.get("lesson", "p2")
    assert isinstance(p2, Lesson) and p2.teacher is None and p2.room_kind == "live"
    bad = importer.from_csv("lesson", "id,school,starts_at,ends_at\nq,s1,1,2,3\n")
    assert "more cells than the header" in bad.problems[0].error
    assert importer.from_csv("desk", "id\n1\n").problems[0].error.startswith("kind must be one of")


async def test_audits_newest_first(store: AnyStore) -> None:
    for n in range(3):
        await store.add_audit({"scope": {"school": "s1"}, "to": "online", "n": n})
    audits = await store.audits(2)
    assert [a["n"] for a in audits] == [2, 1] and audits[0]["number"] == 3


def lesson(lesson_id: str, starts: float, ends: float, school: str = "s1", **fields: object) -> Lesson:
    record = parse(
        "lesson", {"id": lesson_id, "school": school, "starts_at": starts, "ends_at": ends, **fields}
    )
    assert isinstance(record, Lesson)
    return record


async def in_session(store: AnyStore, at: float, school: str = "s1") -> list[str]:
    return [r.id for r in await store.children("lesson", school, at=at)]


async def test_lessons_in_session_at_a_moment(store: AnyStore) -> None:
    hour, day = 3600, 86_400
    await store.put(importer.from_json(TREE).records)  # maths-5: 08:00 to 09:00
    await store.put(
        [
            lesson("a-late", T0 + 8.5 * hour, T0 + 10 * hour),
            lesson("b-next", T0 + 9 * hour, T0 + 9.75 * hour),
            lesson("z-exam", T0 - 2 * day, T0 + day),  # a long one, begun days ago
        ]
    )
    assert await in_session(store, T0 + 8 * hour) == ["maths-5", "z-exam"]
    assert await in_session(store, T0 + 8.5 * hour) == ["a-late", "maths-5", "z-exam"]
    assert await in_session(store, T0 + 9 * hour - 0.5) == ["a-late", "maths-5", "z-exam"]
    assert await in_session(store, T0 + 9 * hour) == ["a-late", "b-next", "z-exam"], "ends_at is out"
    assert await in_session(store, T0 + 2 * day) == []
    assert await in_session(store, T0 - 3 * day) == []
    assert [r.id for r in await store.children("lesson", "s1")] == ["a-late", "b-next", "maths-5", "z-exam"]
    # the long one moved to another day: no longer in session now, in session then
    await store.put([lesson("z-exam", T0 + 3 * day, T0 + 3 * day + hour)])
    assert await in_session(store, T0 + 8.5 * hour) == ["a-late", "maths-5"]
    assert await in_session(store, T0 + 3 * day + 1) == ["z-exam"]
    # moved to another school: gone from the first school's lists, in the other's
    await store.put(importer.from_json({"schools": [{"id": "s2", "district": "haidian"}]}).records)
    await store.put([lesson("a-late", T0 + 8.5 * hour, T0 + 10 * hour, school="s2")])
    assert await in_session(store, T0 + 8.5 * hour) == ["maths-5"]
    assert await in_session(store, T0 + 8.5 * hour, "s2") == ["a-late"]
    assert [r.id for r in await store.children("lesson", "s1")] == ["b-next", "maths-5", "z-exam"]
    # every lesson of a school gone, then a short one: found at its time, nothing before it
    for gone in ("b-next", "maths-5", "z-exam"):
        assert await store.delete("lesson", gone) is True
    assert await store.children("lesson", "s1") == []
    await store.put([lesson("short", T0 + day, T0 + day + 60)])
    assert await in_session(store, T0 + day + 30) == ["short"]
    assert await in_session(store, T0 + 8.5 * hour) == []
    # as SqliteStore has always answered: only lessons have times; no moment is NaN
    assert await store.children("classroom", "s1", at=T0 + 8.5 * hour) == []
    assert await in_session(store, float("nan")) == []
    assert await in_session(store, float("inf")) == []
    assert await in_session(store, T0 + 8.5 * hour, "s9") == []


async def test_a_rewrite_drops_the_old_references(store: AnyStore) -> None:
    await store.put(importer.from_json(TREE).records)
    with pytest.raises(InUse) as caught:
        await store.delete("school", "s1")
    assert str(caught.value) == (
        "school 's1' is used by classroom 'c1', classroom 'c2', lesson 'maths-5': delete or change them first"
    ), "the first three users, by kind then id"
    maths = await store.get("lesson", "maths-5")
    assert isinstance(maths, Lesson)
    await store.put([dataclasses.replace(maths, classrooms=("c1",), teacher=None, students=())])
    assert await store.delete("classroom", "c2") is True
    assert await store.delete("teacher", "t1") is True
    with pytest.raises(InUse, match="classroom 'c1' is used by lesson 'maths-5', student 'ann'"):
        await store.delete("classroom", "c1")
    # a classroom moved to another school: the first school's children drop it
    await store.put(importer.from_json({"schools": [{"id": "s2", "district": "haidian"}]}).records)
    await store.put([parse("classroom", {"id": "c1", "school": "s2", "name": "moved"})])
    assert await store.children("classroom", "s1") == []
    assert [c.id for c in await store.children("classroom", "s2")] == ["c1"]
    assert [u.id for u in await store.children("school", "haidian")] == ["s1", "s2"]


async def test_a_batch_in_any_order_and_the_last_of_an_id_wins(store: AnyStore) -> None:
    await store.put([])  # nothing to do, nothing done
    records = importer.from_json(TREE).records
    renamed = parse("classroom", {"id": "c1", "school": "s1", "name": "renamed"})
    await store.put([*reversed(records), renamed])  # children before parents: written parents first
    classroom = await store.get("classroom", "c1")
    assert classroom is not None and classroom.to_dict()["name"] == "renamed"
    assert [d.id for d in await store.all("district")] == ["haidian"]
    assert [c.id for c in await store.all("classroom")] == ["c1", "c2"]
    await store.put([parse("classroom", {"id": i, "school": "s1"}) for i in ("中", "é", "a", "Z", "B")])
    expected = ["B", "Z", "a", "c1", "c2", "é", "中"]  # by code point: SQLite's BINARY, Redis's bytes
    assert [c.id for c in await store.all("classroom")] == expected
    assert [c.id for c in await store.children("classroom", "s1")] == expected


async def test_a_refused_batch_lists_every_problem_and_keeps_the_old_records(store: AnyStore) -> None:
    await store.put(importer.from_json(TREE).records)
    batch = [
        lesson("new", T0, T0 + 60, teacher="t9", classrooms=["c1", "c8", "c9"]),
        parse("student", {"id": "bob", "school": "s1", "classroom": "c7"}),
        parse("classroom", {"id": "c1", "school": "s1", "name": "renamed"}),
        parse("classroom", {"id": "c8", "school": "s1"}),  # in the batch: not a problem
    ]
    with pytest.raises(BatchError) as caught:
        await store.put(batch)
    assert str(caught.value) == "3 problem(s): student 'bob' names classroom 'c7', which is not there"
    assert [(p.kind, p.id, p.error) for p in caught.value.problems] == [
        ("student", "bob", "student 'bob' names classroom 'c7', which is not there"),
        ("lesson", "new", "lesson 'new' names teacher 't9', which is not there"),
        ("lesson", "new", "lesson 'new' names classroom 'c9', which is not there"),
    ]
    classroom = await store.get("classroom", "c1")
    assert classroom is not None and classroom.to_dict()["name"] == "五年级一班", "the old one kept"
    assert await store.get("classroom", "c8") is None and await store.get("lesson", "new") is None
    assert [c.id for c in await store.children("classroom", "s1")] == ["c1", "c2"]


async def test_unknown_kinds_and_ids(store: AnyStore) -> None:
    assert await store.get("desk", "x") is None and await store.get("school", "x") is None
    assert await store.all("desk") == [] and await store.all("school") == []
    assert await store.children("desk", "s1") == [] and await store.children("school", "x") == []
    assert await store.delete("desk", "x") is False and await store.delete("school", "x") is False


async def test_audits_keep_the_latest(store: AnyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_AUDITS", 3)
    entry = {"scope": {"school": "第一小学"}, "counts": {"lessons": 2}, "note": "a:b"}
    numbers = [await store.add_audit({**entry, "n": n}) for n in range(5)]
    assert numbers == [1, 2, 3, 4, 5]
    audits = await store.audits(10)
    assert [a["number"] for a in audits] == [5, 4, 3], "the oldest go past MAX_AUDITS"
    assert audits[0] == {"number": 5, **entry, "n": 4}
    assert await store.audits(0) == []
    assert [a["number"] for a in await store.audits(1)] == [5]


def test_records_are_checked_field_by_field() -> None:
    with pytest.raises(RecordError, match="kind must be one of"):
        parse("desk", {"id": "x"})
    with pytest.raises(RecordError, match="a lesson is a JSON object"):
        parse("lesson", ["x"])
    with pytest.raises(RecordError, match="classrooms lists an id twice"):
        parse("lesson", {"id": "x", "school": "s", "starts_at": 1, "ends_at": 2, "classrooms": ["a", "a"]})
    with pytest.raises(RecordError, match="mode must be one of offline, online"):
        parse("school", {"id": "x", "district": "d", "mode": "hybrid"})
    with pytest.raises(RecordError, match="starts_at must be a time"):
        parse("lesson", {"id": "x", "school": "s", "starts_at": True, "ends_at": 2})
