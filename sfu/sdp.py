"""SDP (RFC 8866 / JSEP) parsing and serialization for the SFU's signaling path.

Hand-written because aiortc's parser silently drops ``a=rid``, ``a=simulcast`` and every
attribute it does not model, and the SFU needs exactly those to route simulcast layers. Offers
come from untrusted clients, so input is size-bounded and every defect becomes an SdpError
naming the line, never a stray IndexError/ValueError. Unmodelled ``a=`` lines are kept verbatim
in ``other``. Deliberately dropped: ``i= u= e= p= r= z= k=``, the ``t=`` value, extmap direction
suffixes and extension attributes; session-level ice/fingerprint/setup/``c=`` values are folded
into each media section lacking its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

# The one set of bounds on SDP, everywhere it enters (the WebSocket, WHIP and WHEP use these). A
# subscriber connection has one m-section per track it receives at once (sections are recycled), so
# the largest lesson is a lecturer watching 120 classrooms' cameras and microphones: 240 sections.
# 256 of them are about 246 kB in the server's offer (ICE, DTLS, RTX and SSRC lines in each) and
# less in a browser's answer. The signaling channel allows 320 KiB messages: this and JSON's escapes.
MAX_SDP_BYTES = 256 * 1024
MAX_MEDIA_SECTIONS = 256
DEFAULT_CONNECTION = "IN IP4 0.0.0.0"
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
SETUP_ROLES = ("actpass", "active", "passive", "holdconn")
# RFC 3551 static payload types (all 8000 Hz), which offers may list without an a=rtpmap.
STATIC_PAYLOAD_TYPES = {0: "PCMU", 3: "GSM", 4: "G723", 8: "PCMA", 9: "G722", 13: "CN", 18: "G729"}
# Attributes stored in the MediaSection field of the same name (with "-" -> "_").
_FLAGS = frozenset({"rtcp-mux", "rtcp-rsize", "end-of-candidates", "bundle-only"})
_STRINGS = frozenset({"mid", "msid", "simulcast", "ice-ufrag", "ice-pwd"})
_NUMBERS = {"sctp-port": 65535, "max-message-size": 2**64 - 1}  # name -> maximum
# Session-level attributes that media sections without their own value inherit.
_INHERITED = frozenset({"ice-ufrag", "ice-pwd", "fingerprint", "setup"})

_LINE_RE = re.compile(r"([a-z])=(.*)")
_DIGITS_RE = re.compile(r"[0-9]{1,20}")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+")
_RID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
_FINGERPRINT_RE = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+")
# C0/C1 control characters except \t and \n, any \r that does not end a line, and lone
# surrogates (which would only fail later, when the answer is encoded as UTF-8).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]|\r(?!\n)")


class SdpError(ValueError):
    """Malformed or hostile SDP; ``line`` is the 1-based line number when one is to blame."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


@dataclass
class Codec:
    payload_type: int
    name: str
    clock_rate: int
    channels: int | None = None
    fmtp: dict[str, str] = field(default_factory=dict)
    rtcp_fb: list[str] = field(default_factory=list)

    @property
    def apt(self) -> int | None:
        """The associated payload type of an rtx codec, or None when absent or unparsable."""
        value = self.fmtp.get("apt", "")
        return int(value) if _DIGITS_RE.fullmatch(value) else None


@dataclass
class Rid:
    id: str
    direction: str
    params: str = ""


