"""Deleting channels and run records over HTTP, the CLI and the Python API: grants, resets,
bounds and clear errors."""

from __future__ import annotations

import subprocess

import httpx
import pytest

import pulseboard
from harness.servers import PULSEBOARD, ServerProcess
from harness.tokens import token
from harness.ws import open_ws, publish, recv_op, subscribe
from pulseboard import PublishError


def auth(tok: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok or token()}"}


def start(server: ServerProcess, project: str, name: str, tok: str | None = None, **extra: object) -> httpx.Response:
    body = {"project": project, "name": name, "op": "start", **extra}
    return httpx.post(server.url + "/runs", json=body, headers=auth(tok))


async def test_delete_needs_publish_grants_and_resets_subscribers(server: ServerProcess) -> None:
    publish(server, "train.a", 5)
    publish(server, "train.b", 2)
    reader = token(read=["*"], publish=["train.b"])
    r = httpx.post(server.url + "/delete", json={"ch": ["train.b", "train.a"]}, headers=auth(reader))
    assert r.status_code == 403 and r.json()["error"] == "forbidden" and "train.a" in r.json()["detail"]
    assert httpx.get(server.url + "/history?ch=train.b", headers=auth()).json()["seq"] == 2  # all or nothing
    ws = await open_ws(server)
    (sub,) = await subscribe(ws, {"train.a": {"backfill": 10}})
    r = httpx.post(server.url + "/delete", json={"ch": ["train.a", "train.nothing"]}, headers=auth())
    assert r.json() == {"deleted": ["train.a"]}
    reset = await recv_op(ws, "reset")
    assert reset["ch"] == "train.a" and reset["seq"] == 0 and reset["epoch"] != sub["epoch"]
    await ws.close()
    assert httpx.get(server.url + "/history?ch=train.a", headers=auth()).status_code == 404
    assert [c["ch"] for c in httpx.get(server.url + "/channels", headers=auth()).json()["channels"]] == ["train.b"]
    assert publish(server, "train.a", 1) == [1]


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"{}", "bad_request"), (b'{"ch": []}', "bad_request"), (b'{"ch": ["bad name"]}', "bad_request"),
     (b'{"ch": 5}', "bad_request"), (b"[1]", "bad_request")],
)
def test_delete_bad_bodies(server: ServerProcess, body: bytes, code: str) -> None:
    r = httpx.post(server.url + "/delete", content=body, headers=auth())
    assert r.status_code == 400 and r.json()["error"] == code and r.json()["detail"]


