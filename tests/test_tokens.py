"""Access tokens: what a token grants, and that every way of being wrong is refused with the right status."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import jwt
import pytest

from classroom.tokens import LEEWAY_SECONDS, Claims, Grants, Role, TokenError, mint, verify

KEY = "APItestkey"
SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
NOW = 1_700_000_000.0

EXPECTED_DEFAULTS = {
    Role.LECTURER: Grants(publish=True, subscribe=True, publish_data=True, moderate=True),
    Role.TUTOR: Grants(publish=True, subscribe=True, publish_data=True, moderate=True),
    Role.CLASSROOM: Grants(publish=True, subscribe=True, publish_data=True),
    Role.STUDENT: Grants(publish=True, subscribe=True, publish_data=True),
    Role.VIEWER: Grants(publish=True, subscribe=True, publish_data=True),
    Role.RECORDER: Grants(subscribe=True),
    Role.ADMIN: Grants(publish=True, subscribe=True, publish_data=True, moderate=True, admin=True),
}


def _mint(**overrides: Any) -> str:
    kwargs: dict[str, Any] = {"room": "math-101", "identity": "alice", "role": Role.STUDENT, "now": NOW}
    kwargs.update(overrides)
    return mint(KEY, SECRET, **kwargs)


def _raw(payload: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def _base_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "iss": KEY,
        "sub": "alice",
        "room": "math-101",
        "role": "student",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 600,
    }
    payload.update(overrides)
    return payload


def _refused(token: str | None, *, status: int = 401, room: str | None = None, now: float = NOW) -> str:
    with pytest.raises(TokenError) as info:
        verify(token, KEY, SECRET, room=room, now=now)
    assert info.value.status == status
    assert str(info.value) == info.value.message and info.value.message
    return info.value.message


@pytest.mark.parametrize("role", list(Role))
def test_round_trip_per_role(role: Role) -> None:
    token = mint(KEY, SECRET, room="math-101", identity="id-1", role=role, name="Ada", ttl=120, now=NOW)
    claims = verify(token, KEY, SECRET, room="math-101", now=NOW + 1)
    assert claims == Claims(
        room="math-101",
        identity="id-1",
        name="Ada",
        role=role,
        grants=EXPECTED_DEFAULTS[role],
        expires_at=NOW + 120,
    )
    assert Grants.for_role(role) == EXPECTED_DEFAULTS[role]


def test_role_accepts_plain_string_and_name_is_optional() -> None:
    claims = verify(_mint(role="recorder"), KEY, SECRET, now=NOW)
    assert claims.role is Role.RECORDER
    assert claims.name is None
    assert not claims.grants.publish


def test_a_recorder_cannot_publish_and_a_viewer_only_once_invited() -> None:
    assert Grants.for_role(Role.VIEWER).publish, "so that a viewer invited on stage needs no new token"
    assert not Grants.for_role(Role.RECORDER).publish
    assert not Grants.for_role(Role.RECORDER).publish_data


def test_explicit_grants_narrow_role_defaults() -> None:
    token = _mint(role=Role.LECTURER, grants={"moderate": False})
    grants = verify(token, KEY, SECRET, now=NOW).grants
    assert grants == Grants(publish=True, subscribe=True, publish_data=True, moderate=False)

    token = _mint(role=Role.CLASSROOM, grants=Grants(subscribe=True))
    assert verify(token, KEY, SECRET, now=NOW).grants == Grants(subscribe=True)


def test_mint_refuses_to_widen() -> None:
    with pytest.raises(ValueError, match="publish"):
        _mint(role=Role.RECORDER, grants={"publish": True})
    with pytest.raises(ValueError, match="admin"):
        _mint(role=Role.LECTURER, grants=Grants(publish=True, admin=True))


def test_verify_ignores_widening_grants_in_a_hand_made_token() -> None:
    """Another issuer might put anything in 'grants'; the role caps it."""
    token = _raw(_base_payload(role="recorder", grants={"publish": True, "admin": True, "subscribe": True}))
    assert verify(token, KEY, SECRET, now=NOW).grants == Grants.for_role(Role.RECORDER)


def test_missing_or_unknown_grant_keys_keep_defaults() -> None:
    token = _raw(_base_payload(role="student", grants={"subscribe": False, "future_grant": True}))
    assert verify(token, KEY, SECRET, now=NOW).grants == Grants(publish=True, publish_data=True)
    token = _raw(_base_payload(role="student"))  # no grants claim at all
    assert verify(token, KEY, SECRET, now=NOW).grants == Grants.for_role(Role.STUDENT)


def test_non_boolean_grant_is_refused() -> None:
    _refused(_raw(_base_payload(grants={"publish": "yes"})))
    _refused(_raw(_base_payload(grants=["publish"])))


def test_expired() -> None:
    token = _mint(ttl=60)
    verify(token, KEY, SECRET, now=NOW + 60 + LEEWAY_SECONDS)  # within leeway
    assert "expired" in _refused(token, now=NOW + 60 + LEEWAY_SECONDS + 1)


def test_not_yet_valid() -> None:
    token = _mint(now=NOW + 3600)
    verify(token, KEY, SECRET, now=NOW + 3600 - LEEWAY_SECONDS)  # within leeway
    assert "not valid" in _refused(token, now=NOW)


def test_bad_signature() -> None:
    other_secret = "another-secret-that-is-also-long-enough-for-hs256"
    token = mint(KEY, other_secret, room="math-101", identity="a", role="student", now=NOW)
    assert "signature" in _refused(token)


def test_tampered_payload() -> None:
    header, _payload, signature = _mint(role=Role.VIEWER).split(".")
    forged_payload = _mint(role=Role.ADMIN).split(".")[1]
    _refused(f"{header}.{forged_payload}.{signature}")


def test_wrong_issuer() -> None:
    token = mint("APIotherkey", SECRET, room="math-101", identity="a", role="student", now=NOW)
    assert "API key" in _refused(token)


def test_wrong_room_is_forbidden() -> None:
    token = _mint(room="math-101")
    assert verify(token, KEY, SECRET, room="math-101", now=NOW).room == "math-101"
    message = _refused(token, room="physics-202", status=403)
    assert "math-101" in message and "physics-202" in message


def test_wrong_room_is_401_when_token_is_otherwise_bad() -> None:
    """403 is only for a token that is valid; an expired token for another room is still 401."""
    _refused(_mint(room="math-101", ttl=1), room="physics-202", now=NOW + 3600)


@pytest.mark.parametrize("garbage", ["", None, "garbage", "a.b.c", "x" * 500, "eyJhbGciOi.eyJ.sig"])
def test_garbage(garbage: str | None) -> None:
    _refused(garbage)


def test_missing_exp_is_refused() -> None:
    payload = _base_payload()
    del payload["exp"]
    assert "exp" in _refused(_raw(payload))


@pytest.mark.parametrize("claim", ["room", "sub", "role", "iss"])
def test_missing_required_claims(claim: str) -> None:
    payload = _base_payload()
    del payload[claim]
    _refused(_raw(payload))


def test_unknown_role() -> None:
    assert "role" in _refused(_raw(_base_payload(role="headmaster")))


def test_non_numeric_time_claims() -> None:
    _refused(_raw(_base_payload(exp="tomorrow")))
    _refused(_raw(_base_payload(nbf="now")))


def test_alg_none_is_refused() -> None:
    token = jwt.encode(_base_payload(), "", algorithm="none")
    _refused(token)


def test_mint_validates_arguments() -> None:
    with pytest.raises(ValueError, match="role"):
        _mint(role="headmaster")
    with pytest.raises(ValueError, match="ttl"):
        _mint(ttl=0)
    with pytest.raises(ValueError):
        _mint(room="")
    with pytest.raises(ValueError):
        _mint(identity="")


def test_default_now_is_wall_clock() -> None:
    token = mint(KEY, SECRET, room="r", identity="a", role=Role.TUTOR, ttl=30)
    claims = verify(token, KEY, SECRET, room="r")
    assert abs(claims.expires_at - (time.time() + 30)) < 5


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", 10**400),  # json.loads reads it as an int a float cannot hold (was a 500)
        ("exp", float("nan")),  # never compared true: was a token that never expired
        ("exp", float("inf")),
        ("exp", -float("inf")),
        ("nbf", float("nan")),
        ("iat", float("inf")),
        ("exp", 2**53),
    ],
)
def test_time_claims_must_be_dates(claim: str, value: float) -> None:
    assert f"invalid {claim!r} claim" in _refused(_raw(_base_payload(**{claim: value})))


def test_a_token_may_not_live_longer_than_the_server_allows() -> None:
    assert "lives longer" in _refused(_raw(_base_payload(exp=int(NOW) + 10**12)))
    week = _raw(_base_payload(exp=int(NOW) + 7 * 24 * 3600))
    assert verify(week, KEY, SECRET, now=NOW).identity == "alice"
    with pytest.raises(TokenError, match=r"longer than this server allows \(3600 s\)"):
        verify(week, KEY, SECRET, now=NOW, max_ttl=3600)
    with pytest.raises(ValueError, match="ttl"):
        _mint(ttl=10**12)


def test_a_token_issued_in_the_future_is_refused() -> None:
    assert "in the future" in _refused(_raw(_base_payload(iat=int(NOW) + 3600)))
    assert verify(_raw(_base_payload(iat=int(NOW) + LEEWAY_SECONDS)), KEY, SECRET, now=NOW)


@pytest.mark.parametrize(
    ("claim", "value", "hint"),
    [
        ("name", "Li \ud83d", "surrogate"),  # joined, it broke every later join to its room
        ("room", "bad\ud800", "surrogate"),
        ("sub", "eve\r\nforged log line", "control character"),
        ("room", "a/b", "'/'"),
        ("sub", "x" * 129, "at most 128"),
        ("name", 7, "string"),
    ],
)
def test_names_in_a_token_are_checked_like_every_name(claim: str, value: object, hint: str) -> None:
    assert hint in _refused(_raw(_base_payload(**{claim: value})))
    with pytest.raises(ValueError, match=hint.split()[0]):
        _mint(**{"identity" if claim == "sub" else claim: value})


def test_a_signed_payload_nested_too_deeply_is_malformed() -> None:
    """Signed with the right secret, as a careless integrator's own JWT code might: PyJWT checks the
    signature first, then json.loads the payload, which raised RecursionError (a 500)."""
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}')
    body = jwt.utils.base64url_encode(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    signature = hmac.new(SECRET.encode(), header + b"." + body, hashlib.sha256).digest()
    token = b".".join([header, body, jwt.utils.base64url_encode(signature)]).decode()
    assert "malformed" in _refused(token)
