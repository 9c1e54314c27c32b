"""The three lessons: who is offered whose tracks, who hears of whom, the stage, and subscribing to
what one watches. Light peers (loadtest.peer) stand in for classroom boxes, tutors and viewers."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from classroom_peers import BASIC, DUAL, events, peers, room_of, session, settled, token, watched
from kelian_server import Server, eventually

from loadtest.peer import Peer


async def test_dual_teacher_every_classroom_watches_the_lecturer_and_only_the_lecturer(
    kelian: Server,
) -> None:
    async with peers(kelian, *DUAL, kind="dual_teacher") as (lecturer, *boxes, _tutor):
        assert room_of(kelian).kind.name == "dual_teacher", "a room made by a join takes its token's kind"
        await lecturer.publish(audio=True, simulcast=False)
        for box in boxes:
            await box.publish(audio=True, simulcast=False)
        assert await settled(kelian)
        assert watched(kelian, "lecturer") == {"box-1", "box-2", "box-3"}
        for box in ("box-1", "box-2", "box-3"):
            assert watched(kelian, box) == {"lecturer"}
            assert len(session(kelian, box).subscriptions) == 2, "the lecturer's two tracks, nothing else"
        assert watched(kelian, "tutor-1") == {"lecturer", "box-1"}, "a tutor watches its own classroom"
        joined = {e["participant"]["identity"] for e in events(boxes[0], "participant_joined")}
        assert joined <= {"lecturer"}, "a classroom does not hear of the others"
        lecturer_heard = {e["participant"]["identity"] for e in events(lecturer, "participant_joined")}
        assert lecturer_heard == {"box-1", "box-2", "box-3", "tutor-1"}
        assert await eventually(
            lambda: events(boxes[0], "participant_count")[-1:] == [{"type": "participant_count", "count": 5}]
        )


async def test_the_stage_brings_a_classroom_to_every_other_and_back(kelian: Server) -> None:
    async with peers(kelian, *DUAL, kind="dual_teacher") as (lecturer, *boxes, _tutor):
        await lecturer.publish(audio=False, simulcast=False)
        for box in boxes:
            await box.publish(audio=False, simulcast=False)
        assert await settled(kelian)
        room = room_of(kelian)
        await room.set_stage("box-2", True)
        assert await settled(kelian)
        assert watched(kelian, "box-1") == {"lecturer", "box-2"} == watched(kelian, "box-3")
        assert watched(kelian, "box-2") == {"lecturer"}

        def decoding(peer: Peer, owner_sid: str) -> int:
            stats = peer.stats()["subscriber"]["tracks"]
            owned = {p.id for p in session(kelian, "box-2").producers.values()}
            return sum(t["frames"] for track, t in stats.items() if track in owned and not t["ended"])

        box2 = session(kelian, "box-2").sid
        assert await eventually(lambda: decoding(boxes[0], box2) > 10 and decoding(boxes[2], box2) > 10)
        stage = events(boxes[0], "stage")[-1]
        assert (stage["identity"], stage["on"], stage["stage"]) == ("box-2", True, ["box-2"])
        await room.set_stage("box-2", False)
        assert await settled(kelian)
        assert watched(kelian, "box-1") == {"lecturer"} == watched(kelian, "box-3")
        ended = [t for t in boxes[0].stats()["subscriber"]["tracks"].values() if t["ended"]]
        assert ended, "the classroom stopped receiving the staged one"


async def test_a_box_offer_stays_one_size_however_many_classrooms(kelian: Server) -> None:
    sizes = []
    async with peers(kelian, ("lecturer", "lecturer", {}), kind="dual_teacher") as (lecturer,):
        await lecturer.publish(audio=True, simulcast=True)
        boxes: list[Peer] = []
        try:
            for n in (1, 8):
                while len(boxes) < n:
                    box = Peer(kelian.url, token(kelian, f"box-{len(boxes)}", "classroom", "dual_teacher"))
                    await box.connect()
                    await box.publish(audio=True, simulcast=False)
                    boxes.append(box)
                assert await settled(kelian)
                sizes.append(len(session(kelian, "box-0").subscriptions))
        finally:
            for box in boxes:
                await box.close()
    assert sizes == [2, 2]


async def test_live_viewers_watch_the_presenter_and_hear_only_a_count(kelian: Server) -> None:
    people = [("presenter", "lecturer", {})] + [(f"viewer-{i}", "viewer", {}) for i in range(3)]
    async with peers(kelian, *people, kind="live") as (presenter, *viewers):
        await presenter.publish(audio=True, simulcast=False)
        assert await settled(kelian)
        offers_before = [v.stats()["subscriber"]["offers"] for v in viewers]
        late = Peer(kelian.url, token(kelian, "viewer-late", "viewer", "live"))
        await late.connect()
        try:
            assert await settled(kelian)
            for viewer in viewers:
                assert watched(kelian, viewer.participant["identity"]) == {"presenter"}
                assert not events(viewer, "participant_joined"), "viewers hear of no viewer"
            assert [v.stats()["subscriber"]["offers"] for v in viewers] == offers_before, (
                "a viewer joining costs the others nothing"
            )
            counted = {"type": "participant_count", "count": 5}
            assert await eventually(lambda: events(viewers[0], "participant_count")[-1:] == [counted])
            assert {e["participant"]["identity"] for e in events(presenter, "participant_joined")} == {
                "viewer-0",
                "viewer-1",
                "viewer-2",
                "viewer-late",
            }, "the presenter hears of everyone"
            assert [p["identity"] for p in late.room["participants"]] == ["viewer-late", "presenter"]
            assert late.room["participant_count"] == 5 and late.room["kind"] == "live"
        finally:
            await late.close()


async def test_subscribe_and_unsubscribe_by_track_and_by_participant(kelian: Server) -> None:
    people = [("teacher", "lecturer", {}), ("box", "classroom", {}), ("student", "student", {})]
    async with peers(kelian, *people, kind="fusion") as (teacher, box, student):
        await teacher.publish(audio=True, simulcast=False)
        await box.publish(audio=False, simulcast=False)
        assert await settled(kelian)
        assert watched(kelian, "student") == {"teacher", "box"}
        box_sid = session(kelian, "box").sid
        reply = await student.request({"type": "unsubscribe", "participant": box_sid})
        assert reply["type"] == "unsubscribed" and len(reply["tracks"]) == 1
        assert await settled(kelian)
        assert watched(kelian, "student") == {"teacher"}
        teacher_video = next(p.id for p in session(kelian, "teacher").producers.values() if p.kind == "video")
        await student.request({"type": "unsubscribe", "track": teacher_video})
        assert await settled(kelian)
        kinds = {s.slot.kind for s in session(kelian, "student").subscriptions if s.consumer is not None}
        assert kinds == {"audio"}
        await student.request({"type": "subscribe", "participant": box_sid})
        await student.request({"type": "subscribe", "track": teacher_video})
        assert await settled(kelian)
        assert watched(kelian, "student") == {"teacher", "box"}
        # the box's section was recycled; the teacher's video had the first section, which carries
        # the bundle and is never rejected, so it came back in a new one
        assert len(session(kelian, "student").subscriptions) == 4


async def test_a_classroom_may_not_watch_another_in_a_dual_teacher_lesson(kelian: Server) -> None:
    async with peers(kelian, *DUAL[:3], kind="dual_teacher") as (_lecturer, box1, box2):
        await box2.publish(audio=False, simulcast=False)
        box2_sid = session(kelian, "box-2").sid
        with pytest.raises(Exception, match="does not let you watch"):
            await box1.request({"type": "subscribe", "participant": box2_sid})
        assert watched(kelian, "box-1") == set()


async def test_the_kind_of_a_room_created_ahead(kelian: Server) -> None:
    async with aiohttp.ClientSession() as http:
        for body, status in (
            ({"name": "lecture", "kind": "live"}, 201),
            ({"name": "x", "kind": "seminar"}, 400),
        ):
            async with http.post(f"{kelian.url}/api/v1/rooms", json=body, headers=BASIC) as r:
                assert r.status == status
                answer = await r.json()
        assert "kind must be one of fusion, dual_teacher, live" in answer["error"]["message"]
    room = kelian.rooms.rooms["lecture"]
    assert room.kind.name == "live" and room.info()["kind"] == "live"
    await asyncio.sleep(0)


async def test_only_the_lecturer_and_the_admin_api_move_the_stage(
    kelian: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("classroom.room.MAX_STAGE", 2)
    async with peers(kelian, *DUAL, kind="dual_teacher") as (lecturer, box1, _box2, _box3, tutor):
        for refused in (tutor, box1):
            with pytest.raises(Exception, match="may not bring anyone on stage"):
                await refused.request({"type": "stage", "identity": "box-2", "on": True})
        reply = await lecturer.request({"type": "stage", "identity": "box-2", "on": True})
        assert reply == {
            "type": "staged",
            "identity": "box-2",
            "on": True,
            "stage": ["box-2"],
            "id": reply["id"],
        }
        with pytest.raises(Exception, match="nobody called 'box-9'"):
            await lecturer.request({"type": "stage", "identity": "box-9", "on": True})
        async with aiohttp.ClientSession() as http:
            url = f"{kelian.url}/api/v1/rooms/lesson/stage"
            async with http.post(url, json={"identity": "box-3", "on": True}, headers=BASIC) as r:
                assert r.status == 200 and (await r.json()) == {"stage": ["box-2", "box-3"]}
            async with http.post(url, json={"identity": "box-1", "on": True}, headers=BASIC) as r:
                assert r.status == 409 and (await r.json())["error"]["code"] == "stage_full"
        assert await eventually(
            lambda: [e["stage"] for e in events(box1, "stage")][-1:] == [["box-2", "box-3"]]
        )