def test_delete_cli_and_python(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(server, "x.one", 3)
    publish(server, "x.two", 3)
    env = {**server.env, "PULSEBOARD_URL": server.url, "PULSEBOARD_TOKEN": token()}
    out = subprocess.run([*PULSEBOARD, "delete", "x.one", "x.zero"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.splitlines() == ["deleted x.one", "nothing to delete in x.zero"]
    env["PULSEBOARD_TOKEN"] = token(publish=[])
    out = subprocess.run([*PULSEBOARD, "delete", "x.two"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "forbidden" in out.stderr and "Traceback" not in out.stderr
    monkeypatch.setenv("PULSEBOARD_URL", server.url)
    monkeypatch.setenv("PULSEBOARD_TOKEN", token())
    assert pulseboard.delete("x.two") == ["x.two"]
    with pytest.raises(PublishError, match="name the channels"):
        pulseboard.delete()


def test_runs_are_read_with_the_channels_grants(server: ServerProcess) -> None:
    assert start(server, "train", "a", config={"lr": 0.1}, tags=["base"], host="h1", heartbeat=10).status_code == 200
    assert start(server, "train", "b", config={"lr": 0.01}).status_code == 200
    runs = httpx.get(server.url + "/runs?project=train", headers=auth()).json()["runs"]
    assert [(r["name"], r["channel"], r["status"], r["config"]) for r in runs] == [
        ("a", "train.a", "running", {"lr": 0.1}), ("b", "train.b", "running", {"lr": 0.01})]
    assert set(runs[0]) >= {"project", "name", "channel", "config", "tags", "host", "status", "start", "end",
                            "updated"}
    assert runs[0]["tags"] == ["base"] and runs[0]["host"] == "h1" and runs[0]["end"] is None
    only_a = token(read=["train.a"], publish=[])
    assert [r["name"] for r in httpx.get(server.url + "/runs?project=train", headers=auth(only_a)).json()["runs"]] == [
        "a"]
    r = start(server, "train", "c", tok=token(publish=["other.*"]))
    assert r.status_code == 403
    r = httpx.post(server.url + "/runs", json={"project": "train", "name": "a", "op": "finish"}, headers=auth())
    assert r.json()["run"]["status"] == "finished" and r.json()["run"]["end"] is not None
    beat = httpx.post(server.url + "/runs", json={"project": "train", "name": "a", "op": "heartbeat"}, headers=auth())
    assert beat.json()["run"]["status"] == "finished"  # a late heartbeat does not revive it
    r = httpx.post(server.url + "/delete", json={"ch": ["train.b"]}, headers=auth())
    assert r.json() == {"deleted": ["train.b"]}  # a run's channel: its record goes with it
    assert [r["name"] for r in httpx.get(server.url + "/runs?project=train", headers=auth()).json()["runs"]] == ["a"]


@pytest.mark.parametrize(
    ("body", "status", "what"),
    [
        ({"project": "train", "name": "a", "op": "start", "config": {"blob": "x" * 20_000}}, 413, "16384-byte"),
        ({"project": "train", "name": "a", "op": "start", "config": [1, 2]}, 400, "JSON object"),
        ({"project": "train", "name": "a", "op": "start", "tags": ["t"] * 40}, 413, "tags"),
        ({"project": "train", "name": "a", "op": "start", "tags": "t"}, 400, "tags"),
        ({"project": "train", "name": "a", "op": "start", "heartbeat": 600}, 400, "heartbeat"),
        ({"project": "tr.ain", "name": "a", "op": "start"}, 400, "no dots"),
        ({"project": "train", "name": "a b", "op": "start"}, 400, "'name'"),
        ({"project": "train", "name": "a", "op": "explode"}, 400, "'op'"),
        ({"project": "train", "name": "ghost", "op": "heartbeat"}, 404, "start it first"),
    ],
)
def test_bad_run_posts_get_clear_errors(server: ServerProcess, body: dict[str, object], status: int,
                                        what: str) -> None:
    r = httpx.post(server.url + "/runs", json=body, headers=auth())
    assert r.status_code == status and what in r.json()["detail"]
    assert "Traceback" not in server.output()


def test_get_runs_needs_a_project(server: ServerProcess) -> None:
    r = httpx.get(server.url + "/runs", headers=auth())
    assert r.status_code == 400 and "'project'" in r.json()["detail"]
    assert httpx.get(server.url + "/runs?project=none", headers=auth()).json() == {"runs": []}


def test_init_refuses_bad_configs_before_touching_the_server(server: ServerProcess,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSEBOARD_URL", server.url)
    monkeypatch.setenv("PULSEBOARD_TOKEN", token())
    with pytest.raises(PublishError, match="JSON can't carry"):
        pulseboard.init("train", config={"fn": print})
    with pytest.raises(PublishError, match="16384-byte limit"):
        pulseboard.init("train", config={"blob": "x" * 20_000})
    with pytest.raises(PublishError, match="no dots"):
        pulseboard.init("train", name="v1.2")
    with pulseboard.init("train", config={"lr": 0.1, "layers": [64, 64]}, tags=["t"]) as run:
        assert run.channel == f"train.{run.name}" and run.name.count("-") == 2
        run.log({"loss": 1.0}, step=1)
    assert pulseboard.flush(10)
    (rec,) = pulseboard.runs("train")
    assert rec["status"] == "finished" and rec["config"] == {"lr": 0.1, "layers": [64, 64]}
    seq = httpx.get(server.url + f"/history?ch={run.channel}", headers=auth()).json()["seq"]
    assert seq == 1
