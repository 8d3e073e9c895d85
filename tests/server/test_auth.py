"""The auth matrix: every bad token gets HTTP 401 before any upgrade; foreign origins 403."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from harness.servers import ServerProcess
from harness.tokens import Keys, bad_tokens, hs256_raw, now, serve_jwks, token
from harness.ws import open_ws, recv_json, recv_op, subscribe

# Every refusal an HS256 server makes on its own (no keys, no aud/iss); no token: its own test.
BAD_TOKENS = {name: make for name, make in bad_tokens().items() if name != "none"}


async def status_of(url: str, headers: dict[str, str] | None = None, protocols: list[str] | None = None) -> int:
    """The HTTP status of the upgrade request (101 when it became a WebSocket)."""
    try:
        async with connect(url, additional_headers=headers or {}, subprotocols=protocols,  # type: ignore[arg-type]
                           open_timeout=10) as ws:
            await ws.close()
            return 101
    except InvalidStatus as e:
        return int(e.response.status_code)


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_token_gets_401_before_upgrade(server: ServerProcess, case: str) -> None:
    tok = BAD_TOKENS[case]()
    assert tok is not None
    assert await status_of(server.ws_url, {"Authorization": f"Bearer {tok}"}) == 401
    assert await status_of(server.ws_url, protocols=["pulseboard.v1", f"bearer.{tok}"]) == 401
    assert await status_of(server.ws_url + f"?token={tok}") == 401


async def test_missing_token_gets_401(server: ServerProcess) -> None:
    assert await status_of(server.ws_url) == 401


@pytest.mark.parametrize("where", ["header", "subprotocol", "query"])
async def test_good_token_from_each_place(server: ServerProcess, where: str) -> None:
    tok = token()
    if where == "header":
        code = await status_of(server.ws_url, {"Authorization": f"Bearer {tok}"})
    elif where == "subprotocol":
        code = await status_of(server.ws_url, protocols=["pulseboard.v1", f"bearer.{tok}"])
    else:
        code = await status_of(server.ws_url + f"?token={tok}")
    assert code == 101


async def test_subprotocol_is_selected(server: ServerProcess) -> None:
    async with connect(server.ws_url, subprotocols=["pulseboard.v1", f"bearer.{token()}"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "pulseboard.v1"
        welcome = await recv_json(ws)
        assert welcome["op"] == "welcome" and welcome["sub"] == "tester" and welcome["node"]


@pytest.mark.parametrize(
    ("origin", "code"),
    [("https://evil.example", 403), ("http://localhost:8888", 101), ("http://127.0.0.1:9999", 101)],
)
async def test_origins(server: ServerProcess, origin: str, code: int) -> None:
    assert await status_of(server.ws_url, {"Authorization": f"Bearer {token()}", "Origin": origin}) == code


async def test_own_origin_and_configured_origin(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--allowed-origin", "https://lab.example.org")
    h = {"Authorization": f"Bearer {token()}"}
    assert await status_of(srv.ws_url, {**h, "Origin": "https://lab.example.org"}) == 101
    assert await status_of(srv.ws_url, {**h, "Origin": srv.url}) == 101
    assert await status_of(srv.ws_url, {**h, "Origin": "https://other.example.org"}) == 403


async def test_forbidden_origin_checked_before_token(server: ServerProcess) -> None:
    assert await status_of(server.ws_url, {"Origin": "https://evil.example"}) == 403


async def test_audience_and_issuer(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--audience", "pb", "--issuer", "me")
    good = token(aud="pb", iss="me")
    assert await status_of(srv.ws_url, {"Authorization": f"Bearer {good}"}) == 101
    for bad in (token(aud="other", iss="me"), token(aud="pb", iss="you"), token()):
        assert await status_of(srv.ws_url, {"Authorization": f"Bearer {bad}"}) == 401


def keypair(kind: str) -> tuple[Any, bytes]:
    keys = Keys()
    key = keys.rsa if kind == "RS256" else keys.ec
    return key, Keys.pem(key)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_public_key_tokens(server_factory: Callable[..., ServerProcess], tmp_path: Path, alg: str) -> None:
    key, pem = keypair(alg)
    (tmp_path / "key.pem").write_bytes(pem)
    srv = server_factory("--public-key", str(tmp_path / "key.pem"), secret=None)
    good = jwt.encode({"sub": "k", "exp": now() + 60, "read": ["*"]}, key, alg)
    assert await status_of(srv.ws_url, {"Authorization": f"Bearer {good}"}) == 101
    other, _ = keypair(alg)
    forged = jwt.encode({"sub": "k", "exp": now() + 60}, other, alg)
    assert await status_of(srv.ws_url, {"Authorization": f"Bearer {forged}"}) == 401
    # An HS256 token "signed" with the public key text must not pass (algorithm confusion).
    hs = hs256_raw({"sub": "k", "exp": now() + 60}, pem)
    assert await status_of(srv.ws_url, {"Authorization": f"Bearer {hs}"}) == 401
    # Tickets (for the SSE fallback) work in key mode too.
    import httpx

    r = httpx.post(srv.url + "/ticket", headers={"Authorization": f"Bearer {good}"})
    assert r.status_code == 200
    r = httpx.get(srv.url + "/channels?ticket=" + r.json()["ticket"])
    assert r.status_code == 200


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, Any]]:
    keys = Keys()
    with serve_jwks(keys) as url:
        yield url, keys.rsa


async def test_jwks_tokens(server_factory: Callable[..., ServerProcess], jwks_server: tuple[str, Any]) -> None:
    url, key = jwks_server
    srv = server_factory("--jwks-url", url, secret=None)
    good = jwt.encode({"sub": "j", "exp": now() + 60}, key, "RS256", headers={"kid": "r1"})
    assert await status_of(srv.ws_url, {"Authorization": f"Bearer {good}"}) == 101
    unknown_kid = jwt.encode({"sub": "j", "exp": now() + 60}, key, "RS256", headers={"kid": "nope"})
    assert await status_of(srv.ws_url, {"Authorization": f"Bearer {unknown_kid}"}) == 401


async def test_grants_enforced_on_subscribe_and_publish(server: ServerProcess) -> None:
    tok = token(read=["sys.*"], publish=["user.me.*"])
    async with await open_ws(server, tok) as ws:
        await recv_op(ws, "welcome")
        await ws.send(json.dumps({"op": "subscribe", "ch": {"secret.x": None}}))
        err = await recv_op(ws, "error")
        assert err["code"] == "forbidden" and err["ch"] == "secret.x"
        assert (await subscribe(ws, {"sys.h": None}))[0]["ch"] == "sys.h"
        await ws.send(json.dumps({"op": "publish", "ch": "sys.h", "data": {"v": 1}, "id": 1}))
        err = await recv_op(ws, "error")
        assert err["code"] == "forbidden" and err["id"] == 1
        await ws.send(json.dumps({"op": "publish", "ch": "user.me.loss", "data": {"v": 1}, "id": 2}))
        ack = await recv_op(ws, "ack")
        assert ack == {"op": "ack", "id": 2, "seq": 1, "ch": "user.me.loss"}


async def test_token_expiry_closes_4001(server: ServerProcess) -> None:
    tok = token(ttl=2)
    async with await open_ws(server, tok) as ws:
        await recv_op(ws, "welcome")
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 15)
        assert ws.close_code == 4001


async def test_refresh_keeps_the_connection(server: ServerProcess) -> None:
    async with await open_ws(server, token(ttl=2)) as ws:
        await recv_op(ws, "welcome")
        await ws.send(json.dumps({"op": "refresh", "token": token(ttl=3600)}))
        refreshed = await recv_op(ws, "refreshed")
        assert refreshed["exp"] > time.time() + 3000
        # Past the first token's expiry the connection still answers.
        await asyncio.sleep(3)  # the old expiry must pass; nothing to await instead
        await ws.send(json.dumps({"op": "ping"}))
        assert (await recv_op(ws, "pong"))["op"] == "pong"


async def test_refresh_with_bad_token_is_refused(server: ServerProcess) -> None:
    async with await open_ws(server) as ws:
        await recv_op(ws, "welcome")
        await ws.send(json.dumps({"op": "refresh", "token": "junk"}))
        err = await recv_op(ws, "error")
        assert err["code"] == "forbidden"
        await ws.send(json.dumps({"op": "refresh", "token": token(sub="someone-else")}))
        assert "another subject" in (await recv_op(ws, "error"))["detail"]


async def test_tokens_never_logged(server: ServerProcess) -> None:
    tok = token()
    assert await status_of(server.ws_url + f"?token={tok}") == 101
    assert await status_of(server.ws_url + "?token=garbage.token.value") == 401
    import httpx

    httpx.get(server.url + f"/channels?token={tok}")
    server.stop()
    log = server.output()
    assert "token=[redacted]" in log
    assert tok not in log and tok.split(".")[2] not in log
    assert "garbage.token.value" not in log
