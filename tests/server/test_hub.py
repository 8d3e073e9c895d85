"""Hub mode against a real JupyterHub.

A JupyterHub (DummyAuthenticator, its configurable-http-proxy from npm) runs pulseboard as
a managed service (`pulseboard serve --hub` under /services/pulseboard/). A second service,
`tester`, holds an admin API token and makes users and their API tokens through the Hub's
REST API. Those real Hub tokens are then exchanged at `POST /services/pulseboard/token`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from harness.hub import ACCESS, TESTER_TOKEN, HubProcess, http
from harness.servers import ServerProcess, free_port
from harness.tokens import SECRET
from pulseboard.discovery import DiscoveryError, discover, discover_for_kernel
from pulseboard_server.hub import HubConfig, channel_safe, check_owner

pytestmark = pytest.mark.process  # starts pulseboard serve (or the CLI) as a subprocess


@pytest.fixture(scope="module")
def hub() -> Iterator[HubProcess]:
    proc = HubProcess()
    try:
        yield proc.start()
    finally:
        proc.stop()


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"])
    return claims


# --- against the real Hub ---------------------------------------------------------


@pytest.mark.jupyter  # starts a JupyterHub
def test_exchange_gives_a_token_for_the_hub_user(hub: HubProcess) -> None:
    hub_token = hub.user_token("alice")
    before = time.time()
    status, answer = http("POST", hub.service_url + "/token", hub_token)
    assert status == 200, answer
    claims = claims_of(answer["token"])
    assert claims["sub"] == "alice" == answer["sub"]
    assert claims["read"] == ["sys.*", "shared.*", "user.alice.*"]  # least privilege
    assert claims["publish"] == ["user.alice.*"]
    assert before + 3600 - 5 <= claims["exp"] <= time.time() + 3600 + 5


@pytest.mark.jupyter  # starts a JupyterHub
def test_exchanged_token_works_on_the_server_with_its_grants(hub: HubProcess) -> None:
    status, answer = http("POST", hub.service_url + "/token", hub.user_token("bob"))
    assert status == 200, answer
    jwt_token = answer["token"]
    status, answer = http("POST", hub.service_url + "/publish", jwt_token, scheme="Bearer",
                          body={"ch": "user.bob.loss", "data": {"loss": 0.5, "step": 1}})
    assert status == 200, answer
    status, answer = http("POST", hub.service_url + "/publish", jwt_token, scheme="Bearer",
                          body={"ch": "user.alice.loss", "data": {"loss": 0.5}})
    assert status == 403 and answer["error"] == "forbidden"
    status, answer = http("GET", hub.service_url + "/history?ch=user.bob.loss", jwt_token, scheme="Bearer")
    assert status == 200 and [m["data"]["step"] for m in answer["msgs"]] == [1]


@pytest.mark.jupyter  # starts a JupyterHub
def test_token_with_only_the_access_scope_identifies_its_user(hub: HubProcess) -> None:
    # A token with no other scope (like a single-user server's JUPYTERHUB_API_TOKEN, with
    # `access:services!service=pulseboard` added to server_token_scopes) still tells the
    # Hub's `GET /user` whose it is.
    narrow = hub.user_token("carol", scopes=[ACCESS])
    status, answer = http("POST", hub.service_url + "/token", narrow)
    assert status == 200, answer
    assert claims_of(answer["token"])["sub"] == "carol"


@pytest.mark.jupyter  # starts a JupyterHub
def test_token_without_the_required_scope_is_403(hub: HubProcess) -> None:
    # The service runs with PULSEBOARD_HUB_SCOPE: a valid Hub token lacking it is refused.
    other = hub.user_token("frank", scopes=["read:users:activity!user"])
    status, answer = http("POST", hub.service_url + "/token", other)
    assert status == 403 and answer["error"] == "forbidden"
    assert ACCESS in answer["detail"]


@pytest.mark.jupyter  # starts a JupyterHub
def test_bad_hub_token_is_401(hub: HubProcess) -> None:
    status, answer = http("POST", hub.service_url + "/token", "not-a-real-hub-token")
    assert status == 401
    assert answer["error"] == "unauthorized" and "JupyterHub" in answer["detail"]


@pytest.mark.jupyter  # starts a JupyterHub
def test_missing_hub_token_is_401(hub: HubProcess) -> None:
    status, answer = http("POST", hub.service_url + "/token")
    assert status == 401 and answer["error"] == "unauthorized"


@pytest.mark.jupyter  # starts a JupyterHub
def test_revoked_hub_token_is_401(hub: HubProcess) -> None:
    hub_token = hub.user_token("dave")
    assert http("POST", hub.service_url + "/token", hub_token)[0] == 200
    status, tokens = http("GET", f"{hub.api_url}/users/dave/tokens", TESTER_TOKEN)
    assert status == 200
    for t in tokens["api_tokens"]:
        assert http("DELETE", f"{hub.api_url}/users/dave/tokens/{t['id']}", TESTER_TOKEN)[0] == 204
    status, answer = http("POST", hub.service_url + "/token", hub_token)
    assert status == 401 and answer["error"] == "unauthorized"


@pytest.mark.jupyter  # starts a JupyterHub
def test_service_token_cannot_be_exchanged(hub: HubProcess) -> None:
    status, answer = http("POST", hub.service_url + "/token", TESTER_TOKEN)
    assert status == 403 and answer["error"] == "forbidden"


@pytest.mark.jupyter  # starts a JupyterHub
def test_discovery_exchanges_the_kernels_hub_token(hub: HubProcess) -> None:
    env = {"JUPYTERHUB_API_TOKEN": hub.user_token("erin"), "PULSEBOARD_HUB_URL": hub.service_url}
    url, token = discover(env=env)
    assert url == hub.service_url
    assert claims_of(token)["sub"] == "erin"
    assert discover(env=env) == (url, token)  # reused, not exchanged again per chart
    # A browser-relative PULSEBOARD_URL goes to the browser; the exchange, and the
    # kernel's own publishing, use PULSEBOARD_HUB_URL.
    relative = {**env, "PULSEBOARD_URL": "/services/pulseboard/"}
    assert discover(env=relative) == ("/services/pulseboard/", token)
    assert discover_for_kernel(env=relative) == (hub.service_url, token)


@pytest.mark.jupyter  # starts a JupyterHub
def test_discovery_reports_a_refused_hub_token(hub: HubProcess) -> None:
    env = {"JUPYTERHUB_API_TOKEN": "not-a-real-hub-token", "PULSEBOARD_HUB_URL": hub.service_url}
    with pytest.raises(DiscoveryError) as err:
        discover(env=env)
    assert err.value.code == "unauthorized"
    assert "refused the JupyterHub token (401)" in err.value.detail


# --- without a Hub -----------------------------------------------------------------


def test_unreachable_hub_is_503(server_factory: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hub/api"
    server: ServerProcess = server_factory("--hub", env={"JUPYTERHUB_API_URL": dead})
    status, answer = http("POST", server.url + "/token", "some-hub-token")
    assert status == 503
    assert answer == {"error": "unavailable", "detail": "cannot reach JupyterHub: try again later"}
    assert "some-hub-token" not in server.output()


def test_token_route_exists_only_in_hub_mode(server: ServerProcess) -> None:
    status, _ = http("POST", server.url + "/token", "some-hub-token")
    assert status in (404, 405)


def test_discovery_order_and_messages() -> None:
    assert discover("http://a", "t1", env={"PULSEBOARD_URL": "http://b", "PULSEBOARD_TOKEN": "t2"}) == (
        "http://a", "t1")
    assert discover(env={"PULSEBOARD_URL": "http://b", "PULSEBOARD_TOKEN": "t2"}) == ("http://b", "t2")
    with pytest.raises(DiscoveryError, match="set PULSEBOARD_URL and PULSEBOARD_TOKEN"):
        discover(env={})
    with pytest.raises(DiscoveryError, match="no pulseboard token"):
        discover(env={"PULSEBOARD_URL": "http://b"})
    with pytest.raises(DiscoveryError, match="no pulseboard server URL"):
        discover(env={"PULSEBOARD_TOKEN": "t2"})
    with pytest.raises(DiscoveryError, match="set PULSEBOARD_HUB_URL"):
        discover_for_kernel(env={"PULSEBOARD_URL": "/services/pulseboard/", "PULSEBOARD_TOKEN": "t2"})
    assert discover_for_kernel(env={"PULSEBOARD_URL": "http://b", "PULSEBOARD_TOKEN": "t2"}) == (
        "http://b", "t2")


def test_discovery_reports_an_unreachable_server() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DiscoveryError, match="cannot reach the pulseboard server") as err:
        discover(env={"JUPYTERHUB_API_TOKEN": "x", "PULSEBOARD_HUB_URL": dead})
    assert err.value.code == "unavailable"


def test_channel_safe_names_are_distinct_and_glob_free() -> None:
    names = ["alice", "a.b", "a_2eb", "a@b.com", "a_b.com", "x*", "x?", "x[1]", "émile"]
    safe = [channel_safe(n) for n in names]
    assert len(set(safe)) == len(names)
    assert all(c.isalnum() or c in "_-" for s in safe for c in s)
    assert channel_safe("alice") == "alice"


def test_hub_config_from_env_and_owner_checks() -> None:
    config = HubConfig.from_env({
        "JUPYTERHUB_API_URL": "http://hub/api/", "PULSEBOARD_HUB_READ": "sys.*, user.{user}.*",
        "PULSEBOARD_HUB_PUBLISH": "team.x.*", "PULSEBOARD_HUB_TTL": "600",
        "PULSEBOARD_HUB_GROUPS": "ml",
    })
    assert config.api_url == "http://hub/api" and config.ttl == 600
    assert config.grants_for("a.b") == (["sys.*", "user.a_2eb.*"], ["team.x.*"])
    assert check_owner({"kind": "user", "name": "a.b", "groups": ["ml"]}, config) == "a.b"
    with pytest.raises(Exception, match="none of the groups"):
        check_owner({"kind": "user", "name": "z", "groups": []}, config)


@pytest.mark.jupyter  # starts a JupyterHub
def test_log_finds_the_server_through_the_hub(hub: HubProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    from pulseboard.sender import Sender  # log() finds the server the way publish() does

    for name in ("PULSEBOARD_URL", "PULSEBOARD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", hub.user_token("frank"))
    monkeypatch.setenv("PULSEBOARD_HUB_URL", hub.service_url)
    sender = Sender(exit_timeout=0.0)
    for step in range(20):
        sender.log("user.frank.loss", {"loss": 1 / (step + 1)}, step=step)
    assert sender.flush(60), sender.status()
    _, token = discover_for_kernel()
    status, answer = http("GET", hub.service_url + "/history?ch=user.frank.loss", token, scheme="Bearer")
    assert status == 200 and [m["data"]["step"] for m in answer["msgs"]] == list(range(20))
