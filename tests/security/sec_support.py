"""Shared by the security tests: tokens for their servers (aud/iss required), raw requests, the log scan."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from harness import tokens
from harness.servers import ServerProcess
from harness.tokens import Keys

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
