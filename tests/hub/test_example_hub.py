"""examples/jupyterhub_config.py in a real JupyterHub, users in headless chromium.

One Hub for the module (DummyAuthenticator, local spawner, configurable-http-proxy), run
with PULSEBOARD_HUB_TTL=60 (the least it allows) so that exchanged tokens expire during the module and the
widget has to refresh them through the kernel. Users alice and bob each run a notebook
that publishes to their own channel and charts it, and tries to chart and publish to the
other's; carol does the same with WebSockets blocked in her browser (SSE through the
Hub's proxy).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from harness.browsers import assert_contiguous, chart_state
from harness.hub import ExampleHub, http
from harness.notebooks import notebook
from harness.servers import wait_until

pytestmark = [pytest.mark.jupyter, pytest.mark.browser]

TTL = 60


def cells(me: str, other: str) -> list[str]:
    return [
        # Publish to my own channel from a thread, with no url or token anywhere.
        "import threading, time, pulseboard\n"
        "from pulseboard import LiveChart\n"
        "from pulseboard.discovery import discover_for_kernel, token_expiry\n"
        "url, token = discover_for_kernel()\n"
        "def feed():\n"
        "    u, t = url, token\n"
        "    step = 0\n"
        "    while True:\n"
        "        if (token_expiry(t) or 0) - time.time() < 30:\n"
        "            u, t = discover_for_kernel()\n"
        "        try:\n"
        f"            pulseboard.publish('user.{me}.loss', {{'loss': 1 / (step + 1), 'step': step}}, url=u, token=t)\n"
        "        except pulseboard.PublishError as e:  # reported, and the chart's seqs show any loss\n"
        "            print('feed:', e)\n"
        "        step += 1\n"
        "        time.sleep(0.1)\n"
        "threading.Thread(target=feed, daemon=True).start()",
        f"mine = LiveChart('user.{me}.loss', fields=['loss'], window=600)\nmine",
        f"theirs = LiveChart('user.{other}.loss', window=60)\ntheirs",
        f"try:\n    pulseboard.publish('user.{other}.loss', {{'loss': 1.0}}, url=url, token=token)\n"
        f"    print('published to {other}')\nexcept Exception as e:\n    print('publish to {other}:', e)",
    ]


@pytest.fixture(scope="module")
def hub() -> Iterator[ExampleHub]:
    proc = ExampleHub(ttl=TTL)
    for me, other in (("alice", "bob"), ("bob", "alice"), ("carol", "alice")):
        notebook(proc.root / f"{me}.ipynb", cells(me, other))
    try:
        yield proc.start()
    finally:
        proc.stop()


def run_all(page: Any) -> None:
    kernels_idle = """async () => {
        const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || '';
        const base = document.querySelector('body').dataset.baseUrl || location.pathname.split('lab')[0];
        const r = await fetch(base + 'api/kernels', {headers: {'X-XSRFToken': xsrf}});
        return r.ok && (await r.json()).some((k) => k.execution_state === 'idle');
    }"""

    def ready() -> bool:
        select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
        if select.count():
            select.click()
        return bool(page.evaluate(kernels_idle))

    wait_until(ready, timeout=120, interval=0.2, what="the notebook's kernel to be idle")
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


THEIR_CHART, PUBLISH_TO_THEM = 2, 3  # cells of `cells()`


def output_of(page: Any, cell: int) -> str:
    """The output of the notebook's `cell`-th code cell."""
    out: str = page.locator(".jp-CodeCell").nth(cell).locator(".jp-OutputArea").inner_text()
    return out


def check_user(page: Any, me: str, other: str, transport: str) -> dict[str, Any]:
    """My chart goes live over `transport` and grows; theirs says "not allowed"; I can't publish there."""
    try:
        return _check_user(page, me, other, transport)
    except Exception:
        notebook_text = page.locator(".jp-NotebookPanel:visible .jp-Notebook").inner_text()
        print(f"--- {me}'s page:", notebook_text[-4000:], sep="\n")
        raise


