"""The embedded store's figures, each next to its target, in one run.

1. sustained publish into 10 channels with every message delivered to a subscriber
   callback, sqlite:// against memory:// in the same run: msgs/s, and CPU per message
   of the event-loop thread (delivery) and of the whole process (plus the writer thread);
2. `history_range(points=2000)` over N stored messages of one channel;
3. `pulseboard serve` start to answering /healthz with M stored messages;
4. exact resume of 10,000 missed messages after a restart (`replay` with since+epoch
   on a broker opened anew on the same file);
5. (`big`) `POST publish` of ten ~1 MB bodies: the CPU the server's event loop spends on
   each (what other clients wait for), next to the whole server's.

Each in-process figure is printed next to the same figure end to end, as a user gets it
from `pulseboard serve` on the same store: `POST publish` in bodies of 2,000 (HTTP),
`GET history?points=2000` (HTTP) and the resume as a WebSocket client (offering
permessage-deflate as Chromium does) sees it, from `subscribe` to the last envelope.
Reads and resumes also print the CPU time they took (in-process: this process's; end to end:
the server's, per request), which the load of a shared machine doesn't inflate as it does
wall time.

Smoke sizes by default (seconds); `--full` (or PULSEBOARD_LONG=1) runs the target sizes:
N = 1,000,000 and M = 10,000,000 (minutes, ~2 GB of disk); `--tiny` (the test suite's smoke
test) a tenth of the smoke sizes, enough to show that every part runs.

    .venv/bin/python bench/history.py [--full | --tiny]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from harness.servers import ServerProcess
from harness.tokens import token
from pulseboard.protocol import Envelope, Live, Since
from pulseboard_server.brokers import open_broker
from pulseboard_server.brokers.base import Broker


async def publish_load(
    url: str, total: int, many: bool = True, channels: int = 10, batch: int = 500
) -> dict[str, float]:
    """Batches of `batch` messages, as HTTP publishes of lists arrive: one `publish_many` each
    (`many`), or one `publish` per message (how the API published a list before)."""
    broker = open_broker(url, None, retention=1e12)
    delivered = 0

    def on_message(env: Envelope) -> None:
        nonlocal delivered
        delivered += 1

    await broker.start(on_message, lambda c, e, s: None)
    for c in range(channels):
        await broker.subscribe(f"load.{c}")
    per = total // channels

    async def one(c: int) -> None:  # up to 4 batches in flight per channel, like busy publishers
        ch = f"load.{c}"
        flying: list[asyncio.Future[list[Envelope]]] = []
        for first in range(0, per, batch):
            span = range(first, min(per, first + batch))
            if many:
                flying.append(asyncio.ensure_future(
                    broker.publish_many([(ch, {"i": i, "v": i * 0.5}, 1e9 + i, None) for i in span])))
            else:
                flying.append(asyncio.gather(*(broker.publish(ch, {"i": i, "v": i * 0.5}, 1e9 + i) for i in span)))
            if len(flying) >= 4:
                await flying.pop(0)
        for f in flying:
            await f

    cpu0, loop0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(channels)))
    while delivered < per * channels:
        await asyncio.sleep(0.001)
    wall, loop_cpu, cpu = time.perf_counter() - t0, time.thread_time() - loop0, time.process_time() - cpu0
    await broker.close()
    n = per * channels
    return {"rate": n / wall, "loop_us": loop_cpu / n * 1e6, "cpu_us": cpu / n * 1e6}


KEEP = ("--retention", "36500d", "--log-level", "warning")  # the bench's messages are dated 2001


async def post_load(total: int, batch: int = 2000, flying: int = 4) -> float:
    """`POST publish` of `total` messages into 10 channels of the default store, bodies of
    `batch`, `flying` requests in flight: msgs/s from the first request to the last answer."""
    srv = ServerProcess(*KEEP).start()
    auth = {"Authorization": f"Bearer {token()}", "Content-Type": "application/json"}
    bodies = [json.dumps([{"ch": f"post.{(first // batch) % 10}", "data": {"i": i, "v": i * 0.5}}
                          for i in range(first, min(total, first + batch))]).encode()
              for first in range(0, total, batch)]
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=120) as http:
            queue = list(reversed(bodies))

            async def worker() -> None:
                while queue:
                    (await http.post("/publish", content=queue.pop(), headers=auth)).raise_for_status()

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(flying)))
            return total / (time.perf_counter() - t0)
    finally:
        srv.stop()


def cpu_seconds(stat: str) -> float:
    """User + system CPU seconds from a /proc .../stat file (a process's, or one thread's)."""
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def big_bodies(n: int = 10, size: int = 1_000_000) -> tuple[float, float, int]:
    """`POST publish` of `n` bodies of about `size` bytes, one after another: the server's
    event-loop CPU per body, the whole server's, and the messages in each."""
    srv = ServerProcess(*KEEP).start()
    auth = {"Authorization": f"Bearer {token()}", "Content-Type": "application/json"}
    per = size // (len(json.dumps({"ch": "big.0", "data": {"loss": 0.123456789, "step": 123456}})) + 2)
    body = json.dumps([{"ch": "big.0", "data": {"loss": 0.123456789, "step": 100000 + i}} for i in range(per)])
    try:
        assert srv.proc is not None
        loop = f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/stat"
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            http.post("/publish", content=body, headers=auth).raise_for_status()  # the channel exists
            loop0, all0 = cpu_seconds(loop), cpu_of(srv)
            for _ in range(n):
                http.post("/publish", content=body, headers=auth).raise_for_status()
            return (cpu_seconds(loop) - loop0) / n, (cpu_of(srv) - all0) / n, per
    finally:
        srv.stop()


