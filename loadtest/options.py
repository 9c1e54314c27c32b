"""The options of ``kelian loadtest`` and the checked plan they make; no media imports, so the CLI loads fast.

A load run is one room and a list of participants, built by the preset: each has an identity and a
role, may publish a camera and a microphone, and may subscribe to everyone else and ask for the size
its layout shows their video at. Those that subscribe join at ``--join-rate`` per second over
``--processes`` worker processes, for ``--duration`` seconds; those that only publish join first.

- live (and no preset): ``--publishers`` lecturers publish to ``--subscribers`` viewers;
- fusion: a lecturer and ``--boxes`` classroom boxes, each publishing and watching all the others
  (grid3), and ``--subscribers`` plain viewers on top (default 0);
- dual-teacher: a lecturer (720p simulcast) and ``--subscribers`` classroom boxes (default 30), each
  sending one 180p camera back; the boxes watch the lecturer (speaker), the lecturer all the boxes
  (grid5).

``--find-capacity`` makes a plan of steps instead: the same shape with ``--start``, then ``--step``
more, up to ``--max-subscribers`` subscribers, each in a fresh room of its own and lasting its joins
plus ``--duration`` seconds (see loadtest.capacity).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from signaling.config import is_loopback

__all__ = ["LAYOUTS", "PRESETS", "OptionError", "Participant", "Plan", "add_arguments", "plan_from_args"]

DEFAULT_URL = "http://127.0.0.1:8700"
# the size each subscriber shows every video track at, device pixels (sent as track_settings)
LAYOUTS: dict[str, tuple[int, int]] = {"speaker": (1280, 720), "grid3": (426, 240), "grid5": (256, 144)}
# "mixed": the viewers take these in turn, a third each (one per simulcast layer)
MIXED = ("speaker", "grid3", "grid5")
# A camera's top (or only) layer by default: width, height, bit/s. Simulcast adds a half-size layer at
# a third of the bitrate and a quarter-size one at a tenth, as kelian.js sends them (the defaults are
# loadtest.clips.SIMULCAST_LAYERS and SINGLE_LAYER). A classroom box of dual-teacher always sends 180p.
CAMERA_DEFAULTS = {"simulcast": (1280, 720, 1_500_000), "single": (640, 360, 1_000_000)}
BOX_CAMERA = (("", 320, 180, 150_000),)
MAX_SIZE = (3840, 2160)
LayerSpec = tuple[str, int, int, int]  # rid, width, height, bit/s: a loadtest.clips.Layer
PROBES_PER_PEER = 4  # tracks one light peer decodes to prove them valid (Plan.probes)
# the kind of room each preset's lesson is (the tokens name it, the server makes the room so)
ROOM_KINDS = {"live": "live", "fusion": "fusion", "dual-teacher": "dual_teacher"}
# a preset fills in what the command line leaves unset; flags given explicitly win
DEFAULTS: dict[str, object] = {
    "publishers": 1,
    "subscribers": 10,
    "boxes": 8,
    "simulcast": True,
    "audio": True,
    "transport_cc": True,
    "layout": "speaker",
}
PRESETS: dict[str, dict[str, object]] = {
    "live": {},
    "fusion": {"subscribers": 0, "layout": "grid3"},
    "dual-teacher": {"subscribers": 30},
}
# flags a preset's own shape leaves no room for
NOT_FOR: dict[str, tuple[str, ...]] = {
    "live": ("boxes",),
    "fusion": ("publishers",),
    "dual-teacher": ("publishers", "boxes", "simulcast", "layout"),
}
MAX_PEERS = 100_000  # a typo guard, far above what one machine can drive


class OptionError(ValueError):
    """An option the user can fix; the CLI prints it as a usage error (exit status 2)."""


@dataclass(frozen=True)
class Participant:
    """One peer of a run: what it publishes, and what it watches.

    ``camera`` names the video it publishes ("simulcast": three layers, "single": one layer, at
    ``--resolution`` and ``--bitrate``; "180p": a classroom box's one 180p layer), None for none
    (``Plan.layers`` gives the layers). With a ``layout`` it
    subscribes to everyone else and shows each video at that size; ``watch`` narrows that to these
    identities' video (the others it turns off).
    """

    identity: str
    role: str
    camera: str | None = None
    audio: bool = False
    layout: str | None = None
    watch: tuple[str, ...] = ()

    @property
    def publishes(self) -> bool:
        return self.camera is not None or self.audio


@dataclass(frozen=True)
class Plan:
    """A checked load run."""

    url: str
    room: str
    participants: tuple[Participant, ...]
    simulcast: bool
    audio: bool
    layout: str  # as reported: the layout, or who watches at which size
    transport_cc: bool
    resolution: tuple[int, int]  # of the top or only layer of "simulcast" and "single" cameras
    bitrate: int  # bit/s of that layer
    duration: float
    join_rate: float
    processes: int
    api_key: str
    api_secret: str
    report: str | None = None
    server_pid: int | None = None
    preset: str | None = None
    quiet: bool = False  # no live status line

    @property
    def kind(self) -> str:
        """The room kind the run's tokens name (classroom/kinds.py): each preset is its lesson."""
        return ROOM_KINDS[self.preset or "live"]

    steps: tuple[Plan, ...] = ()  # --find-capacity: the runs to step through, growing

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme in ("https", "wss") else 80)

    @property
    def bind(self) -> str:
        """The address the peers' UDP sockets bind to: loopback for a loopback server."""
        if self.host == "::1":
            return "::1"
        return "127.0.0.1" if is_loopback(self.host) else "0.0.0.0"

    @property
    def publishers(self) -> int:
        return sum(1 for p in self.participants if p.publishes)

    @property
    def subscribers(self) -> int:
        """Participants that subscribe (and join at the join rate), publishing or not."""
        return sum(1 for p in self.participants if p.layout is not None)

    def layers(self, participant: Participant) -> tuple[LayerSpec, ...]:
        """The layers the participant's camera sends, low to high; () for no camera."""
        (width, height), bitrate = self.resolution, self.bitrate
        if participant.camera == "simulcast":
            return (
                ("q", width // 4, height // 4, bitrate // 10),
                ("h", width // 2, height // 2, bitrate // 3),
                ("f", width, height, bitrate),
            )
        if participant.camera == "single":
            return (("", width, height, bitrate),)
        return BOX_CAMERA if participant.camera == "180p" else ()

    def videos_for(self, participant: Participant) -> int:
        """How many video tracks the participant waits for before it counts as joined: everyone else's
        camera, or only those it watches (a dual-teacher classroom needs the lecturer's, not the sixty
        other classrooms' that it turns off)."""
        return sum(
            1
            for p in self.participants
            if p.camera is not None
            and p is not participant
            and (not participant.watch or p.identity in participant.watch)
        )

    def probes(self) -> dict[tuple[str, str], str]:
        """Who decodes each published track, to prove it valid (loadtest.probe): (publisher identity,
        kind) -> the first subscribing participant, in plan order, that receives it and decodes fewer
        than PROBES_PER_PEER tracks so far. Everyone else's audio reaches every subscriber; video only
        those whose ``watch`` is empty or names them. Decoding costs a client far more than counting,
        so a lecturer watching a hundred classrooms decodes a sample of them, not all: the client
        would be the limit otherwise, not the server."""

        def receives(viewer: Participant, sender: Participant, kind: str) -> bool:
            if viewer.layout is None or viewer is sender:
                return False
            return kind == "audio" or not viewer.watch or sender.identity in viewer.watch

        probes: dict[tuple[str, str], str] = {}
        load: Counter[str] = Counter()
        for sender in self.participants:
            for kind in ("video",) * (sender.camera is not None) + ("audio",) * sender.audio:
                viewer = next(
                    (
                        v
                        for v in self.participants
                        if load[v.identity] < PROBES_PER_PEER and receives(v, sender, kind)
                    ),
                    None,
                )
                if viewer is not None:
                    probes[(sender.identity, kind)] = viewer.identity
                    load[viewer.identity] += 1
        return probes


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not minimum <= value <= MAX_PEERS:
            raise argparse.ArgumentTypeError(f"must be between {minimum} and {MAX_PEERS}, got {value}")
        return value

    parse.__name__ = "count"  # argparse names the type in its messages
    return parse


def _number(text: str, expected: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def _positive(text: str) -> float:
    value = _number(text, "a number of seconds")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _resolution(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        size = int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, got {text!r}") from None
    if not (16 <= size[0] <= MAX_SIZE[0] and 16 <= size[1] <= MAX_SIZE[1]) or size[0] % 8 or size[1] % 8:
        raise argparse.ArgumentTypeError(
            f"width and height must be multiples of 8 from 16 to {MAX_SIZE[0]}x{MAX_SIZE[1]}, got {text}"
        )
    return size


def _bitrate(text: str) -> int:
    kbps = _number(text, "kbit/s such as 1500")
    if not 50 <= kbps <= 50_000:
        raise argparse.ArgumentTypeError(f"must be between 50 and 50000 kbit/s, got {text}")
    return int(kbps * 1000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``kelian loadtest``."""
    add = parser.add_argument
    add("--url", default=DEFAULT_URL, help=f"the server's HTTP address (default {DEFAULT_URL})")
    add("--allow-host", metavar="HOST", help="allow this exact non-loopback --url host")
    add("--room", default="loadtest", help="room to load (default loadtest)")
    add(
        "--preset",
        choices=sorted(PRESETS),
        help="live: presenters to N viewers (simulcast, audio, speaker); fusion: a lecturer and "
        "--boxes classrooms all seeing all (grid3); dual-teacher: a lecturer to --subscribers "
        "classrooms (default 30) that each send 180p back",
    )
    add("--publishers", type=_count(0), help="peers that publish a camera (default 1; live only)")
    add(
        "--subscribers",
        type=_count(0),
        help="peers that receive (default 10; fusion: viewers on top, default 0; dual-teacher: boxes)",
    )
    add("--boxes", type=_count(1), help="fusion: classroom boxes beside the lecturer (default 8)")
    add("--simulcast", action=argparse.BooleanOptionalAction, help="publish three layers (default on)")
    add("--audio", action=argparse.BooleanOptionalAction, help="publish a microphone too (default on)")
    add(
        "--resolution",
        metavar="WxH",
        type=_resolution,
        help="the presenters' camera, its top layer with simulcast (default 1280x720; 640x360 without)",
    )
    add(
        "--bitrate",
        metavar="KBIT/S",
        type=_bitrate,
        help="bitrate of that layer, kbit/s (default 1500; 1000 without simulcast; simulcast adds "
        "half size at a third and quarter size at a tenth)",
    )
    add(
        "--layout",
        choices=[*sorted(LAYOUTS), "mixed"],
        help="size subscribers show video at (default speaker; mixed: a third each of speaker, grid3, grid5)",
    )
    add(
        "--transport-cc",
        action=argparse.BooleanOptionalAction,
        help="subscribers send transport-cc feedback, as browsers do (default on; off: the server "
        "estimates nothing and the clients cost less)",
    )
    add("--duration", type=_positive, default=30.0, help="seconds the load lasts (default 30)")
    add("--join-rate", type=_positive, default=10.0, help="subscribers joining per second (default 10)")
    add("--processes", type=_count(1), help="worker processes for subscribers (default: the core count)")
    add("--quiet", action="store_true", help="no live status line on stderr while the run goes")
    add(
        "--find-capacity",
        action="store_true",
        help="step the subscribers up (--start, --step, --max-subscribers; each step --duration s after "
        "its joins, in a fresh room) until loss over 1%%, a freeze or server CPU over 90%%",
    )
    add("--start", type=_count(0), help="--find-capacity: subscribers of the first step (default 10)")
    add("--step", type=_count(0), help="--find-capacity: subscribers added per step (default 10)")
    add("--max-subscribers", type=_count(0), help="--find-capacity: the last step's at most (default 1000)")
    add("--report", metavar="PATH", help="also write the report as JSON to PATH")
    add("--server-pid", type=_count(1), help="the server's process id, for its CPU and memory")
    add("--api-key", help="API key to mint tokens with (KELIAN_API_KEY)")
    add("--api-secret", help="API secret to mint tokens with (KELIAN_API_SECRET)")


CAPACITY_DEFAULTS = {"start": 10, "step": 10, "max_subscribers": 1000}


def plan_from_args(args: argparse.Namespace) -> Plan:
    """Check what argparse cannot: the URL's host, credentials, and whether the joins fit the duration.

    With ``--find-capacity``, the plan of its first step, carrying all the steps."""
    capacity = {name: getattr(args, name, None) for name in CAPACITY_DEFAULTS}
    if not getattr(args, "find_capacity", False):
        for name, value in capacity.items():
            if value is not None:
                raise OptionError(f"--{name.replace('_', '-')} only applies with --find-capacity")
        return _plan(args, None, args.room, float(args.duration))
    if args.subscribers is not None:
        raise OptionError("--subscribers does not apply to --find-capacity: use --start and --step")
    start, step, most = (
        value if value is not None else CAPACITY_DEFAULTS[n] for n, value in capacity.items()
    )
    if start < 1:
        raise OptionError(f"--start must be at least 1 with --find-capacity, got {start}")
    if step < 1:
        raise OptionError(f"--step must be at least 1 with --find-capacity, got {step}")
    if most < start:
        raise OptionError(f"--max-subscribers {most} is below --start {start}")
    steps = tuple(
        _plan(args, n, f"{args.room}-{n}", n / args.join_rate + float(args.duration))
        for n in range(start, most + 1, step)
    )
    return replace(steps[0], steps=steps, room=args.room, report=args.report)


def _plan(args: argparse.Namespace, subscribers: int | None, room: str, duration: float) -> Plan:
    url = str(args.url).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionError(f"--url must be an http:// or https:// address, got {args.url!r}")
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise OptionError(f"--url has a bad port: {args.url!r}") from None
    host = parts.hostname
    if not is_loopback(host) and host != args.allow_host:
        raise OptionError(
            f"--url host {host!r} is not loopback; load tests stay on this machine unless "
            f"--allow-host {host} says otherwise"
        )
    key = args.api_key or os.environ.get("KELIAN_API_KEY", "")
    secret = args.api_secret or os.environ.get("KELIAN_API_SECRET", "")
    if not key or not secret:
        raise OptionError(
            "--api-key and --api-secret (or KELIAN_API_KEY and KELIAN_API_SECRET) must be the server's"
        )
    preset = args.preset or "live"
    chosen = DEFAULTS | PRESETS[preset]
    for name in chosen:
        given = getattr(args, name)
        if given is not None:
            if name in NOT_FOR[preset]:
                raise OptionError(f"--{name} does not apply to --preset {preset}")
            chosen[name] = given
    if subscribers is not None:
        chosen["subscribers"] = subscribers
    participants, layout = _participants(preset, chosen)
    top = CAMERA_DEFAULTS["simulcast" if chosen["simulcast"] else "single"]
    resolution: tuple[int, int] = getattr(args, "resolution", None) or top[:2]
    bitrate: int = getattr(args, "bitrate", None) or top[2]
    if not participants:
        raise OptionError("nothing to run: --publishers and --subscribers are both 0")
    subscribers = sum(1 for p in participants if p.layout is not None)
    joining = subscribers / args.join_rate
    if joining >= duration:
        raise OptionError(
            f"{subscribers} subscribers at --join-rate {args.join_rate:g}/s take {joining:g} s to join, "
            f"not less than --duration {duration:g}"
        )
    if not args.room:
        raise OptionError("--room must not be empty")
    processes = args.processes or os.cpu_count() or 1
    return Plan(
        url=url,
        room=room,
        participants=participants,
        simulcast=bool(chosen["simulcast"]),
        audio=bool(chosen["audio"]),
        layout=layout,
        transport_cc=bool(chosen["transport_cc"]),
        resolution=resolution,
        bitrate=bitrate,
        duration=duration,
        join_rate=float(args.join_rate),
        processes=max(1, min(processes, subscribers)),
        api_key=key,
        api_secret=secret,
        report=args.report,
        server_pid=args.server_pid,
        preset=args.preset,
        quiet=bool(getattr(args, "quiet", False)),
    )


def _participants(preset: str, chosen: dict[str, object]) -> tuple[tuple[Participant, ...], str]:
    """The preset's participants, with the flags applied, and its layout as reported."""
    camera = "simulcast" if chosen["simulcast"] else "single"
    audio, layout = bool(chosen["audio"]), str(chosen["layout"])
    viewers = int(chosen["subscribers"])  # type: ignore[call-overload]
    if preset == "dual-teacher":
        lecturer = Participant("lecturer", "lecturer", "simulcast", audio, "grid5")
        boxes = [
            Participant(f"box{i}", "classroom", "180p", audio, "speaker", ("lecturer",))
            for i in range(viewers)
        ]
        return (lecturer, *boxes), "speaker (boxes), grid5 (lecturer)"
    if preset == "fusion":
        boxes = int(chosen["boxes"])  # type: ignore[call-overload]
        sending = [Participant("lecturer", "lecturer", camera, audio, _layout(layout, 0))]
        sending += [
            Participant(f"box{i}", "classroom", camera, audio, _layout(layout, i + 1)) for i in range(boxes)
        ]
    else:
        publishers = int(chosen["publishers"])  # type: ignore[call-overload]
        sending = [Participant(f"publisher{i}", "lecturer", camera, audio) for i in range(publishers)]
    watching = [Participant(f"subscriber{i}", "viewer", layout=_layout(layout, i)) for i in range(viewers)]
    return (*sending, *watching), layout


def _layout(layout: str, index: int) -> str:
    """The layout of the `index`th subscribing participant: the one asked for, or mixed in turn."""
    return MIXED[index % len(MIXED)] if layout == "mixed" else layout
