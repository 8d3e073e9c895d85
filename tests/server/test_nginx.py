"""SSE through a real nginx reverse proxy with stock proxy settings.

nginx buffers proxied responses by default; the server's `X-Accel-Buffering: no`
header must be what lets each event through at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import aconnect_sse

from harness.servers import NginxProcess, ServerProcess
from harness.tokens import auth

SITE = """\
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            {extra}
        }}
    }}
"""


def nginx_for(upstream: int, extra: str = "") -> NginxProcess:
    """nginx with stock proxy settings in front of `upstream`."""
    return NginxProcess(lambda port: SITE.format(port=port, upstream=upstream, extra=extra))


@pytest.fixture
def proxied(server: ServerProcess) -> Iterator[tuple[ServerProcess, NginxProcess]]:
    nginx = nginx_for(server.port)
    yield server, nginx
    nginx.stop()


# Compressing text/event-stream holds every event in gzip's buffer unless nginx's
# buffering is off for the response: with the header ignored
# (`proxy_ignore_headers X-Accel-Buffering`) no event, not even the response head,
# gets through this config.
GZIP_EVENT_STREAM = "gzip on; gzip_types text/event-stream;"



@pytest.mark.parametrize("extra", ["", GZIP_EVENT_STREAM], ids=["stock", "gzip"])
async def test_sse_events_pass_nginx_unbuffered(server: ServerProcess, extra: str) -> None:
    """Each event arrives before the next one is published (a buffering proxy would hold it)."""
    nginx = nginx_for(server.port, extra)
    try:
        await check_unbuffered(server, nginx, "gzip" if extra else None)
    finally:
        nginx.stop()


async def check_unbuffered(server: ServerProcess, nginx: NginxProcess, encoding: str | None) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        async with aconnect_sse(client, "GET", nginx.url + "/sse?ch=px", headers=auth()) as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            assert source.response.headers.get("content-encoding") == encoding
            events = source.aiter_sse()
            first = await asyncio.wait_for(anext(events), 15)
            assert first.event == "subscribed"
            for i in range(5):
                r = await client.post(server.url + "/publish", json={"ch": "px", "data": {"i": i}},
                                      headers=auth())
                r.raise_for_status()
                ev = await asyncio.wait_for(anext(events), 15)  # generous bound: failure only
                assert ev.event == "message"
                assert [e["data"]["i"] for e in json.loads(ev.data)] == [i]


async def test_sse_resume_through_nginx(proxied: tuple[ServerProcess, NginxProcess]) -> None:
    """Last-Event-ID passes the proxy: cut streams resume with nothing lost or repeated."""
    server, nginx = proxied
    got: list[int] = []
    published = 0

    async def publish(client: httpx.AsyncClient, n: int) -> None:
        nonlocal published
        body = [{"ch": "pr", "data": {"i": i}} for i in range(published, published + n)]
        r = await client.post(server.url + "/publish", json=body, headers=auth())
        r.raise_for_status()
        published += n

    async def run(client: httpx.AsyncClient) -> None:
        last_id = ""
        await publish(client, 5)
        for round_ in range(5):
            headers = auth()
            if last_id:
                headers["Last-Event-ID"] = last_id
            url = nginx.url + "/sse?ch=pr&backfill=5"
            async with aconnect_sse(client, "GET", url, headers=headers) as src:
                async for ev in src.aiter_sse():
                    last_id = ev.id
                    if ev.event == "subscribed":
                        assert json.loads(ev.data)["recovered"] is True
                        if round_ < 4:
                            await publish(client, 3)
                    else:
                        got.extend(e["data"]["i"] for e in json.loads(ev.data))
                    if round_ < 4 and len(got) >= published - 1:
                        break  # a cut, perhaps with a message still to come
                    if round_ == 4 and len(got) >= published:
                        break

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.wait_for(run(client), 60)
    assert got == list(range(published)) and published == 17
