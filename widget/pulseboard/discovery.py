"""How the kernel finds the server's URL and a token for the browser to use.

Order (`discover`):

1. the `url` / `token` arguments;
2. the `PULSEBOARD_URL` / `PULSEBOARD_TOKEN` environment variables; `PULSEBOARD_TOKEN_FILE`,
   when set, wins over `PULSEBOARD_TOKEN` and is re-read whenever it changes, so a rotator
   can keep a long run's token fresh (tokenfile.py);
3. JupyterHub: when the kernel runs under a Hub (`JUPYTERHUB_API_TOKEN` is set) and the
   pulseboard service's address is known (`PULSEBOARD_HUB_URL`, else the URL from steps
   1-2), `POST <server>/token` with `Authorization: token <hub token>` returns a JWT for
   the Hub user. The browser then connects to `url` (or `PULSEBOARD_HUB_URL` when no other
   URL is set).
4. JupyterLab with `jupyter-server-proxy` (no Hub, nothing configured): the kernel asks
   its Jupyter server for `<base_url>pulseboard/`, which starts `pulseboard serve` on
   demand (`serverproxy.py`), and mints a token with the secret they share.

`discover_for_kernel` is the same for code that runs in the kernel (`pulseboard.publish`):
it prefers `PULSEBOARD_HUB_URL` when `PULSEBOARD_URL` is a browser-relative path such as
`/services/pulseboard/`, which only a browser can resolve.

When none of these gives both a URL and a token, `DiscoveryError` says what to set and
what was tried; its `detail` is written for a person and is what the widget shows
instead of a chart.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

from .credhttp import open_request
from .protocol import UNAUTHORIZED, UNAVAILABLE, PulseboardError
from .tokenfile import TokenFileError, file_token

EXCHANGE_TIMEOUT = 10.0
REUSE_MARGIN = 300.0  # an exchanged token is reused until this many seconds before it expires


class DiscoveryError(PulseboardError):
    """No usable server URL or token; `detail` says what to do about it."""


class NotConfigured(DiscoveryError):
    """Nothing names a server URL or a token: a setting is missing, which waiting can't fix
    (as opposed to a Hub or a token exchange that is away for now)."""


_cache: dict[tuple[str, str], tuple[str, float]] = {}
_cache_lock = threading.Lock()
# Browser URL -> kernel URL of a server found through jupyter-server-proxy (step 4).
_proxied: dict[str, str] = {}


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (not verified: for scheduling a refresh only)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
        return float(exp) if isinstance(exp, (int, float)) else None
    except (IndexError, ValueError, AttributeError):
        return None


def exchange_hub_token(server_url: str, hub_token: str, timeout: float = EXCHANGE_TIMEOUT) -> str:
    """Swap a JupyterHub token for a pulseboard JWT at `server_url` (`POST token`)."""
    req = urllib.request.Request(
        server_url.rstrip("/") + "/token",
        data=b"",
        method="POST",
        headers={"Authorization": f"token {hub_token}", "Accept": "application/json"},
    )
    try:
        with open_request(req, timeout=timeout) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("detail", e.reason)
        except (ValueError, AttributeError):
            detail = str(e.reason)
        if e.code == 404:
            detail = "no token exchange here: is the server running with --hub?"
        code = UNAUTHORIZED if e.code in (401, 403) else UNAVAILABLE
        raise DiscoveryError(
            code, f"the pulseboard server at {server_url} refused the JupyterHub token ({e.code}): {detail}"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise DiscoveryError(
            UNAVAILABLE, f"cannot reach the pulseboard server at {server_url} for a token: {reason}"
        ) from None
    token = answer.get("token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise DiscoveryError(UNAVAILABLE, f"the pulseboard server at {server_url} sent no token")
    return token


def hub_token(server_url: str, hub_api_token: str, refresh: bool = False) -> str:
    """A JWT from the Hub exchange, reused across charts until close to its expiry."""
    key = (server_url.rstrip("/"), hub_api_token)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and not refresh and cached[1] - REUSE_MARGIN > time.time():
        return cached[0]
    token = exchange_hub_token(server_url, hub_api_token)
    with _cache_lock:
        _cache[key] = (token, token_expiry(token) or time.time() + 3600)
    return token


def discover(
    url: str | None = None,
    token: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    refresh: bool = False,
) -> tuple[str, str]:
    """The server URL the browser should use and a token for it; see the module's docstring.

    `refresh=True` skips the cached Hub exchange (to get a fresh token before expiry).
    """
    env = os.environ if env is None else env
    url = url or env.get("PULSEBOARD_URL") or None
    if not token:
        try:
            token = file_token(env)
        except TokenFileError as e:
            raise DiscoveryError(e.code, e.detail) from None
    token = token or env.get("PULSEBOARD_TOKEN") or None
    if url and token:
        return url, token
    hub_api_token = env.get("JUPYTERHUB_API_TOKEN")
    exchange_url = env.get("PULSEBOARD_HUB_URL") or url
    if token is None and hub_api_token and exchange_url:
        return url or exchange_url, hub_token(exchange_url, hub_api_token, refresh=refresh)
    tried = ""
    if token is None and (url is None or url in _proxied):
        from .serverproxy import find_proxied

        found = find_proxied(env)
        if not isinstance(found, str):
            browser_url, kernel_url, minted = found
            with _cache_lock:
                _proxied[browser_url] = kernel_url
            return browser_url, minted
        tried = f" (jupyter-server-proxy: {found})"
    if url is None and token is None:
        raise NotConfigured(
            UNAVAILABLE,
            "no pulseboard server configured: pass url= and token=, set PULSEBOARD_URL and "
            "PULSEBOARD_TOKEN, under JupyterHub set PULSEBOARD_HUB_URL, or in JupyterLab "
            f"install jupyter-server-proxy{tried}",
        )
    if url is None:
        raise NotConfigured(UNAVAILABLE, "no pulseboard server URL: pass url= or set PULSEBOARD_URL")
    raise NotConfigured(
        UNAUTHORIZED,
        "no pulseboard token: pass token=, set PULSEBOARD_TOKEN (`pulseboard token --sub NAME`), "
        "or run under JupyterHub with the server in --hub mode",
    )


def is_absolute(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def discover_for_kernel(
    url: str | None = None,
    token: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """Like `discover`, but the URL is one the kernel itself can reach (for publishing)."""
    env = os.environ if env is None else env
    url, token = discover(url, token, env=env)
    if not is_absolute(url) and url in _proxied:
        return _proxied[url], token
    if not is_absolute(url):
        hub_url = env.get("PULSEBOARD_HUB_URL")
        if not hub_url:
            raise NotConfigured(
                UNAVAILABLE,
                f"PULSEBOARD_URL {url!r} is a browser-relative path: set PULSEBOARD_HUB_URL to the "
                "server's address as the kernel reaches it",
            )
        url = hub_url
    return url, token