def _check_user(page: Any, me: str, other: str, transport: str) -> dict[str, Any]:
    state: dict[str, Any] = wait_until(
        lambda: (s := chart_state(page, f"user.{me}.loss"))["status"] == "live" and s["points"] >= 5 and s,
        timeout=120, interval=0.2, what=f"{me}'s own chart live",
    )
    assert state["transport"] == transport
    wait_until(lambda: chart_state(page, f"user.{me}.loss")["points"] >= state["points"] + 5, timeout=30,
               interval=0.2, what=f"{me}'s chart to grow")
    wait_until(lambda: "not allowed" in output_of(page, THEIR_CHART), timeout=60,
               interval=0.2, what=f"{me}'s chart of {other}'s channel to say 'not allowed'")
    assert f"user.{other}.loss" in output_of(page, THEIR_CHART)
    wait_until(lambda: f"publish to {other}:" in output_of(page, PUBLISH_TO_THEM), timeout=60,
               interval=0.2, what=f"{me}'s publish to {other}'s channel to be refused")
    assert "403 forbidden" in output_of(page, PUBLISH_TO_THEM)
    return state


@pytest.fixture(scope="module")
def alice_and_bob(hub: ExampleHub, browser: Any) -> Iterator[dict[str, Any]]:
    contexts = [browser.new_context(viewport={"width": 1280, "height": 900}) for _ in range(2)]
    try:
        users = ("alice", "bob")
        pages = {user: hub.login(ctx, user, f"{user}.ipynb") for user, ctx in zip(users, contexts, strict=True)}
        for page in pages.values():
            run_all(page)
        yield pages
    finally:
        for ctx in contexts:
            ctx.close()


def token_exp(page: Any, ch: str) -> float:
    """The `exp` of the token the chart of `ch` uses now (read in the page, never printed)."""
    exp: float = page.evaluate(
        """async (ch) => {
            for (const el of document.querySelectorAll('.pulseboard-chart')) {
                const h = el.__pulseboard;
                if (h && h.series().some((s) => s.startsWith(ch + ':'))) {
                    const t = await el.__pulseboardClient.token();
                    const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
                    return JSON.parse(atob(part)).exp;
                }
            }
            return null;
        }""",
        ch,
    )
    return exp


# --- the exchange, as configured by the example ------------------------------------------


def test_example_grants_least_privilege(hub: ExampleHub) -> None:
    status, answer = http("POST", hub.service_url + "/token", hub.user_token("dave"))
    assert status == 200, answer
    claims = jwt.decode(answer["token"], hub.secret, algorithms=["HS256"])
    assert claims["read"] == ["sys.*", "shared.*", "user.dave.*"]
    assert claims["publish"] == ["user.dave.*"]
    assert claims["exp"] - claims["iat"] == TTL
    bearer = answer["token"]
    for ch, allowed in (("user.dave.x", 200), ("shared.x", 403), ("user.erin.x", 403)):
        status, _ = http("POST", hub.service_url + "/publish", bearer, scheme="Bearer",
                         body={"ch": ch, "data": {"v": 1}})
        assert status == allowed, ch
    status, _ = http("GET", hub.service_url + "/history?ch=user.erin.x", bearer, scheme="Bearer")
    assert status == 403


