"""PULSEBOARD_HUB_POLICY: grants by Hub group and admin flag, and clear errors for bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.servers import free_port
from pulseboard.protocol import PulseboardError
from pulseboard_server.hub import HubConfig
from pulseboard_server.hub_policy import load_policy, parse_policy

YAML = """
groups:
  team-a: {read: [team-a.*, user.*], publish: [team-a.*]}
  me-too: {publish: ["scratch.{user}.*"]}
admin: {read: ["*"]}
"""


def config(tmp_path: Path, text: str) -> HubConfig:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return HubConfig.from_env({"JUPYTERHUB_API_URL": "http://hub/api", "PULSEBOARD_HUB_POLICY": str(path)})


def test_defaults_are_least_privilege() -> None:
    c = HubConfig.from_env({"JUPYTERHUB_API_URL": "http://hub/api"})
    assert c.grants_for("a.b") == (["sys.*", "shared.*", "user.a_2eb.*"], ["user.a_2eb.*"])


def test_groups_and_admin_add_to_the_defaults(tmp_path: Path) -> None:
    c = config(tmp_path, YAML)
    assert c.grants_for("ann", ["team-a", "other"]) == (
        ["sys.*", "shared.*", "user.ann.*", "team-a.*", "user.*"], ["user.ann.*", "team-a.*"])
    assert c.grants_for("bo", ["me-too"]) == (["sys.*", "shared.*", "user.bo.*"], ["user.bo.*", "scratch.bo.*"])
    assert c.grants_for("root", [], admin=True)[0][-1] == "*"
    assert c.grants_for("ann", []) == c.grants_for("ann", ["unknown-group"])


def test_json_works_too() -> None:
    policy = parse_policy('{"groups": {"g": {"read": ["g.*"]}}}')
    assert policy.extra_for(["g"], False).read == ("g.*",)


@pytest.mark.parametrize(("text", "says"), [
    ("groups: [a, b]", "'groups' must map"),
    ("grups: {}", "unknown keys ['grups']"),
    ("groups: {g: {reed: [x]}}", "unknown keys ['reed']"),
    ("groups: {g: {read: 5}}", "groups.g.read must be a list"),
    ("- just a list", "must be a mapping"),
    ("groups: {g: [", "neither JSON nor YAML"),
])
def test_bad_policies_say_what_is_wrong(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(PulseboardError) as err:
        config(tmp_path, text)
    assert err.value.code == "unavailable" and says in err.value.detail


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"groups": {"g": {"read": ["one.*"]}}}')
    assert load_policy(str(path)).extra_for(["g"], False).read == ("one.*",)
    path.write_text('{"groups": {"g": {"read": ["two.*", "three.*"]}}}')
    assert load_policy(str(path)).extra_for(["g"], False).read == ("two.*", "three.*")


def test_serve_refuses_a_bad_policy_at_start(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("groups: {g: {reed: [x]}}")
    env = {"PATH": "/usr/bin:/bin", "PULSEBOARD_SECRET": "s" * 32, "PULSEBOARD_HUB_POLICY": str(path),
           "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api"}
    done = subprocess.run(
        [sys.executable, "-m", "pulseboard_server", "serve", "--hub", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "unknown keys ['reed']" in done.stderr and "Traceback" not in done.stderr


def test_hub_mode_without_a_secret_refuses_to_start_instead_of_a_throwaway_key(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api"}
    done = subprocess.run(
        [sys.executable, "-m", "pulseboard_server", "serve", "--hub", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "hub mode needs PULSEBOARD_SECRET" in done.stderr and "Traceback" not in done.stderr
    assert "token" not in done.stdout  # no throwaway dashboard token printed
