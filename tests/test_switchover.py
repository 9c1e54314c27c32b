"""Schools and lessons through the admin API, and the emergency switchover: one call moves a
school's lessons online (their rooms open, everyone connected is told, students may join) and back
(students go home once their classrooms are back), with no renegotiation and the audit kept."""

from __future__ import annotations

import time

import pytest
from classroom_peers import api, connected, events, org, roster
from kelian_server import Server, eventually

from loadtest.peer import Peer, PeerError


async def test_records_through_the_admin_api(kelian: Server) -> None:
    now = time.time()
    status, body = await api(kelian, "POST", "/import", org(now))
    assert (status, body) == (200, {"imported": {"districts": 1, "schools": 2, "classrooms": 4,
                                                 "teachers": 2, "students": 2, "lessons": 2}})  # fmt: skip
    status, body = await api(kelian, "GET", "/schools?district=d1")
    assert [s["id"] for s in body["schools"]] == ["s1", "s2"]
    status, body = await api(kelian, "GET", f"/lessons?school=s1&at={now}")
    assert [lesson["id"] for lesson in body["lessons"]] == ["s1-maths"]
    status, body = await api(kelian, "GET", f"/lessons?school=s1&at={now + 7200}")
    assert body["lessons"] == []
    status, body = await api(kelian, "GET", f"/lessons?district=d1&at={now}")
    assert [lesson["id"] for lesson in body["lessons"]] == ["s1-maths", "s2-maths"]
    status, body = await api(kelian, "PUT", "/classrooms/s1-c", {"school": "s1", "name": "三班"})
    assert status == 201 and body["name"] == "三班"
    status, body = await api(kelian, "PUT", "/classrooms/s1-c", {"school": "s1", "name": "三班", "box": "b3"})
    assert status == 200 and body["box"] == "b3"
    status, body = await api(kelian, "PUT", "/classrooms/s1-d", {"school": "s9"})
    assert status == 400 and "school 's9', which is not there" in body["error"]["message"]
    status, body = await api(kelian, "PUT", "/classrooms/s1-d", {"id": "other", "school": "s1"})
    assert status == 400
    status, body = await api(kelian, "DELETE", "/classrooms/s1-a")
    assert status == 409 and body["error"]["code"] == "in_use"
    assert (await api(kelian, "DELETE", "/classrooms/s1-c"))[0] == 204
    assert (await api(kelian, "GET", "/classrooms/s1-c"))[0] == 404
    bad = org(now) | {"lessons": [{"id": "x", "school": "s1", "starts_at": 5, "ends_at": 1}]}
    status, body = await api(kelian, "POST", "/import", bad)
    assert status == 400 and body["error"]["problems"][0]["row"] == 1
    stray = {"lessons": [{"id": "y", "school": "s7", "starts_at": 1, "ends_at": 2}]}
    status, body = await api(kelian, "POST", "/import", stray)
    assert status == 400 and body["error"]["problems"][0]["id"] == "y"
    assert (await api(kelian, "GET", "/lessons/y"))[0] == 404, "nothing of a refused import is kept"


async def test_a_district_roster_bigger_than_one_read_imports_whole(kelian: Server) -> None:
    """Half a megabyte of roster arrives in many pieces: all of it is read, not the first."""
    students = [{"id": f"pupil-{n:05d}", "school": "s1", "name": "学生" * 4} for n in range(6000)]
    body = org(time.time())
    body["students"] += students
    status, answer = await api(kelian, "POST", "/import", body)
    assert status == 200, answer
    assert answer["imported"]["students"] == 6002


