"""SSE through a real nginx reverse proxy with stock proxy settings.

nginx buffers proxied responses by default; the server's `X-Accel-Buffering: no`
header must be what lets each event through at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse

from support import ServerProcess, free_port, token, wait_until

NGINX = Path("/usr/sbin/nginx")
pytestmark = pytest.mark.skipif(not NGINX.exists(), reason="needs Debian's nginx (/usr/sbin/nginx)")

CONFIG = """\
{user}
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            {extra}
        }}
    }}
}}
"""


class Nginx:
    """nginx as a plain subprocess with its own prefix, config, pid and logs."""

    def __init__(self, upstream: int, extra: str = "") -> None:
        self.dir = tempfile.mkdtemp(prefix="pb-nginx-")
        self.port = free_port()
        user = "user root;" if os.geteuid() == 0 else ""
        conf = CONFIG.format(user=user, dir=self.dir, port=self.port, upstream=upstream, extra=extra)
        Path(self.dir, "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(
            [str(NGINX), "-p", self.dir, "-c", f"{self.dir}/nginx.conf", "-e", f"{self.dir}/error.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(self.ready, 15, what="nginx to answer")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("nginx exited:\n" + Path(self.dir, "error.log").read_text(errors="replace"))
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def proxied(server: ServerProcess) -> Iterator[tuple[ServerProcess, Nginx]]:
    nginx = Nginx(server.port)
    yield server, nginx
    nginx.stop()


# Compressing text/event-stream holds every event in gzip's buffer unless nginx's
# buffering is off for the response: with the header ignored
# (`proxy_ignore_headers X-Accel-Buffering`) no event, not even the response head,
# gets through this config.
GZIP_EVENT_STREAM = "gzip on; gzip_types text/event-stream;"


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {token()}"}


@pytest.mark.parametrize("extra", ["", GZIP_EVENT_STREAM], ids=["stock", "gzip"])
async def test_sse_events_pass_nginx_unbuffered(server: ServerProcess, extra: str) -> None:
    """Each event arrives before the next one is published (a buffering proxy would hold it)."""
    nginx = Nginx(server.port, extra)
    try:
        await check_unbuffered(server, nginx, "gzip" if extra else None)
    finally:
        nginx.stop()


async def check_unbuffered(server: ServerProcess, nginx: Nginx, encoding: str | None) -> None:
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


async def test_sse_resume_through_nginx(proxied: tuple[ServerProcess, Nginx]) -> None:
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
