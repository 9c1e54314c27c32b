"""Access tokens: who may join which room, in which role, with which grants.

Tokens are JWTs signed HS256 with the API secret and carry the API key as issuer, the scheme LiveKit and
most SFU vendors use, so an application backend can mint them with any JWT library and no call to us.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

import jwt

from . import text

__all__ = [
    "ALGORITHM",
    "LEEWAY_SECONDS",
    "Claims",
    "Grants",
    "Role",
    "TokenError",
    "mint",
    "verify",
]

ALGORITHM = "HS256"
# Lesson machines in schools are not always NTP-synchronised; a few seconds of skew must not lock a
# classroom out of its lesson.
LEEWAY_SECONDS = 10
# The longest a token may still live when it is used, unless the server is told otherwise
# (--max-token-ttl): long enough to mint a week of a timetable's links at once, short enough that a
# leaked link dies. A token that claims to live longer is refused, not trimmed.
MAX_TTL_SECONDS = 7 * 24 * 3600
# RFC 7519 NumericDate: seconds, which a JSON number holds exactly up to 2**53.
_MAX_NUMERIC_DATE = 2**53
# HS256 wants a key as long as its hash (RFC 7518 section 3.2); shorter secrets are refused outside
# development mode.
MIN_SECRET_LENGTH = 32
# The room kinds (classroom/kinds.py), named here too because a token may name one.
KINDS = ("fusion", "dual_teacher", "live")


class Role(StrEnum):
    """What a participant is in the lesson; decides default grants and, elsewhere, what the UI offers."""

    LECTURER = "lecturer"
    TUTOR = "tutor"
    CLASSROOM = "classroom"
    STUDENT = "student"
    VIEWER = "viewer"
    RECORDER = "recorder"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Grants:
    """Capabilities of one participant. Frozen so a verified token cannot be widened after the fact."""

    publish: bool = False
    subscribe: bool = False
    publish_data: bool = False
    moderate: bool = False
    admin: bool = False

    @classmethod
    def for_role(cls, role: Role | str) -> Grants:
        """The most a token of this role may grant."""
        return _ROLE_DEFAULTS[Role(role)]

    def narrow(self, other: Grants) -> Grants:
        """Keep only what both allow: how explicit grants combine with a role's defaults."""
        return Grants(**{f.name: getattr(self, f.name) and getattr(other, f.name) for f in fields(self)})

    def widens(self, other: Grants) -> list[str]:
        """Names of the grants ``other`` has that this one lacks; empty when ``other`` only narrows."""
        return [f.name for f in fields(self) if getattr(other, f.name) and not getattr(self, f.name)]

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)


_ROLE_DEFAULTS: dict[Role, Grants] = {
    Role.LECTURER: Grants(publish=True, subscribe=True, publish_data=True, moderate=True),
    Role.TUTOR: Grants(publish=True, subscribe=True, publish_data=True, moderate=True),
    Role.CLASSROOM: Grants(publish=True, subscribe=True, publish_data=True),
    # Students and viewers may publish by grant so that one invited to speak or on stage needs no new
    # token; they publish only when invited (classroom.permissions.start), and a school that never
    # wants a viewer heard mints its token without publish.
    Role.STUDENT: Grants(publish=True, subscribe=True, publish_data=True),
    Role.VIEWER: Grants(publish=True, subscribe=True, publish_data=True),
    Role.RECORDER: Grants(subscribe=True),
    Role.ADMIN: Grants(publish=True, subscribe=True, publish_data=True, moderate=True, admin=True),
}

_GRANT_NAMES = frozenset(f.name for f in fields(Grants))


class TokenError(Exception):
    """A token was refused. ``status`` is the HTTP status to answer with: 401 unusable, 403 wrong room."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says; ``grants`` are already the effective ones (role defaults narrowed).

    ``expires_at`` is in Unix seconds, to compare with ``time.time()`` when scheduling a disconnect.
    """

    room: str
    identity: str
    name: str | None
    role: Role
    grants: Grants
    expires_at: float
    kind: str | None = None  # the room kind a room created by this join gets (classroom.kinds)
    classroom: str | None = None  # a tutor's or a student's classroom: the identity of its box


def mint(
    api_key: str,
    api_secret: str,
    *,
    room: str,
    identity: str,
    role: Role | str,
    name: str | None = None,
    ttl: int = 3600,
    grants: Grants | Mapping[str, bool] | None = None,
    now: float | None = None,
    kind: str | None = None,
    classroom: str | None = None,
) -> str:
    """Sign a token for one participant in one room.

    ``kind`` is the room kind a room created by this join gets (fusion when absent); ``classroom``
    binds a tutor to one classroom, named by its box's identity.

    ``grants`` may be a full :class:`Grants` or a mapping of only the grants to change; missing keys keep
    the role's default. Asking for more than the role allows raises ValueError rather than being quietly
    trimmed, because a caller who asks for it has misunderstood the role and should find out now, not
    when a classroom cannot publish in the middle of a lesson.
    """
    if not api_key or not api_secret:
        raise ValueError("an API key and secret are required to mint a token")
    text.name(room, "room")
    text.name(identity, "identity")
    if name is not None:
        text.display_name(name, "name")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown room kind {kind!r}; expected one of {', '.join(KINDS)}")
    if classroom is not None:
        text.name(classroom, "classroom")
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be 1 to {MAX_TTL_SECONDS} seconds, got {ttl}")
    try:
        role = Role(role)
    except ValueError:
        raise ValueError(
            f"unknown role {role!r}; expected one of {', '.join(r.value for r in Role)}"
        ) from None
    defaults = Grants.for_role(role)
    if grants is None:
        effective = defaults
    else:
        requested = (
            grants if isinstance(grants, Grants) else _grants_from_mapping(grants, defaults, ValueError)
        )
        too_much = defaults.widens(requested)
        if too_much:
            raise ValueError(f"role {role.value!r} cannot be granted {', '.join(too_much)}")
        effective = requested

    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "room": room,
        "role": role.value,
        "grants": effective.to_dict(),
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl),
    }
    for claim, value in (("name", name), ("kind", kind), ("classroom", classroom)):
        if value is not None:
            payload[claim] = value
    return jwt.encode(payload, api_secret, algorithm=ALGORITHM)


