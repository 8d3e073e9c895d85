"""examples/helm/values.yaml (Zero to JupyterHub) against examples/jupyterhub_config.py.

The chart's schema is not installable from the registries the project uses (PyPI, npm,
Debian), so this checks the keys the chart reads and that the service gets the same
environment, roles and scopes as the example config, which tests/hub/test_example_hub.py
runs in a real JupyterHub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from traitlets.config import Config

from harness.servers import ROOT

VALUES = ROOT / "examples" / "helm" / "values.yaml"
EXAMPLE = ROOT / "examples" / "jupyterhub_config.py"


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    for name in ("PULSEBOARD_PORT", "PULSEBOARD_HUB_POLICY", "PULSEBOARD_HUB_TTL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PULSEBOARD_SECRET_FILE", str(tmp_path / "secret"))
    c = Config()
    exec(compile(EXAMPLE.read_text(), str(EXAMPLE), "exec"), {"get_config": lambda: c})
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    return c


def values() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return doc


def test_values_run_the_same_service_as_the_example(example: Config) -> None:
    v = values()
    [service] = example.JupyterHub.services
    hub = v["hub"]
    assert set(hub["services"]) == {service["name"]} == {"pulseboard"}
    port = urlsplit(hub["services"]["pulseboard"]["url"]).port
    assert port == urlsplit(service["url"]).port == 8765
    assert [p["port"] for p in hub["service"]["extraPorts"]] == [port]

    [container] = hub["extraContainers"]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    command = container["command"][-1]
    assert " ".join(service["command"][:3]) in command  # pulseboard serve --hub
    assert f"--port {port}" in command and "--base-path /services/pulseboard/" in command
    env = {e["name"]: e for e in container["env"]}
    assert env["JUPYTERHUB_API_URL"]["value"].endswith("/hub/api")
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "hub", "key": "hub.services.pulseboard.apiToken"}
    assert "secretKeyRef" in env["PULSEBOARD_SECRET"]["valueFrom"]  # never a literal secret
    for name, value in service["environment"].items():
        if name != "PULSEBOARD_SECRET":
            assert env[name]["value"] == value, name
    assert container["readinessProbe"]["httpGet"]["path"] == "/services/pulseboard/healthz"


def test_values_give_the_same_roles_scopes_and_notebook_environment(example: Config) -> None:
    v = values()
    roles = {r["name"]: r for r in example.JupyterHub.load_roles}
    assert v["hub"]["loadRoles"]["user"]["scopes"] == roles["user"]["scopes"]
    assert v["hub"]["loadRoles"]["pulseboard"] == {k: roles["pulseboard"][k] for k in ("scopes", "services")}
    assert v["hub"]["config"]["Spawner"]["server_token_scopes"] == example.Spawner.server_token_scopes
    env = v["singleuser"]["extraEnv"]
    assert set(env) == set(example.Spawner.environment)
    assert env["PULSEBOARD_URL"] == example.Spawner.environment["PULSEBOARD_URL"]
    assert env["PULSEBOARD_HUB_URL"].endswith("/services/pulseboard/")
    # The users' pods may reach the service's port (the chart's network policies are on by default).
    assert v["singleuser"]["networkPolicy"]["egress"][0]["ports"] == [{"port": 8765}]
    assert v["hub"]["networkPolicy"]["ingress"][0]["ports"] == [{"port": 8765}]
