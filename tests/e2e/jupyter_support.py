"""Real Jupyter processes for tests: a JupyterLab (own port, token auth, isolated config and
settings) and a JupyterHub (DummyAuthenticator, configurable-http-proxy from npm) running
`pulseboard serve --hub` as a managed service at /services/pulseboard/."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from support import ROOT, SECRET, free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

# JupyterLab's own news and update checks would pop a notification and reach outside.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False,
    },
}


class JupyterLabProcess:
    """`jupyter lab` on a free port with a token, serving `root_dir`; logs to a file."""

    def __init__(self, root_dir: Path, env: dict[str, str] | None = None) -> None:
        self.root_dir = root_dir
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.home = Path(tempfile.mkdtemp(prefix="pb-jlab-"))
        self.log_path = self.home / "jupyterlab.log"
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        # Isolate from the user's Jupyter config, settings and workspaces.
        self.env.update(
            JUPYTER_CONFIG_DIR=str(self.home / "config"),
            JUPYTERLAB_SETTINGS_DIR=str(self.home / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.home / "workspaces"),
            JUPYTER_RUNTIME_DIR=str(self.home / "runtime"),
            IPYTHONDIR=str(self.home / "ipython"),
        )
        # Kernels run the same interpreter (and see the same packages) as the test.
        self.env["PATH"] = f"{Path(sys.executable).parent}:{self.env.get('PATH', '')}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> JupyterLabProcess:
        for name, value in LAB_SETTINGS.items():
            path = self.home / "settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}", "--ServerApp.open_browser=False",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
            )
        wait_until(self.ready, timeout, interval=0.1, what="JupyterLab to answer /api/status")
        return self

    def api(self, path: str) -> Any:
        req = urllib.request.Request(
            f"{self.url}/api/{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def shutdown_kernels(self) -> None:
        """Shut every kernel down (`DELETE /api/kernels/<id>`), so the next notebook starts alone."""
        for k in self.api("kernels"):
            req = urllib.request.Request(
                f"{self.url}/api/kernels/{k['id']}", method="DELETE",
                headers={"Authorization": f"token {self.token}"},
            )
            with urllib.request.urlopen(req, timeout=30):
                pass

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.output()}")
        try:
            return "started" in self.api("status")
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGTERM lets JupyterLab shut its kernels down; the process group catches leftovers.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        shutil.rmtree(self.home, ignore_errors=True)


# --- reading charts in a notebook page ------------------------------------------------


def chart_points(page, channel: str) -> int:  # type: ignore[no-untyped-def]
    """Points the chart of `channel` holds, read through the widget's debug hook."""
    n: int = page.evaluate(
        """(ch) => {
            for (const el of document.querySelectorAll('.pulseboard-chart')) {
                const hook = el.__pulseboard;
                if (hook && hook.series().some((s) => s.startsWith(ch + ':'))) return hook.points();
            }
            return -1;
        }""",
        channel,
    )
    return n


def chart_seqs(page, channel: str) -> list[int]:  # type: ignore[no-untyped-def]
    seqs: list[int] = page.evaluate(
        """(ch) => {
            for (const el of document.querySelectorAll('.pulseboard-chart')) {
                const hook = el.__pulseboard;
                if (hook && hook.series().some((s) => s.startsWith(ch + ':'))) return hook.seqs(ch);
            }
            return [];
        }""",
        channel,
    )
    return seqs


def kernel_ready(page, kernel_idle: Callable[[], bool]) -> bool:  # type: ignore[no-untyped-def]
    """The kernel is idle; a kernel-picker dialog, if JupyterLab shows one, is accepted."""
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
    if select.count():
        select.click()
    return kernel_idle()


# --- JupyterHub -----------------------------------------------------------------------

CHP_DIR = ROOT / ".work" / "chp"
TESTER_TOKEN = "tester-service-token-0123456789abcdef"
ACCESS = "access:services!service=pulseboard"  # PULSEBOARD_HUB_SCOPE of the service under test


def configurable_http_proxy() -> str:
    """The `configurable-http-proxy` command: on PATH, or npm-installed under .work/chp.

    Version 4 runs on Node 18 (Debian stable), which the project supports; 5 needs Node 20.
    """
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    local = CHP_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
    if not local.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("hub tests need npm to install configurable-http-proxy: run scripts/setup")
        CHP_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--prefix", str(CHP_DIR), "--no-audit", "--no-fund", "configurable-http-proxy@4"],
            check=True, capture_output=True, timeout=300,
        )
    return str(local)


