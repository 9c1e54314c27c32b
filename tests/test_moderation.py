"""Moderation during a lesson: raised hands, invitations to speak and to the stage, sending back,
what each participant may do now, mute all, the lock and the waiting room; over the WebSocket and
the admin API, with the events each action owes, and refused to every role that may not do it."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from classroom_peers import DUAL, api, events, peers, room_of, session, settled, token, watched
from kelian_server import Server, eventually

from loadtest.peer import Peer, PeerError
from signaling.client import Client
from signaling.media import video_track

ROOM = "/rooms/lesson"


async def refused(peer: Peer, message: dict[str, Any], code: str = "forbidden") -> str:
    """The server refuses `message` with `code`; its explanation."""
    with pytest.raises(PeerError) as caught:
        await peer.request(message)
    assert caught.value.code == code, caught.value
    return caught.value.message


async def whep(kelian: Server, bearer: str) -> tuple[int, str]:
    """A WHEP POST (with an offer WHEP never gets to read when it refuses the token first)."""
    headers = {"Authorization": "Bearer " + bearer, "Content-Type": "application/sdp"}
    url = f"{kelian.url}/whep/lesson"
    async with aiohttp.ClientSession() as http, http.post(url, data="v=0\r\n", headers=headers) as response:
        return response.status, await response.text()


def track_of(kelian: Server, identity: str) -> str:
    (producer,) = session(kelian, identity).producers.values()
    return producer.id


async def drop(peer: Peer) -> None:
    """The connection breaks without a goodbye (a box rebooting, a phone changing network)."""
    channel = peer._channel
    assert channel is not None
    await channel.close()


async def test_hands_queue_first_come_and_moderators_see_it(kelian: Server) -> None:
    people = [
        ("lecturer", "lecturer", {}),
        ("box-1", "classroom", {}),
        ("tutor-1", "tutor", {"classroom": "box-1"}),
        ("ann", "student", {"classroom": "box-1"}),
        ("bob", "student", {"classroom": "box-2"}),
    ]
    async with peers(kelian, *people, kind="dual_teacher") as (lecturer, _box, tutor, ann, bob):
        assert (await bob.request({"type": "raise_hand"}))["position"] == 1
        assert (await ann.request({"type": "raise_hand"}))["position"] == 2
        assert (await bob.request({"type": "raise_hand"}))["position"] == 1, "a second raise keeps its place"

        def queue(peer: Peer) -> list[str]:
            hands = events(peer, "hands")
            return [h["identity"] for h in hands[-1]["queue"]] if hands else []

        assert await eventually(lambda: queue(lecturer) == ["bob", "ann"])
        assert await eventually(lambda: queue(tutor) == ["ann"]), "a tutor sees its own classroom's hands"
        assert not events(bob, "hands"), "a student does not see the queue"

        assert "manage raised hands" in await refused(ann, {"type": "lower_hand", "identity": "bob"})
        assert "outside its classroom" in await refused(tutor, {"type": "lower_hand", "identity": "bob"})
        await lecturer.request({"type": "lower_hand", "identity": "bob"})
        assert await eventually(lambda: events(bob, "hand")[-1:] != [])
        assert (
            events(bob, "hand")[-1]["raised"] is False
            and events(bob, "hand")[-1]["by"]["identity"] == "lecturer"
        )
        assert await eventually(lambda: queue(lecturer) == ["ann"])
        await ann.request({"type": "lower_hand"})
        assert await eventually(lambda: queue(lecturer) == [] and queue(tutor) == [])

        status, body = await api(kelian, "GET", f"{ROOM}/hands")
        assert (status, body) == (200, {"queue": []})
        await bob.request({"type": "raise_hand"})
        status, body = await api(kelian, "GET", f"{ROOM}/hands")
        assert [h["identity"] for h in body["queue"]] == ["bob"] and body["queue"][0]["role"] == "student"
        assert (await api(kelian, "DELETE", f"{ROOM}/hands/bob"))[0] == 204
        assert (await api(kelian, "DELETE", f"{ROOM}/hands/bob"))[0] == 404
        assert await eventually(lambda: queue(lecturer) == [])


async def test_a_student_speaks_when_invited_and_stops_when_sent_back(kelian: Server) -> None:
    people = [("teacher", "lecturer", {}), ("box", "classroom", {}), ("ann", "student", {})]
    async with peers(kelian, *people, kind="fusion") as (teacher, box, ann):
        assert ann.grants["publish"] is False and box.grants["publish"] is True
        with pytest.raises(PeerError, match="when a teacher invites you"):
            await ann.publish(audio=True, video=False)
        assert "invite anyone" in await refused(box, {"type": "invite", "identity": "ann"})
        await refused(ann, {"type": "accept_invitation"}, "unexpected")
        await refused(teacher, {"type": "invite", "identity": "ann", "to": "dance"}, "bad_message")

        await ann.request({"type": "raise_hand"})
        reply = await teacher.request({"type": "invite", "identity": "ann", "to": "speak"})
        assert reply["type"] == "invited"
        assert await eventually(lambda: bool(events(ann, "invitation")))
        assert events(ann, "invitation")[-1]["to"] == "speak"
        accepted = await ann.request({"type": "accept_invitation"})
        assert accepted["grants"]["publish"] is True
        assert await eventually(lambda: bool(events(teacher, "invitation_answered")))
        answered = events(teacher, "invitation_answered")[-1]
        assert (answered["identity"], answered["accepted"]) == ("ann", True)
        assert await eventually(lambda: events(teacher, "hands")[-1]["queue"] == []), "the hand came down"

        await ann.publish(audio=True, video=False)
        assert await settled(kelian)
        assert "ann" in watched(kelian, "teacher")

        assert (await teacher.request({"type": "send_back", "identity": "ann"}))["type"] == "sent_back"
        assert await eventually(lambda: not session(kelian, "ann").producers), "its track ended"
        assert await eventually(lambda: events(ann, "permissions")[-1:] != [])
        assert events(ann, "permissions")[-1]["grants"]["publish"] is False
        assert session(kelian, "ann").grants.publish is False


async def test_declining_an_invitation_leaves_things_as_they_were(kelian: Server) -> None:
    people = [("presenter", "lecturer", {}), ("vera", "viewer", {})]
    async with peers(kelian, *people, kind="live") as (presenter, vera):
        status, _ = await api(kelian, "POST", f"{ROOM}/participants/vera/invite", {"to": "stage"})
        assert status == 202
        assert await eventually(lambda: bool(events(vera, "invitation")))
        assert events(vera, "invitation")[-1]["by"] is None, "the school's system invited"
        assert (await vera.request({"type": "decline_invitation"}))["to"] == "stage"
        assert await eventually(lambda: bool(events(presenter, "invitation_answered")))
        assert events(presenter, "invitation_answered")[-1]["accepted"] is False
        assert session(kelian, "vera").grants.publish is False and not room_of(kelian).stage


async def test_a_viewer_on_stage_is_watched_by_every_viewer(kelian: Server) -> None:
    people = [("presenter", "lecturer", {}), ("vera", "viewer", {}), ("walt", "viewer", {})]
    async with peers(kelian, *people, kind="live") as (presenter, vera, walt):
        await presenter.publish(audio=False, simulcast=False)
        assert "may not bring anyone on stage" in await refused(
            walt, {"type": "invite", "identity": "vera", "to": "stage"}
        )
        await presenter.request({"type": "invite", "identity": "vera", "to": "stage"})
        assert await eventually(lambda: bool(events(vera, "invitation")))
        await vera.request({"type": "accept_invitation"})
        assert set(room_of(kelian).stage) == {"vera"}
        await vera.publish(audio=False, simulcast=False)
        assert await settled(kelian)
        assert watched(kelian, "walt") == {"presenter", "vera"}
        status, _ = await api(kelian, "POST", f"{ROOM}/participants/vera/send_back")
        assert status == 204
        assert await settled(kelian)
        assert watched(kelian, "walt") == {"presenter"}
        assert not session(kelian, "vera").producers and not room_of(kelian).stage
        assert events(walt, "stage")[-1]["on"] is False


async def test_each_role_is_refused_what_it_may_not_do(kelian: Server) -> None:
    people = [*DUAL, ("ann", "student", {"classroom": "box-1"}), ("tutor-2", "tutor", {"classroom": "box-2"})]
    async with peers(kelian, *people, kind="dual_teacher") as (_, box1, box2, _box3, tutor1, ann, tutor2):
        everyone_else = {
            "stage": {"type": "stage", "identity": "box-2", "on": True},
            "lock": {"type": "lock", "locked": True},
            "mute_all": {"type": "mute_all"},
            "invite": {"type": "invite", "identity": "box-2"},
            "set_permissions": {"type": "set_permissions", "identity": "box-2", "publish": False},
            "remove": {"type": "remove", "identity": "box-2"},
            "admit": {"type": "admit", "identity": "box-2"},
            "send_back": {"type": "send_back", "identity": "box-2"},
        }
        for peer in (box1, ann):
            for message in everyone_else.values():
                await refused(peer, message)
        for name, message in everyone_else.items():
            if name in ("stage", "lock", "admit"):
                await refused(tutor1, message)  # the lecture's, never a tutor's
            elif name != "mute_all":  # mute_all is scoped: a tutor mutes its own classroom
                assert "outside its classroom" in await refused(tutor1, message), name
        await box2.publish(audio=True, video=False)
        track = track_of(kelian, "box-2")
        await refused(tutor1, {"type": "mute", "track": track, "muted": True})
        await refused(box1, {"type": "mute", "track": track, "muted": True})
        assert (await tutor2.request({"type": "mute", "track": track, "muted": True}))["muted"] is True
        assert (await box2.request({"type": "mute", "track": track, "muted": False}))["muted"] is False
        await refused(tutor2, {"type": "remove", "identity": "ann"})
        assert (await tutor1.request({"type": "remove", "identity": "ann"}))["type"] == "removed"
        assert await eventually(lambda: ann.disconnected == "removed")


async def test_permissions_change_within_the_token(kelian: Server) -> None:
    people = [
        ("teacher", "lecturer", {}),
        ("ann", "student", {}),
        ("rec", "recorder", {}),
    ]
    async with peers(kelian, *people, kind="fusion") as (teacher, ann, rec):
        await teacher.publish(audio=True, video=False)
        assert await settled(kelian)
        assert watched(kelian, "ann") == {"teacher"}
        reply = await teacher.request({"type": "set_permissions", "identity": "ann", "subscribe": False})
        assert reply["grants"]["subscribe"] is False
        assert await settled(kelian)
        assert watched(kelian, "ann") == set(), "what it may no longer receive stops"
        assert await eventually(lambda: events(ann, "permissions")[-1:] != [])
        await teacher.request({"type": "set_permissions", "identity": "ann", "subscribe": True})
        assert await settled(kelian)
        assert watched(kelian, "ann") == {"teacher"}

        await teacher.request({"type": "set_permissions", "identity": "ann", "publish_data": False})
        assert "may not chat" in await refused(ann, {"type": "chat", "text": "hello"})

        message = await refused(
            teacher, {"type": "set_permissions", "identity": "ann", "moderate": True}, "bad_message"
        )
        assert "only publish, subscribe, publish_data" in message
        await refused(
            teacher, {"type": "set_permissions", "identity": "ann", "publish": "yes"}, "bad_message"
        )
        await refused(
            teacher, {"type": "set_permissions", "identity": "nobody", "publish": True}, "not_found"
        )

        # a recorder's token never publishes: letting it changes nothing
        status, body = await api(kelian, "POST", f"{ROOM}/participants/rec/permissions", {"publish": True})
        assert status == 200 and body["grants"]["publish"] is False
        assert rec.grants["publish"] is False
        status, body = await api(kelian, "POST", f"{ROOM}/participants/ann/permissions", {"moderate": True})
        assert status == 400 and body["error"]["code"] == "invalid_request"


async def test_mute_all_spares_the_lecturer_and_a_tutor_mutes_only_its_classroom(kelian: Server) -> None:
    async with peers(kelian, *DUAL, kind="dual_teacher") as (lecturer, box1, box2, box3, tutor1):
        for peer in (lecturer, box1, box2, box3):
            await peer.publish(audio=True, video=False)

        def muted(identity: str) -> bool:
            return all(p.paused for p in session(kelian, identity).producers.values())

        assert (await tutor1.request({"type": "mute_all"}))["tracks"] == 1
        assert muted("box-1") and not muted("box-2") and not muted("lecturer")
        assert (await lecturer.request({"type": "mute_all", "kind": "audio"}))["tracks"] == 2
        assert muted("box-2") and muted("box-3") and not muted("lecturer")
        assert await eventually(lambda: any(e["track"]["muted"] for e in events(box2, "track_muted")))
        await refused(lecturer, {"type": "mute_all", "kind": "smell"}, "bad_message")
        await box1.request({"type": "mute", "track": track_of(kelian, "box-1"), "muted": False})
        status, body = await api(kelian, "POST", f"{ROOM}/mute_all", {})
        assert (status, body) == (200, {"kind": "audio", "tracks": 1})
        assert muted("box-1")


async def test_a_locked_room_lets_back_only_those_who_were_in(kelian: Server) -> None:
    async with peers(kelian, ("teacher", "lecturer", {}), ("ann", "student", {}), kind="fusion") as (
        teacher,
        ann,
    ):
        assert (await teacher.request({"type": "lock", "locked": True}))["locked"] is True
        assert await eventually(lambda: events(ann, "room_locked")[-1:] != [])
        late = Peer(kelian.url, token(kelian, "late", "student", "fusion"))
        try:
            with pytest.raises(PeerError) as caught:
                await late.connect()
            assert caught.value.code == "room_locked"
        finally:
            await late.close()
        status, body = await whep(kelian, token(kelian, "late", "student", "fusion"))
        assert status == 403 and "is locked" in body, body
        await drop(ann)
        back = Peer(kelian.url, token(kelian, "ann", "student", "fusion"))
        tutor = Peer(kelian.url, token(kelian, "tutor", "tutor", "fusion"))
        try:
            await back.connect()  # ann had been in
            await tutor.connect()  # moderators always
        finally:
            await back.close()
            await tutor.close()
        status, body = await api(kelian, "POST", f"{ROOM}/lock", {"locked": False})
        assert (status, body) == (200, {"locked": False})
        again = Peer(kelian.url, token(kelian, "late", "student", "fusion"))
        try:
            await again.connect()
        finally:
            await again.close()
        status, body = await api(kelian, "POST", f"{ROOM}/lock", {"locked": "yes"})
        assert status == 400 and body["error"]["code"] == "invalid_request"


async def test_hand_and_stage_survive_a_reconnect(kelian: Server) -> None:
    async with peers(kelian, *DUAL[:3], ("ann", "student", {"classroom": "box-1"}), kind="dual_teacher") as (
        lecturer,
        _box1,
        box2,
        ann,
    ):
        await ann.request({"type": "raise_hand"})
        await lecturer.request({"type": "stage", "identity": "box-2", "on": True})
        await drop(ann)
        await drop(box2)
        ann_again = Peer(kelian.url, token(kelian, "ann", "student", "dual_teacher", classroom="box-1"))
        box2_again = Peer(kelian.url, token(kelian, "box-2", "classroom", "dual_teacher"))
        try:
            joined = await ann_again.connect()
            assert joined["lesson"]["hand_raised"] is True
            assert [h["identity"] for h in room_of(kelian).moderation.queue(None)] == ["ann"]
            joined = await box2_again.connect()
            assert joined["room"]["stage"] == ["box-2"]
            await box2_again.publish(audio=False, simulcast=False)
            assert await settled(kelian)
            assert "box-2" in watched(kelian, "box-1")
            # leaving for good forgets: the stage and the hand
            await box2_again.close()
            await ann_again.close()
            assert await eventually(lambda: not room_of(kelian).stage)
            assert room_of(kelian).moderation.queue(None) == []
        finally:
            await ann_again.close()
            await box2_again.close()


async def test_the_waiting_room_admits_and_turns_away(kelian: Server) -> None:
    status, _ = await api(kelian, "POST", "/rooms", {"name": "lesson", "kind": "live", "waiting_room": True})
    assert status == 201
    async with peers(kelian, ("presenter", "lecturer", {}), kind="live") as (presenter,):
        vera = Peer(kelian.url, token(kelian, "vera", "viewer", "live"))
        walt = Peer(kelian.url, token(kelian, "walt", "viewer", "live"))
        try:
            for peer, position in ((vera, 1), (walt, 2)):
                reply = await peer.connect()
                assert (reply["type"], reply["position"]) == ("waiting_room", position)
            assert await eventually(lambda: len(events(presenter, "waiting_list")[-1]["waiting"]) == 2)
            status, body = await api(kelian, "GET", f"{ROOM}/waiting")
            assert [w["identity"] for w in body["waiting"]] == ["vera", "walt"]
            await refused(vera, {"type": "chat", "text": "let me in"}, "not_joined")

            await presenter.request({"type": "admit", "identity": "vera"})
            assert await eventually(lambda: bool(events(walt, "waiting_room")))
            assert events(walt, "waiting_room")[-1]["position"] == 1, "walt moved up"
            assert await eventually(lambda: bool(events(vera, "joined")))
            assert events(vera, "joined")[-1]["participant"]["identity"] == "vera"
            assert room_of(kelian).find("vera")
            status, _ = await api(kelian, "POST", f"{ROOM}/waiting/walt", {"admit": False})
            assert status == 204
            assert await eventually(lambda: walt.disconnected == "denied")
            assert not room_of(kelian).find("walt")
            await refused(presenter, {"type": "admit", "identity": "walt"}, "not_found")
            assert await eventually(lambda: events(presenter, "waiting_list")[-1]["waiting"] == [])
        finally:
            await vera.close()
            await walt.close()


async def test_a_viewer_in_the_waiting_room_cannot_slip_in_by_whep(kelian: Server) -> None:
    status, _ = await api(kelian, "POST", "/rooms", {"name": "lesson", "kind": "live", "waiting_room": True})
    assert status == 201
    status, body = await whep(kelian, token(kelian, "vera", "viewer", "live"))
    assert status == 403 and "waiting room" in body, body


async def test_the_python_client_speaks_the_lesson(kelian: Server) -> None:
    """signaling.client.Client, the aiortc client: a viewer waits and is admitted, raises a hand, is
    invited on stage and its real video reaches the other viewer; chat and a question round trip."""
    status, _ = await api(kelian, "POST", "/rooms", {"name": "lesson", "kind": "live", "waiting_room": True})
    assert status == 201
    presenter = Client(kelian.url, token(kelian, "presenter", "lecturer", "live"))
    vera = Client(kelian.url, token(kelian, "vera", "viewer", "live"))
    walt = Client(kelian.url, token(kelian, "walt", "viewer", "live"))
    try:
        await presenter.connect()
        for viewer, identity in ((vera, "vera"), (walt, "walt")):
            assert (await viewer.connect())["type"] == "waiting_room"
            await presenter.admit(identity)
            await viewer.wait_admitted()
        assert vera.grants["publish"] is False
        assert await vera.raise_hand() == 1
        await presenter.invite("vera", "stage")
        assert await eventually(lambda: any(e["type"] == "invitation" for e in vera.events))
        accepted = await vera.answer_invitation(True)
        assert accepted["grants"]["publish"] is True and vera.grants["publish"] is True
        await vera.publish(video_track())
        (track,) = await walt.wait_for_tracks(1)
        assert track.info["identity"] == "vera"

        sent = await walt.chat("hello")
        assert await eventually(
            lambda: any(e.get("message", {}).get("id") == sent["id"] for e in vera.events)
        )
        await presenter.delete_chat(sent["id"])
        question = await vera.ask("may I go on?")
        answered = await presenter.settle_question(question["id"], "answer", "yes")
        assert answered["status"] == "answered"
        await presenter.send_back("vera")
        assert await eventually(lambda: vera.grants["publish"] is False)
        assert await presenter.mute_all() == 0
        grants = await presenter.set_permissions("walt", publish_data=False)
        assert grants["publish_data"] is False
        await presenter.lock()
        assert not room_of(kelian).moderation.hands, "accepting took the hand down"
    finally:
        await walt.close()
        await vera.close()
        await presenter.close()


async def test_a_live_viewer_invited_to_speak_is_heard_by_everyone(kelian: Server) -> None:
    people = [("presenter", "lecturer", {}), ("vera", "viewer", {}), ("walt", "viewer", {})]
    async with peers(kelian, *people, kind="live") as (presenter, vera, walt):
        await presenter.request({"type": "invite", "identity": "vera", "to": "speak"})
        assert await eventually(lambda: bool(events(vera, "invitation")))
        await vera.request({"type": "accept_invitation"})
        assert await eventually(
            lambda: "vera" in [e["participant"]["identity"] for e in events(walt, "participant_joined")]
        )
        joined = next(e for e in events(walt, "participant_joined") if e["participant"]["identity"] == "vera")
        assert joined["participant"]["classroom"] is None and joined["participant"]["role"] == "viewer"
        await vera.publish(audio=True, video=False)
        assert await settled(kelian)
        assert watched(kelian, "walt") == {"vera"} and watched(kelian, "presenter") == {"vera"}
        await presenter.request({"type": "send_back", "identity": "vera"})
        assert await eventually(lambda: bool(events(vera, "sent_back")))
        assert events(vera, "sent_back")[-1]["by"]["identity"] == "presenter"
        assert await eventually(
            lambda: any(e["reason"] == "stopped_speaking" for e in events(walt, "participant_left"))
        )
        assert await settled(kelian)
        assert watched(kelian, "walt") == set()