@dataclass
class MediaSection:
    kind: str
    port: int
    protocol: str
    formats: list[str] = field(default_factory=list)
    mid: str | None = None
    direction: str = "sendrecv"
    connection: str = DEFAULT_CONNECTION
    bandwidth: dict[str, int] = field(default_factory=dict)
    codecs: list[Codec] = field(default_factory=list)
    extmaps: dict[int, str] = field(default_factory=dict)
    rids: list[Rid] = field(default_factory=list)
    simulcast: str | None = None
    ssrcs: dict[int, dict[str, str]] = field(default_factory=dict)
    ssrc_groups: list[tuple[str, list[int]]] = field(default_factory=list)
    msid: str | None = None
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    fingerprints: list[tuple[str, str]] = field(default_factory=list)
    setup: str | None = None
    rtcp_mux: bool = False
    rtcp_rsize: bool = False
    bundle_only: bool = False  # RFC 8843: port 0 yet accepted, carried by the BUNDLE transport
    candidates: list[str] = field(default_factory=list)
    end_of_candidates: bool = False
    sctp_port: int | None = None
    max_message_size: int | None = None
    other: list[str] = field(default_factory=list)

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.protocol

    def codec(self, pt: int) -> Codec | None:
        return next((c for c in self.codecs if c.payload_type == pt), None)

    def simulcast_rids(self, direction: str | None = None) -> list[str]:
        """RIDs in ``a=simulcast`` for ``direction`` (default: the first listed). The SFU takes one
        RID per stream, so only the first alternative (``q,h`` -> ``q``) is kept, minus any ``~``."""
        tokens = (self.simulcast or "").split()
        for d, streams in zip(tokens[::2], tokens[1::2], strict=False):
            if direction is None or d == direction:
                firsts = (s.split(",")[0].lstrip("~") for s in streams.split(";"))
                return [rid for rid in firsts if rid]
        return []

    def rtx_map(self) -> dict[int, int]:
        """rtx payload type -> the payload type it repairs."""
        rtx = (c for c in self.codecs if c.name.lower() == "rtx")
        return {c.payload_type: apt for c in rtx if (apt := c.apt) is not None}

    def fid_map(self) -> dict[int, int]:
        """Media SSRC -> its rtx SSRC, from ``a=ssrc-group:FID``."""
        return {ssrcs[0]: ssrcs[1] for sem, ssrcs in self.ssrc_groups if sem == "FID" and len(ssrcs) >= 2}


@dataclass
class SessionDescription:
    version: int = 0
    origin: str = "- 0 0 IN IP4 127.0.0.1"
    name: str = "-"
    bandwidth: dict[str, int] = field(default_factory=dict)
    ice_lite: bool = False
    groups: list[tuple[str, list[str]]] = field(default_factory=list)
    msid_semantic: str | None = None
    extmap_allow_mixed: bool = False
    media: list[MediaSection] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def bundle_mids(self) -> list[str]:
        """Mids of the first BUNDLE group; JSEP endpoints offer a single one."""
        return next((list(mids) for sem, mids in self.groups if sem == "BUNDLE"), [])

    def accepted(self, m: MediaSection) -> bool:
        """Whether ``m`` is in use: a port other than 0, or port 0 with ``a=bundle-only`` inside the
        BUNDLE group, which is how max-bundle offerers (GStreamer's webrtcbin) write every section
        after the first (RFC 8843 section 6). Only a plain port 0 rejects a section."""
        return m.port != 0 or (m.bundle_only and m.mid is not None and m.mid in self.bundle_mids())


def _show(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:60] + "...")


def _int(value: str, what: str, line: int, lo: int, hi: int) -> int:
    if not _DIGITS_RE.fullmatch(value):
        raise SdpError(f"{what} must be a non-negative integer, got {_show(value)}", line)
    number = int(value)
    if not lo <= number <= hi:
        raise SdpError(f"{what} {number} is outside {lo}..{hi}", line)
    return number


def _nonempty(value: str, what: str, line: int) -> str:
    value = value.strip()
    if not value:
        raise SdpError(f"a={what} needs a value", line)
    return value


def _parse_fmtp(params: str) -> dict[str, str]:
    """``k=v;k2=v2`` -> dict; a part without ``=`` (red's ``111/111``) goes under key ``""``."""
    result: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in params.split(";"))):
        key, eq, val = part.partition("=")
        if eq and key.strip():
            result[key.strip()] = val.strip()
        else:
            result[""] = f"{result['']};{part}" if "" in result else part
    return result


