"""The one authorisation check: what each role may do, by itself and to others."""

from __future__ import annotations

import pytest

from classroom.errors import ClassroomError
from classroom.permissions import Action, allowed, authorize
from classroom.tokens import Claims, Grants, Role


def claims(role: Role, identity: str = "me") -> Claims:
    return Claims("lesson", identity, None, role, Grants.for_role(role), 0.0)


@pytest.mark.parametrize(
    ("role", "publish", "subscribe", "moderate"),
    [
        (Role.LECTURER, True, True, True),
        (Role.TUTOR, True, True, True),
        (Role.CLASSROOM, True, True, False),
        (Role.STUDENT, True, True, False),
        (Role.VIEWER, False, True, False),
        (Role.RECORDER, False, True, False),
        (Role.ADMIN, True, True, True),
    ],
)
def test_each_role(role: Role, publish: bool, subscribe: bool, moderate: bool) -> None:
    who = claims(role)
    assert allowed(who, Action.PUBLISH) is publish
    assert allowed(who, Action.SUBSCRIBE) is subscribe
    for action in (Action.MUTE, Action.REMOVE, Action.END_SESSION):
        assert allowed(who, action, owner="someone-else") is moderate
    assert allowed(who, Action.MUTE, owner="me") and allowed(who, Action.END_SESSION, owner="me")
    assert allowed(who, Action.REMOVE, owner="me") is moderate, "leaving is not removing oneself"
    assert allowed(who, Action.STAGE) is (role in (Role.LECTURER, Role.ADMIN)), "the lecture's stage"


def test_the_admin_api_may_do_everything() -> None:
    assert all(allowed(None, action, owner="anyone") for action in Action)


def test_a_refusal_names_the_role_and_the_act() -> None:
    with pytest.raises(ClassroomError) as refused:
        authorize(claims(Role.VIEWER), Action.PUBLISH)
    assert (refused.value.code, refused.value.status) == ("forbidden", 403)
    assert refused.value.message == "role viewer may not publish"
