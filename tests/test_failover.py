"""Source failover: a track with a standby keeps its subscribers when its publisher falls silent or
leaves, on the same track and the same stream, and gives them back when it returns."""

from __future__ import annotations

from typing import Any

import pytest
from classroom_peers import api, events, peers, room_of, session, settled, token
from crowd import workers
from kelian_server import Server, eventually

from loadtest.peer import Peer, PeerError

PEOPLE = [
    ("teacher", "lecturer", {}),  # the lecturer's laptop: the standby
    ("box-l", "classroom", {}),  # the lecturer's classroom box: the primary
    ("box-1", "classroom", {}),
    ("box-2", "classroom", {}),
]


def video_of(kelian: Server, identity: str) -> str:
    (producer,) = [p for p in session(kelian, identity).producers.values() if p.kind == "video"]
    return producer.id


def received(peer: Peer, track: str) -> dict[str, Any]:
    return dict(peer.stats()["subscriber"]["tracks"][track])


def silence(peer: Peer, on: bool) -> None:
    """The publisher stops sending video (its camera hangs) or starts again at a keyframe."""
    assert peer.publisher is not None
    for stream in peer.publisher.video:
        if not on and not stream.active:
            stream.next_keyframe()
        stream.active = not on


async def test_a_silent_primary_hands_its_subscribers_to_the_standby_and_back(kelian: Server) -> None:
    async with peers(kelian, *PEOPLE, kind="fusion") as (teacher, box_l, box_1, box_2):
        for publisher in (teacher, box_l):
            await publisher.publish(audio=False, simulcast=False)
        assert await settled(kelian)
        primary, standby = video_of(kelian, "box-l"), video_of(kelian, "teacher")
        for refused in (box_1,):
            with pytest.raises(PeerError, match="may not give a track a standby"):
                await refused.request({"type": "set_standby", "track": primary, "standby": standby})
        reply = await teacher.request({"type": "set_standby", "track": primary, "standby": standby})
        assert (reply["type"], reply["track"], reply["standby"]) == ("standby_set", primary, standby)
        assert await eventually(lambda: received(box_1, primary)["frames"] > 10)
        offers = [p.stats()["subscriber"]["offers"] for p in (box_1, box_2)]

        silence(box_l, True)
        router = room_of(kelian).router
        consumers = [s.consumer for s in session(kelian, "box-1").subscriptions if s.producer_id == primary]
        assert await eventually(lambda: consumers[0] is not None and consumers[0].producer.id == standby)
        assert await eventually(lambda: any(e["standby"] == standby for e in events(box_1, "track_failover")))
        frames = received(box_1, primary)["frames"]
        assert await eventually(lambda: received(box_1, primary)["frames"] > frames + 15), (
            "fed by the standby"
        )
        assert router.standbys[primary].on_standby

        silence(box_l, False)
        assert await eventually(lambda: consumers[0].producer.id == primary)
        assert await eventually(lambda: any(e["standby"] is None for e in events(box_1, "track_failover")))
        frames = received(box_1, primary)["frames"]
        assert await eventually(lambda: received(box_1, primary)["frames"] > frames + 15)
        for peer in (box_1, box_2):
            track = received(peer, primary)
            assert track["lost"] <= 2, "one stream: sequence numbers carry on across both switches"
            assert track["ended"] is False
        assert [p.stats()["subscriber"]["offers"] for p in (box_1, box_2)] == offers, "nothing renegotiated"