def cpu_of(srv: ServerProcess) -> float:
    """CPU seconds the server process has used (user + system): on a shared machine a figure
    next to the wall time that the other engineers' load doesn't inflate."""
    assert srv.proc is not None
    return cpu_seconds(f"/proc/{srv.proc.pid}/stat")


def serve(data_dir: Path) -> ServerProcess:
    return ServerProcess(*KEEP, env={"PULSEBOARD_DATA_DIR": str(data_dir)}).start()


def http_range(data_dir: Path) -> tuple[float, int, float]:
    """`GET history?ch=long&points=2000` through HTTP: best of 5, the envelopes answered, and
    the server's CPU seconds per request."""
    srv = serve(data_dir)
    try:
        auth = {"Authorization": f"Bearer {token()}"}
        times, got = [], 0
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            cpu0 = cpu_of(srv)
            for _ in range(5):
                t0 = time.perf_counter()
                r = http.get("/history", params={"ch": "long", "points": 2000}, headers=auth)
                r.raise_for_status()
                got = len(r.json()["msgs"])
                times.append(time.perf_counter() - t0)
            cpu = (cpu_of(srv) - cpu0) / 5
        return min(times), got, cpu
    finally:
        srv.stop()


async def ws_resume(data_dir: Path, since: int, epoch: str, missed: int) -> tuple[float, float]:
    """A browser-like WebSocket client resuming `since`: subscribe sent to last envelope received
    (best of 3 connections), and the server's CPU seconds per resume."""
    srv = serve(data_dir)
    try:
        times, cpu0 = [], cpu_of(srv)
        for _ in range(3):
            async with connect(srv.ws_url, additional_headers={"Authorization": f"Bearer {token()}"},
                               compression=None,
                               extensions=[ClientPerMessageDeflateFactory(client_max_window_bits=True)],
                               subprotocols=["pulseboard.v1"], max_size=None) as ws:  # type: ignore[list-item]
                await ws.recv()  # welcome
                t0 = time.perf_counter()
                await ws.send(json.dumps({"op": "subscribe", "ch": {"resume": {"since": since, "epoch": epoch}}}))
                got = 0
                while got < missed:
                    msg = json.loads(await ws.recv())
                    if isinstance(msg, list):
                        got += len(msg)
                    elif msg.get("op") == "subscribed":
                        assert msg["recovered"], msg
                times.append(time.perf_counter() - t0)
        return min(times), (cpu_of(srv) - cpu0) / 3
    finally:
        srv.stop()


