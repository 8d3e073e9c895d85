"""The host collector: psutil samples published as `sys.<hostname>`."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil

from pulseboard.protocol import FORBIDDEN, UNAUTHORIZED, PulseboardError

from .grants import Grants

log = logging.getLogger("pulseboard.collector")


def host_channel(hostname: str | None = None) -> str:
    name = hostname or socket.gethostname()
    safe = "".join(c if c.isalnum() or c in "_.:/-" else "-" for c in name)[:190] or "host"
    return "sys." + safe


class NetTotals:
    def __init__(self, bytes_recv: int, bytes_sent: int) -> None:
        self.bytes_recv, self.bytes_sent = bytes_recv, bytes_sent


def _external_net() -> NetTotals | None:
    """Network byte counters of every interface but loopback (our own traffic is not the host's)."""
    per_nic = psutil.net_io_counters(pernic=True)
    if not per_nic:
        return None
    nics = [c for name, c in per_nic.items() if not name.startswith("lo")]
    return NetTotals(sum(c.bytes_recv for c in nics), sum(c.bytes_sent for c in nics))


class HostSampler:
    """Turns psutil counters into the contract's flat numeric fields.

    Rates (bytes/s) come from the change in counters since the previous sample,
    so the first sample has none of them.
    """

    def __init__(self) -> None:
        self._last: tuple[float, Any, Any] | None = None
        psutil.cpu_percent(percpu=True)  # prime: the first call always says 0

    def sample(self) -> dict[str, float]:
        now = time.monotonic()
        per_cpu = psutil.cpu_percent(percpu=True)
        data: dict[str, float] = {
            "cpu_percent": round(sum(per_cpu) / max(1, len(per_cpu)), 2),
            "mem_percent": psutil.virtual_memory().percent,
            "swap_percent": psutil.swap_memory().percent,
            "load1": psutil.getloadavg()[0],
        }
        for i, pct in enumerate(per_cpu):
            data[f"cpu_percent.{i}"] = pct
        disk = psutil.disk_io_counters()
        net = _external_net()
        if self._last is not None:
            then, last_disk, last_net = self._last
            dt = max(now - then, 1e-6)
            if disk is not None and last_disk is not None:
                data["disk_read_bps"] = max(0.0, (disk.read_bytes - last_disk.read_bytes) / dt)
                data["disk_write_bps"] = max(0.0, (disk.write_bytes - last_disk.write_bytes) / dt)
            if net is not None and last_net is not None:
                data["net_rx_bps"] = max(0.0, (net.bytes_recv - last_net.bytes_recv) / dt)
                data["net_tx_bps"] = max(0.0, (net.bytes_sent - last_net.bytes_sent) / dt)
        else:
            data.update(disk_read_bps=0.0, disk_write_bps=0.0, net_rx_bps=0.0, net_tx_bps=0.0)
        self._last = (now, disk, net)
        return {k: round(float(v), 2) for k, v in data.items() if math.isfinite(v)}


Publish = Callable[[str, dict[str, Any]], Awaitable[object]]


async def collect(publish: Publish, interval: float, channel: str | None = None) -> None:
    """Sample every `interval` seconds and publish; a failed sample is logged once and skipped."""
    ch = channel or host_channel()
    sampler = HostSampler()
    failing = False
    next_at = time.monotonic()
    while True:
        # Wait first: CPU percentages need an interval between two readings.
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        try:
            await publish(ch, sampler.sample())
            if failing:
                log.info("collector on %s recovered", ch)
            failing = False
        except asyncio.CancelledError:
            raise
        except PulseboardError as e:
            if e.code in (FORBIDDEN, UNAUTHORIZED):  # retrying won't help: say so and stop
                raise
            failing = _log_once(failing, ch, e)
            continue
        except Exception as e:
            failing = _log_once(failing, ch, e)


def _log_once(failing: bool, ch: str, e: Exception) -> bool:
    if not failing:
        log.warning("collector sample for %s skipped: %s", ch, e)
    return True


async def run_collector(node: Any, interval: float) -> None:
    grants = Grants(sub="collector", exp=math.inf, publish=("sys.*",))

    async def publish(ch: str, data: dict[str, Any]) -> object:
        return await node.publish(grants, ch, data)

    await collect(publish, interval)
