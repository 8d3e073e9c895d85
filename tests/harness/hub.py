"""Real JupyterHubs for tests (DummyAuthenticator, configurable-http-proxy from npm).

`HubProcess` runs `pulseboard serve --hub` as a managed service at /services/pulseboard/ with a
config written here; `ExampleHub` runs examples/jupyterhub_config.py as written, with users'
JupyterLabs. Both add a `tester` service that makes users, groups and tokens through the REST API,
and both end everything they started (the proxy and the service too) when stopped.
"""

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
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from harness.jupyter import LAB_SETTINGS
from harness.servers import ROOT, free_port, wait_until
from harness.tokens import SECRET

CHP_DIR = ROOT / ".work" / "chp"
TESTER_TOKEN = "tester-service-token-0123456789abcdef"
ACCESS = "access:services!service=pulseboard"  # PULSEBOARD_HUB_SCOPE of the service under test
EXAMPLE = ROOT / "examples" / "jupyterhub_config.py"
# Extra grants by Hub group, as an admin would write them (YAML).
POLICY = """\
groups:
  team-a:
    read: [team-a.*]
    publish: [team-a.*]
admin:
  read: ["*"]
"""


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


H = TypeVar("H", bound="HubRunner")


class HubRunner:
    """What every test Hub shares: ports, URLs, start, the REST API as `tester`, and stop."""

    prefix = "pb-hub-"
    what = "JupyterHub and the pulseboard service"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=self.prefix))
        self.public_port, self.api_port, self.hub_port, self.pulseboard_port = (free_port() for _ in range(4))
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

    def base_config(self) -> str:
        """Ports, the proxy, the dummy authenticator and a temp database."""
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
        """)

    def config(self) -> str:
        raise NotImplementedError

    @staticmethod
    def lab_spawner(notebook_dir: Path, timeout: int) -> str:
        """Config lines that spawn each user's JupyterLab locally, serving `notebook_dir`."""
        return textwrap.dedent(f"""
            c.JupyterHub.spawner_class = "simple"
            c.Spawner.cmd = [{sys.executable!r}, "-m", "jupyterhub.singleuser"]
            c.Spawner.args = [
                "--allow-root", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",
            ]
            c.Spawner.default_url = "/lab"
            c.Spawner.notebook_dir = {str(notebook_dir)!r}
            c.Spawner.start_timeout = {timeout}
            c.Spawner.http_timeout = {timeout}
        """)

    def env(self) -> dict[str, str]:
        return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")

    def log(self) -> str:
        path = self.dir / "hub.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self: H, timeout: float = 60.0) -> H:
        (self.dir / "jupyterhub_config.py").write_text(self.config())
        with (self.dir / "hub.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(self.dir / "jupyterhub_config.py")],
                cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True,
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log()}")
            return http("GET", self.service_url + "/healthz")[0] == 200

        wait_until(up, timeout=timeout, interval=0.1, what=self.what)
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
            if "serve" in cmd and "--hub" in cmd and str(self.pulseboard_port) in cmd:
                pids.append(p.info["pid"])
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                proc.terminate()
                proc.wait(10)