async def fill(broker: Broker, ch: str, n: int, batch: int = 2000) -> None:
    for first in range(0, n, batch):
        await broker.publish_many([(ch, {"loss": (i % 1000) / 1000 + (i % 7), "step": i}, 1e9 + i, None)
                                   for i in range(first, min(n, first + batch))])


async def range_query(path: Path, n: int) -> tuple[float, float, int, float]:
    """Whole range (best of 5), middle half (best of 3), envelopes, CPU seconds per whole-range read."""
    broker = open_broker(f"sqlite://{path}", None, retention=1e12)
    await broker.start(lambda e: None, lambda c, e, s: None)
    await fill(broker, "long", n)
    times = []
    cpu0 = time.process_time()
    for _ in range(5):
        t0 = time.perf_counter()
        _, msgs, down = await broker.history_range("long", None, None, 2000)
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / 5
    parts = []
    for _ in range(3):
        t0 = time.perf_counter()
        await broker.history_range("long", 1e9 + n * 0.25, 1e9 + n * 0.75, 2000)
        parts.append(time.perf_counter() - t0)
    await broker.close()
    assert down and len(msgs) <= 2000
    return min(times), min(parts), len(msgs), cpu


def bulk_store(path: Path, n: int, channels: int = 10) -> None:
    """A store file with `n` messages, written straight with SQL (as the writer lays it out)."""
    broker = open_broker(f"sqlite://{path}", None, retention=1e12)

    async def make() -> None:  # the schema and one message per channel, through the broker
        await broker.start(lambda e: None, lambda c, e, s: None)
        for c in range(channels):
            await broker.publish(f"big.{c}", {"v": 0}, 1e9)
        await broker.close()

    asyncio.run(make())
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    per = n // channels
    for c in range(channels):
        ch_id, name = db.execute("SELECT id, name FROM channels WHERE name=?", (f"big.{c}",)).fetchone()
        for first in range(2, per + 1, 100_000):
            rows = []
            for s in range(first, min(per, first + 99_999) + 1):
                raw = json.dumps({"ch": name, "seq": s, "ts": 1e9 + s, "data": {"v": s % 100}}, separators=(",", ":"))
                rows.append((ch_id, s, 1e9 + s, raw, None))
            db.executemany("INSERT INTO msgs VALUES (?, ?, ?, ?, ?)", rows)
            db.execute("UPDATE channels SET top=? WHERE id=?", (rows[-1][1], ch_id))
            db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def start_time(data_dir: Path) -> float:
    srv = ServerProcess("--log-level", "warning", env={"PULSEBOARD_DATA_DIR": str(data_dir)})
    t0 = time.perf_counter()
    srv.start()
    took = time.perf_counter() - t0
    srv.stop()
    return took


