"""pulseboard under a plain JupyterLab, with no Hub and no configuration.

With `jupyter-server-proxy` installed, the Jupyter server serves `pulseboard serve` at
`<base_url>pulseboard/`, started on demand (the first request starts it), through the
`jupyter_serverproxy_servers` entry point `setup_pulseboard`. The browser reaches it there,
same origin, behind Jupyter's own login. The kernel finds it with `find_proxied` (the last
step of `discovery.discover`): it asks its Jupyter server for `pulseboard/healthz` (which
starts the server), then mints a token with the secret both sides share.

The shared secret lives in the Jupyter runtime directory (`pulseboard-proxy-secret`,
mode 0600, made by whichever side needs it first); the proxied server's port is written
next to it (`pulseboard-proxy-<jupyter server pid>.json`) so the kernel can publish to it
directly. Both files are readable by the user only, like Jupyter's own server files.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .credhttp import open_request

PREFIX = "pulseboard/"
TOKEN_TTL = 12 * 3600
START_TIMEOUT = 30.0  # seconds for the proxied server to answer after it is started


def runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("JUPYTER_RUNTIME_DIR"):
        return Path(env["JUPYTER_RUNTIME_DIR"])
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def shared_secret(env: Mapping[str, str] | None = None) -> str:
    """The secret the proxied server signs with, made (mode 0600) if missing."""
    path = runtime_dir(env) / "pulseboard-proxy-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # the other side made it first
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return path.read_text().strip()


def _state_path(server_pid: int, env: Mapping[str, str] | None = None) -> Path:
    return runtime_dir(env) / f"pulseboard-proxy-{server_pid}.json"


# --- in the Jupyter server: the entry point ----------------------------------------------


def _command(port: int, base_url: str) -> list[str]:
    base_path = f"{base_url.rstrip('/')}/{PREFIX}"
    path = _state_path(os.getpid())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"port": port, "base_path": base_path}, f)
    return [
        sys.executable, "-m", "pulseboard_server", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--base-path", base_path,
    ]


def _environment() -> dict[str, str]:
    return {"PULSEBOARD_SECRET": shared_secret()}


def setup_pulseboard() -> dict[str, Any]:
    """jupyter-server-proxy's settings for `pulseboard` (entry point `jupyter_serverproxy_servers`)."""
    return {
        "command": _command,
        "environment": _environment,
        "absolute_url": True,  # the server runs with --base-path <base_url>pulseboard/
        "timeout": START_TIMEOUT,
        # No launcher tile: the dashboard there would need a token in its URL; charts find it themselves.
        "launcher_entry": {"enabled": False},
    }


# --- in the kernel: finding it ------------------------------------------------------------


def _servers(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """The Jupyter server this kernel runs under (its parent process), if any."""
    if env.get("JPY_PARENT_PID") != str(os.getppid()):
        # Not a kernel a Jupyter server started (jupyter_client sets this): skip importing
        # jupyter_server at all, which a plain script may be doing as it exits.
        return []
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return []
    return [s for s in list_running_servers(str(runtime_dir(env))) if s.get("pid") == os.getppid()]


def find_proxied(env: Mapping[str, str] | None = None) -> tuple[str, str, str] | str:
    """`(browser url, kernel url, token)` of the proxied server, or what was tried (a sentence)."""
    env = os.environ if env is None else env
    servers = _servers(env)
    if not servers:
        return "this kernel does not run under a Jupyter server that lists itself in " + str(runtime_dir(env))
    tried = []
    for server in servers:
        url = str(server.get("url", "")).rstrip("/") + "/"
        auth = {"Authorization": f"token {server.get('token', '')}"}
        req = urllib.request.Request(url + PREFIX + "healthz", headers=auth)
        try:
            with open_request(req, timeout=START_TIMEOUT + 5) as resp:
                json.loads(resp.read())
        except urllib.error.HTTPError as e:
            hint = " (is jupyter-server-proxy installed?)" if e.code == 404 else ""
            tried.append(f"{url}{PREFIX} answered {e.code}{hint}")
            continue
        except (urllib.error.URLError, OSError, ValueError) as e:
            tried.append(f"{url}{PREFIX}: {getattr(e, 'reason', e)}")
            continue
        try:
            state = json.loads(_state_path(int(server["pid"]), env).read_text())
            kernel_url = f"http://127.0.0.1:{int(state['port'])}{state['base_path']}"
        except (OSError, ValueError, KeyError, TypeError):
            kernel_url = url + PREFIX
        browser_url = str(server.get("base_url", "/")).rstrip("/") + "/" + PREFIX
        return browser_url, kernel_url, mint(shared_secret(env))
    return "tried " + "; ".join(tried)


def mint(secret: str) -> str:
    """A token for the notebook's own user: the proxied server is theirs alone."""
    import time

    import jwt

    now = int(time.time())
    claims = {"sub": getpass.getuser(), "iat": now, "exp": now + TOKEN_TTL, "read": ["*"], "publish": ["*"]}
    return jwt.encode(claims, secret, algorithm="HS256")