class HubProcess(HubRunner):
    """A JupyterHub with pulseboard as a managed service and a `tester` admin service.

    `extra_config` is appended to jupyterhub_config.py (spawner settings and the like).
    """

    def __init__(self, pulseboard_args: list[str] | None = None, extra_config: str = "") -> None:
        super().__init__()
        self.pulseboard_args = pulseboard_args or ["--collect-interval", "0"]
        self.extra_config = extra_config

    def config(self) -> str:
        pb_cmd = [sys.executable, "-m", "pulseboard_server", "serve", "--hub",
                  "--port", str(self.pulseboard_port), "--base-path", "/services/pulseboard/",
                  "--data-dir", f"{self.dir}/store",  # its own sqlite:// store, never the user's
                  *self.pulseboard_args]
        return self.base_config() + textwrap.dedent(f"""
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


class ExampleHub(HubRunner):
    """JupyterHub running examples/jupyterhub_config.py as written, users' JupyterLabs in `root`.

    The test's own config sets only what a test machine needs (free ports, the dummy
    authenticator, a local spawner, a temp database), then `load_subconfig`s the example and adds
    the `tester` service. The example's knobs come from the Hub's environment, as an admin would
    set them: PULSEBOARD_PORT, PULSEBOARD_SECRET_FILE, PULSEBOARD_HUB_POLICY, PULSEBOARD_HUB_TTL.
    """

    prefix = "pb-exhub-"
    what = "JupyterHub and the example's pulseboard service"

    def __init__(self, ttl: int = 3600) -> None:
        super().__init__()
        self.root = self.dir / "notebooks"
        self.root.mkdir()
        self.secret_file = self.dir / "pulseboard-secret"
        self.policy_file = self.dir / "policy.yaml"
        self.policy_file.write_text(POLICY)
        self.ttl = ttl

    @property
    def secret(self) -> str:
        return self.secret_file.read_text().strip()

    def config(self) -> str:
        settings = self.root / ".settings"
        # Every cell rendered (no windowing), so tests can read any cell's output.
        lab = {**LAB_SETTINGS, "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"}}
        for name, value in lab.items():
            (settings / name).parent.mkdir(parents=True, exist_ok=True)
            (settings / name).write_text(json.dumps(value))
        config = "c = get_config()\n" + self.base_config() + self.lab_spawner(self.root, 120)
        return config + textwrap.dedent(f"""
            c.Authenticator.admin_users = {{"root-ann"}}
            load_subconfig({str(EXAMPLE)!r})  # the file admins copy, as written

            c.JupyterHub.services.append({{"name": "tester", "api_token": {TESTER_TOKEN!r}}})
            c.JupyterHub.load_roles.append(
                {{"name": "tester", "scopes": ["admin:users", "admin:groups", "tokens"], "services": ["tester"]}}
            )
            c.Spawner.environment.update({{
                "JUPYTERLAB_SETTINGS_DIR": {str(settings)!r},
                # One per user: a shared one would reopen alice's notebook in bob's JupyterLab.
                "JUPYTERLAB_WORKSPACES_DIR": lambda spawner: {str(self.dir)!r} + "/workspaces-" + spawner.user.name,
            }})
        """)

    def env(self) -> dict[str, str]:
        env = dict(
            super().env(),
            PULSEBOARD_PORT=str(self.pulseboard_port),
            PULSEBOARD_SECRET_FILE=str(self.secret_file),
            PULSEBOARD_DATA_DIR=str(self.dir / "pulseboard-data"),  # each Hub its own store
            PULSEBOARD_HUB_POLICY=str(self.policy_file),
            PULSEBOARD_HUB_TTL=str(self.ttl),
            PYTHONUNBUFFERED="1",
        )
        for name in ("PULSEBOARD_URL", "PULSEBOARD_TOKEN", "PULSEBOARD_HUB_URL", "PULSEBOARD_SECRET"):
            env.pop(name, None)
        return env

    def start(self, timeout: float = 90.0) -> ExampleHub:
        return super().start(timeout)

    def add_to_group(self, group: str, user: str) -> None:
        status, _ = http("POST", f"{self.api_url}/groups/{group}", TESTER_TOKEN)
        assert status in (201, 409), f"creating group {group}: {status}"
        status, answer = http("POST", f"{self.api_url}/groups/{group}/users", TESTER_TOKEN, body={"users": [user]})
        assert status == 200, f"adding {user} to {group}: {status} {answer}"

    def login(self, context: Any, user: str, notebook_name: str) -> Any:
        """A page logged in as `user` (any password), their server spawned, `notebook_name` open."""
        page = context.new_page()
        spawn = f"/hub/spawn/{user}?next=/user/{user}/lab/tree/{notebook_name}"
        page.goto(f"{self.public_url}/hub/login?next={urllib.parse.quote(spawn)}")
        page.fill("#username_input", user)
        page.fill("#password_input", "any")
        page.click("#login_submit")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
        return page
