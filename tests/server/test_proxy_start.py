"""The on-demand server JupyterLab starts (jupyter-server-proxy): a store of its own, and a
start that fails stays up saying why (503) instead of exiting into a restart loop."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.servers import ServerProcess, wait_until
from pulseboard import serverproxy


def test_a_failed_start_answers_with_its_reason_and_stays_up(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    (tmp_path / "notadir").write_text("")
    server = server_factory(start=False, env={"PULSEBOARD_DATA_DIR": str(tmp_path / "notadir"),
                                              "PULSEBOARD_EXPLAIN_FAILURE": "1"})
    server.start(wait=False)

    def answer() -> tuple[int, dict[str, str]] | None:
        assert server.proc is not None and server.proc.poll() is None, server.output()  # never exits
        try:
            urllib.request.urlopen(server.url + "/healthz", timeout=2)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
        except OSError:
            return None
        raise AssertionError("a server that could not open its store answered 200")

    code, body = wait_until(answer, timeout=20, what="the failed server to answer")
    assert code == 503 and body["error"] == "unavailable"
    assert "is not a folder" in body["detail"] and "notadir" in body["detail"]
    # What the kernel's discovery makes of it: the cause, not "is jupyter-server-proxy installed?".
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url + "/", timeout=2)
    assert "is not a folder" in serverproxy._failure_of(err.value)
    assert server.terminate(10) == 2  # SIGTERM (JupyterLab shutting down) ends it
    assert server.output().count("pulseboard: error:") == 1 and "Traceback" not in server.output()


def test_without_the_proxy_a_failed_start_still_exits_at_once(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    (tmp_path / "notadir").write_text("")
    server = server_factory(start=False, env={"PULSEBOARD_DATA_DIR": str(tmp_path / "notadir")})
    server.start(wait=False)
    assert server.proc is not None and server.proc.wait(30) == 2
    assert "is not a folder" in server.output()


def test_the_on_demand_server_keeps_a_store_of_its_own(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PULSEBOARD_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    own = tmp_path / "pulseboard" / "jupyterlab"
    assert serverproxy._store_args() == ["--data-dir", str(own)]
    # The user's `pulseboard serve` on the default store does not matter to it...
    server_factory(env={"PULSEBOARD_DATA_DIR": str(tmp_path / "pulseboard")})
    assert serverproxy._store_args() == ["--data-dir", str(own)]
    # ...and a second JupyterLab's on-demand server, finding that store held, keeps its data in
    # memory rather than failing to start.
    server_factory(env={"PULSEBOARD_DATA_DIR": str(own)})
    assert serverproxy._store_args() == ["--broker", "memory://"]
