"""Fixtures for the multi-node Redis tests: real redis-server processes, and a real cluster."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from harness.servers import RedisProcess, free_port, wait_until

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port: int = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisClusterProcess:
    """Three cluster-enabled masters on free ports, joined with `redis-cli --cluster create`."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [
            RedisProcess(
                port=cluster_port(),
                extra=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                       "--cluster-node-timeout", "2000"],
            )
            for _ in range(masters)
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def cli(self, port: int, *args: str) -> str:
        out = subprocess.run([REDIS_CLI, "-p", str(port), *args], capture_output=True, text=True,
                             timeout=30, check=True)
        return out.stdout

    def start(self) -> RedisClusterProcess:
        for node in self.nodes:
            node.start()
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run([REDIS_CLI, "--cluster", "create", *addrs, "--cluster-replicas", "0",
                        "--cluster-yes"], capture_output=True, text=True, timeout=60, check=True)

        def ok() -> bool:
            return all("cluster_state:ok" in self.cli(n.port, "cluster", "info") for n in self.nodes)

        wait_until(ok, 30, 0.1, what="the cluster to report cluster_state:ok")
        return self

    def owner(self, key: str) -> int:
        """The port of the master serving `key`'s slot."""
        slot = int(self.cli(self.nodes[0].port, "cluster", "keyslot", key))
        for node in self.nodes:
            if self._serves(node.port, slot):
                port: int = node.port
                return port
        raise AssertionError(f"no master serves slot {slot}")

    def _serves(self, port: int, slot: int) -> bool:
        for line in self.cli(port, "cluster", "nodes").splitlines():
            fields = line.split()
            if "myself" not in fields[2]:
                continue
            for part in fields[8:]:
                lo, _, hi = part.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return True
        return False

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


@pytest.fixture
def redis_cluster() -> Iterator[RedisClusterProcess]:
    cluster = RedisClusterProcess()
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()
