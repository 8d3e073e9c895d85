"""The kernel relay's figures: publish -> relayed message latency, and the kernel's CPU.

Starts `pulseboard serve` (memory broker) and a real ipykernel (jupyter_client). In the kernel,
a `Relay` (widget/pulseboard/relay.py) sends over a comm, as a relayed chart does; this script
reads the kernel's IOPub like a front end and times each envelope from its publish (`ts`, set
when the publisher sends it) to its arrival on IOPub. Not included: the Jupyter server's
WebSocket hop and the browser's drawing (a few ms on one machine).

    .venv/bin/python bench/relay.py [--seconds 10]

Figures, in one run:
  - p50/p99 publish -> IOPub at 100 msgs/s (target: p99 <= 100 ms);
  - the kernel's CPU while idle (baseline) and while relaying 1,000 msgs/s
    (target: <= 10% of one core above the baseline).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from jupyter_client.manager import KernelManager

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_transports import start_server
from pulseboard_server.auth import mint_token

CH = "bench.relay"
KERNEL_CODE = """
from comm import create_comm
from pulseboard.relay import Relay
_c = create_comm(target_name="pulseboard-bench")
_r = Relay(lambda m: _c.send(m), lambda: ({url!r}, {token!r}), lambda: {token!r})
_r.start({{{ch!r}: None}})
"""


def publisher(url: str, token: str, rate: float, seconds: float, stop: threading.Event) -> int:
    """Publish `rate` msgs/s in 10 ms batches, each message's ts = when it is sent."""
    sent = 0
    per = max(1, round(rate / 100))
    start = time.monotonic()
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=5) as http:
        while not stop.is_set() and time.monotonic() - start < seconds:
            now = time.time()
            body = [{"ch": CH, "data": {"v": sent + k}, "ts": now} for k in range(per)]
            http.post(url + "/publish", json=body).raise_for_status()
            sent += per
            due = start + sent / rate
            time.sleep(max(0.0, due - time.monotonic()))
    return sent


def drain(km: KernelManager, arrivals: queue.Queue[tuple[float, float, bool]], stop: threading.Event) -> None:
    """Read IOPub like a front end: (publish ts, arrival, thinned) per relayed envelope."""
    kc = km.client()
    kc.start_channels()
    while not stop.is_set():
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if msg["msg_type"] != "comm_msg":
            continue
        now = time.time()
        data: dict[str, Any] = msg["content"]["data"]
        if data.get("type") != "relay":
            continue
        for frame in json.loads(data["text"]):
            if isinstance(frame, list):
                for env in frame:
                    arrivals.put((float(env["ts"]), now, bool(data.get("thinning"))))
    kc.stop_channels()


def direct_baseline(url: str, token: str, seconds: float) -> list[float]:
    """The same 100 msgs/s to a direct WebSocket subscriber (the Python client): the baseline."""
    import asyncio

    from pulseboard.client import Client

    lat: list[float] = []
    stop = threading.Event()

    async def follow() -> None:
        client = Client([CH], url=url, token=token)
        async for env in client:
            lat.append((time.time() - env.ts) * 1000)
            if stop.is_set():
                return

    def run() -> None:
        with contextlib.suppress(Exception):
            asyncio.run(asyncio.wait_for(follow(), seconds + 10))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(1.0)
    publisher(url, token, 100, seconds, threading.Event())
    time.sleep(0.5)
    stop.set()
    publisher(url, token, 100, 0.05, threading.Event())  # wakes the follower to see `stop`
    t.join(15)
    return lat


def pct(lat: list[float]) -> str:
    q = statistics.quantiles(sorted(lat), n=100) if len(lat) > 2 else [float("nan")] * 99
    return f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms"


def cpu_share(proc: psutil.Process, seconds: float) -> float:
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    return max(0.0, after.user + after.system - before.user - before.system) / seconds


def phase(url: str, token: str, rate: float, seconds: float, kernel: psutil.Process,
          arrivals: queue.Queue[tuple[float, float, bool]]) -> tuple[list[float], float, int, int]:
    while not arrivals.empty():
        arrivals.get_nowait()
    stop = threading.Event()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(publisher(url, token, rate, seconds, stop)))
    t.start()
    time.sleep(1.0)  # settle, then measure the kernel's CPU over the steady part
    cpu = cpu_share(kernel, max(1.0, seconds - 2.0))
    t.join()
    time.sleep(0.5)
    lat: list[float] = []
    thinned = 0
    while not arrivals.empty():
        ts, at, thin = arrivals.get_nowait()
        lat.append((at - ts) * 1000)
        thinned += thin
    return lat, cpu, result[0] if result else 0, thinned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    secret = secrets.token_hex(16)
    os.environ["PULSEBOARD_SECRET"] = secret
    server, url = start_server(secret, 100_000)
    token = mint_token(secret, "bench", read=["*"], publish=["*"])
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=dict(os.environ))
    stop = threading.Event()
    arrivals: queue.Queue[tuple[float, float, bool]] = queue.Queue()
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        kernel = psutil.Process(km.provisioner.process.pid)  # type: ignore[union-attr]
        idle = cpu_share(kernel, 3.0)
        reply = kc.execute_interactive(KERNEL_CODE.format(url=url, token=token, ch=CH), timeout=30)
        if reply["content"]["status"] != "ok":
            raise SystemExit(f"kernel code failed: {reply['content']}")
        reader = threading.Thread(target=drain, args=(km, arrivals, stop), daemon=True)
        reader.start()
        time.sleep(2.0)  # the relay subscribes
        relaying_idle = cpu_share(kernel, 3.0)
        lat, _, sent100, _ = phase(url, token, 100, args.seconds, kernel, arrivals)
        _, cpu1000, sent1000, thinned = phase(url, token, 1000, args.seconds, kernel, arrivals)
        base = direct_baseline(url, token, args.seconds)
        print(f"pulseboard kernel relay on {os.cpu_count()} cores, python {sys.version.split()[0]}, "
              f"load {os.getloadavg()[0]:.1f}")
        print(f"  publish -> IOPub at 100 msgs/s, relayed: {len(lat)}/{sent100} envelopes, {pct(lat)} "
              "(target p99 <= 100 ms)")
        print(f"  publish -> direct WebSocket subscriber at 100 msgs/s (baseline): {len(base)} envelopes, {pct(base)}")
        print(f"  kernel CPU, idle kernel (baseline):          {idle * 100:5.1f}% of a core")
        print(f"  kernel CPU, relay subscribed, no traffic:    {relaying_idle * 100:5.1f}% of a core")
        print(f"  kernel CPU, relaying 1,000 msgs/s ({sent1000} sent, {thinned} in thinned batches): "
              f"{cpu1000 * 100:5.1f}% of a core (target <= 10%)")
        kc.stop_channels()
    finally:
        stop.set()
        km.shutdown_kernel(now=True)
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
