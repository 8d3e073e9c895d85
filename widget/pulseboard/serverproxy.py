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

import fcntl
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

from .discovery import DiscoveryError
from .protocol import UNAVAILABLE

PREFIX = "pulseboard/"
TOKEN_TTL = 12 * 3600
START_TIMEOUT = 30.0  # seconds for the proxied server to answer after it is started
PROXY_STORE = "jupyterlab"  # the on-demand server's store, under the data dir


def runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("JUPYTER_RUNTIME_DIR"):
        return Path(env["JUPYTER_RUNTIME_DIR"])
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:  # a plain `pip install pulseboard` outside Jupyter: Jupyter's default place
        return Path(env.get("JUPYTER_DATA_DIR") or Path.home() / ".local/share/jupyter") / "runtime"
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
        "--host", "127.0.0.1", "--port", str(port), "--base-path", base_path, *_store_args(),
    ]


def store_dir(env: Mapping[str, str] | None = None) -> Path:
    """The on-demand server's own store: `<data dir>/jupyterlab`, apart from the default store
    that a `pulseboard serve` of the user's may hold (one server per store)."""
    env = os.environ if env is None else env
    base = env.get("PULSEBOARD_DATA_DIR") or str(Path(env.get("XDG_DATA_HOME") or Path.home() / ".local/share")
                                                 / "pulseboard")
    return Path(base) / PROXY_STORE


def _store_args() -> list[str]:
    """Its own store, or, when another JupyterLab's on-demand server holds that one, nothing on
    disk (`memory://`) rather than a start that fails."""
    path = store_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / "pulseboard.db.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return ["--data-dir", str(path)]  # the server says what is wrong with it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"pulseboard: {path} is in use by another JupyterLab's pulseboard; this one keeps its "
              "data in memory", file=sys.stderr, flush=True)
        return ["--broker", "memory://"]
    finally:
        os.close(fd)  # (closing drops the lock: the server takes it again at once)
    return ["--data-dir", str(path)]


def _environment() -> dict[str, str]:
    # A start that fails answers 503 with its reason instead of exiting (pulseboard_server.explain):
    # the proxy would otherwise start it again and again while the kernel waits in vain.
    return {"PULSEBOARD_SECRET": shared_secret(), "PULSEBOARD_EXPLAIN_FAILURE": "1"}


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
            with urllib.request.urlopen(req, timeout=START_TIMEOUT + 5) as resp:
                json.loads(resp.read())
        except urllib.error.HTTPError as e:
            reason = _failure_of(e)
            if reason:  # the server started and said why it cannot serve: that is the answer
                raise DiscoveryError(UNAVAILABLE, f"the pulseboard server JupyterLab runs at "
                                     f"{url}{PREFIX}: {reason}; fix that, then restart JupyterLab") from None
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


def _failure_of(e: urllib.error.HTTPError) -> str:
    """The startup error a failed on-demand server answers with (503 JSON), else ''."""
    if e.code != 503:
        return ""
    try:
        detail = json.loads(e.read(4096)).get("detail")
    except (ValueError, AttributeError, OSError):
        return ""
    return detail if isinstance(detail, str) else ""


def mint(secret: str) -> str:
    """A token for the notebook's own user: the proxied server is theirs alone."""
    import time

    import jwt

    now = int(time.time())
    claims = {"sub": getpass.getuser(), "iat": now, "exp": now + TOKEN_TTL, "read": ["*"], "publish": ["*"]}
    return jwt.encode(claims, secret, algorithm="HS256")
