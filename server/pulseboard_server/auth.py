"""Token checks: JWT verification, where tokens come from, origins, tickets."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import jwt

from pulseboard.protocol import BAD_REQUEST, BEARER_PREFIX, UNAUTHORIZED, UNAVAILABLE, PulseboardError

from .config import Settings
from .grants import Grants, grants_from_claims

HMAC_ALGS = ["HS256"]
KEY_ALGS = ["RS256", "ES256"]
TICKET_TYPE = "pulseboard.ticket"


def unauthorized(detail: str) -> PulseboardError:
    return PulseboardError(UNAUTHORIZED, detail)


# What PyJWT and `cryptography` raise, besides PyJWTError, for a token that doesn't fit the key.
BAD_TOKEN_ERRORS = (ValueError, TypeError, AttributeError, KeyError, RecursionError, UnicodeError)


def token_error(e: Exception) -> PulseboardError:
    """The 401 (or, for an unreachable JWKS endpoint, 503) for a PyJWT error."""
    if isinstance(e, jwt.ExpiredSignatureError):
        return unauthorized("token expired: get a new one")
    if isinstance(e, jwt.ImmatureSignatureError):
        return unauthorized("token not valid yet (nbf)")
    if isinstance(e, jwt.MissingRequiredClaimError):
        return unauthorized(f"token lacks the {e.claim!r} claim")
    if isinstance(e, jwt.InvalidAudienceError):
        return unauthorized("token audience (aud) is wrong")
    if isinstance(e, jwt.InvalidIssuerError):
        return unauthorized("token issuer (iss) is wrong")
    if isinstance(e, jwt.PyJWKClientConnectionError):
        return PulseboardError(UNAVAILABLE, "the JWKS endpoint can't be reached: try again shortly")
    if isinstance(e, jwt.PyJWKClientError):
        return unauthorized("token key not found in the JWKS")
    if isinstance(e, jwt.InvalidKeyError):
        return unauthorized("token does not match the server's key (algorithm or key type)")
    return unauthorized("token is malformed or its signature is bad")


class TokenVerifier:
    """Verifies JWTs with a shared secret, a PEM public key or a JWKS endpoint."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._secret = settings.secret
        # Tickets are the server's own: without a shared secret they are signed with a
        # per-process one (so, with several nodes in key mode, set PULSEBOARD_SECRET too).
        self._ticket_secret = settings.secret or ephemeral_secret()
        self._public_key = settings.public_key
        self._jwks = jwt.PyJWKClient(settings.jwks_url) if settings.jwks_url else None
        if not (self._secret or self._public_key or self._jwks):
            raise ValueError("a token verifier needs a secret, a public key or a JWKS url")

    def verify(self, token: str) -> Grants:
        """Check signature, algorithm, `exp`, `nbf`, `sub` (and `aud`/`iss`); raise 401."""
        claims = self.decode(token)
        if claims.get("typ") == TICKET_TYPE:
            raise unauthorized("a ticket is not a token; pass it as ?ticket=")
        try:
            return grants_from_claims(claims)
        except PulseboardError as e:
            raise unauthorized(e.detail) from None

    def decode(self, token: str) -> dict[str, Any]:
        options: dict[str, Any] = {"require": ["exp", "sub"]}
        kwargs: dict[str, Any] = {"options": options, "leeway": 5}
        if self.settings.audience:
            kwargs["audience"] = self.settings.audience
            options["require"].append("aud")
        else:
            options["verify_aud"] = False
        if self.settings.issuer:
            kwargs["issuer"] = self.settings.issuer
            options["require"].append("iss")
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            if alg in HMAC_ALGS and self._secret:
                return jwt.decode(token, self._secret, algorithms=HMAC_ALGS, **kwargs)
            if alg in KEY_ALGS and self._public_key:
                return jwt.decode(token, self._public_key, algorithms=[alg], **kwargs)
            if alg in KEY_ALGS and self._jwks:
                key = self._jwks.get_signing_key_from_jwt(token)
                return jwt.decode(token, key.key, algorithms=[alg], **kwargs)
        except jwt.PyJWTError as e:
            raise token_error(e) from None
        except BAD_TOKEN_ERRORS:
            # A key of another type than the token's algorithm (an EC key for RS256, a JWKS
            # entry of the wrong kty), or a header nested past the parser's depth.
            raise unauthorized("token does not match the server's key (algorithm or key type)") from None
        raise unauthorized(f"token algorithm {str(alg)[:20]!r} is not accepted here")

    async def verify_async(self, token: str) -> Grants:
        """Like `verify`, but JWKS fetches run in a thread."""
        if self._jwks is None:
            return self.verify(token)
        return await asyncio.to_thread(self.verify, token)

    def mint_view_token(self, grants: Grants, channels: Iterable[str]) -> str:
        """A read-only token for `channels`, expiring with the caller's; it carries the
        configured `aud`/`iss`, so this server (and its peers) accept it back."""
        secret = self._secret
        if not secret:
            raise PulseboardError(
                BAD_REQUEST, "view tokens need PULSEBOARD_SECRET on the server (key mode can't sign)"
            )
        claims: dict[str, Any] = {
            "sub": grants.sub, "exp": int(grants.exp), "iat": int(time.time()),
            "read": list(channels), "view": True,
        }
        if self.settings.audience:
            claims["aud"] = self.settings.audience
        if self.settings.issuer:
            claims["iss"] = self.settings.issuer
        return jwt.encode(claims, secret, algorithm="HS256")

    # --- tickets: short-lived, one-time, for EventSource and long-poll ---------

    def mint_ticket(self, grants: Grants, channels: Iterable[str] | None, ttl: float) -> str:
        """A signed one-time ticket, narrowed to `channels` when given."""
        now = time.time()
        read = list(channels) if channels is not None else list(grants.read)
        claims = {
            "typ": TICKET_TYPE,
            "sub": grants.sub,
            "exp": int(min(now + ttl, grants.exp)) ,
            "iat": int(now),
            "jti": uuid.uuid4().hex,
            "read": read,
            "publish": [],
            "token_exp": grants.exp,  # a stream opened with the ticket lives as long as the token
        }
        return jwt.encode(claims, self._ticket_secret, algorithm="HS256")

    def check_ticket(self, ticket: str) -> tuple[Grants, str, float]:
        """Verify a ticket; return its grants, its id (to claim once) and its expiry."""
        try:
            claims = jwt.decode(
                ticket, self._ticket_secret, algorithms=HMAC_ALGS, options={"require": ["exp", "jti"]}
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("ticket expired: ask for a new one") from None
        except (jwt.PyJWTError, *BAD_TOKEN_ERRORS):
            raise unauthorized("ticket is malformed or its signature is bad") from None
        if claims.get("typ") != TICKET_TYPE:
            raise unauthorized("not a ticket")
        try:
            grants = grants_from_claims(claims)
        except PulseboardError as e:
            raise unauthorized(e.detail) from None
        token_exp = claims.get("token_exp")
        if isinstance(token_exp, (int, float)) and not isinstance(token_exp, bool):
            grants = dataclasses.replace(grants, exp=float(token_exp))
        return grants, str(claims["jti"]), float(claims["exp"])


def mint_token(
    secret: str,
    sub: str,
    read: Iterable[str] = ("*",),
    publish: Iterable[str] = (),
    ttl: float = 3600,
    **extra: Any,
) -> str:
    """An HS256 token with the contract's claims."""
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + int(ttl), "read": list(read)}
    publish = list(publish)
    if publish:
        claims["publish"] = publish
    claims.update(extra)
    return jwt.encode(claims, secret, algorithm="HS256")


