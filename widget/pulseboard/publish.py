"""Publishing from Python code, over the server's HTTP API (standard library only)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from .protocol import PulseboardError


class PublishError(PulseboardError):
    """Publishing failed; the message says why and what to do."""


def server_url(url: str | None = None) -> str:
    url = url or os.environ.get("PULSEBOARD_URL")
    if not url:
        raise PublishError("bad_request", "no server URL: pass url= or set PULSEBOARD_URL")
    return url.rstrip("/")


def server_token(token: str | None = None) -> str:
    token = token or os.environ.get("PULSEBOARD_TOKEN")
    if not token:
        raise PublishError("unauthorized", "no token: pass token= or set PULSEBOARD_TOKEN")
    return token


class Publisher:
    """Posts messages to `POST publish`; reuse one for many messages."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 10.0) -> None:
        from .discovery import DiscoveryError, discover_for_kernel

        try:  # arguments, then PULSEBOARD_URL/PULSEBOARD_TOKEN, then the JupyterHub exchange
            found_url, found_token = discover_for_kernel(url, token)
        except DiscoveryError as e:
            raise PublishError(e.code, e.detail) from None
        self.url = found_url.rstrip("/")
        self.token = found_token
        self.timeout = timeout

    def publish(self, channel: str, data: Mapping[str, Any], ts: float | None = None) -> int:
        """Publish one message; return its seq."""
        return self.publish_many([(channel, data, ts)])[0]

    def publish_many(self, items: list[tuple[str, Mapping[str, Any], float | None]]) -> list[int]:
        body = [
            {"ch": ch, "data": dict(data), **({"ts": ts} if ts is not None else {})}
            for ch, data, ts in items
        ]
        req = urllib.request.Request(
            self.url + "/publish",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                seqs: list[int] = json.loads(resp.read())["seqs"]
                return seqs
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read())
                code, detail = err.get("error", "error"), err.get("detail", e.reason)
            except ValueError:
                code, detail = "error", str(e.reason)
            raise PublishError(code, f"server refused the publish ({e.code} {code}): {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise PublishError("unavailable", f"cannot reach {self.url}: {reason}; is the server running?") from None


_default: Publisher | None = None


def publish(
    channel: str,
    data: Mapping[str, Any],
    *,
    ts: float | None = None,
    url: str | None = None,
    token: str | None = None,
) -> int:
    """Publish `data` (a dict of fields) on `channel`; return its seq.

    `url`/`token` default to PULSEBOARD_URL / PULSEBOARD_TOKEN.
    """
    global _default
    if url is not None or token is not None:
        return Publisher(url, token).publish(channel, data, ts)
    if _default is None or (
        os.environ.get("PULSEBOARD_TOKEN") and _default.token != os.environ["PULSEBOARD_TOKEN"]
    ) or (os.environ.get("PULSEBOARD_URL", "").startswith("http") and _default.url != server_url()):
        _default = Publisher()
    return _default.publish(channel, data, ts if ts is not None else time.time())
