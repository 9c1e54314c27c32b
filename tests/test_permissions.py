"""The one authorisation check: what each role may do, by itself and to others."""

from __future__ import annotations

import pytest

from classroom.errors import ClassroomError
from classroom.permissions import Action, allowed, authorize, classroom_of, in_reach, start
from classroom.tokens import Claims, Grants, Role


def claims(role: Role, identity: str = "me", classroom: str | None = None) -> Claims:
    return Claims("lesson", identity, None, role, Grants.for_role(role), 0.0, classroom=classroom)


TARGETED = (Action.MUTE, Action.REMOVE, Action.END_SESSION, Action.HANDS, Action.INVITE)


@pytest.mark.parametrize(
    ("role", "publish", "subscribe", "moderate"),
    [
        (Role.LECTURER, True, True, True),
        (Role.TUTOR, True, True, True),
        (Role.CLASSROOM, True, True, False),
        (Role.STUDENT, True, True, False),
        (Role.VIEWER, True, True, False),
        (Role.RECORDER, False, True, False),
        (Role.ADMIN, True, True, True),
    ],
)
def test_each_role(role: Role, publish: bool, subscribe: bool, moderate: bool) -> None:
    who = claims(role, classroom="box-1")
    box = claims(Role.CLASSROOM, "box-1")
    assert allowed(who, Action.PUBLISH) is publish, "a token's grants are the ceiling"
    assert allowed(who, Action.SUBSCRIBE) is subscribe
    assert allowed(who, Action.CHAT) is (role is not Role.RECORDER)
    for action in TARGETED:
        assert allowed(who, action, box) is moderate, action
    me = claims(role, classroom="box-1")
    assert allowed(who, Action.MUTE, me) and allowed(who, Action.END_SESSION, me)
    assert allowed(who, Action.REMOVE, me) is moderate, "leaving is not removing oneself"
    lecture = role in (Role.LECTURER, Role.ADMIN)
    for action in (Action.STAGE, Action.LOCK, Action.ADMIT):
        assert allowed(who, action) is lecture, f"{action} is the lecture's"


def test_a_student_or_viewer_starts_without_publishing() -> None:
    for role in Role:
        started = Grants.for_role(role).narrow(start(role))
        assert started.publish is (role in (Role.LECTURER, Role.TUTOR, Role.CLASSROOM, Role.ADMIN)), role
        assert started.subscribe == Grants.for_role(role).subscribe


def test_a_tutor_moderates_only_its_own_classroom() -> None:
    tutor = claims(Role.TUTOR, "tutor-1", classroom="box-1")
    mine = [claims(Role.CLASSROOM, "box-1"), claims(Role.STUDENT, "s1", classroom="box-1")]
    others = [claims(Role.CLASSROOM, "box-2"), claims(Role.STUDENT, "s2", classroom="box-2")]
    others += [claims(Role.LECTURER, "teacher"), claims(Role.STUDENT, "s3")]
    for action in TARGETED:
        assert all(allowed(tutor, action, who) for who in mine), action
        assert not any(allowed(tutor, action, who) for who in others), action
    assert [classroom_of(who) for who in mine] == ["box-1", "box-1"]
    unbound = claims(Role.TUTOR, "tutor-9")
    assert not in_reach(unbound, mine[0]), "a tutor bound to no classroom moderates nobody"
    with pytest.raises(ClassroomError, match="outside its classroom"):
        authorize(tutor, Action.MUTE, others[0])


def test_the_admin_api_may_do_everything() -> None:
    assert all(allowed(None, action, claims(Role.LECTURER, "anyone")) for action in Action)


def test_a_refusal_names_the_role_and_the_act() -> None:
    with pytest.raises(ClassroomError) as refused:
        authorize(claims(Role.RECORDER), Action.PUBLISH)
    assert (refused.value.code, refused.value.status) == ("forbidden", 403)
    assert refused.value.message == "role recorder may not publish"