async def resume_time(path: Path, missed: int = 10_000) -> tuple[float, float, float, float]:
    """In-process wall and CPU seconds, then over a WebSocket wall and server CPU seconds."""
    broker = open_broker(f"sqlite://{path}", None, retention=1e12)
    await broker.start(lambda e: None, lambda c, e, s: None)
    await fill(broker, "resume", 1000)
    seen = (await broker.replay("resume", Live())).info
    await fill(broker, "resume", missed)
    await broker.close()
    again = open_broker(f"sqlite://{path}", None, retention=1e12)  # the restart
    await again.start(lambda e: None, lambda c, e, s: None)
    t0, cpu0 = time.perf_counter(), time.process_time()
    rep = await again.replay("resume", Since(seen.seq, seen.epoch))
    took, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await again.close()
    assert rep.recovered and len(rep.msgs) == missed and rep.msgs[0].seq == seen.seq + 1
    return (took, cpu, *await ws_resume(path.parent, seen.seq, seen.epoch, missed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", default=os.environ.get("PULSEBOARD_LONG") == "1")
    ap.add_argument("--tiny", action="store_true", help="a tenth of the smoke sizes: only checks that it runs")
    ap.add_argument("--only", default="publish,big,range,start,resume", help="comma-separated parts to run")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    shrink = 10 if args.tiny and not args.full else 1
    load = 300_000 if args.full else 50_000 // shrink
    n_range = 1_000_000 if args.full else 50_000 // shrink
    n_start = 10_000_000 if args.full else 200_000 // shrink
    n_post = 1_000_000 if args.full else 50_000 // shrink
    tmp = Path(tempfile.mkdtemp(prefix="pb-bench-"))
    mode = "full" if args.full else "tiny (a tenth of smoke)" if args.tiny else "smoke (--full for the target sizes)"
    print(f"mode: {mode}; files in {tmp}")

    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores shared)")
    if "publish" in parts:
        runs = [("memory://", asyncio.run(publish_load("memory://", load))),
                ("sqlite://", asyncio.run(publish_load(f"sqlite://{tmp}/load.db", load))),
                ("sqlite:// 1by1", asyncio.run(publish_load(f"sqlite://{tmp}/load1.db", load, many=False)))]
        print(f"publish {load:,} msgs into 10 channels in batches of 500 (publish_many; '1by1': one publish per "
              f"message), each delivered (target >= 100,000 msgs/s, delivery CPU within 10%)")
        for name, r in runs:
            print(f"  {name:15} {r['rate']:>10,.0f} msgs/s   loop CPU {r['loop_us']:.2f} us/msg   "
                  f"process CPU {r['cpu_us']:.2f} us/msg")
        mem, sql = runs[0][1], runs[1][1]
        print(f"  sqlite/memory: rate {sql['rate'] / mem['rate']:.2f}x, "
              f"loop CPU {sql['loop_us'] / mem['loop_us']:.2f}x, process CPU {sql['cpu_us'] / mem['cpu_us']:.2f}x")
        rate = asyncio.run(post_load(n_post))
        print(f"  end to end: POST publish, {n_post:,} msgs in bodies of 2,000 into `pulseboard serve` "
              f"(default store): {rate:>10,.0f} msgs/s (target >= 100,000)")
    if "big" in parts:
        loop_s, all_s, per = big_bodies()
        print(f"  one body of ~1 MB ({per:,} msgs): server event-loop CPU {loop_s * 1000:.1f} ms per body "
              f"(the whole server {all_s * 1000:.1f} ms); the loop watchdog of the tests flags 200 ms")
    if "range" in parts:
        (tmp / "range").mkdir()
        whole, part, got, cpu = asyncio.run(range_query(tmp / "range" / "pulseboard.db", n_range))
        print(f"history_range points=2000 over {n_range:,} messages (target <= 100 ms): "
              f"whole range {whole * 1000:.1f} ms (CPU {cpu * 1000:.1f} ms; {got} envelopes), "
              f"middle half {part * 1000:.1f} ms")
        e2e, got, cpu = http_range(tmp / "range")
        print(f"  end to end: GET history?points=2000 through HTTP: {e2e * 1000:.1f} ms "
              f"(server CPU {cpu * 1000:.1f} ms; {got} envelopes)")
    if "start" in parts:
        t0 = time.perf_counter()
        (tmp / "start").mkdir()
        bulk_store(tmp / "start" / "pulseboard.db", n_start)
        size = (tmp / "start" / "pulseboard.db").stat().st_size
        print(f"  (made a {n_start:,}-message store of {size / 1e6:.0f} MB in {time.perf_counter() - t0:.0f} s)")
        took_start = start_time(tmp / "start")
        print(f"serve start to /healthz with {n_start:,} stored messages (target <= 2 s): {took_start:.2f} s")
    if "resume" in parts:
        (tmp / "resume").mkdir()
        took, cpu, e2e, e2e_cpu = asyncio.run(resume_time(tmp / "resume" / "pulseboard.db"))
        print(f"exact resume of 10,000 missed messages after a restart (target <= 50 ms): {took * 1000:.1f} ms "
              f"(CPU {cpu * 1000:.1f} ms)")
        print(f"  end to end: the same resume over a WebSocket (deflate offered), subscribe to last envelope: "
              f"{e2e * 1000:.1f} ms (server CPU {e2e_cpu * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
