"""Drain this kelian node before it stops: POST /api/v1/node/drain, then wait (docs/deploy.md).

The node takes no new room, gives up the rooms it holds and tells their clients to reconnect
(through any node, to the room placed anew elsewhere). By default it also asks the node to exit once
it holds nothing, or at the deadline, and waits until it has stopped answering. With --keep-running
the node stays up (draining) and this script returns once it holds no room: what a Kubernetes
preStop hook wants, since the kubelet sends SIGTERM after the hook.

Standard library only, like healthcheck.py beside it. Run inside the node's container, it reads the
same KELIAN_HTTP_HOST, KELIAN_HTTP_PORT, KELIAN_API_KEY and KELIAN_API_SECRET kelian reads.

Exit status: 0 drained (or stopped), 1 the drain was refused or did not finish in time.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

from healthcheck import url as healthz_url

TIMEOUT = 5.0  # one HTTP request
MARGIN = 15.0  # waited beyond the deadline: the node's own stop (closing sockets, recorders)


def base_url(env: Mapping[str, str] = os.environ) -> str:
    return healthz_url(env).removesuffix("/healthz")


def post_drain(base: str, env: Mapping[str, str], deadline: float, leave: bool) -> dict[str, object]:
    key, secret = env.get("KELIAN_API_KEY", ""), env.get("KELIAN_API_SECRET", "")
    if not key or not secret:
        raise SystemExit("drain: KELIAN_API_KEY and KELIAN_API_SECRET must be set (the admin API's)")
    credentials = base64.b64encode(f"{key}:{secret}".encode()).decode()
    request = urllib.request.Request(
        base + "/api/v1/node/drain",
        data=json.dumps({"deadline": deadline, "exit": leave}).encode(),
        headers={"Authorization": "Basic " + credentials, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        answer: dict[str, object] = json.load(response)
    return answer


def rooms_held(base: str) -> int | None:
    """The rooms the node still holds, or None once it no longer answers."""
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=TIMEOUT) as response:
            return int(json.load(response).get("rooms", 0))
    except urllib.error.HTTPError as exc:  # 503: no worker left, so nothing held
        exc.close()
        return 0
    except (OSError, ValueError):
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drain.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds the node has to empty (30)")
    parser.add_argument(
        "--keep-running", action="store_true", help="do not stop the node: return once it holds no room"
    )
    return parser


def main(argv: list[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    args = build_parser().parse_args(argv)
    base = base_url(env)
    try:
        answer = post_drain(base, env, args.deadline, not args.keep_running)
    except urllib.error.HTTPError as exc:
        print(f"drain: {base}: HTTP {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"drain: {base}: {exc}", file=sys.stderr)
        return 1
    print(f"drain: {base}: draining, giving up rooms {answer.get('rooms')}", file=sys.stderr)
    until = time.monotonic() + args.deadline + MARGIN
    while time.monotonic() < until:
        held = rooms_held(base)
        if held is None:
            print("drain: the node has stopped", file=sys.stderr)
            return 0
        if held == 0 and args.keep_running:
            print("drain: the node holds no room", file=sys.stderr)
            return 0
        time.sleep(0.5)
    print(f"drain: {base}: not drained after {args.deadline + MARGIN:g} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
