"""JupyterHub service mode: `POST token` swaps a JupyterHub token for a pulseboard JWT.

The caller sends `Authorization: token <jupyterhub token>` (a user's API token, or the
`JUPYTERHUB_API_TOKEN` a single-user server gives its kernels). The server asks the Hub
who owns it (`GET {JUPYTERHUB_API_URL}/user` with that token, the call JupyterHub's own
`HubAuth` makes), then mints an HS256 JWT signed with the server's secret:

- `sub`: the Hub user name;
- `read`: `sys.*`, `shared.*`, `user.{user}.*` (least privilege; `PULSEBOARD_HUB_READ`,
  comma-separated globs, replaces it);
- `publish`: `user.{user}.*` (`PULSEBOARD_HUB_PUBLISH` replaces it), where `{user}` is the
  user name made channel-safe by `channel_safe` (letters, digits and `-` kept, every
  other character written `_xx` in hex, so no two users share a prefix);
- plus the grants of the user's Hub groups and admin flag in `PULSEBOARD_HUB_POLICY`
  (see `hub_policy`);
- `exp`: now + `PULSEBOARD_HUB_TTL` seconds (default 3600, at least 60).

`PULSEBOARD_HUB_SCOPE`, when set, is a JupyterHub scope the token must carry (for example
`access:services!service=pulseboard`); `PULSEBOARD_HUB_GROUPS`, when set, is a comma list
of Hub groups one of which the user must be in.

Errors use the contract's shape: 401 for a token the Hub does not accept, 403 when the
token's owner may not use pulseboard, 503 when the Hub cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pulseboard.protocol import BAD_REQUEST, FORBIDDEN, UNAVAILABLE, PulseboardError

from .auth import mint_token, unauthorized
from .hub_policy import DEFAULT_PUBLISH, DEFAULT_READ, Policy, channel_safe, load_policy

log = logging.getLogger("pulseboard.hub")

HUB_TIMEOUT = 10.0
MIN_TTL = 60
# Hub calls get their own threads: a slow Hub (or a flood of garbage tokens) must never
# take the default executor, where the store's reads run. Past MAX_WAITING exchanges in
# flight, the next one is 503 at once instead of queueing without bound.
HUB_THREADS = 4
MAX_WAITING = 64
_pool: ThreadPoolExecutor | None = None
_in_flight = 0

__all__ = ["HubConfig", "channel_safe", "check_owner", "exchange_token"]


def _globs(text: str | None, default: list[str]) -> list[str]:
    if text is None:
        return list(default)
    return [g.strip() for g in text.split(",") if g.strip()]


@dataclass
class HubConfig:
    """Where the Hub is and what an exchanged token may do; read from the environment."""

    api_url: str
    read: list[str] = field(default_factory=lambda: list(DEFAULT_READ))
    publish: list[str] = field(default_factory=lambda: list(DEFAULT_PUBLISH))
    ttl: int = 3600
    scope: str | None = None
    groups: list[str] = field(default_factory=list)
    policy: Policy = field(default_factory=Policy)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HubConfig:
        env = os.environ if env is None else env
        api_url = env.get("JUPYTERHUB_API_URL", "").rstrip("/")
        if not api_url:
            raise PulseboardError(UNAVAILABLE, "hub mode: JUPYTERHUB_API_URL is not set")
        ttl_text = env.get("PULSEBOARD_HUB_TTL", "3600")
        try:
            ttl = int(ttl_text)
        except ValueError:
            raise PulseboardError(UNAVAILABLE, "hub mode: PULSEBOARD_HUB_TTL is not an integer") from None
        policy_path = env.get("PULSEBOARD_HUB_POLICY")
        return cls(
            api_url=api_url,
            read=_globs(env.get("PULSEBOARD_HUB_READ"), DEFAULT_READ),
            publish=_globs(env.get("PULSEBOARD_HUB_PUBLISH"), DEFAULT_PUBLISH),
            ttl=max(MIN_TTL, ttl),
            scope=env.get("PULSEBOARD_HUB_SCOPE") or None,
            groups=_globs(env.get("PULSEBOARD_HUB_GROUPS"), []),
            policy=load_policy(policy_path) if policy_path else Policy(),
        )

    def grants_for(
        self, user: str, groups: list[str] | None = None, admin: bool = False
    ) -> tuple[list[str], list[str]]:
        """The `read` and `publish` globs of `user`'s token (defaults plus policy grants)."""
        safe = channel_safe(user)
        extra = self.policy.extra_for(groups or [], admin)

        def expand(globs: list[str]) -> list[str]:
            out: list[str] = []
            for g in globs:
                g = g.replace("{user}", safe)
                if g not in out:
                    out.append(g)
            return out

        return expand([*self.read, *extra.read]), expand([*self.publish, *extra.publish])


def check_startup(secret: str | None, env: Mapping[str, str] | None = None) -> None:
    """Refuse to start hub mode with a configuration every exchange would fail on."""
    if not secret:
        raise PulseboardError(
            UNAVAILABLE, "hub mode needs PULSEBOARD_SECRET to sign tokens (the same on every node): "
            "set it, e.g. to the output of `openssl rand -hex 32`"
        )
    HubConfig.from_env(env)


