"""`pulseboard watch` figures on this machine, against the issue's targets, with baselines.

    .venv/bin/python bench/watch.py [--runs 10] [--steps 2000] [--tags 50] [--seconds 20] [--latency-steps 100]

1. Throughput: event files of `--runs` runs x `--steps` steps x `--tags` scalars (written
   beforehand), read by one in-process `Watcher` and published to a local server on the
   default store (sqlite://), timed until the server has numbered every step.
   Target >= 200,000 scalars/s. Baselines on the same files: reading them with
   `tbevents.parse` and nothing else; TensorBoard's own loader (`RawEventFileLoader` and
   `Event.FromString`, its pure-Python CRC) on one run; `pulseboard.log` of the same messages.
2. Step written -> point received by a WebSocket subscriber (the live chart's transport), with
   `pulseboard watch` polling (its default 0.2 s): a step of 10 scalars flushed to an event file
   every 0.1 s; p50/p95/max. Target p95 <= 1 s. Baseline: the same steps sent with `pulseboard.log`.
3. Watcher CPU while `--runs` runs log 100 scalars/s each (10 steps/s x 10 tags, written by a
   child process), over `--seconds`: CPU seconds of the `pulseboard watch` process / wall seconds.
   Target <= 5% of one core. Baseline: the same watcher with nothing being written.

Starts its own `pulseboard serve` processes; about a minute at the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboardX.record_writer import RecordWriter

from harness.channels import top_seq
from harness.servers import PULSEBOARD, ServerProcess, wait_until
from harness.tokens import token
from pulseboard.client import Client
from pulseboard.sender import Sender
from pulseboard.tbevents import message, parse
from pulseboard.tbwatch import Watcher

ROOT = Path(__file__).resolve().parent.parent


def step_records(step: int, tags: int, wall: float) -> list[bytes]:
    """One event per scalar, as SummaryWriter.add_scalar writes them."""
    return [Event(wall_time=wall, step=step, summary=Summary(value=[
        Summary.Value(tag=f"train/m{k}", simple_value=step * 0.001 + k)])).SerializeToString() for k in range(tags)]


def write_runs(logdir: Path, runs: int, steps: int, tags: int) -> None:
    for r in range(runs):
        (logdir / f"run{r}").mkdir(parents=True)
        w = RecordWriter(str(logdir / f"run{r}" / "events.out.tfevents.1.bench"))
        w.write(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        for s in range(steps):
            for rec in step_records(s, tags, time.time()):
                w.write(rec)
        w.close()


def throughput(args: argparse.Namespace, tmp: Path) -> None:
    logdir = tmp / "logs"
    t0 = time.perf_counter()
    write_runs(logdir, args.runs, args.steps, args.tags)
    files = sorted(logdir.glob("*/*tfevents*"))
    total_scalars, total_steps = args.runs * args.steps * args.tags, args.runs * args.steps
    print(f"\n## 1. throughput: {args.runs} runs x {args.steps} steps x {args.tags} scalars = "
          f"{total_scalars:,} scalars in {sum(f.stat().st_size for f in files) / 1e6:.0f} MB "
          f"(written in {time.perf_counter() - t0:.1f} s)")

    print("| what | scalars/s (wall) | scalars per CPU-second: this process; the server |")
    print("|---|---|---|")
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for f in files:
        p = parse(f.read_bytes())
        n += sum(len(s.fields) for s in [*p.steps, *([p.tail] if p.tail else [])])
    row("baseline: read + tbevents.parse only, no publishing", n, t0, c0)

    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for raw in RawEventFileLoader(str(files[0])).Load():
        for v in Event.FromString(raw).summary.value:
            if v.WhichOneof("value") == "simple_value":
                n += 1
    row("baseline: TensorBoard's RawEventFileLoader (1 run)", n, t0, c0)

    server = ServerProcess().start()  # sqlite://, the default store, in a fresh data dir
    try:
        msgs = [(f"base.run{i}", message(s), s.ts) for i, f in enumerate(files)
                for s in parse(f.read_bytes()).steps]
        sender = Sender(server.url, token(), max_queue=len(msgs) + 1)
        srv = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
        t0, c0, s0 = time.perf_counter(), time.process_time(), cpu_seconds(srv)
        for ch, data, ts in msgs:
            sender.log(ch, data, ts=ts)
        assert sender.flush(600)
        n = sum(len(d) - 1 for _, d, _ in msgs)
        row(f"baseline: pulseboard.log of the same steps ({len(msgs):,} msgs)", n, t0, c0, srv, s0)

        w = Watcher(logdir, url=server.url, token=token(), state=tmp / "state.json", poll=0.01, verbose=False)
        w.open()
        t0, c0, s0 = time.perf_counter(), time.process_time(), cpu_seconds(srv)
        while w.sender.sent < total_steps:
            if not w.poll_once():
                time.sleep(0.005)
        row("**pulseboard watch: read, parsed, published** (target >= 200,000/s)", total_scalars, t0, c0, srv, s0)
        w.stop()
        assert top_seq(server.url, "tb.run0") == args.steps
    finally:
        server.stop()


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def row(label: str, n: int, t0: float, c0: float, server: psutil.Process | None = None, s0: float = 0.0) -> None:
    """One table row: the wall rate, and the rate per CPU-second of each process (on a shared
    machine the wall rate mostly measures the neighbours)."""
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    srv = f"; {per_cpu(n, cpu_seconds(server) - s0)}" if server is not None else ""
    print(f"| {label} | {n / wall:,.0f} | {per_cpu(n, cpu)}{srv} |")


def per_cpu(n: int, seconds: float) -> str:
    """`n` per CPU-second; a tiny run can take less CPU than the clock's tick (10 ms) shows."""
    return f"{n / seconds:,.0f}" if seconds > 0 else "under one clock tick"


