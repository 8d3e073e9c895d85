"""The host collector: contract fields, rates from counter deltas, failures logged once and skipped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psutil
import pytest

from pulseboard_server.collector import HostSampler, collect, host_channel


def test_sample_has_the_contract_fields() -> None:
    sampler = HostSampler()
    first = sampler.sample()
    second = sampler.sample()
    for data in (first, second):
        for field in ("cpu_percent", "mem_percent", "swap_percent", "load1", "disk_read_bps",
                      "disk_write_bps", "net_rx_bps", "net_tx_bps"):
            assert isinstance(data[field], float) and data[field] >= 0, field
        cores = psutil.cpu_count() or 1
        assert all(f"cpu_percent.{i}" in data for i in range(cores))


def test_rates_are_deltas_and_leave_out_loopback() -> None:
    """20 MB through loopback between two samples must not show up as host network traffic."""
    import socket
    import time

    sampler = HostSampler()
    sampler.sample()
    start = time.monotonic()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    with srv, c, s:
        payload = b"x" * 20_000_000
        sender = __import__("threading").Thread(target=c.sendall, args=(payload,))
        sender.start()
        got = 0
        while got < len(payload):
            got += len(s.recv(1 << 20))
        sender.join()
    data = sampler.sample()
    elapsed = time.monotonic() - start
    assert data["net_rx_bps"] >= 0 and data["net_tx_bps"] >= 0
    assert data["net_rx_bps"] * elapsed < 10_000_000  # the 20 MB on lo are not counted


def test_host_channel_is_a_valid_name() -> None:
    from pulseboard.protocol import check_channel

    assert check_channel(host_channel("my host!.local")) == "sys.my-host-.local"


async def test_failed_samples_are_logged_once_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    published: list[dict[str, Any]] = []
    calls = 0
    done = asyncio.Event()

    async def flaky(ch: str, data: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ConnectionError("broker down")
        published.append(data)
        if len(published) == 2:
            done.set()

    caplog.set_level(logging.INFO, logger="pulseboard.collector")
    task = asyncio.create_task(collect(flaky, 0.01, "sys.test"))
    await asyncio.wait_for(done.wait(), 10)
    task.cancel()
    warnings = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "broker down" in warnings[0].getMessage()
    assert any("recovered" in r.getMessage() for r in caplog.records)
    assert len(published) >= 2 and "cpu_percent" in published[0]  # more may land before this task runs again