def hub_token_from(headers: Mapping[str, str]) -> str:
    """The JupyterHub token in `Authorization: token ...` (or `Bearer ...`)."""
    auth = headers.get("authorization", "").strip()
    scheme, _, value = auth.partition(" ")
    if scheme.lower() not in ("token", "bearer") or not value.strip():
        raise unauthorized("send your JupyterHub token as 'Authorization: token <token>'")
    return value.strip()


def ask_hub(api_url: str, hub_token: str, timeout: float = HUB_TIMEOUT) -> dict[str, Any]:
    """The model of the token's owner from the Hub (blocking; run it in a thread)."""
    from pulseboard.credhttp import open_request  # never follows a redirect off the Hub's origin

    req = urllib.request.Request(
        api_url + "/user",
        headers={"Authorization": f"token {hub_token}", "Accept": "application/json"},
    )
    try:
        with open_request(req, timeout=timeout) as resp:
            model = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        if e.code in (401, 403, 404):
            raise unauthorized("JupyterHub does not accept this token") from None
        raise PulseboardError(UNAVAILABLE, f"JupyterHub answered {e.code}: try again later") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        log.warning("cannot reach JupyterHub at %s: %s", api_url, reason)
        raise PulseboardError(UNAVAILABLE, "cannot reach JupyterHub: try again later") from None
    if not isinstance(model, dict):
        raise PulseboardError(UNAVAILABLE, "JupyterHub sent an unexpected answer")
    return model


def ask_admin_flag(api_url: str, user: str) -> bool:
    """Whether the Hub says `user` is an admin, asked with the service's own API token."""
    from pulseboard.credhttp import open_request

    service_token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not service_token:
        raise PulseboardError(UNAVAILABLE, "the hub policy grants admins, but the service has no JUPYTERHUB_API_TOKEN")
    req = urllib.request.Request(
        f"{api_url}/users/{urllib.parse.quote(user, safe='')}",
        headers={"Authorization": f"token {service_token}", "Accept": "application/json"},
    )
    try:
        with open_request(req, timeout=HUB_TIMEOUT) as resp:
            model = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise PulseboardError(
            UNAVAILABLE, f"cannot tell whether {user} is a Hub admin (the Hub answered {e.code}): "
            "give the pulseboard service the read:users scope"
        ) from None
    except (urllib.error.URLError, OSError, ValueError):
        raise PulseboardError(UNAVAILABLE, "cannot reach JupyterHub: try again later") from None
    return isinstance(model, dict) and model.get("admin") is True


def check_owner(model: Mapping[str, Any], config: HubConfig) -> str:
    """The Hub user name behind the token, or `forbidden` when they may not use pulseboard."""
    name = model.get("name")
    if model.get("kind", "user") != "user" or not isinstance(name, str) or not name:
        raise PulseboardError(FORBIDDEN, "only a JupyterHub user's token can be exchanged")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # JSON can carry a lone surrogate; no token or log line may hold one
        raise PulseboardError(BAD_REQUEST, "the JupyterHub user name is not valid unicode text") from None
    if config.scope is not None:
        scopes = model.get("scopes") or []
        if config.scope not in scopes:
            raise PulseboardError(FORBIDDEN, f"the token lacks the JupyterHub scope {config.scope!r}")
    if config.groups and not set(config.groups) & set(model.get("groups") or []):
        raise PulseboardError(FORBIDDEN, "the user is in none of the groups allowed to use pulseboard")
    return name


T = TypeVar("T")


async def on_hub_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking Hub call on the Hub's own threads (bounded: 503 past MAX_WAITING)."""
    global _pool, _in_flight
    if _in_flight >= MAX_WAITING:
        raise PulseboardError(UNAVAILABLE, "too many token exchanges waiting for JupyterHub: try again shortly")
    if _pool is None:
        _pool = ThreadPoolExecutor(HUB_THREADS, thread_name_prefix="pulseboard-hub")
    _in_flight += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)
    finally:
        _in_flight -= 1


async def exchange_token(request: Request) -> Response:
    """`POST token`: a JupyterHub token in, `{"token", "sub", "exp", "read", "publish"}` out."""
    node = request.app.state.node
    node.limits.take_exchange(request.client.host if request.client else "unknown")  # 429 past the rate
    hub_token = hub_token_from(request.headers)
    config = HubConfig.from_env()
    secret: str | None = node.settings.secret
    if not secret:
        raise PulseboardError(UNAVAILABLE, "hub mode needs PULSEBOARD_SECRET to sign tokens")
    model = await on_hub_thread(ask_hub, config.api_url, hub_token)
    user = check_owner(model, config)
    groups = [g for g in model.get("groups") or [] if isinstance(g, str)]
    admin = model.get("admin")
    if admin is None and (config.policy.admin.read or config.policy.admin.publish):
        # A narrow token's `GET /user` names the user and groups but not the admin flag:
        # ask with the service's own token (it needs the `read:users` scope for that).
        admin = (await on_hub_thread(ask_admin_flag, config.api_url, user)) is True
    read, publish = config.grants_for(user, groups, admin is True)
    now = int(time.time())
    extra: dict[str, Any] = {}
    if node.settings.issuer:
        extra["iss"] = node.settings.issuer
    if node.settings.audience:
        extra["aud"] = node.settings.audience
    token = mint_token(secret, user, read, publish, config.ttl, **extra)
    log.info("hub: issued a token for %s", user)
    return JSONResponse(
        {"token": token, "sub": user, "exp": now + config.ttl, "read": read, "publish": publish},
        headers={"Cache-Control": "no-store"},
    )
