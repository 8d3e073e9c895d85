"""The server's app in the test process: no subprocess, no socket, its lifespan run.

For the rules a request meets at the HTTP edge (refusals, grants, limits, error bodies), which
need no real network; what only a real process shows (signals, logs, the WebSocket upgrade on a
real socket, restarts) is tested against `harness.servers.ServerProcess`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from starlette.testclient import TestClient

from harness.tokens import SECRET


@contextlib.contextmanager
def app_client(*args: str) -> Iterator[TestClient]:
    """A sync HTTP client on `pulseboard serve *args`'s app (memory broker, no collector, the
    test secret unless `args` say otherwise), started and stopped with its lifespan."""
    from pulseboard_server.app import build_app
    from pulseboard_server.cli import parser, settings_from

    ns = parser().parse_args(["serve", "--broker", "memory://", "--collect-interval", "0", *args])
    settings = settings_from(ns)
    settings.secret = SECRET
    with TestClient(build_app(settings), base_url="http://127.0.0.1") as client:
        yield client
