"""docs/deployment.md's nginx configuration, as written, in front of two nodes on one Redis."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse
from nodes_support import Recording, Servers, redis_nodes, until

from support import ROOT, RedisProcess, ServerProcess, free_port, token, wait_until

NGINX = Path("/usr/sbin/nginx")
pytestmark = pytest.mark.skipif(not NGINX.exists(), reason="needs Debian's nginx (/usr/sbin/nginx)")

MAIN = """\
{user}
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{site}
}}
"""


def documented_site() -> str:
    """The first nginx block of docs/deployment.md."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    m = re.search(r"```nginx\n(.*?)```", text, re.S)
    assert m, "docs/deployment.md has no nginx block"
    return m.group(1)


class Nginx:
    def __init__(self, nodes: list[ServerProcess]) -> None:
        self.dir = tempfile.mkdtemp(prefix="pb-nginx-")
        self.port = free_port()
        site = documented_site()
        addrs = re.findall(r"server (\d+\.\d+\.\d+\.\d+:\d+)", site)
        assert len(addrs) == len(nodes)
        for addr, node in zip(addrs, nodes, strict=True):
            site = site.replace(addr, f"127.0.0.1:{node.port}")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        user = "user root;" if os.geteuid() == 0 else ""
        Path(self.dir, "nginx.conf").write_text(MAIN.format(user=user, dir=self.dir, site=site))
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
def cluster_of_two(
    server_factory: Servers, redis_server: RedisProcess
) -> Iterator[tuple[Nginx, list[ServerProcess]]]:
    nodes = redis_nodes(server_factory, redis_server.url, 2)
    proxy = Nginx(nodes)
    try:
        yield proxy, nodes
    finally:
        proxy.stop()


async def test_clients_behind_nginx_survive_a_node_dying(
    cluster_of_two: tuple[Nginx, list[ServerProcess]]
) -> None:
    proxy, nodes = cluster_of_two
    clients = [Recording(["lb"], url=proxy.url, token=token()) for _ in range(4)]
    for c in clients:
        c.run()
    await until(lambda: all(c.subscribed("lb") for c in clients), what="subscriptions")
    assert {c.node for c in clients} == {"n0", "n1"}  # round robin spread them over both nodes
    http = httpx.AsyncClient(base_url=proxy.url, headers={"Authorization": f"Bearer {token()}"}, timeout=10)

    async def pub(lo: int, hi: int) -> None:
        for i in range(lo, hi, 5):
            r = await http.post("/publish", json=[{"ch": "lb", "data": {"i": j}} for j in range(i, i + 5)])
            r.raise_for_status()

    async with aconnect_sse(http, "GET", "/sse", params={"ch": "lb"}) as sse:  # SSE through the proxy
        events = sse.aiter_sse()
        first = await anext(events)
        assert first.event == "subscribed"
        await pub(0, 50)
        got: list[int] = []
        async for ev in events:
            if ev.event == "message":
                got += [e["seq"] for e in json.loads(ev.data)]
                if len(got) >= 50:
                    break
        assert got == list(range(1, 51))
    await until(lambda: all(len(c.seen.get("lb", [])) >= 50 for c in clients))
    victim = nodes[0]
    victim.proc.kill()  # type: ignore[union-attr]
    victim.proc.wait()  # type: ignore[union-attr]
    await pub(50, 100)  # nginx routes the publishes to the survivor
    await until(lambda: all(len(c.seen.get("lb", [])) >= 100 for c in clients), what="every catch-up")
    await http.aclose()
    for c in clients:
        assert c.seen["lb"] == list(range(1, 101)) and not c.gaps
        assert c.node == "n1"
        await c.stop()
