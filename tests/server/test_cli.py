"""The `pulseboard` command: help, one-line errors, the printed dashboard URL, token, publish."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Callable

import httpx
import jwt
import pytest

from harness.servers import PULSEBOARD, ServerProcess, free_port, wait_until
from harness.tokens import SECRET, token

pytestmark = pytest.mark.process  # starts pulseboard serve (or the CLI) as a subprocess


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*PULSEBOARD, *args], capture_output=True, text=True, env=full_env, timeout=timeout)


@pytest.mark.parametrize("cmd", [[], ["serve"], ["token"], ["publish"], ["agent"]])
def test_help(cmd: list[str]) -> None:
    r = run(*cmd, "--help")
    assert r.returncode == 0 and "usage: pulseboard" in r.stdout


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["serve", "--port", "notaport"], "port"),
        (["serve", "--history", "0"], "history"),
        (["serve", "--collect-interval", "-1"], "collect-interval"),
        (["serve", "--broker", "kafka://x"], "unknown broker"),
        (["serve", "--public-key", "/no/such/file"], "cannot read --public-key"),
        (["serve", "--public-key", "/etc/hostname"], "not a PEM public key"),
        (["agent", "--url", "http://127.0.0.1:9", "--interval", "0"], "more than 0"),  # 0 would spin
        (["serve", "--heartbeat", "0"], "more than 0"),
    ],
)
def test_bad_options_one_line(args: list[str], words: str) -> None:
    extra = [] if "--port" in args else ["--port", str(free_port())]
    assert words in one_line_error(run(*args, *extra))


def test_port_in_use() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert "in use" in one_line_error(run("serve", "--port", str(port)))


def test_unreachable_redis() -> None:
    port = free_port()
    r = run("serve", "--port", str(free_port()), "--broker", f"redis://127.0.0.1:{port}/0", timeout=60)
    assert "broker" in one_line_error(r)


def test_serve_prints_dashboard_url_and_collector_streams(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--collect-interval", "0.2", secret=None, start=False)
    srv.args = ["--collect-interval", "0.2"]
    srv.start()
    url_line = wait_until(lambda: re.search(r"dashboard at (\S+)#token=(\S+)", srv.output()), what="dashboard URL")
    assert url_line.group(1) == srv.url + "/"
    tok = url_line.group(2)
    chans = wait_until(lambda: httpx.get(srv.url + "/channels", headers={"Authorization": f"Bearer {tok}"})
                       .json()["channels"], what="collector channel")
    (sys_ch,) = [c for c in chans if c["ch"].startswith("sys.")]
    hist = wait_until(lambda: httpx.get(srv.url + f"/history?ch={sys_ch['ch']}",
                                        headers={"Authorization": f"Bearer {tok}"}).json()["msgs"][1:],
                      what="two samples")
    data = hist[-1]["data"]
    for field in ("cpu_percent", "mem_percent", "swap_percent", "load1", "disk_read_bps", "disk_write_bps",
                  "net_rx_bps", "net_tx_bps", "cpu_percent.0"):
        assert isinstance(data[field], (int, float)), field
    assert tok not in srv.output().split("dashboard at", 1)[1].split("\n", 1)[1]  # printed once, never logged


def test_token_command() -> None:
    r = run("token", "--sub", "ana", "--read", "sys.*", "--publish", "user.ana.*", "--ttl", "60",
            env={"PULSEBOARD_SECRET": SECRET})
    assert r.returncode == 0
    claims = jwt.decode(r.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "ana" and claims["read"] == ["sys.*"] and claims["publish"] == ["user.ana.*"]
    assert 55 <= claims["exp"] - claims["iat"] <= 60
    default = jwt.decode(run("token", "--sub", "x", env={"PULSEBOARD_SECRET": SECRET}).stdout.strip(),
                         SECRET, algorithms=["HS256"])
    assert default["read"] == ["*"] and "publish" not in default and default["exp"] - default["iat"] == 3600


def test_token_without_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PULSEBOARD_SECRET"}
    r = subprocess.run([*PULSEBOARD, "token", "--sub", "x"], capture_output=True, text=True, env=env)
    assert "PULSEBOARD_SECRET" in one_line_error(r)


def test_publish_command(server: ServerProcess) -> None:
    env = {"PULSEBOARD_URL": server.url, "PULSEBOARD_TOKEN": token()}
    r = run("publish", "queue", '{"depth": 4}', env=env)
    assert r.returncode == 0 and r.stdout.strip() == "1"
    assert "not valid JSON" in one_line_error(run("publish", "queue", "{oops", env=env))
    assert "must be an object" in one_line_error(run("publish", "queue", "[1, 2]", env=env))
    denied = {**env, "PULSEBOARD_TOKEN": token(publish=[])}
    assert "403" in one_line_error(run("publish", "queue", "{}", env=denied))
    down = {**env, "PULSEBOARD_URL": f"http://127.0.0.1:{free_port()}"}
    assert "cannot reach" in one_line_error(run("publish", "queue", "{}", env=down))


def test_python_publish(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    import pulseboard

    monkeypatch.setenv("PULSEBOARD_URL", server.url)
    monkeypatch.setenv("PULSEBOARD_TOKEN", token())
    assert pulseboard.publish("train.loss", {"loss": 0.5, "step": 1}) == 1
    assert pulseboard.publish("train.loss", {"loss": 0.4, "step": 2}) == 2
    monkeypatch.setenv("PULSEBOARD_TOKEN", token(publish=["other"]))
    with pytest.raises(pulseboard.PublishError) as e:
        pulseboard.publish("train.loss", {"loss": 0.3})
    assert e.value.code == "forbidden"


def test_agent_without_token_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PULSEBOARD_TOKEN"}
    r = subprocess.run([*PULSEBOARD, "agent", "--url", "http://127.0.0.1:9"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert "token" in one_line_error(r)


def test_agent_without_the_grant_stops_with_one_line(server: ServerProcess) -> None:
    env = {**os.environ, "PULSEBOARD_TOKEN": token(publish=["other.*"])}
    r = subprocess.run([*PULSEBOARD, "agent", "--url", server.url, "--interval", "0.1"], capture_output=True,
                       text=True, env=env, timeout=30)
    assert "403" in one_line_error(r)


def test_agent_over_http(server: ServerProcess) -> None:
    env = {**os.environ, "PULSEBOARD_TOKEN": token()}
    proc = subprocess.Popen([*PULSEBOARD, "agent", "--url", server.url, "--interval", "0.1", "--channel", "sys.remote"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        hdrs = {"Authorization": f"Bearer {token()}"}
        wait_until(lambda: httpx.get(server.url + "/history?ch=sys.remote", headers=hdrs).status_code == 200,
                   what="agent samples")
    finally:
        proc.terminate()
        proc.wait(10)
