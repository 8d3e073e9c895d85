"""Shared by the security tests: tokens for their servers (aud/iss required), raw requests, the log scan."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from harness import tokens
from harness.servers import ServerProcess, wait_until
from harness.tokens import Keys, token

AUDIENCE = "pulseboard-tests"
ISSUER = "https://issuer.test"


def claims(**extra: Any) -> dict[str, Any]:
    """Valid claims for the security servers, which require AUDIENCE and ISSUER."""
    return tokens.claims(AUDIENCE, ISSUER, **extra)


def bad_tokens(keys: Keys) -> dict[str, Callable[[], str | None]]:
    """Every way a token must be refused by a server that takes HS256 with SECRET and RS256/ES256
    with `keys.rsa`'s public key, both requiring AUDIENCE and ISSUER."""
    return tokens.bad_tokens(keys, AUDIENCE, ISSUER)


def ws_request(token: str | None = None, host: str = "127.0.0.1", origin: str | None = None,
               path: str = "/ws") -> bytes:
    """A WebSocket upgrade request, written by hand (so Host and Origin can be anything)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def raw_status(port: int, request: bytes) -> int:
    """The status code the server answers a hand-written request with."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed without an answer (got {head!r})")
            head += chunk
    return int(head.split(b" ", 2)[1])


TRACEBACK_MARKERS = ("Traceback (most recent call last)", "Exception in ASGI application",
                     "Task exception was never retrieved", "Exception in callback")


def secret_forms(secret: str) -> Iterable[str]:
    """A token or ticket as it could show up in a log line: whole, encoded, or in parts."""
    yield secret
    yield quote(secret, safe="")
    yield quote(quote(secret, safe=""), safe="")
    parts = secret.split(".")
    if len(parts) == 3:
        yield parts[1]  # the claims
        if len(parts[2]) >= 16:
            yield parts[2]  # the signature


def scan_log(server: ServerProcess, secrets: Iterable[str]) -> None:
    """Fail when the server log holds a traceback, or any form of any of `secrets`."""
    text = server.output()
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, f"server log has {marker!r}:\n{excerpt(text, marker)}"
    assert not re.search(r"\bERROR\b", text), f"server log has an ERROR line:\n{excerpt(text, 'ERROR')}"
    for s in secrets:
        for form in secret_forms(s):
            if len(form) >= 16:
                assert form not in text, f"a token or ticket reached the log:\n{excerpt(text, form)}"


def excerpt(text: str, needle: str, width: int = 1500) -> str:
    i = text.find(needle)
    return text[max(0, i - width // 2): i + width // 2]


class Canary:
    """A WebSocket client on channel `canary`, in its own thread, recording what it gets."""

    def __init__(self, srv: ServerProcess, used: list[str]) -> None:
        self.srv = srv
        self.tok = token(sub="canary", read=["canary"], publish=["canary"])
        used.append(self.tok)  # for the log scan: no form of it may reach the server log
        self.seqs: list[int] = []
        self.ws = connect(srv.ws_url, additional_headers={"Authorization": f"Bearer {self.tok}"},
                          subprotocols=["pulseboard.v1"], max_size=None, legacy=True,  # type: ignore[list-item,call-overload]
                          # No keepalive: its pings draw from `random` in this thread, which Hypothesis
                          # sees as a strategy using `random` when it lands mid-draw (a warning).
                          ping_interval=None)
        self.ws.send(json.dumps({"op": "subscribe", "ch": {"canary": None}}))
        self.subscribed = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.subscribed.wait(15), "the canary never got its 'subscribed'"
        self.published = 0

    def _read(self) -> None:
        try:
            for frame in self.ws:
                msg = json.loads(frame)
                if isinstance(msg, list):
                    self.seqs.extend(e["seq"] for e in msg if e["ch"] == "canary")
                elif msg.get("op") == "subscribed":
                    self.subscribed.set()
        except ConnectionClosed:
            pass

    def check(self) -> None:
        """Publish one message and wait until the canary has it."""
        r = httpx.post(self.srv.url + "/publish", json={"ch": "canary", "data": {"n": self.published}},
                       headers={"Authorization": f"Bearer {self.tok}"}, timeout=30)
        # the canary is also the second publisher: it must keep succeeding
        assert r.status_code == 200, r.text
        self.published += 1
        wait_until(lambda: len(self.seqs) >= self.published, timeout=30, what="the canary's message")
        assert self.seqs == list(range(1, self.published + 1)), self.seqs
