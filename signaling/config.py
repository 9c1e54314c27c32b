"""Process configuration: one place that decides every tunable, from flags, environment or defaults.

Precedence is flag > environment > default so that a container image can carry its settings in the
environment while an operator can still override one of them on the command line for a single run.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from classroom.tokens import MAX_TTL_SECONDS, MIN_SECRET_LENGTH

__all__ = ["ENV_PREFIX", "Config", "ConfigError", "first_non_loopback_ipv4", "is_loopback"]

ENV_PREFIX = "KELIAN_"

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
WILDCARD_HOSTS = ("0.0.0.0", "")

_T = TypeVar("_T")


class ConfigError(ValueError):
    """A setting has a value the server cannot run with.

    A ValueError so that callers which only care about "bad input" need not know this module; a class of its
    own so that the CLI can print it as a usage error instead of a traceback.
    """


@dataclass(kw_only=True)
class Config:
    """Everything a node needs to start; build it with :meth:`load` rather than by hand outside tests.

    Keyword-only because several fields share a type (two hosts, two ports) and positional construction
    would swap them silently.
    """

    http_host: str = "127.0.0.1"
    http_port: int = 8700
    media_host: str = "127.0.0.1"
    media_port: int = 8701
    announced_address: str | None = None
    api_key: str
    api_secret: str
    dev_credentials: bool = False
    redis_url: str | None = None
    # Worker processes, each with its event loop and media port, behind one front (cluster/). Loaded
    # from flags and environment the default is one per core (1 with a ":memory:" database, which
    # processes cannot share); a Config made in code, as tests make them, is one process.
    workers: int = 1
    # A live room's viewers are served by another worker or node (an edge, cluster/edge.py) once the
    # one that holds the room carries this many media transports: a room grows past one process.
    spread_after: int = 200
    # With --redis-url: how the other nodes reach this one's HTTP (default: its announced address and
    # HTTP port).
    node_url: str | None = None
    # The organisation (schools, lessons, modes, the switchover audit): an SQLite file, so that a
    # restart keeps the timetable with nothing to install; ":memory:" keeps it in memory only.
    database: str = "kelian.db"
    # Where recordings go: a folder per room (recorder.session).
    recordings: str = "media/recordings"
    auto_record: bool = True  # by each room's policy (recorder.recordings); off: the admin API's only
    library: str = "media/library"  # the library's media: a folder per item (library.library)
    # Where events are POSTed (signaling.webhooks): lessons, participants, switchovers.
    webhook_urls: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: str = "text"
    max_bitrate: int = 3_000_000
    # A 30-classroom fusion lesson must not send 30 audio streams to everyone: each subscriber gets
    # the loudest few. 0 forwards every audio track.
    max_audio_streams: int = 3
    # Security (docs/security.md). Limits are set well above anything a real lesson does, so that only
    # a broken or hostile client meets them.
    max_token_ttl: int = MAX_TTL_SECONDS  # seconds a token may still live when it is used
    metrics_token: str | None = None  # when set, GET /metrics wants "Authorization: Bearer <it>"
    dev_on_network: bool = False  # development credentials on a non-loopback address: only if asked
    max_connections: int = 10_000  # HTTP and WebSocket connections in all (also kept under the fd limit)
    max_connections_per_address: int = 1_000  # from one IP address (a school behind one NAT)
    join_timeout: float = 10.0  # seconds a WebSocket may stay open without joining
    max_participants: int = 10_000  # per room; a room created with max_participants may set fewer
    max_tracks: int = 16  # published by one participant at once
    message_rate: float = 50.0  # WebSocket messages per second per session, sustained...
    message_burst: int = 200  # ...after a burst of this many
    send_queue: int = 1_000  # messages waiting for one slow socket before it is disconnected
    send_timeout: float = 10.0  # seconds one message may take to go out before the socket is dropped

    @property
    def candidate_address(self) -> str:
        """The address to put in ICE candidates.

        Browsers must be able to reach it, so a wildcard bind address is never announced: the first
        non-loopback IPv4 of the machine stands in for it. Resolved on each call so that it reflects
        the network as it is when a transport is created, not when the process started.
        """
        if self.announced_address:
            return self.announced_address
        if self.media_host in WILDCARD_HOSTS:
            return first_non_loopback_ipv4()
        return self.media_host

    @classmethod
    def load(cls, args: argparse.Namespace | None = None, env: Mapping[str, str] = os.environ) -> Config:
        """Build a Config with precedence flag > environment > default and validate every value.

        ``args`` may be any namespace; attributes it lacks or leaves at None count as "not given", so the
        same loader serves every subcommand. Empty environment variables also count as unset, because
        compose files and CI systems often define a variable as empty rather than leaving it out.
        """
        defaults = cls(api_key="", api_secret="")

        def pick(name: str, parse: Callable[[str, Any], _T], default: _T) -> _T:
            raw: Any = getattr(args, name, None) if args is not None else None
            source = "--" + name.replace("_", "-")
            if raw is None:
                env_name = ENV_PREFIX + name.upper()
                env_value = env.get(env_name)
                if env_value is not None and env_value.strip() != "":
                    raw, source = env_value.strip(), env_name
            if raw is None:
                return default
            return parse(source, raw)

        api_key = pick("api_key", _parse_str, "")
        api_secret = pick("api_secret", _parse_str, "")
        dev_credentials = False
        if bool(api_key) != bool(api_secret):
            raise ConfigError(
                f"{ENV_PREFIX}API_KEY and {ENV_PREFIX}API_SECRET must be set together "
                "(tokens are signed with the secret and name the key as issuer)"
            )
        if not api_key:
            # A development pair lets `make serve` work out of the box; it is flagged so the CLI can
            # print it and so nothing mistakes it for a stable credential.
            api_key = "APIdev" + secrets.token_hex(6)
            api_secret = secrets.token_urlsafe(32)
            dev_credentials = True
        elif len(api_secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{ENV_PREFIX}API_SECRET must be at least {MIN_SECRET_LENGTH} characters: anyone who"
                " guesses it can mint any token (openssl rand -base64 33 makes a good one)"
            )

        config = cls(
            http_host=pick("http_host", _parse_host, defaults.http_host),
            http_port=pick("http_port", _parse_port, defaults.http_port),
            media_host=pick("media_host", _parse_host, defaults.media_host),
            media_port=pick("media_port", _parse_port, defaults.media_port),
            announced_address=pick("announced_address", _parse_announced, defaults.announced_address),
            api_key=api_key,
            api_secret=api_secret,
            dev_credentials=dev_credentials,
            redis_url=pick("redis_url", _parse_redis_url, defaults.redis_url),
            workers=pick("workers", _parse_workers, 0),  # 0: not given, one per core below
            spread_after=pick("spread_after", _bounded(0, 1_000_000), defaults.spread_after),
            node_url=pick("node_url", _parse_http_url, defaults.node_url),
            database=pick("database", _parse_str, defaults.database),
            webhook_urls=pick("webhook_urls", _parse_urls, defaults.webhook_urls),
            recordings=pick("recordings", _parse_str, defaults.recordings),
            auto_record=pick("auto_record", _parse_bool, defaults.auto_record),
            library=pick("library", _parse_str, defaults.library),
            log_level=pick("log_level", _choice(LOG_LEVELS), defaults.log_level),
            log_format=pick("log_format", _choice(LOG_FORMATS), defaults.log_format),
            max_bitrate=pick("max_bitrate", _parse_bitrate, defaults.max_bitrate),
            max_audio_streams=pick("max_audio_streams", _parse_count, defaults.max_audio_streams),
            max_token_ttl=pick("max_token_ttl", _bounded(60, 366 * 24 * 3600), defaults.max_token_ttl),
            metrics_token=pick("metrics_token", _parse_secret, defaults.metrics_token),
            dev_on_network=pick("dev_on_network", _parse_bool, defaults.dev_on_network),
            max_connections=pick("max_connections", _bounded(16, 1_000_000), defaults.max_connections),
            max_connections_per_address=pick(
                "max_connections_per_address", _bounded(1, 1_000_000), defaults.max_connections_per_address
            ),
            join_timeout=pick("join_timeout", _seconds(1, 600), defaults.join_timeout),
            max_participants=pick("max_participants", _bounded(1, 1_000_000), defaults.max_participants),
            max_tracks=pick("max_tracks", _bounded(1, 256), defaults.max_tracks),
            message_rate=pick("message_rate", _seconds(1, 100_000), defaults.message_rate),
            message_burst=pick("message_burst", _bounded(1, 1_000_000), defaults.message_burst),
            send_queue=pick("send_queue", _bounded(16, 1_000_000), defaults.send_queue),
            send_timeout=pick("send_timeout", _seconds(1, 600), defaults.send_timeout),
        )
        if config.dev_credentials and not config.dev_on_network:
            for what, host in (("--http-host", config.http_host), ("--media-host", config.media_host)):
                if not is_loopback(host):
                    raise ConfigError(
                        f"{what} {host} is not a loopback address, and without KELIAN_API_KEY and"
                        " KELIAN_API_SECRET this is a development server: anyone who reaches it could mint"
                        " tokens. Set the credentials, or --dev-on-network to mean it"
                    )
        if config.workers == 0:
            config.workers = 1 if config.database == ":memory:" else _cores()
        if config.workers > 1 and config.database == ":memory:":
            raise ConfigError(
                "--workers: the workers share the organisation's database; give --database a file"
            )
        return config


def first_non_loopback_ipv4() -> str:
    """Best guess at the address other machines reach this one by, or 127.0.0.1 if there is none.

    A connected UDP socket makes the kernel pick the source address of the default route without sending
    anything; the host name lookup is a fallback for machines with no default route.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routable in principle, never contacted
            address = str(probe.getsockname()[0])
            if not ipaddress.ip_address(address).is_loopback and address != "0.0.0.0":
                return address
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        infos = []
    for info in infos:
        address = str(info[4][0])
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return "127.0.0.1"


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only ("localhost", 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bounded(lo: int, hi: int) -> Callable[[str, Any], int]:
    def parse(source: str, raw: Any) -> int:
        value = _parse_int(source, raw)
        if not lo <= value <= hi:
            raise ConfigError(f"{source}: {value} is out of range ({lo}-{hi})")
        return value

    return parse


def _seconds(lo: float, hi: float) -> Callable[[str, Any], float]:
    def parse(source: str, raw: Any) -> float:
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{source}: expected a number, got {raw!r}") from None
        if not lo <= value <= hi:  # also false for NaN
            raise ConfigError(f"{source}: {raw} is out of range ({lo:g}-{hi:g})")
        return value

    return parse


def _parse_bool(source: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{source}: expected true or false, got {raw!r}")


def _parse_secret(source: str, raw: Any) -> str:
    value = _parse_str(source, raw)
    if len(value) < 16:
        raise ConfigError(f"{source} must be at least 16 characters")
    return value


def _parse_str(source: str, raw: Any) -> str:
    """Accept any non-blank string; blank values are a mistake, not a request for the default."""
    value = str(raw).strip()
    if not value:
        raise ConfigError(f"{source} must not be empty")
    return value


def _parse_host(source: str, raw: Any) -> str:
    """Keep host names as given; aiohttp and the UDP socket resolve them, and resolution may change."""
    value = str(raw).strip()
    if any(ch.isspace() for ch in value) or "/" in value:
        raise ConfigError(f"{source}: {raw!r} is not a host name or IP address")
    return value


def _parse_announced(source: str, raw: Any) -> str:
    """Refuse wildcard addresses here: a browser cannot send media to 0.0.0.0."""
    value = _parse_host(source, raw)
    if value in WILDCARD_HOSTS or value == "::":
        raise ConfigError(f"{source}: {value!r} is a wildcard; announce an address clients can reach")
    return value


def _parse_int(source: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ConfigError(f"{source}: expected an integer, got {raw!r}")
    if isinstance(raw, int):
        return raw
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"{source}: expected an integer, got {raw!r}") from None


def _parse_port(source: str, raw: Any) -> int:
    """Port 0 is allowed so tests can ask the kernel for a free port."""
    port = _parse_int(source, raw)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{source}: port {port} is out of range (0-65535)")
    return port


def _parse_count(source: str, raw: Any) -> int:
    count = _parse_int(source, raw)
    if not 0 <= count <= 1000:
        raise ConfigError(f"{source}: {count} is out of range (0-1000)")
    return count


def _parse_http_url(source: str, raw: Any) -> str:
    value = _parse_str(source, raw)
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: {value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


def _cores() -> int:
    """The cores this process may run on (its CPU set)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _parse_workers(source: str, raw: Any) -> int:
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return _cores()
    count = _parse_int(source, raw)
    if not 1 <= count <= 256:
        raise ConfigError(f'{source}: {count} workers is out of range (1-256, or "auto": one per core)')
    return count


def _parse_bitrate(source: str, raw: Any) -> int:
    """Accept 3000000, 3_000_000, 3000k or 3M: bitrates are easier to read with a unit."""
    if isinstance(raw, bool):
        raise ConfigError(f"{source}: expected a bitrate in bit/s, got {raw!r}")
    text = str(raw).strip().replace("_", "")
    multiplier = 1
    if text[-1:].lower() == "k":
        multiplier, text = 1_000, text[:-1]
    elif text[-1:].lower() == "m":
        multiplier, text = 1_000_000, text[:-1]
    try:
        bitrate = int(float(text) * multiplier)
    except (ValueError, OverflowError):
        raise ConfigError(
            f"{source}: expected a bitrate in bit/s (e.g. 3000000 or 3M), got {raw!r}"
        ) from None
    if bitrate < 10_000:
        raise ConfigError(f"{source}: bitrate {bitrate} bit/s is too low (minimum 10000)")
    return bitrate


def _parse_redis_url(source: str, raw: Any) -> str:
    """Check the scheme early so a typo fails at start-up, not when the first room is placed."""
    value = _parse_str(source, raw)
    if not value.startswith(REDIS_SCHEMES):
        raise ConfigError(f"{source}: {value!r} is not a Redis URL (redis://, rediss:// or unix://)")
    return value


def _parse_urls(source: str, raw: Any) -> tuple[str, ...]:
    """Comma-separated http(s) URLs, checked at start-up rather than at the first event."""
    urls = tuple(u.strip() for u in _parse_str(source, raw).split(",") if u.strip())
    for url in urls:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"{source}: {url!r} is not an http:// or https:// URL")
    return urls


def _choice(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    """Build a parser that lower-cases and checks membership, so INFO and info are the same level."""

    def parse(source: str, raw: Any) -> str:
        value = str(raw).strip().lower()
        if value not in choices:
            raise ConfigError(f"{source}: {raw!r} is not one of {', '.join(choices)}")
        return value

    return parse
