"""ICE-lite (RFC 8445 section 2.5) on the Node's one UDP port.

A lite agent only answers connectivity checks. Each Transport has its own ufrag and password; a
binding request names the Transport in USERNAME ("ours:theirs"), proves it knows our password with
MESSAGE-INTEGRITY, and so earns its source address a place in the Node's address table. The full
agent on the other side picks the pair with USE-CANDIDATE, and keeps consent with later checks
(RFC 7675). aioice's STUN codec does the encoding and the integrity and fingerprint checks.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field

from aioice import stun

Address = tuple[str, int]


class IceError(ValueError):
    """A STUN message the lite agent must drop (malformed, unknown user, bad integrity)."""


def new_credentials() -> tuple[str, str]:
    """ufrag of 8 and password of 24 characters, above RFC 8445's 4 and 22 minimums."""
    return secrets.token_hex(4), secrets.token_urlsafe(18)


@dataclass
class BindingRequest:
    local_ufrag: str
    remote_ufrag: str
    use_candidate: bool
    message: stun.Message = field(repr=False)


def parse_binding_request(data: bytes) -> BindingRequest | None:
    """None for STUN messages a lite agent ignores (responses, indications); IceError for junk."""
    try:
        msg = stun.parse_message(data)
    except (ValueError, struct.error, UnicodeDecodeError, IndexError, KeyError) as exc:
        raise IceError(f"malformed STUN message: {exc}") from None
    if msg.message_method != stun.Method.BINDING or msg.message_class != stun.Class.REQUEST:
        return None
    username = msg.attributes.get("USERNAME")
    if not isinstance(username, str) or ":" not in username:
        raise IceError("binding request without a USERNAME of the form local:remote")
    if "MESSAGE-INTEGRITY" not in msg.attributes:
        raise IceError("binding request without MESSAGE-INTEGRITY")
    local, remote = username.split(":", 1)
    return BindingRequest(local, remote, "USE-CANDIDATE" in msg.attributes, msg)


def binding_success(request: BindingRequest, password: str, addr: Address) -> bytes:
    """The success response, or IceError if the request's integrity does not match our password."""
    key = password.encode()
    if not request.message.check_message_integrity(key):
        raise IceError("binding request failed the MESSAGE-INTEGRITY check")
    response = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.RESPONSE,
        transaction_id=request.message.transaction_id,
    )
    response.attributes["XOR-MAPPED-ADDRESS"] = addr
    response.add_message_integrity(key)
    return bytes(response)
