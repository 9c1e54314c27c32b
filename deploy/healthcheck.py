"""The container's HEALTHCHECK: exit 0 when kelian's GET /healthz answers {"status": "ok"}, else 1.

Standard library only, so the image needs no curl. It asks the address kelian listens on, from the
same KELIAN_HTTP_HOST and KELIAN_HTTP_PORT the server reads (a wildcard bind is asked on loopback).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Mapping

TIMEOUT = 4.0  # under the HEALTHCHECK's --timeout, so a hung server is reported, not killed


def url(env: Mapping[str, str] = os.environ) -> str:
    host = (env.get("KELIAN_HTTP_HOST") or "").strip() or "127.0.0.1"
    port = (env.get("KELIAN_HTTP_PORT") or "").strip() or "8700"
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    target = url()
    try:
        with urllib.request.urlopen(target, timeout=TIMEOUT) as response:
            status = json.load(response).get("status")
    except (OSError, ValueError, AttributeError) as exc:  # refused, timed out, HTTP error, not JSON
        print(f"unhealthy: {target}: {exc}", file=sys.stderr)
        return 1
    if status != "ok":
        print(f"unhealthy: {target} says status {status!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