class _SectionParser:
    """Accumulates one m-section (or the session-level transport values, see parse()). Codec
    attributes are joined up in finish() because Firefox writes a=fmtp before its a=rtpmap."""

    def __init__(self, m: MediaSection) -> None:
        self.m = m
        self.connection: str | None = None
        self.rtpmaps: dict[int, tuple[Codec, str]] = {}
        self.fmtps: list[tuple[int, str, str]] = []  # (pt, params, raw line)
        self.feedback: list[tuple[int | None, str, str]] = []  # (pt or None for '*', value, raw)

    @classmethod
    def from_m_line(cls, value: str, line: int) -> _SectionParser:
        parts = value.split()
        if len(parts) < 4:
            raise SdpError(f"m= must be '<media> <port> <proto> <fmt> ...', got {_show(value)}", line)
        m = MediaSection(parts[0], _int(parts[1], "port", line, 0, 65535), parts[2], parts[3:])
        for fmt in m.formats if m.is_rtp else []:  # RTP formats are payload types
            _int(fmt, "payload type", line, 0, 127)
        return cls(m)

    def add(self, letter: str, value: str, line: int) -> None:
        if letter == "a":
            self._attribute(value, line)
        elif letter == "c":
            if len(value.split()) != 3:
                raise SdpError(f"c= must be '<nettype> <addrtype> <address>', got {_show(value)}", line)
            self.connection = value
        elif letter == "b":
            kind, _, amount = value.partition(":")
            self.m.bandwidth[kind] = _int(amount, f"b={kind} bandwidth", line, 0, 2**32 - 1)
        elif letter not in "ik":  # i=/k= are informational/obsolete: dropped
            raise SdpError(f"'{letter}=' is not allowed inside a media section", line)

    def _attribute(self, raw: str, line: int) -> None:
        m = self.m
        name, _, value = raw.partition(":")
        if name in ("rtpmap", "fmtp", "rtcp-fb") and m.is_rtp:
            self._codec_attribute(name, value, raw, line)
        elif name in DIRECTIONS:
            m.direction = name
        elif name in _FLAGS:
            setattr(m, name.replace("-", "_"), True)
        elif name in _STRINGS:
            setattr(m, name.replace("-", "_"), _nonempty(value, name, line))
        elif name in _NUMBERS:
            setattr(m, name.replace("-", "_"), _int(value, name, line, 0, _NUMBERS[name]))
        elif name == "candidate":
            m.candidates.append(_nonempty(value, name, line))
        elif name == "fingerprint":
            parts = value.split()
            if len(parts) != 2 or not _FINGERPRINT_RE.fullmatch(parts[1]):
                raise SdpError(f"a=fingerprint must be '<hash> <XX:XX:...>', got {_show(value)}", line)
            m.fingerprints.append((parts[0].lower(), parts[1].upper()))
        elif name == "setup":
            if (value := value.strip()) not in SETUP_ROLES:
                raise SdpError(f"a=setup must be one of {', '.join(SETUP_ROLES)}, got {_show(value)}", line)
            m.setup = value
        elif name == "extmap":
            head, _, rest = value.partition(" ")
            ext_id = _int(head.partition("/")[0], "extmap id", line, 1, 255)  # "/direction" dropped
            uri = _nonempty(rest, name, line).split()[0]
            if m.extmaps.get(ext_id, uri) != uri:
                raise SdpError(f"extmap id {ext_id} is used for two different extensions", line)
            m.extmaps[ext_id] = uri
        elif name == "rid":
            parts = value.split(None, 2)
            if len(parts) < 2 or not _RID_RE.fullmatch(parts[0]) or parts[1] not in ("send", "recv"):
                raise SdpError(f"a=rid must be '<id> send|recv [params]', got {_show(value)}", line)
            m.rids.append(Rid(parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
        elif name == "ssrc":
            ssrc_text, _, attr = value.partition(" ")
            attrs = m.ssrcs.setdefault(_int(ssrc_text, "SSRC", line, 0, 2**32 - 1), {})
            if attr := attr.strip():
                key, _, attr_value = attr.partition(":")
                if not key:
                    raise SdpError(f"a=ssrc attribute without a name in {_show(value)}", line)
                attrs[key] = attr_value
        elif name == "ssrc-group":
            parts = value.split()
            if len(parts) < 2:
                raise SdpError(f"a=ssrc-group must be '<semantics> <ssrc> ...', got {_show(value)}", line)
            m.ssrc_groups.append((parts[0], [_int(s, "SSRC", line, 0, 2**32 - 1) for s in parts[1:]]))
        else:
            m.other.append(raw)

    def _codec_attribute(self, name: str, value: str, raw: str, line: int) -> None:
        pt_text, _, rest = value.partition(" ")
        if name == "rtcp-fb":
            pt = None if pt_text == "*" else _int(pt_text, "payload type", line, 0, 127)
            self.feedback.append((pt, _nonempty(rest, name, line), raw))
        elif name == "fmtp":
            self.fmtps.append((_int(pt_text, "payload type", line, 0, 127), rest.strip(), raw))
        else:
            pt = _int(pt_text, "payload type", line, 0, 127)
            parts = rest.strip().split("/")
            if len(parts) not in (2, 3) or not _TOKEN_RE.fullmatch(parts[0]):
                raise SdpError(f"a=rtpmap must be '<pt> <name>/<rate>[/<ch>]', got {_show(value)}", line)
            if pt in self.rtpmaps:
                raise SdpError(f"second a=rtpmap for payload type {pt}", line)
            rate = _int(parts[1], "clock rate", line, 1, 2**32 - 1)
            channels = _int(parts[2], "channel count", line, 1, 255) if len(parts) == 3 else None
            self.rtpmaps[pt] = (Codec(pt, parts[0], rate, channels), raw)

    def finish(self, session: _SectionParser) -> MediaSection:
        m, inherited = self.m, session.m
        m.connection = self.connection or session.connection or DEFAULT_CONNECTION
        m.ice_ufrag = m.ice_ufrag or inherited.ice_ufrag
        m.ice_pwd = m.ice_pwd or inherited.ice_pwd
        m.fingerprints = m.fingerprints or list(inherited.fingerprints)
        m.setup = m.setup or inherited.setup
        codecs: dict[int, Codec] = {}
        for pt in [int(fmt) for fmt in m.formats] if m.is_rtp else []:
            if pt in self.rtpmaps:
                codecs[pt] = self.rtpmaps.pop(pt)[0]
            elif pt in STATIC_PAYLOAD_TYPES:
                codecs[pt] = Codec(pt, STATIC_PAYLOAD_TYPES[pt], 8000)
        # Codec attributes for payload types not on the m-line are kept, not interpreted.
        m.other.extend(raw for _, raw in self.rtpmaps.values())
        for pt, params, raw in self.fmtps:
            if pt in codecs:
                codecs[pt].fmtp.update(_parse_fmtp(params))
            else:
                m.other.append(raw)
        for fb_pt, fb, raw in self.feedback:
            targets = [codec for pt, codec in codecs.items() if fb_pt in (None, pt)]
            m.other += [] if targets else [raw]
            for codec in targets:
                codec.rtcp_fb.append(fb)
        for codec in codecs.values():  # dedupe in linear time: "a=rtcp-fb:*" floods are cheap to send
            codec.rtcp_fb = list(dict.fromkeys(codec.rtcp_fb))
        m.codecs = list(codecs.values())
        return m


def _lines(text: str) -> Iterator[tuple[int, str, str]]:
    """Validate the raw text and yield (line number, type letter, value) per non-blank line."""
    if not isinstance(text, str):  # e.g. a JSON body whose "sdp" member is not a string
        raise SdpError(f"SDP must be a string, got {type(text).__name__}")
    if len(text) > MAX_SDP_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_SDP_BYTES:
        raise SdpError(f"SDP is larger than {MAX_SDP_BYTES} bytes")
    if bad := _CONTROL_RE.search(text):
        where = text.count("\n", 0, bad.start()) + 1
        raise SdpError(f"control character {bad.group()!r} is not allowed", where)
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        match = _LINE_RE.fullmatch(line)
        if not match:
            raise SdpError(f"expected '<letter>=<value>', got {_show(line)}", number)
        if match.group(1) == "a" and not _TOKEN_RE.fullmatch(match.group(2).partition(":")[0]):
            raise SdpError(f"bad attribute name in {_show(line)}", number)
        yield number, match.group(1), match.group(2)


def parse(text: str) -> SessionDescription:
    """Parse an SDP offer or answer; raises SdpError on anything malformed."""
    lines = _lines(text)
    if (first := next(lines, None)) is None:
        raise SdpError("SDP is empty")
    number, letter, value = first
    if (letter, value.strip()) != ("v", "0"):
        raise SdpError(f"the first line must be 'v=0', got {_show(letter + '=' + value)}", number)
    desc = SessionDescription()
    # Collects session-level c=, b= and transport attributes; see _session_line().
    session = _SectionParser(MediaSection("session", 0, "-", bandwidth=desc.bandwidth))
    seen = {"v"}
    section: _SectionParser | None = None
    for number, letter, value in lines:
        if letter == "m":
            if section is not None:
                desc.media.append(section.finish(session))
            if len(desc.media) >= MAX_MEDIA_SECTIONS:
                raise SdpError(f"more than {MAX_MEDIA_SECTIONS} m-sections", number)
            section = _SectionParser.from_m_line(value, number)
        elif section is not None:
            section.add(letter, value, number)
        elif letter in seen and letter in "vost":
            raise SdpError(f"second '{letter}=' line", number)
        else:
            seen.add(letter)
            _session_line(desc, session, letter, value, number)
    if section is not None:
        desc.media.append(section.finish(session))
    if missing := [f"{letter}=" for letter in "os" if letter not in seen]:
        raise SdpError(f"the session section lacks {' and '.join(missing)}")
    mids = [m.mid for m in desc.media if m.mid is not None]
    if len(set(mids)) != len(mids):
        raise SdpError(f"duplicate a=mid among {mids}")
    return desc


def _session_line(
    desc: SessionDescription, session: _SectionParser, letter: str, value: str, line: int
) -> None:
    if letter == "o":
        if len(value.split()) != 6:
            raise SdpError(f"o= must have 6 fields, got {_show(value)}", line)
        desc.origin = value
    elif letter == "s":
        desc.name = value
    elif letter in "cb" or (letter == "a" and value.partition(":")[0] in _INHERITED):
        session.add(letter, value, line)  # parsed like media-level lines, inherited in finish()
    elif letter == "a":
        name, _, attr_value = value.partition(":")
        if name in ("ice-lite", "extmap-allow-mixed"):
            setattr(desc, name.replace("-", "_"), True)
        elif name == "group":
            parts = attr_value.split()
            if not parts:
                raise SdpError("a=group needs semantics, e.g. 'a=group:BUNDLE 0 1'", line)
            desc.groups.append((parts[0], parts[1:]))
        elif name == "msid-semantic":
            desc.msid_semantic = attr_value.strip()
        else:
            desc.other.append(value)
    elif letter not in "iueprzkt":  # informational, obsolete or (t=) always "0 0": dropped
        raise SdpError(f"unknown line type '{letter}='", line)


def serialize(desc: SessionDescription) -> str:
    """Render ``desc`` as SDP text with CRLF line endings."""
    out = [f"v={desc.version}", f"o={desc.origin}", f"s={desc.name}"]
    out += [f"b={kind}:{amount}" for kind, amount in desc.bandwidth.items()]
    out += ["t=0 0", *_attrs([("ice-lite", desc.ice_lite)])]
    out += [f"a=group:{' '.join([semantics, *mids])}" for semantics, mids in desc.groups]
    out += _attrs([("extmap-allow-mixed", desc.extmap_allow_mixed), ("msid-semantic", desc.msid_semantic)])
    out += [f"a={attr}" for attr in desc.other]
    for media in desc.media:
        out += _serialize_media(media)
    # Values copied from one client's offer into another's SDP must not smuggle in extra lines.
    if bad := next((line for line in out if "\r" in line or "\n" in line), None):
        raise SdpError(f"refusing to serialize a value with a line break: {_show(bad)}")
    return "\r\n".join(out) + "\r\n"


def _attrs(pairs: list[tuple[str, object]]) -> list[str]:
    """``a=name:value`` for each pair whose value is set; ``a=name`` for flags that are True."""
    return [f"a={n}" if v is True else f"a={n}:{v}" for n, v in pairs if v is not None and v is not False]


def _serialize_media(m: MediaSection) -> list[str]:
    out = [f"m={' '.join([m.kind, str(m.port), m.protocol, *m.formats])}", f"c={m.connection}"]
    out += [f"b={kind}:{amount}" for kind, amount in m.bandwidth.items()]
    out += _attrs([("ice-ufrag", m.ice_ufrag), ("ice-pwd", m.ice_pwd)])
    out += [f"a=fingerprint:{algorithm} {value}" for algorithm, value in m.fingerprints]
    out += _attrs([("setup", m.setup), ("mid", m.mid)])
    out += [f"a=extmap:{ext_id} {uri}" for ext_id, uri in m.extmaps.items()]
    if m.kind != "application" or m.direction != "sendrecv":
        out.append(f"a={m.direction}")
    out += _attrs([("bundle-only", m.bundle_only), ("msid", m.msid)])
    out += _attrs([("rtcp-mux", m.rtcp_mux), ("rtcp-rsize", m.rtcp_rsize)])
    for c in m.codecs:
        channels = f"/{c.channels}" if c.channels is not None else ""
        out.append(f"a=rtpmap:{c.payload_type} {c.name}/{c.clock_rate}{channels}")
        out += [f"a=rtcp-fb:{c.payload_type} {fb}" for fb in c.rtcp_fb]
        if c.fmtp:
            params = ";".join(f"{key}={value}" if key else value for key, value in c.fmtp.items())
            out.append(f"a=fmtp:{c.payload_type} {params}")
    out += [f"a=rid:{r.id} {r.direction}{' ' + r.params if r.params else ''}" for r in m.rids]
    out += _attrs([("simulcast", m.simulcast)])
    out += [f"a=ssrc-group:{' '.join([sem, *map(str, ssrcs)])}" for sem, ssrcs in m.ssrc_groups]
    for ssrc, attrs in m.ssrcs.items():
        out += [f"a=ssrc:{ssrc} {key}{':' + value if value else ''}" for key, value in attrs.items()]
        out += [] if attrs else [f"a=ssrc:{ssrc}"]
    out += [f"a=candidate:{candidate}" for candidate in m.candidates]
    out += _attrs([("end-of-candidates", m.end_of_candidates), ("sctp-port", m.sctp_port)])
    out += _attrs([("max-message-size", m.max_message_size)])
    out += [f"a={attr}" for attr in m.other]
    return out
