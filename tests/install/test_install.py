"""Install as users do: the built wheel, the sdist and `pip install .` from a fresh clone, each
into a plain venv with no test tools, must give a working `LiveChart`, `pulseboard serve` and
the JS bundle; the `lab` and `report` extras resolve and import.

Marked `install` (minutes, and it reaches PyPI and npm): `pytest -m "not install"` skips it.

Dependencies: one venv gets the runtime dependencies, installed by pip from PyPI as a user's
`pip install pulseboard` would (the `Requires-Dist` of the wheel just built, nothing else).
Each artifact then goes into a fresh venv layered on that one (a .pth file: the same effect
as `--system-site-packages`, over a venv holding only the runtime dependencies), and is
installed *with* dependency resolution, so pip checks every requirement against what is
there instead of downloading it three times. A dependency missing from pyproject.toml, or a
test tool the package needs at run time, fails here; the shared development venv, PYTHONPATH
and the source tree are out of sight.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest

from harness.servers import ROOT, free_port, wait_until

pytestmark = pytest.mark.install
TIMEOUT = 900


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    said = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{said}"
    return done.stdout


def plain_env(venv: Path | None = None) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH, no development venv on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith(("PULSEBOARD_", "JUPYTER"))}
    path = ["/usr/local/bin", "/usr/bin", "/bin"]
    env["PATH"] = ":".join(([str(venv / "bin")] if venv else []) + path)
    env["HOME"] = env.get("HOME", "/root")
    env["XDG_DATA_HOME"] = str((venv or Path(tempfile.gettempdir())) / "data")  # the default store: a fresh one
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def make_venv(where: Path, over: Path | None = None) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=300)
    if over is not None:
        (site_packages(where) / "runtime-deps.pth").write_text(str(site_packages(over)) + "\n")
    return where


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


@pytest.fixture(scope="module")
def dist() -> Iterator[Path]:
    out = Path(tempfile.mkdtemp(prefix="pb-dist-"))
    env = plain_env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # `build` is a development tool
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], env)
    yield out
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def runtime_deps(dist: Path) -> Iterator[Path]:
    """A venv with the wheel's runtime dependencies only, installed from PyPI."""
    wheel = next(dist.glob("*.whl"))
    with zipfile.ZipFile(wheel) as z:
        meta = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode())
    reqs = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert any(r.startswith("anywidget") for r in reqs)
    venv = make_venv(Path(tempfile.mkdtemp(prefix="pb-deps-")) / "venv")
    run([str(venv / "bin" / "pip"), "install", "-q", *reqs], plain_env(venv))
    yield venv
    shutil.rmtree(venv.parent, ignore_errors=True)


def install(target: str, deps: Path, where: Path, cwd: Path | None = None) -> tuple[Path, dict[str, str]]:
    venv = make_venv(where / "venv", over=deps)
    env = plain_env(venv)
    run([str(venv / "bin" / "pip"), "install", "-q", target], env, cwd)
    run([str(venv / "bin" / "pip"), "check"], env)
    return venv, env


SMOKE = """
import json, pathlib, pulseboard, pulseboard_server
from pulseboard import LiveChart
chart = LiveChart("x")  # nothing configured: a chart that says so, not an exception
static = pathlib.Path(pulseboard.__file__).parent / "static"
print(json.dumps({"file": pulseboard.__file__, "server": pulseboard_server.__file__, "problem": chart.problem,
                  "js": {p.name: p.stat().st_size for p in static.glob("*.js")}}))
"""


def smoke(venv: Path, env: dict[str, str]) -> None:
    py = str(venv / "bin" / "python")
    got = json.loads(run([py, "-c", SMOKE], env, cwd=venv).strip().splitlines()[-1])
    assert got["file"].startswith(str(venv)) and got["server"].startswith(str(venv)), got  # the installed copy
    assert "no pulseboard server configured" in got["problem"]
    assert {"widget.js", "dashboard.js", "report.js"} <= set(got["js"]) and min(got["js"].values()) > 10_000
    # No test tools came along.
    assert subprocess.run([py, "-c", "import pytest"], env=env, capture_output=True).returncode != 0
    # `pulseboard serve` answers /healthz and serves the dashboard with its bundle.
    port = free_port()
    proc = subprocess.Popen([str(venv / "bin" / "pulseboard"), "serve", "--port", str(port), "--broker", "memory://",
                             "--collect-interval", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def health() -> dict[str, str] | None:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    answer: dict[str, str] = json.loads(r.read())
                    return answer
            except OSError:
                return None

        assert wait_until(health, timeout=60, what="pulseboard serve to answer")["status"] == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            page = r.read().decode()
        script = next(part.split('"')[0] for part in page.split('src="')[1:] if ".js" in part.split('"')[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{script.lstrip('./')}", timeout=5) as r:
            assert r.status == 200 and len(r.read()) > 10_000
    finally:
        proc.terminate()
        proc.wait(15)


def test_wheel(dist: Path, runtime_deps: Path, tmp_path: Path) -> None:
    smoke(*install(str(next(dist.glob("*.whl"))), runtime_deps, tmp_path))


def test_sdist(dist: Path, runtime_deps: Path, tmp_path: Path) -> None:
    smoke(*install(str(next(dist.glob("*.tar.gz"))), runtime_deps, tmp_path))


def test_pip_install_dot_from_a_fresh_clone(runtime_deps: Path, tmp_path: Path) -> None:
    # What is committed, nothing built: the JS bundle is made by `npm install` + `npm run build`
    # during the install (Node.js 18 or newer needed, as the README says).
    clone = tmp_path / "pulseboard"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)
    assert not (clone / "widget" / "pulseboard" / "static" / "widget.js").exists()
    smoke(*install(".", runtime_deps, tmp_path, cwd=clone))


def test_lab_and_report_extras(dist: Path, runtime_deps: Path, tmp_path: Path) -> None:
    wheel = next(dist.glob("*.whl"))
    venv, env = install(f"pulseboard[lab,report] @ {wheel.as_uri()}", runtime_deps, tmp_path)
    probe = """
from importlib.metadata import entry_points
import jupyter_server_proxy, nbconvert, nbclient
(ep,) = [e for e in entry_points(group="jupyter_serverproxy_servers") if e.name == "pulseboard"]
assert "command" in ep.load()()
(ex,) = [e for e in entry_points(group="nbconvert.exporters") if e.name == "pulseboard"]
ex.load()
print("ok")
"""
    assert run([str(venv / "bin" / "python"), "-c", probe], env, cwd=venv).strip().endswith("ok")
    assert "NOTEBOOK" in run([str(venv / "bin" / "pulseboard"), "report", "--help"], env).upper()
