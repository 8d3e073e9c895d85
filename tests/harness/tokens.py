"""Tokens for tests: good ones, every way a token must be refused, key pairs, a JWKS endpoint."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pulseboard_server.auth import mint_token

SECRET = "test-secret-please-change-0123456789abcdef"


def token(sub: str = "tester", read: Sequence[str] = ("*",), publish: Sequence[str] = ("*",),
          ttl: float = 3600, secret: str = SECRET, **extra: object) -> str:
    return mint_token(secret, sub, read, publish, ttl, **extra)


def auth(tok: str | None = None) -> dict[str, str]:
    """Request headers carrying a bearer token (a fresh all-channels one unless given)."""
    return {"Authorization": f"Bearer {tok or token()}"}


def b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def now() -> int:
    return int(time.time())


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


def claims(audience: str | None = None, issuer: str | None = None, **extra: Any) -> dict[str, Any]:
    """Valid claims (read and publish everything); `aud`/`iss` when the server requires them.
    An `extra` of None removes that claim."""
    base: dict[str, Any] = {"sub": "attacker", "exp": now() + 600, "read": ["*"], "publish": ["*"],
                            "aud": audience, "iss": issuer}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def hs256_raw(payload: dict[str, Any], key: bytes) -> str:
    """HS256 by hand, so a PEM public key can be (mis)used as the HMAC secret."""
    head = b64({"alg": "HS256", "typ": "JWT"}) + "." + b64(payload)
    sig = hmac.new(key, head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(sig).decode().rstrip("=")


def bad_tokens(keys: Keys | None = None, audience: str | None = None,
               issuer: str | None = None) -> dict[str, Callable[[], str | None]]:
    """Every way a token must be refused, as (name -> token, or None for 'no token').

    For a server that accepts HS256 with SECRET; with `keys`, also RS256/ES256 with `keys.rsa`'s
    public key (the key-confusion cases join); with `audience`/`issuer`, requiring those (the
    wrong and missing aud/iss cases join).
    """
    def good(**extra: Any) -> dict[str, Any]:
        return claims(audience, issuer, **extra)

    nested = b'{"alg":"HS256","x":' + b"[" * 2500 + b"]" * 2500 + b"}"
    deep_header = base64.urlsafe_b64encode(nested).decode().rstrip("=")
    cases: dict[str, Callable[[], str | None]] = {
        "none": lambda: None,
        "garbage": lambda: "garbage",
        "empty_parts": lambda: "..",
        "alg_none": lambda: b64({"alg": "none", "typ": "JWT"}) + "." + b64(good()) + ".",
        "bad_signature": lambda: jwt.encode(good(), SECRET + "-other", "HS256"),
        "expired": lambda: jwt.encode(good(exp=now() - 120), SECRET, "HS256"),
        "nbf_ahead": lambda: jwt.encode(good(nbf=now() + 600), SECRET, "HS256"),
        "missing_sub": lambda: jwt.encode(good(sub=None), SECRET, "HS256"),
        "missing_exp": lambda: jwt.encode(good(exp=None), SECRET, "HS256"),
        "hs512": lambda: jwt.encode(good(), SECRET * 2, "HS512"),
        "deep_header": lambda: deep_header + "." + b64(good()) + ".c2ln",
        "sub_not_string": lambda: jwt.encode(good(sub=["a"]), SECRET, "HS256"),
        "read_not_list": lambda: jwt.encode(good(read={"a": 1}), SECRET, "HS256"),
    }
    if keys is not None:
        rsa_pem = Keys.pem(keys.rsa)
        cases.update({
            # HS/RS confusion: HS256 signed with the server's *public* RSA key as the secret
            "hs_rs_confusion": lambda: hs256_raw(good(), rsa_pem),
            # wrong key type: an ES256 token where the server holds an RSA key
            "wrong_key_type": lambda: jwt.encode(good(), keys.ec, "ES256"),
            "rs_signed_by_other_key": lambda: jwt.encode(
                good(), rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        })
    if audience is not None:
        cases["wrong_aud"] = lambda: jwt.encode(good(aud="someone-else"), SECRET, "HS256")
        cases["missing_aud"] = lambda: jwt.encode(good(aud=None), SECRET, "HS256")
    if issuer is not None:
        cases["wrong_iss"] = lambda: jwt.encode(good(iss="https://evil.test"), SECRET, "HS256")
    return cases


@contextlib.contextmanager
def serve_jwks(keys: Keys) -> Iterator[str]:
    """A JWKS endpoint holding `keys.rsa` (kid `r1`) and `keys.ec` (kid `e1`); yields its URL."""
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys.rsa.public_key()))
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(keys.ec.public_key()))
    rsa_jwk.update(kid="r1", use="sig")
    ec_jwk.update(kid="e1", use="sig")
    body = json.dumps({"keys": [rsa_jwk, ec_jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json"
    finally:
        httpd.shutdown()
        httpd.server_close()
