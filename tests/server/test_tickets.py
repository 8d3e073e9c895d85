"""One-time tickets for sse/poll (reuse, expiry, wrong channel) and secrets kept out of the log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from httpx_sse import aconnect_sse

from harness.servers import ServerProcess, wait_until
from harness.tokens import auth, token

TRANSPORTS = ["sse", "poll"]



async def get_ticket(client: httpx.AsyncClient, server: ServerProcess, channels: list[str] | None = None,
                     tok: str | None = None) -> str:
    kwargs: dict[str, Any] = {"json": {"ch": channels}} if channels is not None else {}
    r = await client.post(server.url + "/ticket", headers=auth(tok), **kwargs)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ttl"] > 0
    ticket: str = body["ticket"]
    return ticket


async def use(client: httpx.AsyncClient, server: ServerProcess, transport: str, ch: str, ticket: str) -> int:
    """Open `transport` on `ch` with `ticket`; the status (200 after a first `subscribed`)."""
    url = f"{server.url}/{transport}?ch={ch}&ticket={ticket}"
    if transport == "poll":
        r = await client.get(url)
        if r.status_code == 200:
            assert r.json()["ops"][0]["op"] == "subscribed"
        return r.status_code
    async with client.stream("GET", url) as r:
        if r.status_code == 200:
            async for line in r.aiter_lines():
                if line == "event: subscribed":
                    break
        return r.status_code


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_ticket_works_once(server: ServerProcess, transport: str) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        ticket = await get_ticket(client, server, ["t.a"])
        assert await use(client, server, transport, "t.a", ticket) == 200
        assert await use(client, server, transport, "t.a", ticket) == 401
        r = await client.get(f"{server.url}/{transport}?ch=t.a&ticket={ticket}")
        assert r.json() == {"error": "unauthorized", "detail": "ticket already used: ask for a new one"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_ticket_for_another_channel_is_forbidden(server: ServerProcess, transport: str) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        ticket = await get_ticket(client, server, ["t.a"])
        assert await use(client, server, transport, "t.b", ticket) == 403
        # a ticket without channels carries the token's read globs, no more
        ticket = await get_ticket(client, server, tok=token(read=["pub.*"]))
        assert await use(client, server, transport, "priv.x", ticket) == 403
        ticket = await get_ticket(client, server, tok=token(read=["pub.*"]))
        assert await use(client, server, transport, "pub.x", ticket) == 200


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_expired_ticket_is_refused(
    server_factory: Callable[..., ServerProcess], transport: str
) -> None:
    server = server_factory("--ticket-ttl", "1")
    async with httpx.AsyncClient(timeout=15) as client:
        ticket = await get_ticket(client, server, ["t.a"])
        exp = jwt.decode(ticket, options={"verify_signature": False})["exp"]
        await asyncio.to_thread(wait_until, lambda: time.time() > exp + 0.5, 10, what="the ticket to expire")
        r = await client.get(f"{server.url}/{transport}?ch=t.a&ticket={ticket}")
    assert r.status_code == 401
    assert "expired" in r.json()["detail"]


async def test_ticket_requests_are_checked(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        r = await client.post(server.url + "/ticket")
        assert r.status_code == 401
        narrow = auth(token(read=["pub.*"]))
        r = await client.post(server.url + "/ticket", json={"ch": ["priv.x"]}, headers=narrow)
        assert r.status_code == 403
        r = await client.post(server.url + "/ticket", json={"ch": ["bad name"]}, headers=auth())
        assert r.status_code == 400
        # a ticket is not a token, and can't be minted from a ticket
        ticket = await get_ticket(client, server, ["t.a"])
        r = await client.get(f"{server.url}/sse?ch=t.a&token={ticket}")
        assert r.status_code == 401
        r = await client.post(f"{server.url}/ticket?ticket={ticket}")
        assert r.status_code == 401
        # nor does it allow publishing
        ticket = await get_ticket(client, server, ["t.a"])
        r = await client.post(f"{server.url}/publish?ticket={ticket}", json={"ch": "t.a", "data": {}})
        assert r.status_code == 401


async def test_stream_opened_with_a_ticket_outlives_the_ticket(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """The ticket is checked once; the stream then lives as long as the token it came from."""
    server = server_factory("--ticket-ttl", "1")
    async with httpx.AsyncClient(timeout=15) as client:
        ticket = await get_ticket(client, server, ["t.live"])
        exp = jwt.decode(ticket, options={"verify_signature": False})["exp"]
        url = f"{server.url}/sse?ch=t.live&ticket={ticket}"
        async with aconnect_sse(client, "GET", url) as source:
            events = source.aiter_sse()
            first = await anext(events)
            assert first.event == "subscribed"
            await asyncio.to_thread(wait_until, lambda: time.time() > exp + 0.5, 10, what="ticket expiry")
            r = await client.post(server.url + "/publish", json={"ch": "t.live", "data": {"i": 1}},
                                  headers=auth())
            r.raise_for_status()
            ev = await asyncio.wait_for(anext(events), 15)
    assert ev.event == "message" and json.loads(ev.data)[0]["data"] == {"i": 1}


async def test_tokens_and_tickets_never_reach_the_log(server: ServerProcess) -> None:
    tok = token(sub="log-check")
    bad = token(secret="another-secret-0123456789abcdefghij")
    async with httpx.AsyncClient(timeout=15) as client:
        ticket = await get_ticket(client, server, ["t.a"])
        ticket2 = await get_ticket(client, server, ["t.a"])
        async with client.stream("GET", f"{server.url}/sse?ch=t.a&token={tok}") as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line == "event: subscribed":
                    break
        assert (await client.get(f"{server.url}/poll?ch=t.a&token={tok}")).status_code == 200
        assert (await client.get(f"{server.url}/poll?ch=t.a&ticket={ticket}")).status_code == 200
        assert (await client.get(f"{server.url}/poll?ch=t.a&ticket={ticket}")).status_code == 401
        assert (await client.get(f"{server.url}/sse?ch=t.b&ticket={ticket2}")).status_code == 403
        assert (await client.get(f"{server.url}/sse?ch=t.a&token={bad}")).status_code == 401
        assert (await client.get(f"{server.url}/history?ch=t.a&token={tok}")).status_code in (200, 404)
    wanted = 6  # access log lines of the six GETs above
    await asyncio.to_thread(
        wait_until, lambda: server.output().count("[redacted]") >= wanted, 10, what="access log lines"
    )
    log = server.output()
    for secret in (tok, bad, ticket, ticket2):
        assert secret not in log
        for part in secret.split("."):  # no piece of one either
            assert part not in log
    assert "token=[redacted]" in log and "ticket=[redacted]" in log
