"""docs/deployment.md's nginx configuration, as written, in front of two nodes on one Redis."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import aconnect_sse
from nodes_support import Recording, Servers, redis_nodes, until

from harness.servers import ROOT, NginxProcess, RedisProcess, ServerProcess
from harness.tokens import token


def documented_site() -> str:
    """The first nginx block of docs/deployment.md."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    m = re.search(r"```nginx\n(.*?)```", text, re.S)
    assert m, "docs/deployment.md has no nginx block"
    return m.group(1)


def nginx_for(nodes: list[ServerProcess]) -> NginxProcess:
    """nginx running the documented site, pointed at `nodes`."""

    def site(port: int) -> str:
        text = documented_site()
        addrs = re.findall(r"server (\d+\.\d+\.\d+\.\d+:\d+)", text)
        assert len(addrs) == len(nodes)
        for addr, node in zip(addrs, nodes, strict=True):
            text = text.replace(addr, f"127.0.0.1:{node.port}")
        return text.replace("listen 80;", f"listen 127.0.0.1:{port};")

    return NginxProcess(site)


@pytest.fixture
def cluster_of_two(
    server_factory: Servers, redis_server: RedisProcess
) -> Iterator[tuple[NginxProcess, list[ServerProcess]]]:
    nodes = redis_nodes(server_factory, redis_server.url, 2)
    proxy = nginx_for(nodes)
    try:
        yield proxy, nodes
    finally:
        proxy.stop()


async def test_clients_behind_nginx_survive_a_node_dying(
    cluster_of_two: tuple[NginxProcess, list[ServerProcess]]
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