def ephemeral_secret() -> str:
    return secrets.token_urlsafe(32)


# --- where the token comes from --------------------------------------------------


def token_from_request(
    headers: Mapping[str, str], query: Mapping[str, str]
) -> tuple[str | None, list[str]]:
    """Find the bearer token; also return the offered subprotocols (minus the token)."""
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    token: str | None = None
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        token = auth[7:].strip() or None
    protocols = []
    for p in offered:
        if p.startswith(BEARER_PREFIX):
            token = token or p[len(BEARER_PREFIX) :]
        else:
            protocols.append(p)
    if token is None and query.get("token"):
        token = query["token"]
    return token, protocols


# --- origins ---------------------------------------------------------------------

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
_ORIGIN_NETLOC = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::[0-9]{1,5})?")


def is_loopback(host: str) -> bool:
    """True for the names and addresses of this machine's loopback interface (not `127.evil.com`)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def origin_allowed(origin: str | None, host_header: str | None, settings: Settings) -> bool:
    """The one origin rule, for the WebSocket, CORS and every HTTP endpoint.

    Allowed: no Origin (not a browser page); `--allowed-origin` entries (`*`: all); the
    server's own origin when the Host header is an IP address or a loopback name (a DNS
    name could be a rebinding attacker's, so on a DNS name list the public origin with
    `--allowed-origin`); and, while the server listens on loopback, pages whose origin
    host is exactly `localhost`, `127.0.0.1` or `[::1]` (so a local JupyterLab works).
    """
    if not origin:
        return True
    allowed = settings.allowed_origins
    if "*" in allowed or origin.rstrip("/") in {o.rstrip("/") for o in allowed}:
        return True
    try:
        parts = urlsplit(origin)
        hostname, _port = parts.hostname, parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not hostname or not _ORIGIN_NETLOC.fullmatch(parts.netloc):
        return False  # not how a browser serializes an origin (`[::1].evil.com`, `user@host`, paths)
    if host_header and parts.netloc.lower() == host_header.lower():
        host_name = urlsplit("//" + host_header).hostname or ""
        if is_ip_literal(host_name) or is_loopback(host_name):
            return True
    return is_loopback(settings.host) and hostname in LOOPBACK_NAMES
