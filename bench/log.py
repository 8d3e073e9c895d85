"""pulseboard.log() figures on this machine, against the issue's targets.

    .venv/bin/python bench/log.py [--calls 200000] [--deliver 200000] [--run 100000] [--restarts 10]

1. Caller cost of `Sender.log()` (median, p99), with the server up and with it down
   (nothing listening: the queue fills and drops the oldest), next to the baseline of one
   blocking `pulseboard.publish()` call. Target: <= 5 us median, <= 50 us p99.
2. Delivered messages per second from one logging process to a local server: time from
   the first `log()` to `flush()` returning, per broker (memory://, redis://, and sqlite://
   where this build has it). Target: >= 50,000 msgs/s.
3. Lost and duplicated messages over a `--run`-message run (tests/log/log_script.py in a
   child process) while the server is restarted `--restarts` times, alternating SIGTERM and
   kill -9, on redis:// (and sqlite://). Target: 0 and 0.

Starts its own redis-server and `pulseboard serve` processes on free ports; a few minutes in all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import pulseboard
from harness.channels import read_all
from harness.logs import log_across_restarts
from harness.servers import RedisProcess, ServerProcess, free_port
from harness.tokens import token
from pulseboard.sender import Sender
from pulseboard_server.brokers import open_broker

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = ROOT / "tests" / "log" / "log_script.py"


def percentiles(ns: list[int]) -> tuple[float, float]:
    ns.sort()
    return statistics.median(ns) / 1000, ns[int(len(ns) * 0.99)] / 1000


def caller_cost(sender: Sender, calls: int) -> tuple[float, float]:
    clock = time.perf_counter_ns
    out = [0] * calls
    log = sender.log
    data = {"loss": 0.5, "acc": 0.9}
    for i in range(calls):
        t0 = clock()
        log("bench.cost", data, step=i)
        out[i] = clock() - t0
    return percentiles(out)


def delivered_rate(url: str, n: int) -> float:
    sender = Sender(url, token(), max_queue=n)
    t0 = time.perf_counter()
    for i in range(n):
        sender.log("bench.rate", {"loss": 1 / (i + 1), "i": i})
    if not sender.flush(300):
        raise SystemExit(f"flush timed out: {sender.status()}")
    return n / (time.perf_counter() - t0)


def in_process_rate(url: str, n: int, batch: int = 2000) -> float:
    """The same messages through the broker's `publish_many` in this process (no HTTP, no
    sender): the floor the end-to-end figure is compared with."""
    async def go() -> float:
        broker = open_broker(url, 1000)
        await broker.start(lambda e: None, lambda c, e, s: None)
        try:
            t0 = time.perf_counter()
            for first in range(0, n, batch):
                await broker.publish_many([("bench.floor", {"loss": 1 / (i + 1), "i": i}, time.time(), None)
                                           for i in range(first, min(n, first + batch))])
            return n / (time.perf_counter() - t0)
        finally:
            await broker.close()

    return asyncio.run(go())


def restart_run(broker: str, n: int, restarts: int) -> tuple[int, int, float]:
    """(lost, duplicated, seconds) for one logging process across `restarts` server restarts."""
    args = ("--broker", broker, "--history", str(n))
    t0 = time.perf_counter()
    stopped, out, err, status = log_across_restarts(args, "bench.restart", n, 10000, restarts, 900)
    seconds = time.perf_counter() - t0
    if status != 0:
        print(f"  logging process failed: {out} {err}")
    server = ServerProcess(*args, port=stopped.port).start()
    try:
        values = [m["data"]["i"] for m in read_all(server.url, "bench.restart", page=min(5000, n))]
    finally:
        server.stop()
    lost = len(set(range(n)) - set(values))
    return lost, len(values) - len(set(values)), seconds


def start_server(broker: str) -> ServerProcess | None:
    try:
        return ServerProcess("--broker", broker, "--history", "1000").start()
    except RuntimeError as e:
        print(f"  {broker}: server did not start ({str(e).splitlines()[-1][:100]})")
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=200_000)
    p.add_argument("--deliver", type=int, default=200_000)
    p.add_argument("--run", type=int, default=100_000)
    p.add_argument("--restarts", type=int, default=10)
    args = p.parse_args()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} (figures scale with what else runs)")
    redis = RedisProcess().start()
    tmp = tempfile.mkdtemp(prefix="pb-bench-log-")
    brokers = ["memory://", redis.url, f"sqlite:///{tmp}/bench.db"]
    try:
        print("1. caller cost of log() (target: median <= 5 us, p99 <= 50 us)")
        server = start_server("memory://")
        assert server is not None
        try:
            base = [0] * 300
            for i in range(len(base)):
                t0 = time.perf_counter_ns()
                pulseboard.publish("bench.base", {"i": i}, url=server.url, token=token())
                base[i] = time.perf_counter_ns() - t0
            bmed, bp99 = percentiles(base)
            print(f"  baseline: blocking publish()       median {bmed:8.2f} us  p99 {bp99:8.2f} us")
            up = Sender(server.url, token(), max_queue=args.calls)
            med, p99 = caller_cost(up, args.calls)
            up.flush(120)
            print(f"  log(), server up   ({args.calls} calls) median {med:8.2f} us  p99 {p99:8.2f} us"
                  f"  ({bmed / med:.0f}x faster than publish)")
        finally:
            server.stop()
        # no server will ever come: waiting 10 s at exit for one would only slow the bench
        down = Sender(f"http://127.0.0.1:{free_port()}", token(), exit_timeout=0)
        med, p99 = caller_cost(down, args.calls)
        st = down.status()
        print(f"  log(), server down ({args.calls} calls) median {med:8.2f} us  p99 {p99:8.2f} us"
              f"  (queued {st.queued}, dropped {st.dropped})")

        print(f"2. delivered msgs/s, one process, {args.deliver} messages (target >= 50,000); end to end "
              f"(log() through HTTP into `pulseboard serve`) next to the broker's publish_many in-process")
        for broker in brokers:
            server = start_server(broker)
            if server is None:
                continue
            try:
                e2e = delivered_rate(server.url, args.deliver)
            finally:
                server.stop()
            floor_url = broker if not broker.startswith("sqlite") else f"sqlite:///{tmp}/floor.db"
            floor = in_process_rate(floor_url, args.deliver)
            print(f"  {broker.split(':')[0]:8s} end to end {e2e:10,.0f} msgs/s   in-process {floor:10,.0f} msgs/s"
                  f"   ({e2e / floor:.2f}x)")

        print(f"3. lost / duplicated over {args.run} messages and {args.restarts} restarts (target 0 / 0)")
        for broker in brokers[1:] if args.run > 0 else []:
            probe = start_server(broker) if broker.startswith("sqlite") else None
            if probe is not None:
                probe.stop()
            elif broker.startswith("sqlite"):
                continue
            lost, dup, secs = restart_run(broker, args.run, args.restarts)
            print(f"  {broker.split(':')[0]:8s} lost {lost}  duplicated {dup}  ({secs:.0f} s)")
    finally:
        redis.cleanup()


if __name__ == "__main__":
    main()
