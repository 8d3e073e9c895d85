"""Server CPU per delivered message, publish→receive latency and loss: pulseboard against baselines.

One workload for every server: N WebSocket clients (picows, in `--procs` separate
processes) spread over C channels, one publisher sending single messages at a fixed
rate over a WebSocket. Servers: pulseboard on the memory broker, pulseboard on Redis,
a bare `websockets.broadcast()` server (bench/servers.py: no auth, no numbering) and
python-socketio with AsyncRedisManager. CPU is the server's process tree (plus
redis-server where used) over the publishing window, divided by messages delivered.

    .venv/bin/python bench/fanout.py                      # 200 clients, 50 msgs/s, 10 s each
    .venv/bin/python bench/fanout.py --rate 500            # 100k deliveries/s
    .venv/bin/python bench/fanout.py --clients 3 --rate 20 --seconds 1 --procs 1   # smoke size
    .venv/bin/python bench/fanout.py --client plain        # clients that offer no compression

Clients are browser-like by default (`--client browser`): they offer permessage-deflate
exactly as Chromium does (`permessage-deflate; client_max_window_bits`) and inflate what
comes compressed, so the figures are what a deployment serving browsers pays. The bare
server refuses the offer (the floor: no compression).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from harness.servers import RedisProcess, ServerProcess, free_port, wait_until
from harness.tokens import token

HERE = Path(__file__).resolve().parent

T_RE = re.compile(rb'"t":([0-9.]+)')
CHROMIUM_DEFLATE = "permessage-deflate; client_max_window_bits"  # Chromium's offer, byte for byte
CLIENTS = ("browser", "plain")


# --- clients (run in child processes) --------------------------------------------------


def make_listener(kind: str, state: dict[str, Any]) -> Any:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport

    lat: array[float] = state["lat"]

    class Listener(WSListener):  # type: ignore[misc]
        ready = False
        inflate: Any = None

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.inflate = zlib.decompressobj(-15)  # one per connection, as a browser keeps (any window fits)
            if kind == "pulseboard":
                transport.send(WSMsgType.TEXT, b'{"op":"subscribe","ch":{"%s":null}}' % state["ch"].encode())
            elif kind == "bare":
                self.ready = True

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type != WSMsgType.TEXT:
                return
            data = frame.get_payload_as_bytes()
            if frame.rsv1:  # compressed (permessage-deflate): the tail the sender stripped goes back on
                state["compressed"] += 1
                data = self.inflate.decompress(data + b"\x00\x00\xff\xff")
            now = time.time()
            ts = T_RE.findall(data)
            if ts:
                state["count"] += len(ts)
                for t in ts:
                    lat.append(now - float(t))
            elif kind == "pulseboard" and b'"op":"subscribed"' in data:
                self.ready = True
            elif kind == "socketio":
                if data.startswith(b"0{"):
                    transport.send(WSMsgType.TEXT, b"40")
                elif data.startswith(b"40"):
                    self.ready = True
                elif data == b"2":
                    transport.send(WSMsgType.TEXT, b"3")

    return Listener


async def run_clients(kind: str, client: str, urls: list[tuple[str, str]], ready: Any, stop: Any, out: Any,
                      seen: Any) -> None:
    from picows import ws_connect

    state: dict[str, Any] = {"count": 0, "lat": array("d"), "compressed": 0}
    headers = {"Sec-WebSocket-Extensions": CHROMIUM_DEFLATE} if client == "browser" else None
    listeners: list[Any] = []
    for ch, url in urls:
        state["ch"] = ch
        _, listener = await ws_connect(make_listener(kind, state), url, max_frame_size=64 << 20,
                                       extra_headers=headers)
        listeners.append(listener)
    while not all(li.ready for li in listeners):
        await asyncio.sleep(0.01)
    ready.put(len(listeners))
    while not stop.is_set():
        seen.value = state["count"]
        await asyncio.sleep(0.02)
    out.put((state["count"], state["lat"].tobytes(), state["compressed"]))


def client_main(kind: str, client: str, urls: list[tuple[str, str]], ready: Any, stop: Any, out: Any,
                seen: Any) -> None:
    asyncio.run(run_clients(kind, client, urls, ready, stop, out, seen))


# --- servers ------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    kind: str  # client protocol: pulseboard, bare, socketio
    redis: bool
    broker: str = "memory://"  # the embedded broker when not on Redis
    procs: list[psutil.Process] = field(default_factory=list)
    stops: list[Any] = field(default_factory=list)
    port: int = 0

    def start(self) -> None:
        redis = RedisProcess().start() if self.redis else None
        if redis is not None:
            assert redis.proc is not None
            self.stops.append(redis.stop)
            self.procs.append(psutil.Process(redis.proc.pid))
        if self.kind == "pulseboard":
            # Every bench client has the same token subject: lift the per-subject connection limit.
            args = ["--log-level", "warning", "--max-buffer", str(64 << 20), "--max-connections-per-sub", "1000000",
                    "--broker", redis.url if redis is not None else self.broker]
            srv = ServerProcess(*args).start()
            assert srv.proc is not None
            self.port, pid = srv.port, srv.proc.pid
            self.stops.append(srv.stop)
        else:
            self.port = free_port()
            extra = [redis.url] if redis is not None else []
            proc = subprocess.Popen([sys.executable, str(HERE / "servers.py"), self.kind, str(self.port), *extra],
                                    stdout=subprocess.DEVNULL)
            pid = proc.pid
            def stop() -> None:
                proc.terminate()
                proc.wait(10)

            self.stops.append(stop)
            wait_until(lambda: port_open(self.port), 20, what=f"{self.name} to listen")
        self.procs.append(psutil.Process(pid))

    def sub_url(self, ch: str) -> str:
        if self.kind == "pulseboard":
            return f"ws://127.0.0.1:{self.port}/ws?token={token(read=('*',), publish=())}"
        if self.kind == "bare":
            return f"ws://127.0.0.1:{self.port}/sub/{ch}"
        return f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket&ch={ch}"

    def cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            for q in [p, *p.children(recursive=True)]:
                t = q.cpu_times()
                total += t.user + t.system
        return total

    def stop(self) -> None:
        for stop in reversed(self.stops):
            stop()


def port_open(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


TARGETS = {  # name: (label, client protocol, uses redis)
    "bare": ("bare websockets.broadcast()", "bare", False),
    "pulseboard": ("pulseboard, memory broker", "pulseboard", False),
    "pulseboard-sqlite": ("pulseboard, sqlite:// store (the default)", "pulseboard", False),
    "pulseboard-redis": ("pulseboard, Redis (+ redis-server)", "pulseboard", True),
    "socketio": ("python-socketio + AsyncRedisManager (+ redis-server)", "socketio", True),
}


# --- the publisher ------------------------------------------------------------------


async def publish(target: Target, channels: list[str], rate: float, seconds: float) -> tuple[int, float]:
    """Send `rate` single messages a second for `seconds`, cycling the channels; (sent, achieved rate)."""
    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    opened = asyncio.get_running_loop().create_future()

    class Pub(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: WSTransport) -> None:
            if target.kind != "socketio" and not opened.done():
                opened.set_result(None)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            data = frame.get_payload_as_bytes()
            if target.kind == "socketio":
                if data.startswith(b"0{"):
                    transport.send(WSMsgType.TEXT, b"40")
                elif data.startswith(b"40") and not opened.done():
                    opened.set_result(None)
                elif data == b"2":
                    transport.send(WSMsgType.TEXT, b"3")

    if target.kind == "pulseboard":
        url = f"ws://127.0.0.1:{target.port}/ws?token={token(publish=('*',))}"
    elif target.kind == "bare":
        url = f"ws://127.0.0.1:{target.port}/pub"
    else:
        url = f"ws://127.0.0.1:{target.port}/socket.io/?EIO=4&transport=websocket"
    transport, _ = await ws_connect(Pub, url)
    await opened
    total = max(1, int(rate * seconds))
    start = time.monotonic()
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        ch = channels[i % len(channels)]
        body = b'{"ch":"%s","t":%.6f,"i":%d}' % (ch.encode(), time.time(), i)
        if target.kind == "pulseboard":
            frame = b'{"op":"publish","ch":"%s","data":%s}' % (ch.encode(), body)
        elif target.kind == "bare":
            frame = body
        else:
            frame = b'42["pub",' + body + b"]"
        transport.send(WSMsgType.TEXT, frame)
    achieved = total / max(1e-9, time.monotonic() - start)
    transport.send_close(WSCloseCode.OK)  # the server reads every message before the close, then answers it
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(transport.wait_disconnected(), 30)
    transport.disconnect()
    return total, achieved


def drain(seen: list[Any], expected: int, quiet: float = 3.0) -> None:
    """Wait until every expected message has arrived, or none has for `quiet` seconds (then some were lost)."""
    last, since = -1, time.monotonic()
    while (got := sum(v.value for v in seen)) < expected:
        if got != last:
            last, since = got, time.monotonic()
        elif time.monotonic() - since > quiet:
            return
        time.sleep(0.02)


# --- one run ------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    cpu_us: float  # server CPU per delivered message, microseconds
    p50_ms: float
    p99_ms: float
    loss: float
    delivered: int
    client_bound: str  # what limited the run: the server saturated, the clients or the publisher ("" if nothing)
    compressed: int = 0  # frames that arrived compressed


def profile_start(target: Target, profile: Path | None, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy on the server's main process (not redis-server), collapsed stacks to `profile`/NAME.txt."""
    if profile is None:
        return None
    profile.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(spy), "record", "--pid", str(target.procs[-1].pid), "--format", "raw",
                             "--nonblocking", "-o", str(profile / f"{name}.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_stop(spy: subprocess.Popen[bytes] | None, profile: Path | None, name: str) -> None:
    if spy is None or profile is None:
        return
    spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
    spy.wait(60)
    own: dict[str, int] = {}
    total = 0
    for line in (profile / f"{name}.txt").read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = re.sub(r":\d+\)$", ")", stack.rsplit(";", 1)[-1])  # one row per function
        own[leaf] = own.get(leaf, 0) + int(count)
        total += int(count)
    print(f"\nprofile of {name} (self time, top 12 of {total} samples):")
    for leaf, samples in sorted(own.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {100 * samples / total:5.1f}%  {leaf}")


def run(name: str, clients: int, channels: int, rate: float, seconds: float, procs: int,
        profile: Path | None = None, client: str = "browser") -> Result:
    label, kind, redis = TARGETS[name]
    target = Target(label, kind, redis, broker="sqlite://" if name == "pulseboard-sqlite" else "memory://")
    target.start()
    ctx = mp.get_context("spawn")
    ready, out, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    names = [f"bench{c}" for c in range(channels)]
    urls = [(names[i % channels], target.sub_url(names[i % channels])) for i in range(clients)]
    seen = [ctx.Value("q", 0) for _ in range(procs)]  # messages each client process has received so far
    workers = [ctx.Process(target=client_main, args=(kind, client, urls[k::procs], ready, stop, out, seen[k]))
               for k in range(procs)]
    try:
        for w in workers:
            w.start()
        for _ in workers:
            ready.get(timeout=120)
        wprocs = [psutil.Process(w.pid) for w in workers if w.pid is not None]
        client_cpu0 = sum(sum(p.cpu_times()[:2]) for p in wprocs)
        spy = profile_start(target, profile, name)
        cpu0, t0 = target.cpu(), time.monotonic()
        sent, achieved = asyncio.run(publish(target, names, rate, seconds))
        per_ch = [len(urls[i::channels]) for i in range(channels)]
        expected = sum(per_ch[i % channels] for i in range(sent))
        drain(seen, expected)
        cpu1, t1 = target.cpu(), time.monotonic()
        profile_stop(spy, profile, name)
        client_cpu = sum(sum(p.cpu_times()[:2]) for p in wprocs) - client_cpu0
        stop.set()
        results = [out.get(timeout=60) for _ in workers]
    finally:
        stop.set()
        for w in workers:
            w.join(30)
            if w.is_alive():
                w.kill()
        target.stop()
    delivered = sum(n for n, _, _ in results)
    lat = array("d")
    for _, raw, _ in results:
        lat.frombytes(raw)
    ordered = sorted(lat)
    window = t1 - t0
    bound = []
    busy = (cpu1 - cpu0) / window
    if busy > 0.9:
        bound.append(f"server saturated ({100 * busy:.0f}% of a core)")
    if window > seconds + 2:
        bound.append(f"fell behind: {seconds:g} s of publishing took {window:.0f} s to deliver")
    if client_cpu > 0.85 * window * len(workers):
        bound.append(f"client processes at {100 * client_cpu / (window * len(workers)):.0f}% CPU")
    if achieved < 0.95 * rate:
        bound.append(f"publisher reached {achieved:.0f} of {rate:.0f} msgs/s")

    def pct(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    return Result(label, 1e6 * (cpu1 - cpu0) / max(1, delivered), pct(0.5), pct(0.99),
                  1 - delivered / max(1, expected), delivered, "; ".join(bound), sum(c for _, _, c in results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--rate", type=float, default=50.0, help="messages published per second (all channels)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: " + ", ".join(TARGETS))
    ap.add_argument("--profile", type=Path, help="write py-spy stacks of each server here and print the top")
    ap.add_argument("--client", choices=CLIENTS, default="browser",
                    help="browser: offer permessage-deflate as Chromium does (default); plain: offer nothing")
    a = ap.parse_args()
    names = [n for n in a.targets.split(",") if n]
    deliveries = a.rate * a.clients / a.channels
    print(f"{a.clients} clients in {a.procs} processes, {a.channels} channel(s), {a.rate:g} msgs/s "
          f"(~{deliveries:,.0f} deliveries/s), {a.seconds:g} s, {a.client} clients; {os.cpu_count()} cores, "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results = {n: run(n, a.clients, a.channels, a.rate, a.seconds, a.procs, a.profile, a.client) for n in names}
    base = results.get("bare")
    print("\n| server | CPU/delivered msg | vs bare | p50 | p99 | loss | frames compressed | limit |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in results.values():
        ratio = f"{r.cpu_us / base.cpu_us:.2f}x" if base and base.cpu_us > 0 else ""
        print(f"| {r.label} | {r.cpu_us:.1f} µs | {ratio} | {r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms | "
              f"{100 * r.loss:.2f}% | {r.compressed} | {r.client_bound or '-'} |")
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