async def test_a_primary_that_leaves_comes_back_as_the_same_track(kelian: Server) -> None:
    async with peers(kelian, *PEOPLE, kind="fusion") as (teacher, box_l, box_1, _box_2):
        for publisher in (teacher, box_l):
            await publisher.publish(audio=False, simulcast=False)
        assert await settled(kelian)
        primary, standby = video_of(kelian, "box-l"), video_of(kelian, "teacher")
        status, body = await api(
            kelian, "POST", f"/rooms/lesson/tracks/{primary}/standby", {"standby": standby}
        )
        assert (status, body) == (200, {"track": primary, "standby": standby})
        assert await eventually(lambda: received(box_1, primary)["frames"] > 10)
        offers = box_1.stats()["subscriber"]["offers"]

        await box_l.close()  # the box leaves (a reboot; SIGKILL is the slow test's)
        assert await eventually(lambda: not room_of(kelian).find("box-l"))
        assert not [e for e in events(box_1, "track_unpublished") if e["track"]["id"] == primary]
        frames = received(box_1, primary)["frames"]
        assert await eventually(lambda: received(box_1, primary)["frames"] > frames + 15)
        room_of(kelian).reconcile(session(kelian, "box-1"))  # the stage or a permission changing
        assert await eventually(lambda: received(box_1, primary)["frames"] > frames + 30), "still on"

        back = Peer(kelian.url, token(kelian, "box-l", "classroom", "fusion"))
        try:
            await back.connect()
            await back.publish(audio=False, simulcast=False)
            assert video_of(kelian, "box-l") == primary, "the same track id again"
            (subscription,) = [s for s in session(kelian, "box-1").subscriptions if s.producer_id == primary]
            assert await eventually(
                lambda: (
                    subscription.consumer is not None
                    and subscription.consumer.producer
                    is session(kelian, "box-l").producers[next(iter(session(kelian, "box-l").producers))]
                )
            )
            frames = received(box_1, primary)["frames"]
            assert await eventually(lambda: received(box_1, primary)["frames"] > frames + 15)
            assert box_1.stats()["subscriber"]["offers"] == offers, "one track throughout"
        finally:
            await back.close()
        status, _ = await api(kelian, "DELETE", f"/rooms/lesson/tracks/{primary}/standby")
        assert status == 204
        assert (await api(kelian, "DELETE", f"/rooms/lesson/tracks/{primary}/standby"))[0] == 404


async def test_a_standby_of_another_kind_is_refused(kelian: Server) -> None:
    async with peers(kelian, *PEOPLE[:2], kind="fusion") as (teacher, box_l):
        await teacher.publish(audio=True, video=False)
        await box_l.publish(audio=False, simulcast=False)
        audio = next(p.id for p in session(kelian, "teacher").producers.values())
        with pytest.raises(PeerError, match="cannot stand in"):
            await teacher.request(
                {"type": "set_standby", "track": video_of(kelian, "box-l"), "standby": audio}
            )
        with pytest.raises(PeerError, match="no track 'TR_0'"):
            await teacher.request({"type": "set_standby", "track": "TR_0", "standby": audio})


async def test_a_killed_primary_publisher_leaves_its_subscribers_decoding_the_standby(kelian: Server) -> None:
    """The primary publisher's process is killed (SIGKILL) mid-lesson: its subscriber keeps decoding
    the same track, from the standby; a new process of the same box comes back and takes it over."""
    box_token = {"token": token(kelian, "box-l", "classroom", "fusion"), "video": True, "expect": 0}
    async with peers(kelian, PEOPLE[0], PEOPLE[2], kind="fusion") as (teacher, box_1):
        await teacher.publish(audio=False, simulcast=False)
        async with workers(kelian.url, [box_token], count=1) as (primary_process,):
            assert await eventually(lambda: bool(room_of(kelian).find("box-l")), 10)
            primary, standby = video_of(kelian, "box-l"), video_of(kelian, "teacher")
            await teacher.request({"type": "set_standby", "track": primary, "standby": standby})
            await box_1.wait_for_tracks(2)
            box_1.probe(primary)

            def decoded() -> int:
                probe = received(box_1, primary).get("probe") or {}
                return int(probe.get("decoded_frames") or 0)

            assert await eventually(lambda: decoded() > 10, 10)
            offers = box_1.stats()["subscriber"]["offers"]
            primary_process.process.kill()  # SIGKILL: no leave, no goodbye on any socket
            await primary_process.process.wait()
            frames = decoded()
            (subscription,) = [s for s in session(kelian, "box-1").subscriptions if s.producer_id == primary]
            assert await eventually(lambda: subscription.consumer.producer.id == standby, 10)  # type: ignore[union-attr]
            assert await eventually(lambda: decoded() > frames + 30, 10), "decoding on, from the standby"

        async with workers(kelian.url, [box_token], count=1):  # the box starts again

            def republished() -> bool:
                sessions = room_of(kelian).find("box-l")
                return bool(sessions) and [p.id for p in sessions[0].producers.values()] == [primary]

            assert await eventually(republished, 15), "the same track id again"
            assert await eventually(
                lambda: (
                    subscription.consumer is not None
                    and subscription.consumer.producer.id == primary
                    and not subscription.consumer.producer.closed
                ),
                10,
            )
            frames = decoded()
            assert await eventually(lambda: decoded() > frames + 30, 10), "decoding on, from the primary"
            probe = received(box_1, primary)["probe"]
            assert probe["decode_errors"] == 0 and probe["problem"] is None
            assert box_1.stats()["subscriber"]["offers"] == offers, "one track throughout"
