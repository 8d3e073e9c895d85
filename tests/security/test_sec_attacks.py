"""The attack matrix: every endpoint against every bad credential and every bad Origin.

Two servers: `hs` (shared secret and an RSA public key, `aud`/`iss` required) and `key`
(the RSA public key only: where HS/RS confusion would bite). Every refusal is a clear
4xx in the contract's JSON shape, never a 5xx; the server logs neither a traceback nor
any token or ticket, however encoded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from sec_support import AUDIENCE, ISSUER, bad_tokens, claims, raw_status, scan_log, ws_request

from harness.servers import ServerProcess, wait_until
from harness.tokens import SECRET, Keys
from harness.ws import open_ws, recv_op

# name -> (method, path, JSON body)
HTTP_ENDPOINTS: dict[str, tuple[str, str, Any]] = {
    "sse": ("GET", "/sse?ch=a", None),
    "poll": ("GET", "/poll?ch=a&timeout=0", None),
    "publish": ("POST", "/publish", {"ch": "a", "data": {"x": 1}}),
    "history": ("GET", "/history?ch=a", None),
    "channels": ("GET", "/channels", None),
    "ticket": ("POST", "/ticket", None),
    "view-token": ("POST", "/view-token", {"ch": ["a"]}),
}
KEYS = Keys()
BAD = bad_tokens(KEYS)
USED: list[str] = []  # every token and ticket sent, for the log scan


@pytest.fixture(scope="module")
def servers(module_servers: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, ServerProcess]]:
    pem = KEYS.write_rsa_public(tmp_path_factory.mktemp("keys"))
    common = ("--public-key", str(pem), "--audience", AUDIENCE, "--issuer", ISSUER)
    found = {
        "hs": module_servers(*common),
        "key": module_servers(*common, secret=None),
        "hub": module_servers("--hub", env={"JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api"}),
    }
    yield found
    for srv in found.values():
        scan_log(srv, USED)


def good_token(server: str, **extra: Any) -> str:
    """A token the named server accepts (HS256 on `hs`, RS256 on `key`)."""
    body = claims(**extra)
    tok = jwt.encode(body, SECRET, "HS256") if server == "hs" else jwt.encode(body, KEYS.rsa, "RS256")
    USED.append(tok)
    return tok


def http(srv: ServerProcess, name: str, tok: str | None, headers: dict[str, str] | None = None,
         query: str = "") -> httpx.Response:
    """Call endpoint `name`; a stream that opens is closed at once (only its status matters)."""
    method, path, body = HTTP_ENDPOINTS[name]
    h = dict(headers or {})
    if tok is not None:
        h["Authorization"] = f"Bearer {tok}"
    url = srv.url + path + (("&" if "?" in path else "?") + query if query else "")
    with httpx.Client(timeout=30) as client, client.stream(method, url, headers=h,
                                                           content=None if body is None else json.dumps(body)) as r:
        if r.status_code != 200 or name != "sse":
            r.read()
        return r


def assert_refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == code and body["detail"], body


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("server", ["hs", "key"])
def test_bad_tokens_get_401_everywhere(servers: dict[str, ServerProcess], server: str, case: str) -> None:
    srv = servers[server]
    tok = BAD[case]()
    if tok is not None:
        USED.append(tok)
    for name in HTTP_ENDPOINTS:
        r = http(srv, name, tok)
        assert_refused(r, 401, "unauthorized")
        assert r.headers.get("www-authenticate") == "Bearer"
    assert raw_status(srv.port, ws_request(tok)) == 401
    if tok is not None:  # the other two places a token can come from
        assert raw_status(srv.port, ws_request(path=f"/ws?token={tok}")) == 401
        assert_refused(http(srv, "sse", None, query=f"token={tok}"), 401, "unauthorized")


@pytest.mark.parametrize("server", ["hs", "key"])
def test_good_tokens_pass_everywhere(servers: dict[str, ServerProcess], server: str) -> None:
    """The control: the same requests with a good token are not refused."""
    srv = servers[server]
    tok = good_token(server)
    http(srv, "publish", tok)
    for name in HTTP_ENDPOINTS:
        r = http(srv, name, tok)
        if name == "view-token" and server == "key":
            assert_refused(r, 400, "bad_request")  # key mode can't sign; said plainly
        else:
            assert r.status_code == 200, (name, r.text)
    assert raw_status(srv.port, ws_request(tok)) == 101


def test_grants_are_enforced_everywhere(servers: dict[str, ServerProcess]) -> None:
    srv = servers["hs"]
    http(srv, "publish", good_token("hs"))  # channel `a` exists
    narrow = good_token("hs", read=["b.*"], publish=None)
    for name in ("sse", "poll", "history", "publish"):
        assert_refused(http(srv, name, narrow), 403, "forbidden")
    assert_refused(http(srv, "view-token", narrow), 403, "forbidden")
    r = httpx.post(srv.url + "/ticket", json={"ch": ["a"]}, headers={"Authorization": f"Bearer {narrow}"})
    assert_refused(r, 403, "forbidden")
    r = http(srv, "channels", narrow)
    assert r.status_code == 200 and all(c["ch"].startswith("b.") for c in r.json()["channels"])


async def test_grants_are_enforced_on_the_websocket(servers: dict[str, ServerProcess]) -> None:
    narrow = good_token("hs", read=["b.*"], publish=None)
    async with await open_ws(servers["hs"], narrow) as ws:
        await recv_op(ws, "welcome")
        await ws.send(json.dumps({"op": "subscribe", "ch": {"a": None}}))
        assert (await recv_op(ws, "error"))["code"] == "forbidden"
        await ws.send(json.dumps({"op": "publish", "ch": "b.x", "data": {"x": 1}, "id": 1}))
        assert (await recv_op(ws, "error"))["code"] == "forbidden"
        await ws.send(json.dumps({"op": "refresh", "token": good_token("hs", sub="someone-else")}))
        assert (await recv_op(ws, "error"))["code"] == "forbidden"


def test_tickets_are_one_time_narrow_and_not_tokens(servers: dict[str, ServerProcess]) -> None:
    srv = servers["hs"]
    tok = good_token("hs")
    http(srv, "publish", tok)

    def ticket(chs: list[str] | None = None) -> str:
        r = httpx.post(srv.url + "/ticket", json={"ch": chs} if chs else None,
                       headers={"Authorization": f"Bearer {tok}"})
        USED.append(r.json()["ticket"])
        return str(r.json()["ticket"])

    for name in ("sse", "poll", "history", "channels"):
        t = ticket()
        assert http(srv, name, None, query=f"ticket={t}").status_code == 200
        assert_refused(http(srv, name, None, query=f"ticket={t}"), 401, "unauthorized")  # used up
        forged = jwt.encode({"typ": "pulseboard.ticket", "sub": "x", "exp": int(time.time()) + 60,
                             "jti": "j", "read": ["*"]}, SECRET + "-other", "HS256")
        expired = jwt.encode({"typ": "pulseboard.ticket", "sub": "x", "exp": int(time.time()) - 60,
                              "jti": "j2", "read": ["*"]}, SECRET, "HS256")
        for bad in ("garbage", forged, expired, tok):  # a token is not a ticket
            USED.append(bad)
            assert_refused(http(srv, name, None, query=f"ticket={bad}"), 401, "unauthorized")
    # a ticket is not a token
    assert_refused(http(srv, "channels", ticket()), 401, "unauthorized")
    assert raw_status(srv.port, ws_request(ticket())) == 401
    # a ticket for `b` does not open `a`
    assert_refused(http(srv, "sse", None, query=f"ticket={ticket(['b'])}"), 403, "forbidden")


ORIGINS = ["http://evil.test", "https://evil.test:443", "http://127.evil.com", "http://127.0.0.1.evil.com",
           "http://localhost.evil.com", "http://[::1].evil.com", "http://127.0.0.1@evil.test", "null"]


@pytest.mark.parametrize("origin", ORIGINS)
def test_foreign_and_look_alike_origins_get_403_everywhere(servers: dict[str, ServerProcess], origin: str) -> None:
    srv = servers["hs"]
    tok = good_token("hs")
    for name in HTTP_ENDPOINTS:
        r = http(srv, name, tok, headers={"Origin": origin})
        assert_refused(r, 403, "forbidden")
        assert "access-control-allow-origin" not in r.headers
    assert raw_status(srv.port, ws_request(tok, origin=origin)) == 403
    hub = servers["hub"]
    r = httpx.post(hub.url + "/token", headers={"Origin": origin, "Authorization": "token abc"})
    assert_refused(r, 403, "forbidden")


def test_rebound_origins_get_403_everywhere(servers: dict[str, ServerProcess]) -> None:
    """A DNS-rebound page: Origin and Host both name the attacker's domain."""
    srv = servers["hs"]
    tok = good_token("hs")
    rebound = f"rebound.evil.test:{srv.port}"
    for name in HTTP_ENDPOINTS:
        r = http(srv, name, tok, headers={"Origin": f"http://{rebound}", "Host": rebound})
        assert_refused(r, 403, "forbidden")
    assert raw_status(srv.port, ws_request(tok, host=rebound, origin=f"http://{rebound}")) == 403


def test_hub_token_endpoint_refuses_without_a_500(servers: dict[str, ServerProcess]) -> None:
    hub = servers["hub"]
    assert_refused(httpx.post(hub.url + "/token"), 401, "unauthorized")
    for tok in ("garbage", good_token("hs"), BAD["alg_none"]() or ""):
        r = httpx.post(hub.url + "/token", headers={"Authorization": f"token {tok}"})
        assert r.status_code in (401, 403, 503) and r.json()["error"], r.text  # 503: no hub to ask


def test_no_token_or_ticket_reaches_the_log(servers: dict[str, ServerProcess]) -> None:
    """Also checked at module teardown, after every test above has run."""
    for srv in servers.values():
        wait_until(lambda srv=srv: "GET /healthz" in srv.output(), what="the log")  # type: ignore[misc]
        scan_log(srv, USED)