def watch_proc(server: ServerProcess, logdir: Path, state: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PULSEBOARD_URL=server.url, PULSEBOARD_TOKEN=token())
    return subprocess.Popen([*PULSEBOARD, "watch", str(logdir), "--state", str(state)], env=env,
                            stderr=subprocess.DEVNULL)


def latency(args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n## 2. step written -> point at a WebSocket subscriber ({args.latency_steps} steps of 10 scalars, "
          "one each 0.1 s)")
    server = ServerProcess().start()
    logdir = tmp / "live"
    (logdir / "run").mkdir(parents=True)
    proc = watch_proc(server, logdir, tmp / "live-state.json")
    try:
        sent: dict[int, float] = {}

        def write() -> None:
            w = RecordWriter(str(logdir / "run" / "events.out.tfevents.2.bench"))
            for s in range(args.latency_steps):
                for rec in step_records(s, 10, time.time()):
                    w.write(rec)
                w.flush()
                sent[s] = time.time()
                time.sleep(0.1)
            w.close()

        def log() -> None:
            sender = Sender(server.url, token())
            for s in range(args.latency_steps):
                sent[s] = time.time()
                sender.log("base.live", {f"train/m{k}": s * 0.001 + k for k in range(10)}, step=s)
                time.sleep(0.1)
            sender.flush()

        for label, ch, produce in (("baseline: pulseboard.log -> server -> subscriber", "base.live", log),
                                   ("**pulseboard watch (polling 0.2 s) -> server -> subscriber**", "tb.run", write)):
            sent.clear()
            got = asyncio.run(receive(server, ch, args.latency_steps, produce))
            lat = sorted(got[s] - sent[s] for s in got)
            p95 = lat[int(len(lat) * 0.95) - 1]
            print(f"| {label} | p50 {statistics.median(lat) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
                  f"max {lat[-1] * 1000:.0f} ms ({len(lat)} steps) |")
        print("| (TensorBoard's own page reloads every 5 s by default: `--reload_interval`) | |")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        server.stop()


async def receive(server: ServerProcess, ch: str, steps: int, produce: object) -> dict[int, float]:
    client = Client([ch], url=server.url, token=token())
    got: dict[int, float] = {}
    client.start()
    await client.wait_connected()
    thread = threading.Thread(target=produce, daemon=True)  # type: ignore[arg-type]
    thread.start()
    async for env in client:
        got.setdefault(int(env.data["step"]), time.time())
        if len(got) == steps:
            break
    thread.join()
    return got


WRITER = """
import sys, time
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboardX.record_writer import RecordWriter
logdir, runs, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ws = [RecordWriter(f"{logdir}/run{r}/events.out.tfevents.3.bench") for r in range(runs)]
print("ready", flush=True)
end, s = time.time() + seconds, 0
while time.time() < end:
    for w in ws:
        for k in range(10):
            w.write(Event(wall_time=time.time(), step=s, summary=Summary(value=[
                Summary.Value(tag=f"train/m{k}", simple_value=s * 0.001 + k)])).SerializeToString())
        w._writer.flush()  # to the OS, as SummaryWriter's flush does, without RecordWriter.flush's fsync
    s += 1
    time.sleep(max(0.0, 0.1 - (time.time() % 0.1)))
"""


def delivered(url: str, runs: int) -> int:
    return sum(top_seq(url, f"tb.run{r}") for r in range(runs))


def cpu(args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n## 3. watcher CPU, {args.runs} runs x 100 scalars/s (10 steps/s x 10 tags), {args.seconds:g} s")
    server = ServerProcess().start()
    try:
        for label, writing in (("baseline: the same watcher, nothing written", False),
                               (f"**pulseboard watch, {args.runs} runs x 100 scalars/s**", True)):
            logdir = tmp / f"cpu-{writing}"
            for r in range(args.runs):
                (logdir / f"run{r}").mkdir(parents=True)
            state = tmp / f"cpu-{writing}.json"
            proc = watch_proc(server, logdir, state)
            writer = None
            try:
                if writing:
                    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(logdir), str(args.runs),
                                               str(args.seconds + 10)], stdout=subprocess.PIPE)
                    assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
                p = psutil.Process(proc.pid)
                wait_until(lambda: Path(str(state) + ".lock").exists(), what="the watcher to start")  # noqa: B023
                time.sleep(3)  # past the first scan and the writer's start
                c0, t0, n0 = cpu_seconds(p), time.monotonic(), delivered(server.url, args.runs)
                time.sleep(args.seconds)
                c1, t1, n1 = cpu_seconds(p), time.monotonic(), delivered(server.url, args.runs)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
                if writer is not None:
                    writer.kill()
                    writer.wait(30)
            rate = 10 * (n1 - n0) / (t1 - t0) / args.runs
            extra = f" (scalars delivered: {rate:.0f}/s per run)" if writing else ""
            print(f"| {label} | {100 * (c1 - c0) / (t1 - t0):.1f}% of one core{extra} |")
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--tags", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--latency-steps", type=int, default=100)
    ap.add_argument("--only", choices=["throughput", "latency", "cpu"], default=None)
    args = ap.parse_args()
    print(f"# bench/watch.py on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="pb-watch-bench-") as d:
        for name, fn in (("throughput", throughput), ("latency", latency), ("cpu", cpu)):
            if args.only in (None, name):
                fn(args, Path(d))
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