def http(method: str, url: str, token: str | None = None, scheme: str = "token",
         body: Any = None) -> tuple[int, Any]:
    """(status, parsed JSON body); status 0 when nothing answers."""
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    elif method == "POST":
        data = b""
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, None


class HubProcess:
    """A JupyterHub with pulseboard as a managed service and a `tester` admin service.

    `extra_config` is appended to jupyterhub_config.py (spawner settings and the like).
    """

    def __init__(self, pulseboard_args: list[str] | None = None, extra_config: str = "") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pb-hub-"))
        self.public_port, self.api_port, self.hub_port, self.pulseboard_port = (
            free_port() for _ in range(4)
        )
        self.pulseboard_args = pulseboard_args or ["--collect-interval", "0"]
        self.extra_config = extra_config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def public_url(self) -> str:
        """The proxy, as a browser sees it."""
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def api_url(self) -> str:
        """The Hub's REST API, as services see it."""
        return f"http://127.0.0.1:{self.hub_port}/hub/api"

    @property
    def service_url(self) -> str:
        """The pulseboard service through the proxy."""
        return self.public_url + "/services/pulseboard"

    @property
    def direct_service_url(self) -> str:
        """The pulseboard service itself (as a kernel on the same machine reaches it)."""
        return f"http://127.0.0.1:{self.pulseboard_port}/services/pulseboard"

    def config(self) -> str:
        pb_cmd = [sys.executable, "-m", "pulseboard_server", "serve", "--hub",
                  "--port", str(self.pulseboard_port), "--base-path", "/services/pulseboard/",
                  "--data-dir", f"{self.dir}/store",  # its own sqlite:// store, never the user's
                  *self.pulseboard_args]
        return textwrap.dedent(f"""
            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {self.public_port}
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {self.hub_port}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.api_port}"
            c.ConfigurableHTTPProxy.command = [{configurable_http_proxy()!r}]
            c.ConfigurableHTTPProxy.auth_token = "{secrets.token_hex(16)}"
            c.JupyterHub.authenticator_class = "dummy"
            c.Authenticator.allow_all = True
            c.JupyterHub.db_url = "sqlite:///{self.dir}/jupyterhub.sqlite"
            c.JupyterHub.cookie_secret = bytes.fromhex("{secrets.token_hex(32)}")
            c.JupyterHub.services = [
                {{
                    "name": "pulseboard",
                    "url": "http://127.0.0.1:{self.pulseboard_port}",
                    "command": {pb_cmd!r},
                    "environment": {{
                        "PULSEBOARD_SECRET": {SECRET!r},
                        "PULSEBOARD_HUB_SCOPE": {ACCESS!r},
                        "PYTHONUNBUFFERED": "1",
                    }},
                }},
                {{"name": "tester", "api_token": {TESTER_TOKEN!r}}},
            ]
            c.JupyterHub.load_roles = [
                {{"name": "tester", "scopes": ["admin:users", "tokens"], "services": ["tester"]}},
                {{"name": "user", "scopes": ["self", {ACCESS!r}]}},
            ]
        """) + textwrap.dedent(self.extra_config)

    def log(self) -> str:
        path = self.dir / "hub.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 60.0) -> HubProcess:
        (self.dir / "jupyterhub_config.py").write_text(self.config())
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
        with (self.dir / "hub.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(self.dir / "jupyterhub_config.py")],
                cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log()}")
            status, _ = http("GET", self.service_url + "/healthz")
            return status == 200

        wait_until(up, timeout=timeout, interval=0.1, what="JupyterHub and the pulseboard service")
        return self

    def user_token(self, name: str, **body: Any) -> str:
        """Make Hub user `name` (if new) and a Hub API token of theirs, through the REST API."""
        status, _ = http("POST", f"{self.api_url}/users/{name}", TESTER_TOKEN)
        assert status in (201, 409), f"creating user {name}: {status}"
        status, answer = http("POST", f"{self.api_url}/users/{name}/tokens", TESTER_TOKEN, body=body or {})
        assert status == 201, f"creating a token for {name}: {status} {answer}"
        token: str = answer["token"]
        return token

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.reap_leftovers()
        shutil.rmtree(self.dir, ignore_errors=True)

    def reap_leftovers(self) -> None:
        """A Hub that died early leaves its proxy and managed service running: end those."""
        pids = []
        pid_file = self.dir / "jupyterhub-proxy.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError):
                pids.append(int(pid_file.read_text().strip()))
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = p.info["cmdline"] or []
            if "pulseboard_server" in cmd and "--hub" in cmd and str(self.pulseboard_port) in cmd:
                pids.append(p.info["pid"])
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                proc.terminate()
                proc.wait(10)