def test_group_policy_grants_a_team_channel(hub: ExampleHub) -> None:
    frank_hub_token = hub.user_token("frank")
    hub.add_to_group("team-a", "frank")
    status, answer = http("POST", hub.service_url + "/token", frank_hub_token)
    assert status == 200, answer
    assert answer["read"] == ["sys.*", "shared.*", "user.frank.*", "team-a.*"]
    assert answer["publish"] == ["user.frank.*", "team-a.*"]
    frank = answer["token"]
    status, answer = http("POST", hub.service_url + "/token", hub.user_token("gina"))
    assert "team-a.*" not in answer["read"]
    gina = answer["token"]
    status, _ = http("POST", hub.service_url + "/publish", frank, scheme="Bearer",
                     body={"ch": "team-a.board", "data": {"v": 1}})
    assert status == 200
    status, answer = http("GET", hub.service_url + "/history?ch=team-a.board", frank, scheme="Bearer")
    assert status == 200 and [m["data"]["v"] for m in answer["msgs"]] == [1]
    for method, path, body in (("POST", "/publish", {"ch": "team-a.board", "data": {"v": 2}}),
                               ("GET", "/history?ch=team-a.board", None)):
        status, _ = http(method, hub.service_url + path, gina, scheme="Bearer", body=body)
        assert status == 403, path


def test_policy_admin_grant_uses_the_hub_admin_flag(hub: ExampleHub) -> None:
    # A kernel-like token (only the access scope) doesn't show the admin flag: the service
    # asks the Hub with its own token, which the example gives `read:users`.
    # root-ann is in c.Authenticator.admin_users.
    narrow = hub.user_token("root-ann", scopes=["access:services!service=pulseboard"])
    status, answer = http("POST", hub.service_url + "/token", narrow)
    assert status == 200, answer
    assert answer["read"] == ["sys.*", "shared.*", "user.root-ann.*", "*"]
    status, answer = http("POST", hub.service_url + "/token", hub.user_token("plain-pat", scopes=[
        "access:services!service=pulseboard"]))
    assert status == 200 and "*" not in answer["read"]


# --- users in the browser ---------------------------------------------------------------


def test_two_users_each_see_only_their_own_chart(alice_and_bob: dict[str, Any]) -> None:
    check_user(alice_and_bob["alice"], "alice", "bob", "ws")
    check_user(alice_and_bob["bob"], "bob", "alice", "ws")


def test_a_60s_token_is_refreshed_through_the_kernel_with_no_gap(alice_and_bob: dict[str, Any]) -> None:
    page = alice_and_bob["alice"]
    ch = "user.alice.loss"
    wait_until(lambda: chart_state(page, ch)["status"] == "live", timeout=120, what="alice's chart live")
    first_exp = token_exp(page, ch)
    assert first_exp - time.time() <= TTL
    # The event: the first token's expiry passing (the server would close a stale connection).
    wait_until(lambda: time.time() > first_exp + 10, timeout=TTL + 60, interval=1, what="the first token to expire")
    state = wait_until(lambda: (s := chart_state(page, ch))["status"] == "live" and s, timeout=30,
                       what="alice's chart still live")
    assert token_exp(page, ch) > first_exp
    assert page.evaluate(
        "(ch) => [...document.querySelectorAll('.pulseboard-chart')].find((el) => "
        "el.__pulseboard?.series().some((s) => s.startsWith(ch + ':'))).__pulseboardClient.connects", ch
    ) == 1  # refreshed in place: the WebSocket was never closed
    assert state["gaps"] == 0
    assert_contiguous(state["seqs"])
    before = state["points"]
    wait_until(lambda: chart_state(page, ch)["points"] > before + 10, timeout=30, what="data after the expiry")


def test_with_websockets_blocked_the_chart_runs_over_sse_through_the_proxy(hub: ExampleHub, browser: Any) -> None:
    import re

    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked = []

    def block(ws: Any) -> None:
        blocked.append(ws.url)
        ws.close(code=1011, reason="blocked by the test")

    ctx.route_web_socket(re.compile(r".*/services/pulseboard/ws(\?.*)?$"), block)
    try:
        page = hub.login(ctx, "carol", "carol.ipynb")
        run_all(page)
        state = check_user(page, "carol", "alice", "sse")
        assert blocked, "the chart never tried the WebSocket"
        assert state["gaps"] == 0
        assert_contiguous(chart_state(page, "user.carol.loss")["seqs"])
    finally:
        ctx.close()

