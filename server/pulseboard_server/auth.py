"""Token checks: JWT verification, where tokens come from, origins, tickets."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import jwt

from pulseboard.protocol import (
    BEARER_PREFIX,
    UNAUTHORIZED,
    Grants,
    PulseboardError,
    grants_from_claims,
)

from .config import Settings

HMAC_ALGS = ["HS256"]
KEY_ALGS = ["RS256", "ES256"]
TICKET_TYPE = "pulseboard.ticket"


def unauthorized(detail: str) -> PulseboardError:
    return PulseboardError(UNAUTHORIZED, detail)


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
                return jwt.decode(token, self._public_key, algorithms=KEY_ALGS, **kwargs)
            if alg in KEY_ALGS and self._jwks:
                key = self._jwks.get_signing_key_from_jwt(token)
                return jwt.decode(token, key.key, algorithms=KEY_ALGS, **kwargs)
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired: get a new one") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("token not valid yet (nbf)") from None
        except jwt.MissingRequiredClaimError as e:
            raise unauthorized(f"token lacks the {e.claim!r} claim") from None
        except jwt.InvalidAudienceError:
            raise unauthorized("token audience (aud) is wrong") from None
        except jwt.InvalidIssuerError:
            raise unauthorized("token issuer (iss) is wrong") from None
        except jwt.PyJWKClientError:
            raise unauthorized("token key not found in the JWKS") from None
        except jwt.InvalidTokenError:
            raise unauthorized("token is malformed or its signature is bad") from None
        raise unauthorized(f"token algorithm {alg!r} is not accepted here")

    async def verify_async(self, token: str) -> Grants:
        """Like `verify`, but JWKS fetches run in a thread."""
        if self._jwks is None:
            return self.verify(token)
        return await asyncio.to_thread(self.verify, token)

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
        except jwt.InvalidTokenError:
            raise unauthorized("ticket is malformed or its signature is bad") from None
        if claims.get("typ") != TICKET_TYPE:
            raise unauthorized("not a ticket")
        grants = grants_from_claims(claims)
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

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def origin_allowed(origin: str | None, host_header: str | None, settings: Settings) -> bool:
    """No Origin, our own origin, configured ones, and localhost ones while on loopback."""
    if not origin:
        return True
    allowed = settings.allowed_origins
    if "*" in allowed or origin.rstrip("/") in {o.rstrip("/") for o in allowed}:
        return True
    parts = urlsplit(origin)
    if host_header and parts.netloc == host_header:
        return True
    on_loopback = settings.host in LOOPBACK_HOSTS or settings.host.startswith("127.")
    return on_loopback and parts.scheme in ("http", "https") and (
        parts.hostname in LOOPBACK_HOSTS or (parts.hostname or "").startswith("127.")
    )


_SECRET_IN_TEXT = re.compile(r"((?:token|ticket)=)[^&\s\"']+|((?:[Bb]earer)[ .])[A-Za-z0-9_\-.]+")


_JWT_SHAPED = re.compile(r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")


def redact(text: str) -> str:
    """Hide tokens and tickets in a log line (named parameters, and anything shaped like a JWT)."""
    text = _SECRET_IN_TEXT.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)
    return _JWT_SHAPED.sub("[redacted-jwt]", text)
