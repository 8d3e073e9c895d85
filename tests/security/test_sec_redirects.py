"""No client sends a credential across a redirect to another origin (issue: one string must
not stop the server, finding "credentials follow redirects").

Each client that carries a token talks to a real local HTTP server that answers every
request with a redirect to another port; the server there records the headers it gets.
It must get no `Authorization` (nothing at all, in fact: the redirect is not followed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.http_stub import Stub, redirect_to_another_port, stub
from harness.hub import http
from harness.servers import ServerProcess
from harness.tokens import token
from pulseboard import snapshot
from pulseboard.discovery import DiscoveryError, exchange_hub_token
from pulseboard.kernel_token import view_token
from pulseboard.publish import Publisher, PublishError
from pulseboard.serverproxy import find_proxied
from pulseboard.snapshot import SnapshotError

CODES = [301, 302, 303, 307, 308]
SECRET_TOKEN = token(sub="victim")


@pytest.fixture(params=CODES)
def hop(request: pytest.FixtureRequest) -> Iterator[tuple[Stub, Stub, int]]:
    with redirect_to_another_port(request.param, {"token": "x", "seqs": [1]}) as (redirector, recorder):
        yield redirector, recorder, request.param


def nothing_reached(recorder: Stub) -> None:
    assert recorder.authorizations() == []
    assert recorder.seen == []  # not followed at all


def test_publish_does_not_follow(hop: tuple[Stub, Stub, int]) -> None:
    redirector, recorder, code = hop
    with pytest.raises(PublishError) as err:
        Publisher(redirector.url, SECRET_TOKEN).publish("run.loss", {"v": 1})
    nothing_reached(recorder)
    assert redirector.authorizations() == [f"Bearer {SECRET_TOKEN}"]
    if code in (301, 302, 303):  # urllib itself never re-POSTs on 307/308: refused as it was
        assert "another origin" in err.value.detail


def test_snapshot_does_not_follow(hop: tuple[Stub, Stub, int]) -> None:
    redirector, recorder, _ = hop
    with pytest.raises(SnapshotError) as err:
        snapshot.fetch(redirector.url, SECRET_TOKEN, "run.loss", None, None)
    nothing_reached(recorder)
    assert "another origin" in str(err.value)


def test_view_token_does_not_follow(hop: tuple[Stub, Stub, int]) -> None:
    redirector, recorder, code = hop
    with pytest.raises(DiscoveryError) as err:
        view_token(redirector.url, SECRET_TOKEN, ["run.loss"])
    nothing_reached(recorder)
    assert "does not fall back to your full token" in err.value.detail
    if code in (301, 302, 303):
        assert "another origin" in err.value.detail


def test_hub_exchange_in_the_kernel_does_not_follow(hop: tuple[Stub, Stub, int]) -> None:
    redirector, recorder, code = hop
    with pytest.raises(DiscoveryError) as err:
        exchange_hub_token(redirector.url, "the-users-hub-token")
    nothing_reached(recorder)
    if code in (301, 302, 303):
        assert "another origin" in err.value.detail


def test_jupyter_server_probe_does_not_follow(hop: tuple[Stub, Stub, int], tmp_path: Path) -> None:
    redirector, recorder, _ = hop
    info = {"url": redirector.url + "/", "token": "jupyter-server-token", "pid": os.getppid(), "base_url": "/"}
    (tmp_path / f"jpserver-{os.getppid()}.json").write_text(json.dumps(info))
    answer = find_proxied({"JUPYTER_RUNTIME_DIR": str(tmp_path), "JPY_PARENT_PID": str(os.getppid())})
    assert isinstance(answer, str) and "another origin" in answer, answer
    assert redirector.authorizations() == ["token jupyter-server-token"]
    nothing_reached(recorder)


def test_server_hub_calls_do_not_follow(server_factory: Any) -> None:
    """The server's own calls to the Hub: `GET /user` with the user's Hub token."""
    with redirect_to_another_port(302, {"kind": "user", "name": "ann"}) as (redirector, recorder):
        srv: ServerProcess = server_factory("--hub", env={"JUPYTERHUB_API_URL": redirector.url + "/hub/api"})
        for code in CODES:
            redirector.status = code
            status, answer = http("POST", srv.url + "/token", "the-users-hub-token")
            assert status == 503 and answer["error"] == "unavailable", (code, answer)
        assert redirector.authorizations() == ["token the-users-hub-token"] * len(CODES)
        nothing_reached(recorder)
    assert "the-users-hub-token" not in srv.output()


def test_same_origin_redirects_are_still_followed() -> None:
    """A proxy that adds a slash (same scheme, host, port) keeps working."""
    with stub({"seqs": [7]}) as target:
        from pulseboard.credhttp import same_origin

        assert same_origin(target.url + "/a", target.url + "/b")
        assert same_origin("http://h/a", "http://H:80/b")
        assert not same_origin("http://h/a", "https://h/a")
        assert not same_origin("http://h:1/a", "http://h:2/a")
        assert not same_origin("http://h/a", "http://h.evil/a")
