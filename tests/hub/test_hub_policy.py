"""PULSEBOARD_HUB_POLICY: grants by Hub group and admin flag, and clear errors for bad files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.http_stub import stub
from harness.hub import http
from harness.servers import ServerProcess, free_port
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


# --- hostile policy files and names (issue: one string must not stop the server) ------------


def test_deep_nesting_is_a_clear_error(tmp_path: Path) -> None:
    for text in ('{"groups": ' + "[" * 50_000 + "]" * 50_000 + "}", "groups: " + "[" * 50_000 + "]" * 50_000):
        with pytest.raises(PulseboardError) as err:
            config(tmp_path, text)
        assert err.value.code == "unavailable" and "nested too deeply" in err.value.detail


@pytest.mark.parametrize("key", ["null", "no", "on", "yes", "off", "~", "1"])
def test_yaml_keys_that_are_not_text_are_refused(tmp_path: Path, key: str) -> None:
    for text in (f"groups: {{{key}: {{read: [x.*]}}}}", f"{key}: {{}}", f"groups: {{g: {{{key}: [x.*]}}}}"):
        with pytest.raises(PulseboardError) as err:
            config(tmp_path, text)
        assert "put it in quotes" in err.value.detail, text
    quoted = config(tmp_path, f'groups: {{"{key}": {{read: [x.*]}}}}')
    assert quoted.grants_for("ann", [key])[0][-1] == "x.*"
    assert quoted.grants_for("ann", ["None", "False", "True"])[0] == ["sys.*", "shared.*", "user.ann.*"]


def test_hub_user_name_with_a_lone_surrogate_is_400(server_factory: Any) -> None:
    with stub({"kind": "user", "name": "ann\udc00", "groups": []}) as hub:
        server: ServerProcess = server_factory("--hub", env={"JUPYTERHUB_API_URL": hub.url + "/hub/api"})
        status, answer = http("POST", server.url + "/token", "a-hub-token")
    assert status == 400 and answer["error"] == "bad_request", answer
    assert "not valid unicode" in answer["detail"]
    assert "Traceback" not in server.output()


def test_jwks_url_that_is_not_http_is_one_line_at_start() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pulseboard_server", "serve", "--port", str(free_port()),
         "--jwks-url", "file:///etc/passwd"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--jwks-url must be an http:// or https:// URL" in done.stderr
