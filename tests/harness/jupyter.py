"""A real JupyterLab (or Notebook 7) for tests: its own port, token auth, isolated config,
settings and workspaces. (JupyterHub runners: harness.hub.)"""

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
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.servers import free_port, wait_until

# JupyterLab's own news and update checks would pop a notification and reach outside.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False,
    },
}


class JupyterApiError(RuntimeError):
    """A 5xx from Jupyter's own REST API; the message ends with its log."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class JupyterLabProcess:
    """`jupyter lab` on a free port with a token, serving `root_dir`; logs to a file.

    `app="notebook"` runs Notebook 7 (`python -m notebook`) instead: the same Jupyter server
    with the same ServerApp flags, its own single-document pages."""

    def __init__(self, root_dir: Path, env: dict[str, str] | None = None, app: str = "jupyterlab") -> None:
        if app not in ("jupyterlab", "notebook"):
            raise ValueError(f"app must be 'jupyterlab' or 'notebook', not {app!r}")
        self.app = app
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

    def notebook_url(self, name: str) -> str:
        """The page that opens notebook `name` (JupyterLab: in a fresh workspace, not the tabs
        of a test before)."""
        if self.app == "notebook":
            return f"{self.url}/notebooks/{name}?token={self.token}"
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"

    def start(self, timeout: float = 60.0) -> JupyterLabProcess:
        for name, value in LAB_SETTINGS.items():
            path = self.home / "settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        cmd = [
            sys.executable, "-m", self.app, "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}", "--ServerApp.open_browser=False",
        ]
        if self.app == "jupyterlab":
            cmd += [
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
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            if e.code < 500:
                raise
            # A 5xx from Jupyter itself: its log says why (the error alone does not).
            log = self.output()[-4000:]
            raise JupyterApiError(e.code, f"GET /api/{path}: HTTP {e.code}; JupyterLab's log ends:\n{log}") from e

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
            raise RuntimeError(f"{self.app} exited with {self.proc.returncode}:\n{self.output()}")
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


def kernel_idle(jlab: JupyterLabProcess) -> bool:
    """Some kernel is idle. A 500 from /api/kernels while a kernel starts (seen on a loaded
    machine) means "not yet", like an empty list."""
    try:
        return any(k["execution_state"] == "idle" for k in jlab.api("kernels"))
    except JupyterApiError:  # a 5xx while the kernel starts: not yet
        return False


def run_all(page: Any, jlab: JupyterLabProcess, notebook: str) -> None:
    """Open `notebook` in JupyterLab, wait for its kernel, and Run All Cells."""
    page.goto(f"{jlab.url}/lab/tree/{notebook}?token={jlab.token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    wait_until(lambda: kernel_idle(jlab), timeout=60, interval=0.2, what="the notebook's kernel to be idle")
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


# --- Voila ---------------------------------------------------------------------------


@contextlib.contextmanager
def voila(notebook: Path, env: dict[str, str]) -> Iterator[str]:
    """`voila NOTEBOOK` on a free port (cwd: the notebook's folder); yields its URL."""
    port = free_port()
    folder = notebook.parent
    env = dict(env, JUPYTER_RUNTIME_DIR=str(folder / "runtime"))
    log_path = folder / "voila.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "voila"), notebook.name, f"--port={port}", "--no-browser",
             "--Voila.ip=127.0.0.1"],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"voila exited with {proc.returncode}: {log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/voila/static/voila.js", timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_until(up, timeout=60, interval=0.2, what="voila to answer")
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


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