def verify(
    token: str | None,
    api_key: str,
    api_secret: str,
    *,
    room: str | None = None,
    now: float | None = None,
    max_ttl: float = MAX_TTL_SECONDS,
) -> Claims:
    """Check a token and return what it grants; raise TokenError with the HTTP status to answer.

    ``room`` is the room being joined; None skips that check (for the admin API, which is not per room).
    Time checks are done here rather than by PyJWT so that ``now`` can be injected by tests and so every
    refusal gets a message a teacher's support desk can act on. A token that would live on for more
    than ``max_ttl`` seconds is refused. Names in it are checked as every name is (text.py).
    """
    if not token:
        raise TokenError("missing access token")
    try:
        payload = jwt.decode(
            token,
            api_secret,
            algorithms=[ALGORITHM],
            issuer=api_key,
            options={
                "require": ["exp", "iss", "sub", "room", "role"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise TokenError("token signature does not match the API secret") from None
    except jwt.InvalidIssuerError:
        raise TokenError("token was not issued with this server's API key") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"token has no {exc.claim!r} claim") from None
    except jwt.InvalidAlgorithmError:
        raise TokenError(f"token is not signed with {ALGORITHM}") from None
    except jwt.DecodeError:
        raise TokenError("malformed access token") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid access token: {exc}") from None
    except (RecursionError, ValueError):  # a payload JSON that nests too deeply or will not parse
        raise TokenError("malformed access token") from None

    current = time.time() if now is None else now
    exp = _numeric_claim(payload, "exp")
    nbf = _numeric_claim(payload, "nbf")
    iat = _numeric_claim(payload, "iat")
    if exp is None:  # PyJWT's "require" already refuses this; kept so the type is narrowed honestly
        raise TokenError("token has no 'exp' claim")
    if current > exp + LEEWAY_SECONDS:
        raise TokenError(f"token expired {int(current - exp)} s ago")
    if nbf is not None and current < nbf - LEEWAY_SECONDS:
        raise TokenError(f"token is not valid for another {int(nbf - current)} s")
    if iat is not None and iat > current + LEEWAY_SECONDS:
        raise TokenError(f"token says it was issued {int(iat - current)} s in the future")
    if exp - current > max_ttl + LEEWAY_SECONDS:
        raise TokenError(f"token lives longer than this server allows ({int(max_ttl)} s): mint a shorter one")

    try:
        role = Role(payload["role"])
    except ValueError:
        raise TokenError(f"token has an unknown role {payload['role']!r}") from None

    name, kind, classroom = payload.get("name"), payload.get("kind"), payload.get("classroom")
    try:
        token_room = text.name(payload["room"], "the token's room")
        identity = text.name(payload["sub"], "the token's identity ('sub')")
        if name is not None:
            text.display_name(name, "the token's name")
        if classroom is not None:
            text.name(classroom, "the token's classroom")
    except text.TextError as exc:
        raise TokenError(str(exc)) from None
    if kind is not None and kind not in KINDS:
        raise TokenError(f"token has an unknown room kind {kind!r}; expected one of {', '.join(KINDS)}")

    defaults = Grants.for_role(role)
    raw_grants = payload.get("grants")
    if raw_grants is None:
        effective = defaults
    elif isinstance(raw_grants, Mapping):
        # Narrow, never widen: the role is what the issuer vetted, and a grants field that could exceed
        # it would let a viewer token carry publish=True and put an unknown camera in front of a class.
        effective = defaults.narrow(_grants_from_mapping(raw_grants, defaults, TokenError))
    else:
        raise TokenError("token has an invalid 'grants' claim")

    if room is not None and token_room != room:
        raise TokenError(f"token is for room {token_room!r}, not {room!r}", status=403)

    return Claims(
        room=token_room,
        identity=identity,
        name=name,
        role=role,
        grants=effective,
        expires_at=float(exp),
        kind=kind,
        classroom=classroom,
    )


def _numeric_claim(payload: Mapping[str, Any], claim: str) -> float | None:
    """Time claims must be finite JSON numbers (RFC 7519 NumericDate) a date can be: a string, NaN,
    Infinity or 10**400 there is a malformed token, not one that never expires."""
    value = payload.get(claim)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"token has an invalid {claim!r} claim: not a number")
    if not -_MAX_NUMERIC_DATE < value < _MAX_NUMERIC_DATE:  # false for NaN and the infinities too
        raise TokenError(f"token has an invalid {claim!r} claim: not a date in seconds")
    return float(value)


def _grants_from_mapping(
    raw: Mapping[str, Any], defaults: Grants, error: type[ValueError] | type[TokenError]
) -> Grants:
    """Read grants given as a mapping; absent keys keep the default, unknown keys are ignored.

    Unknown keys are ignored rather than refused so that tokens minted by a newer issuer, with grants this
    server does not know, still work: ignoring a grant can only take rights away, never add them.
    """
    values = defaults.to_dict()
    for key, value in raw.items():
        if key not in _GRANT_NAMES:
            continue
        if not isinstance(value, bool):
            raise error(f"grant {key!r} must be true or false, got {value!r}")
        values[key] = value
    return Grants(**values)
