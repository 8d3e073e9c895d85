"""Shared by the security tests: hostile tokens, keys, and the server-log scan."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, Phase, settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from support import SECRET, ServerProcess, token, wait_until

LONG = os.environ.get("PULSEBOARD_LONG") == "1"  # the long fuzzing mode: many more examples


def fuzz_settings(short: int, long: int) -> settings:
    """Hypothesis settings for the fuzz tests: `short` examples in CI, `long` with PULSEBOARD_LONG=1."""
    # no shrinking: each example costs real requests, and the failing one is printed as drawn
    return settings(max_examples=long if LONG else short, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.generate], print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


AUDIENCE = "pulseboard-tests"
ISSUER = "https://issuer.test"


def b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def now() -> int:
    return int(time.time())


def claims(**extra: Any) -> dict[str, Any]:
    """Valid claims for the test servers (read and publish everything, right aud/iss)."""
    base: dict[str, Any] = {"sub": "attacker", "exp": now() + 600, "read": ["*"], "publish": ["*"],
                            "aud": AUDIENCE, "iss": ISSUER}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


class Keys:
    """An RSA and an EC key pair; `pem(key)` is the public half in PEM."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())

    @staticmethod
    def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def write_rsa_public(self, directory: Path) -> Path:
        path = directory / "rsa.pub.pem"
        path.write_bytes(self.pem(self.rsa))
        return path


def bad_tokens(keys: Keys) -> dict[str, Callable[[], str | None]]:
    """Every way a token must be refused, as (name -> token or None for 'no token').

    Meant for a server that accepts HS256 with SECRET and RS256/ES256 with `keys.rsa`'s
    public key, both with AUDIENCE and ISSUER required.
    """
    rsa_pem = Keys.pem(keys.rsa).decode()
    nested = b'{"alg":"HS256","x":' + b"[" * 2500 + b"]" * 2500 + b"}"
    deep_header = base64.urlsafe_b64encode(nested).decode().rstrip("=")
    return {
        "none": lambda: None,
        "garbage": lambda: "garbage",
        "empty_parts": lambda: "..",
        "alg_none": lambda: b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims()) + ".",
        # HS/RS confusion: HS256 signed with the server's *public* RSA key as the secret
        "hs_rs_confusion": lambda: hs256_raw(claims(), rsa_pem.encode()),
        # wrong key type: an ES256 token where the server holds an RSA key
        "wrong_key_type": lambda: jwt.encode(claims(), keys.ec, "ES256"),
        "rs_signed_by_other_key": lambda: jwt.encode(
            claims(), rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        "bad_signature": lambda: jwt.encode(claims(), SECRET + "-other", "HS256"),
        "expired": lambda: jwt.encode(claims(exp=now() - 120), SECRET, "HS256"),
        "nbf_ahead": lambda: jwt.encode(claims(nbf=now() + 600), SECRET, "HS256"),
        "missing_sub": lambda: jwt.encode(claims(sub=None), SECRET, "HS256"),
        "missing_exp": lambda: jwt.encode(claims(exp=None), SECRET, "HS256"),
        "wrong_aud": lambda: jwt.encode(claims(aud="someone-else"), SECRET, "HS256"),
        "wrong_iss": lambda: jwt.encode(claims(iss="https://evil.test"), SECRET, "HS256"),
        "missing_aud": lambda: jwt.encode(claims(aud=None), SECRET, "HS256"),
        "hs512": lambda: jwt.encode(claims(), SECRET * 2, "HS512"),
        "deep_header": lambda: deep_header + "." + b64(claims()) + ".c2ln",
        "sub_not_string": lambda: jwt.encode(claims(sub=["a"]), SECRET, "HS256"),
        "read_not_list": lambda: jwt.encode(claims(read={"a": 1}), SECRET, "HS256"),
    }


def hs256_raw(payload: dict[str, Any], key: bytes) -> str:
    """HS256 by hand, so a PEM public key can be (mis)used as the HMAC secret."""
    head = b64({"alg": "HS256", "typ": "JWT"}) + "." + b64(payload)
    sig = hmac.new(key, head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(sig).decode().rstrip("=")


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
                          subprotocols=["pulseboard.v1"], max_size=None, legacy=True)  # type: ignore[list-item]
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