async def test_a_school_goes_online_and_back(kelian: Server) -> None:
    status, _ = await api(kelian, "POST", "/import", org(time.time()))
    assert status == 200
    one, two = await roster(kelian, "s1-maths"), await roster(kelian, "s2-maths")
    boxes_one = [one["box-s1-a"], one["box-s1-b"], one["s1-t"]]
    async with (
        connected(kelian, boxes_one) as (box_a, box_b, teacher),
        connected(kelian, [two["box-s2-a"], two["s2-t"]]) as school_two,
    ):
        room = kelian.rooms.rooms["s1-maths"]  # type: ignore[attr-defined]
        assert room.kind.name == "dual_teacher" and room.mode.mode == "offline"
        assert room.options.boxes == ("box-s1-a", "box-s1-b")
        assert box_a.room["mode"] == "offline"
        ann = Peer(kelian.url, one["s1-ann"])
        with pytest.raises(PeerError) as caught:
            await ann.connect()
        assert caught.value.code == "lesson_offline"
        await ann.close()
        await teacher.publish(audio=False, simulcast=False)
        await box_a.publish(audio=False, simulcast=False)
        assert await eventually(lambda: box_a.stats()["subscriber"] is not None)
        offers = box_a.stats()["subscriber"]["offers"]

        status, audit = await api(
            kelian, "POST", "/switchover", {"school": "s1", "mode": "online", "by": "Head"}
        )
        assert status == 200, audit
        assert (audit["mode"], audit["scope"], audit["clients_told"]) == ("online", {"school": "s1"}, 3)
        assert audit["lessons_in_session"] == 1 and audit["by"] == "Head"
        assert audit["rooms_recording"] == 1, "recorded while online: the lesson's policy"
        for peer in (box_a, box_b, teacher):
            assert await eventually(lambda p=peer: bool(events(p, "mode")))  # type: ignore[misc]
            event = events(peer, "mode")[-1]
            assert (event["mode"], event["lesson"], event["switch"]) == (
                "online",
                "s1-maths",
                audit["switch"],
            )
            assert event["recording"] is True
        for peer in school_two:
            assert not events(peer, "mode"), "the other school hears nothing"
        packets = box_a.stats()["subscriber"]["connection"]["rtp_in"]
        assert await eventually(lambda: box_a.stats()["subscriber"]["connection"]["rtp_in"] > packets + 20)
        assert box_a.stats()["subscriber"]["offers"] == offers, "nothing renegotiated"

        ann = Peer(kelian.url, one["s1-ann"])
        try:
            joined = await ann.connect()
            assert joined["room"]["mode"] == "online"
            await box_b.close()  # one classroom is not back yet when the school goes offline again
            status, back = await api(kelian, "POST", "/switchover", {"school": "s1", "mode": "offline"})
            assert status == 200 and back["clients_told"] == 3 and back["rooms_recording"] == 0
            assert await eventually(lambda: bool(events(ann, "mode")))
            assert ann.disconnected is None, "a student stays until its classrooms are back"
            again = Peer(kelian.url, one["box-s1-b"])
            await again.connect()
            assert await eventually(lambda: ann.disconnected == "offline")
            await again.close()
        finally:
            await ann.close()
    status, body = await api(kelian, "GET", "/switchovers?limit=5")
    assert [a["mode"] for a in body["switchovers"]] == ["offline", "online"]
    assert body["switchovers"][1]["number"] == audit["number"]
    status, body = await api(kelian, "GET", "/schools/s1")
    assert body["mode"] == "offline"


async def test_a_switch_of_lessons_and_of_a_district(kelian: Server) -> None:
    now = time.time()
    await api(kelian, "POST", "/import", org(now))
    status, audit = await api(kelian, "POST", "/switchover", {"lessons": ["s2-maths"], "mode": "online"})
    assert status == 200 and audit["rooms_opened"] == 1, audit
    room = kelian.rooms.rooms["s2-maths"]  # type: ignore[attr-defined]
    assert room.mode.mode == "online" and "s1-maths" not in kelian.rooms.rooms  # type: ignore[attr-defined]
    status, body = await api(kelian, "GET", "/lessons/s2-maths")
    assert body["mode"] == "online"
    status, audit = await api(kelian, "POST", "/switchover", {"district": "d1", "mode": "online"})
    assert audit["schools"] == 2 and audit["lessons_in_session"] == 2 and audit["rooms_opened"] == 1
    status, body = await api(kelian, "GET", "/lessons/s2-maths")
    assert body["mode"] is None, "a lesson switched on its own follows its school again"
    status, body = await api(kelian, "GET", "/districts/d1")
    assert body["mode"] == "online"
    for bad, code in (
        ({"school": "s9", "mode": "online"}, 404),
        ({"school": "s1", "district": "d1", "mode": "online"}, 400),
        ({"school": "s1", "mode": "hybrid"}, 400),
        ({"lessons": [], "mode": "online"}, 400),
        ({"lessons": ["nope"], "mode": "online"}, 404),
    ):
        assert (await api(kelian, "POST", "/switchover", bad))[0] == code, bad
