"""`LiveChart`'s Python side: arguments, discovery, the state the browser reads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.servers import ServerProcess
from harness.tokens import token
from pulseboard import LiveChart
from pulseboard.widget import STATIC


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PULSEBOARD_URL", "PULSEBOARD_TOKEN", "JUPYTERHUB_API_TOKEN", "PULSEBOARD_HUB_URL"):
        monkeypatch.delenv(name, raising=False)


def test_arguments_become_synced_state() -> None:
    w = LiveChart(["sys.a", "train.loss"], fields="loss", window=60, url="http://h:1", token="t",
                  title="t", height=200, x="step", units={"loss": "nats"}, max_points=500, theme="dark")
    state = w.get_state()
    assert state["channels"] == ["sys.a", "train.loss"]
    assert state["fields"] == ["loss"]
    assert (state["window"], state["height"], state["x"], state["max_points"]) == (60.0, 200, "step", 500)
    assert state["units"] == {"loss": "nats"} and state["theme"] == "dark"
    assert state["url"] == "http://h:1"
    # nothing listens there: the chart says so and gets no token (never the one it was given)
    assert "does not fall back to your full token" in state["problem"] and w._tokens.token == ""
    assert "token" not in state  # the token reaches the browser in a message, never in state
    assert state["_snapshot"] is None


def test_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSEBOARD_URL", "http://env:8765")
    monkeypatch.setenv("PULSEBOARD_TOKEN", "env-token")
    w = LiveChart("sys.a")
    assert (w.channels, w.url, w.window, w.height) == (["sys.a"], "http://env:8765", 300.0, 300)
    assert w._tokens.token == "" and "at http://env:8765" in w.problem  # found, then not narrowed
    assert w.get_state()["fields"] is None  # every numeric field


def test_no_server_configured_is_said_in_the_widget() -> None:
    w = LiveChart("sys.a")
    assert "PULSEBOARD_URL" in w.problem and "PULSEBOARD_TOKEN" in w.problem
    assert LiveChart("sys.a", url="http://h:1").problem.startswith("no pulseboard token")


@pytest.mark.parametrize("kwargs", [{"channels": []}, {"window": 0}, {"max_points": 1}])
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"channels": "sys.a", "url": "http://h:1", "token": "t", **kwargs}
    with pytest.raises(ValueError):
        LiveChart(**args)  # type: ignore[arg-type]


def test_refresh_token_hands_the_browser_a_new_one(server: ServerProcess) -> None:
    old, new = token(sub="old"), token(sub="new")
    w = LiveChart("sys.a", url=server.url, token=old)
    sent: list[dict[str, object]] = []
    w.send = sent.append  # what the comm would carry to the browser
    w.refresh_token(new)
    [msg] = sent
    assert msg["type"] == "token" and msg["token"] not in (old, new)  # narrowed, never as given
    import jwt as pyjwt

    from harness.tokens import SECRET

    assert pyjwt.decode(str(msg["token"]), SECRET, algorithms=["HS256"])["sub"] == "new"
    assert old not in str(w.get_state()) and new not in str(w.get_state())


def test_the_bundle_is_built() -> None:
    js = (STATIC / "widget.js").read_text()
    assert len(js) > 10_000 and "export" in js


def test_widget_hands_out_a_narrowed_read_only_token(server: ServerProcess) -> None:
    """The browser holds the token: it must not be the caller's publish-capable one."""
    import jwt as pyjwt

    from harness.tokens import SECRET

    full = token(read=["*"], publish=["*"])
    chart = LiveChart(["sys.a", "train"], url=server.url, token=full)
    assert chart._tokens.token != full
    claims = pyjwt.decode(chart._tokens.token, SECRET, algorithms=["HS256"])
    assert claims["read"] == ["sys.a", "train"] and "publish" not in claims
    assert chart.problem == ""


def test_the_kernel_pushes_the_token_for_views_rendered_while_a_cell_runs(server: ServerProcess) -> None:
    """A busy kernel answers comm messages only between cells: a timer pushes the token."""
    from harness.servers import wait_until

    full = token(read=["*"], publish=["*"])
    chart = LiveChart("sys.a", url=server.url, token=full)
    sent: list[dict[str, object]] = []
    chart.send = sent.append
    wait_until(lambda: len(sent) >= 2, timeout=30, what="two early token pushes")
    assert all(m["type"] == "token" and m["token"] == chart._tokens.token != full for m in sent)
    chart.close()
    assert chart._tokens._closed


def test_a_chart_made_outside_ipython_exits_without_a_traceback() -> None:
    # Widget.__del__ runs close() at interpreter exit, when nothing can be imported any more.
    code = (
        "from pulseboard import LiveChart\n"
        "chart = LiveChart('train.x', url='http://127.0.0.1:9', token='not-a-token')\n"
        "chart._hook()\n"  # as when a browser first reports a status
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "Error" not in out.stderr, out.stderr
