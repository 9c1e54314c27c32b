"""The ``kelian`` command: run a node, mint an access token for testing and scripts, or load a node."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

from classroom.tokens import Role, mint
from signaling.config import Config, ConfigError
from signaling.logs import setup_logging

__all__ = ["build_parser", "main"]

PROG = "kelian"


class CliError(Exception):
    """A problem the user can fix from the command line; printed as a usage error, exit status 2."""


# The limits a school may want to change, with their defaults (Config); the metrics token is read from
# the environment only (KELIAN_METRICS_TOKEN), since a command line is visible to every user.
LIMIT_FLAGS = (
    ("max-token-ttl", "longest a token may still live when used, in seconds (604800)"),
    ("max-connections", "HTTP and WebSocket connections in all (10000)"),
    ("max-connections-per-address", "connections from one IP address (1000)"),
    ("join-timeout", "seconds a WebSocket may stay open without joining (10)"),
    ("max-participants", "participants in one room (10000)"),
    ("max-tracks", "tracks one participant may publish (16)"),
    ("message-rate", "WebSocket messages a second per session, sustained (50)"),
    ("message-burst", "WebSocket messages a session may send at once (200)"),
    ("send-queue", "messages waiting for a slow socket before it is disconnected (1000)"),
    ("send-timeout", "seconds a message may take to go out before the socket is dropped (10)"),
)


def build_parser() -> argparse.ArgumentParser:
    """All flags are strings left to Config.load, so flag and environment values are checked alike."""
    parser = argparse.ArgumentParser(prog=PROG, description="kelian live-classroom media server")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run a node: signaling over HTTP, media over one UDP port")
    serve.add_argument("--http-host", help="HTTP/WebSocket bind address (KELIAN_HTTP_HOST, 127.0.0.1)")
    serve.add_argument("--http-port", help="HTTP/WebSocket port (KELIAN_HTTP_PORT, 8700)")
    serve.add_argument("--media-host", help="UDP media bind address (KELIAN_MEDIA_HOST, 127.0.0.1)")
    serve.add_argument("--media-port", help="UDP media port (KELIAN_MEDIA_PORT, 8701)")
    serve.add_argument(
        "--announced-address",
        help="address put in ICE candidates (KELIAN_ANNOUNCED_ADDRESS, default: the media address)",
    )
    serve.add_argument("--redis-url", help="share state with other nodes through Redis (KELIAN_REDIS_URL)")
    serve.add_argument(
        "--node-url", help="with --redis-url, how other nodes reach this one's HTTP (KELIAN_NODE_URL)"
    )
    serve.add_argument(
        "--workers",
        help='worker processes behind one address, each with its own media port: a number, or "auto" for'
        " one per core (KELIAN_WORKERS, one per core; 1 with --database :memory:)",
    )
    serve.add_argument(
        "--spread-after",
        help="a live room's viewers go to another worker or node once the room's own carries this many"
        " media transports (KELIAN_SPREAD_AFTER, 200; 0: always)",
    )
    serve.add_argument(
        "--database", help="SQLite file for schools and lessons (KELIAN_DATABASE, kelian.db; :memory:)"
    )
    serve.add_argument("--webhook-urls", help="where to POST events, comma-separated (KELIAN_WEBHOOK_URLS)")
    serve.add_argument("--recordings", help="where recordings go (KELIAN_RECORDINGS, media/recordings)")
    serve.add_argument("--library", help="where the library's lessons go (KELIAN_LIBRARY, media/library)")
    serve.add_argument(
        "--auto-record", help="record rooms by their policy: true or false (KELIAN_AUTO_RECORD, true)"
    )
    serve.add_argument("--log-level", help="debug, info, warning, error (KELIAN_LOG_LEVEL, info)")
    serve.add_argument("--log-format", help="text or json (KELIAN_LOG_FORMAT, text)")
    serve.add_argument(
        "--max-bitrate", help="REMB sent to publishers in bit/s, e.g. 3000000 or 3M (KELIAN_MAX_BITRATE)"
    )
    serve.add_argument(
        "--max-audio-streams",
        help="audio tracks each subscriber gets, the loudest first; 0 for all (KELIAN_MAX_AUDIO_STREAMS, 3)",
    )
    limits = serve.add_argument_group("security and limits (docs/security.md)")
    for flag, meaning in LIMIT_FLAGS:
        env = "KELIAN_" + flag.upper().replace("-", "_")
        limits.add_argument(f"--{flag}", help=f"{meaning} ({env})")
    limits.add_argument(
        "--dev-on-network",
        action="store_true",
        default=None,
        help="serve development credentials on a non-loopback address anyway (KELIAN_DEV_ON_NETWORK)",
    )
    serve.set_defaults(handler=_cmd_serve)

    token = commands.add_parser(
        "token", help="print an access token signed with KELIAN_API_KEY / KELIAN_API_SECRET"
    )
    token.add_argument("--room", required=True, help="room the token admits to")
    token.add_argument("--identity", required=True, help="participant identity (the 'sub' claim)")
    token.add_argument("--role", required=True, choices=[r.value for r in Role], help="participant role")
    token.add_argument("--name", help="display name")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.set_defaults(handler=_cmd_token)

    from loadtest import options as loadtest_options  # light: the flags only

    loadtest = commands.add_parser(
        "loadtest", help="load a server with light publishers and subscribers, and report"
    )
    loadtest_options.add_arguments(loadtest)
    loadtest.set_defaults(handler=_cmd_loadtest)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point for the console script and ``python -m signaling``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    handler: Callable[[argparse.Namespace, TextIO], int] = args.handler
    try:
        return handler(args, sys.stdout)
    except (ConfigError, CliError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def _cmd_token(args: argparse.Namespace, out: TextIO) -> int:
    """Mint with the configured secret only: a token signed with a throwaway key would fool no server."""
    config = Config.load(args)
    if config.dev_credentials:
        raise CliError(
            "KELIAN_API_KEY and KELIAN_API_SECRET must be set to the server's credentials to mint a token"
        )
    if args.ttl <= 0:
        raise CliError(f"--ttl must be positive, got {args.ttl}")
    try:
        token = mint(
            config.api_key,
            config.api_secret,
            room=args.room,
            identity=args.identity,
            role=args.role,
            name=args.name,
            ttl=args.ttl,
        )
    except ValueError as exc:  # empty room or identity: the user's input, not a bug
        raise CliError(str(exc)) from None
    print(token, file=out)
    return 0


def _cmd_loadtest(args: argparse.Namespace, out: TextIO) -> int:
    """Exit 0 when every subscriber joined and every publisher lasted, else 1; usage errors are 2."""
    from loadtest.options import OptionError, plan_from_args

    try:
        plan = plan_from_args(args)
    except OptionError as exc:
        raise CliError(str(exc)) from None
    # Imported lazily, like serve: the light peer pulls in the media stack.
    from loadtest.run import RunError, run

    if plan.steps:  # --find-capacity: a limit found (or not) is its answer, not a failure
        from loadtest.capacity import find_capacity

        find_capacity(plan, out)
        return 0
    try:
        report = run(plan, out)
    except RunError as exc:
        print(f"{PROG}: loadtest failed: {exc}", file=sys.stderr)
        return 1
    return 1 if report["joins"]["failures"] or report.get("publisher_problems") else 0


def _cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    config = Config.load(args)
    setup_logging(config.log_level, config.log_format)
    if config.dev_credentials:
        print(_dev_banner(config), file=out, flush=True)

    # Imported lazily: the media stack is slow to import and `token` needs none of it.
    if config.workers > 1 or config.redis_url:  # several workers, or a node of a cluster: the front
        from cluster import front

        return _run(front.serve(config, config.workers))
    from signaling import server

    return _run(server.serve(config))


def _run(main_coro: Coroutine[Any, Any, Any]) -> int:
    """Run until the server returns or is interrupted; Ctrl-C and SIGTERM are a normal stop, exit 0.

    asyncio.Runner turns the first Ctrl-C into a cancellation of the main task, so the server's
    ``finally`` blocks close transports and tell clients before the loop goes away. SIGTERM (docker stop,
    Kubernetes) is routed the same way.
    """
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # optional: not available on every platform
        pass

    async def guarded() -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await main_coro

    # suppress is outermost so the Runner has closed the loop (cancelled leftovers) before we return.
    with (
        contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError),
        asyncio.Runner(loop_factory=loop_factory) as runner,
    ):
        runner.run(guarded())
    return 0


def _dev_banner(config: Config) -> str:
    """Say loudly that the credentials are throwaway; they change on every start."""
    host = config.http_host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    rule = "=" * 72
    return "\n".join(
        [
            rule,
            "  DEVELOPMENT CREDENTIALS (generated: no KELIAN_API_KEY / KELIAN_API_SECRET set)",
            "  They change on every start; do not use them in production.",
            "",
            f"  export KELIAN_API_KEY={config.api_key}",
            f"  export KELIAN_API_SECRET={config.api_secret}",
            "",
            f"  Open http://{host}:{config.http_port}/",
            rule,
        ]
    )
