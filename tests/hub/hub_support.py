"""A real JupyterHub running examples/jupyterhub_config.py as written.

The test's own jupyterhub_config.py sets only what a test machine needs (free ports, the
DummyAuthenticator, a local spawner, a temp database), then `load_subconfig`s the example
and adds a `tester` service that makes users, groups and tokens through the REST API.
The example's knobs come from the Hub's environment, as an admin would set them:
PULSEBOARD_PORT, PULSEBOARD_SECRET_FILE, PULSEBOARD_HUB_POLICY, PULSEBOARD_HUB_TTL.
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
import urllib.parse
from pathlib import Path
from typing import Any

import psutil

from e2e.jupyter_support import LAB_SETTINGS, TESTER_TOKEN, configurable_http_proxy, http
from support import ROOT, free_port, wait_until

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


def notebook(cells: list[str]) -> str:
    return json.dumps({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                    "name": "python3"}},
        "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None,
                   "outputs": [], "source": src} for i, src in enumerate(cells)],
    })


class ExampleHub:
    """JupyterHub + the example's pulseboard service + users' JupyterLabs in `root`."""

    def __init__(self, ttl: int = 3600) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pb-exhub-"))
        self.root = self.dir / "notebooks"
        self.root.mkdir()
        self.public_port, self.api_port, self.hub_port, self.pulseboard_port = (free_port() for _ in range(4))
        self.secret_file = self.dir / "pulseboard-secret"
        self.policy_file = self.dir / "policy.yaml"
        self.policy_file.write_text(POLICY)
        self.ttl = ttl
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}/hub/api"

    @property
    def service_url(self) -> str:
        return self.public_url + "/services/pulseboard"

    @property
    def direct_service_url(self) -> str:
        return f"http://127.0.0.1:{self.pulseboard_port}/services/pulseboard"

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
        return textwrap.dedent(f"""
            c = get_config()
            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {self.public_port}
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {self.hub_port}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.api_port}"
            c.ConfigurableHTTPProxy.command = [{configurable_http_proxy()!r}]
            c.ConfigurableHTTPProxy.auth_token = "{secrets.token_hex(16)}"
            c.JupyterHub.authenticator_class = "dummy"
            c.Authenticator.allow_all = True
            c.Authenticator.admin_users = {{"root-ann"}}
            c.JupyterHub.db_url = "sqlite:///{self.dir}/jupyterhub.sqlite"
            c.JupyterHub.cookie_secret = bytes.fromhex("{secrets.token_hex(32)}")
            c.JupyterHub.spawner_class = "simple"
            c.Spawner.cmd = [{sys.executable!r}, "-m", "jupyterhub.singleuser"]
            c.Spawner.args = [
                "--allow-root", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",
            ]
            c.Spawner.default_url = "/lab"
            c.Spawner.notebook_dir = {str(self.root)!r}
            c.Spawner.start_timeout = 120
            c.Spawner.http_timeout = 120

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

    def log(self) -> str:
        path = self.dir / "hub.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 90.0) -> ExampleHub:
        (self.dir / "jupyterhub_config.py").write_text(self.config())
        env = dict(
            os.environ,
            PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            PULSEBOARD_PORT=str(self.pulseboard_port),
            PULSEBOARD_SECRET_FILE=str(self.secret_file),
            PULSEBOARD_DATA_DIR=str(self.dir / "pulseboard-data"),  # each Hub its own store
            PULSEBOARD_HUB_POLICY=str(self.policy_file),
            PULSEBOARD_HUB_TTL=str(self.ttl),
            PYTHONUNBUFFERED="1",
        )
        for name in ("PULSEBOARD_URL", "PULSEBOARD_TOKEN", "PULSEBOARD_HUB_URL", "PULSEBOARD_SECRET"):
            env.pop(name, None)
        with (self.dir / "hub.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(self.dir / "jupyterhub_config.py")],
                cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log()}")
            return http("GET", self.service_url + "/healthz")[0] == 200

        wait_until(up, timeout=timeout, interval=0.1, what="JupyterHub and the example's pulseboard service")
        return self

    def user_token(self, name: str, **body: Any) -> str:
        status, _ = http("POST", f"{self.api_url}/users/{name}", TESTER_TOKEN)
        assert status in (201, 409), f"creating user {name}: {status}"
        status, answer = http("POST", f"{self.api_url}/users/{name}/tokens", TESTER_TOKEN, body=body or {})
        assert status == 201, f"creating a token for {name}: {status} {answer}"
        token: str = answer["token"]
        return token

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

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.reap_service()
        shutil.rmtree(self.dir, ignore_errors=True)

    def reap_service(self) -> None:
        """A Hub that died early leaves its managed pulseboard service running: end it (ours by its port)."""
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = p.info["cmdline"] or []
            if "serve" in cmd and "--hub" in cmd and str(self.pulseboard_port) in cmd:
                with contextlib.suppress(psutil.Error):
                    p.terminate()
                    p.wait(10)
