"""Findings of a hostile review, each against a live server; each test fails without its fix."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from sec_support import AUDIENCE, ISSUER, claims, raw_status, scan_log, ws_request
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from harness.servers import ServerProcess, wait_until
from harness.tokens import SECRET, Keys, serve_jwks, token
from harness.ws import open_ws, recv_op

Factory = Callable[..., ServerProcess]


async def ws_status(srv: ServerProcess, headers: dict[str, str]) -> int:
    try:
        async with connect(srv.ws_url, additional_headers=headers, open_timeout=10) as ws:
            await ws.close()
            return 101
    except InvalidStatus as e:
        return int(e.response.status_code)


# --- finding 2: one origin rule ------------------------------------------------------

LOOK_ALIKES = ["http://127.evil.com", "http://127.0.0.1.evil.com", "http://localhost.evil.com",
               "http://127.0.0.1x", "null", "file://", "http://[::1].evil.com"]


@pytest.mark.parametrize("origin", LOOK_ALIKES)
async def test_finding2_look_alike_loopback_origins_are_refused(server: ServerProcess, origin: str) -> None:
    auth = {"Authorization": f"Bearer {token()}"}
    assert await ws_status(server, {**auth, "Origin": origin}) == 403
    r = httpx.get(server.url + "/channels", headers={**auth, "Origin": origin})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert "access-control-allow-origin" not in r.headers


async def test_finding2_exact_loopback_origins_still_work(server: ServerProcess) -> None:
    auth = {"Authorization": f"Bearer {token()}"}
    for origin in ("http://localhost:8888", "http://127.0.0.1:9999", "http://[::1]:8888"):
        assert await ws_status(server, {**auth, "Origin": origin}) == 101
        r = httpx.get(server.url + "/channels", headers={**auth, "Origin": origin})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin


def test_finding2_dns_rebound_origin_is_refused(server_factory: Factory) -> None:
    """Origin == Host on a DNS name (a rebound page) is not trusted; on an IP it is."""
    srv = server_factory("--host", "0.0.0.0")  # not loopback: only the same-origin rule could let it in
    port, tok = srv.port, token()
    rebound = f"evil.test:{port}"

    assert raw_status(port, ws_request(tok, rebound, f"http://{rebound}")) == 403
    r = httpx.get(f"{srv.root}/channels", headers={"Host": rebound, "Origin": f"http://{rebound}",
                                                   "Authorization": f"Bearer {tok}"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    own = f"127.0.0.1:{port}"
    assert raw_status(port, ws_request(tok, own, f"http://{own}")) == 101
    listed = server_factory("--host", "0.0.0.0", "--allowed-origin", "http://evil.test:1")
    assert raw_status(listed.port, ws_request(tok, "evil.test:1", "http://evil.test:1")) == 101


# --- finding 3: client input never causes a 500 ----------------------------------------


@pytest.fixture
def jwks_two_kinds() -> Iterator[tuple[str, Keys]]:
    """A JWKS endpoint holding an RSA key `r1` and an EC key `e1`."""
    keys = Keys()
    with serve_jwks(keys) as url:
        yield url, keys


def test_finding3_key_type_mismatch_is_401(server_factory: Factory, tmp_path: Path,
                                           jwks_two_kinds: tuple[str, Keys]) -> None:
    url, keys = jwks_two_kinds
    body = {"sub": "k", "exp": int(time.time()) + 600, "read": ["*"]}
    mismatched = {
        "es256_on_rsa_kid": jwt.encode(body, keys.ec, "ES256", headers={"kid": "r1"}),
        "rs256_on_ec_kid": jwt.encode(body, keys.rsa, "RS256", headers={"kid": "e1"}),
    }
    srv = server_factory("--jwks-url", url, secret=None)
    for name, tok in mismatched.items():
        r = httpx.get(srv.url + "/channels", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 401, (name, r.status_code, r.text)
    good = jwt.encode(body, keys.rsa, "RS256", headers={"kid": "r1"})
    assert httpx.get(srv.url + "/channels", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    # a PEM key of one type, a token of the other
    pem = tmp_path / "ec.pem"
    pem.write_bytes(Keys.pem(keys.ec))
    key_srv = server_factory("--public-key", str(pem), secret=None)
    rs = jwt.encode(body, keys.rsa, "RS256")
    r = httpx.get(key_srv.url + "/channels", headers={"Authorization": f"Bearer {rs}"})
    assert r.status_code == 401, r.text
    scan_log(srv, [good, *mismatched.values()])
    scan_log(key_srv, [rs])


DEEP = "[" * 100_000 + "]" * 100_000


def test_finding3_deep_json_bodies_are_400(server: ServerProcess) -> None:
    auth = {"Authorization": f"Bearer {token()}", "Content-Type": "application/json"}
    for path in ("/publish", "/ticket", "/view-token"):
        for body in (DEEP, '{"ch": ' + DEEP + "}", '{"ch": "a", "data": {"x": ' + "[" * 65 + "]" * 65 + "}}"):
            r = httpx.post(server.url + path, content=body, headers=auth)
            assert r.status_code == 400, (path, r.status_code, r.text)
            assert r.json()["error"] == "bad_request"
    deep_cursor = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode()
    r = httpx.get(server.url + "/poll", params={"cursor": deep_cursor}, headers=auth)
    assert r.status_code == 400, r.text
    r = httpx.get(server.url + "/poll", params={"ch": "a", "timeout": "0"},
                  headers={**auth, "Last-Event-ID": base64.urlsafe_b64encode(b"[" * 3000).decode()})
    assert r.status_code < 500
    scan_log(server, [])


async def test_finding3_deep_json_on_websocket_is_an_error_op(server: ServerProcess) -> None:
    async with await open_ws(server) as ws:
        await recv_op(ws, "welcome")
        await ws.send('{"op": "publish", "ch": "a", "data": ' + DEEP + ', "id": 1}')
        err = await recv_op(ws, "error")
        assert err["code"] == "bad_request" and "nested" in err["detail"]
        await ws.send(json.dumps({"op": "ping"}))
        await recv_op(ws, "pong")  # the connection is still open and answering
    scan_log(server, [])


# --- finding 4: redaction on every log line -----------------------------------------------


def test_finding4_every_logger_is_redacted() -> None:
    """Redaction sits on the root handler, so child loggers and libraries are covered."""
    from pulseboard_server.app import install_log_redaction

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        install_log_redaction()
        tok = token()
        logging.getLogger("pulseboard.ws.deep.child").info("token=%s", tok)
        logging.getLogger("some.library").warning("GET /sse?tok%%65n=%s&ch=a", tok)
        logging.getLogger("uvicorn.access").info('"GET /ws?%s HTTP/1.1"', "t%6Fken=" + tok)
        try:
            raise ValueError(f"bad thing with {tok}")
        except ValueError:
            logging.getLogger("other").exception("failed")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    out = stream.getvalue()
    assert out.count("[redacted") >= 4, out
    assert tok not in out and tok.split(".")[2] not in out


def test_finding4_percent_encoded_names_are_redacted_in_the_access_log(server: ServerProcess) -> None:
    tok = token()
    ticket = httpx.post(server.url + "/ticket", headers={"Authorization": f"Bearer {tok}"}).json()["ticket"]
    for query in (f"tok%65n={tok}", f"%74oken={tok}", f"ticke%74={ticket}", f"token={tok.replace('.', '%2E')}",
                  f"x=1&t%6Fk%65n={tok}", f"t%6Fken={tok.replace('.', '%2E')}",
                  f"tick%65t={ticket.replace('.', '%2e')}"):
        httpx.get(f"{server.url}/poll?ch=a&timeout=0&{query}")
    wait_until(lambda: server.output().count("GET /poll") >= 7, what="the access log lines")
    scan_log(server, [tok, ticket])


# --- finding 5: slowloris and connections per sub -------------------------------------------


def test_finding5_slow_headers_are_cut(server_factory: Factory) -> None:
    srv = server_factory("--header-timeout", "1")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        closed = False
        for i in range(300):  # a header line now and then, never the blank line that ends them
            try:
                s.sendall(f"X-Slow-{i}: 1\r\n".encode())
                s.settimeout(0.2)
                if s.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
    assert closed, "a connection that never finished its headers was kept open"
    assert "did not send its headers" in srv.output()


async def test_finding5_connections_per_sub_are_limited(server_factory: Factory) -> None:
    srv = server_factory("--max-connections-per-sub", "3")
    tok = token(sub="greedy")
    async with httpx.AsyncClient(timeout=30) as http:
        streams = []
        for _ in range(2):
            req = http.build_request("GET", srv.url + "/sse?ch=a", headers={"Authorization": f"Bearer {tok}"})
            resp = await http.send(req, stream=True)
            assert resp.status_code == 200
            streams.append(resp)
        ws = await open_ws(srv, tok)
        await recv_op(ws, "welcome")
        over = await http.get(srv.url + "/sse?ch=a", headers={"Authorization": f"Bearer {tok}"})
        assert over.status_code == 429 and over.json()["error"] == "rate_limited"
        assert int(over.headers["retry-after"]) >= 1
        assert await ws_status(srv, {"Authorization": f"Bearer {tok}"}) == 429
        poll = await http.get(srv.url + "/poll?ch=a", headers={"Authorization": f"Bearer {tok}"})
        assert poll.status_code == 429
        # another subject is not affected
        assert await ws_status(srv, {"Authorization": f"Bearer {token(sub='other')}"}) == 101
        # closing one frees its slot
        await ws.close()
        wait_until(lambda: json.loads(httpx.get(srv.url + "/healthz").text)["connections"] == 2,
                   what="the closed WebSocket to be gone")
        assert await ws_status(srv, {"Authorization": f"Bearer {tok}"}) == 101
        for resp in streams:
            await resp.aclose()
    scan_log(srv, [tok])


# --- finding 6 (this half): view tokens carry aud/iss -----------------------------------------


async def test_finding6_view_tokens_work_with_audience_and_issuer(server_factory: Factory) -> None:
    srv = server_factory("--audience", AUDIENCE, "--issuer", ISSUER)
    tok = jwt.encode(claims(sub="viewer"), SECRET, "HS256")
    r = httpx.post(srv.url + "/view-token", json={"ch": ["sys.a"]}, headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200, r.text
    narrowed = r.json()["token"]
    decoded = jwt.decode(narrowed, SECRET, ["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert decoded["read"] == ["sys.a"] and not decoded.get("publish")
    async with await open_ws(srv, narrowed) as ws:
        await recv_op(ws, "welcome")
        await ws.send(json.dumps({"op": "subscribe", "ch": {"sys.a": None}}))
        assert (await recv_op(ws, "subscribed"))["ch"] == "sys.a"
    scan_log(srv, [tok, narrowed])


def test_finding5_refused_websocket_handshake_is_answered_and_closed(server: ServerProcess) -> None:
    """A header line over the WebSocket parser's 8 KiB gets 431 and a closed connection (uvicorn
    left it unanswered and open)."""
    request = ws_request(token(), path="/ws").replace(b"\r\n\r\n", b"\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_finding3_nan_id_is_not_a_crash(server: ServerProcess) -> None:
    """Python's parser takes NaN/Infinity; an op's `id` is echoed back, and a NaN one crashed
    the connection (ack and error frames can't carry it). NaN in `data` stays null."""
    async with await open_ws(server) as ws:
        await recv_op(ws, "welcome")
        await ws.send('{"op": "publish", "ch": "a", "data": {"x": NaN}, "id": NaN}')
        assert (await recv_op(ws, "ack"))["id"] is None
        await ws.send('{"op": "publish", "ch": "a", "data": 5, "id": Infinity}')
        assert (await recv_op(ws, "error"))["code"] == "bad_request"
        await ws.send('{"op": "bogus", "id": -Infinity}')
        assert (await recv_op(ws, "error"))["code"] == "bad_request"
        await ws.send(json.dumps({"op": "ping"}))
        await recv_op(ws, "pong")
    r = httpx.get(server.url + "/history?ch=a", headers={"Authorization": f"Bearer {token()}"})
    assert r.json()["msgs"][0]["data"] == {"x": None}
    scan_log(server, [])
