"""The organisation's records, their SQLite store and bulk import: what is checked, what survives a
restart, and that a bad import leaves nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from school import importer
from school.model import Lesson, Mode, RecordError, Recording, parse
from school.store import BatchError, InUse, SqliteStore

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


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(str(tmp_path / "kelian.db"))
    await opened.open()
    yield opened
    await opened.close()


async def test_records_survive_a_restart(store: SqliteStore, tmp_path: Path) -> None:
    batch = importer.from_json(TREE)
    assert batch.problems == []
    await store.put(batch.records)
    await store.close()
    again = SqliteStore(str(tmp_path / "kelian.db"))
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
    finally:
        await again.close()


async def test_a_batch_with_a_missing_reference_writes_nothing(store: SqliteStore) -> None:
    tree = {**TREE, "lessons": [{**TREE["lessons"][0], "classrooms": ["c1", "c9"]}]}
    batch = importer.from_json(tree)
    with pytest.raises(BatchError) as caught:
        await store.put(batch.records)
    (problem,) = batch.located(caught.value.problems)
    assert (problem.kind, problem.row, problem.id) == ("lesson", 1, "maths-5")
    assert "classroom 'c9'" in problem.error
    assert await store.all("district") == [], "not even the good rows"


async def test_a_record_in_use_is_not_deleted(store: SqliteStore) -> None:
    await store.put(importer.from_json(TREE).records)
    with pytest.raises(InUse, match="used by lesson 'maths-5'"):
        await store.delete("classroom", "c2")
    with pytest.raises(InUse, match="school 's1'"):
        await store.delete("district", "haidian")
    assert await store.delete("lesson", "maths-5") is True
    assert await store.delete("classroom", "c2") is True
    assert await store.delete("classroom", "c2") is False


async def test_an_import_reports_every_bad_row(store: SqliteStore) -> None:
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


async def test_a_csv_timetable_with_iso_times_and_lists(store: SqliteStore) -> None:
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


async def test_audits_newest_first(store: SqliteStore) -> None:
    for n in range(3):
        await store.add_audit({"scope": {"school": "s1"}, "to": "online", "n": n})
    audits = await store.audits(2)
    assert [a["n"] for a in audits] == [2, 1] and audits[0]["number"] == 3


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
