"""Delivered messages/s over WebSocket, SSE and long-poll, 100 clients each, on this machine.

Starts `pulseboard serve` (memory broker, collector off) on a free port; for each
transport, connects the clients to one channel, publishes the same number of
messages over `POST publish` as fast as the server takes them, and times until
every client holds every message (checked by count and last seq). Each phase is
bounded in time, so the whole run stops by itself within about two minutes.

    .venv/bin/python bench/bench_transports.py [--clients 100] [--messages 2000] [--rounds 3]

Transports take turns, three rounds by default, and the median round is shown, so a
change in the machine's load during the run hits them all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from pulseboard_server.auth import mint_token

BUDGET = 90.0  # seconds for all rounds; no round starts that would likely overrun it
BATCH = 50  # messages per POST publish


@dataclass
class Result:
    transport: str
    clients: int
    messages: int
    delivered: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


class Client:
    """One subscriber's progress."""

    def __init__(self) -> None:
        self.count = 0
        self.last_seq = 0

    def take(self, envs: list[dict[str, object]]) -> None:
        self.count += len(envs)
        if envs:
            self.last_seq = int(envs[-1]["seq"])  # type: ignore[call-overload]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(secret: str, history: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="pb-bench-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pulseboard_server", "serve", "--port", str(port), "--collect-interval", "0",
         "--history", str(history), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PULSEBOARD_SECRET=secret),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early; see {log.name}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start")


# --- one subscriber per transport ------------------------------------------------------------


async def ws_client(url: str, tok: str, ch: str, me: Client, ready: asyncio.Event, total: int) -> None:
    ws_url = url.replace("http://", "ws://") + "/ws"
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {tok}"},
                       subprotocols=["pulseboard.v1"], max_size=None) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"op": "subscribe", "ch": {ch: None}}))
        while me.count < total:
            frame = json.loads(await ws.recv())
            if isinstance(frame, list):
                me.take(frame)
            elif frame.get("op") == "subscribed":
                ready.set()


async def sse_client(
    client: httpx.AsyncClient, url: str, tok: str, ch: str, me: Client, ready: asyncio.Event, total: int
) -> None:
    headers = {"Authorization": f"Bearer {tok}"}
    async with aconnect_sse(client, "GET", f"{url}/sse?ch={ch}", headers=headers) as src:
        async for ev in src.aiter_sse():
            if ev.event == "subscribed":
                ready.set()
            elif ev.event == "message":
                me.take(json.loads(ev.data))
                if me.count >= total:
                    return


async def poll_client(
    client: httpx.AsyncClient, url: str, tok: str, ch: str, me: Client, ready: asyncio.Event, total: int
) -> None:
    headers = {"Authorization": f"Bearer {tok}"}
    r = await client.get(f"{url}/poll", params={"ch": ch}, headers=headers)
    cursor = r.json()["cursor"]
    ready.set()
    while me.count < total:
        try:
            r = await client.get(f"{url}/poll", params={"ch": ch, "cursor": cursor}, headers=headers)
        except httpx.RemoteProtocolError:  # a kept-alive connection closed by the server meanwhile
            continue
        answer = r.json()
        me.take(answer["msgs"])
        cursor = answer["cursor"]


# --- one phase ---------------------------------------------------------------------------------


async def publish_all(url: str, tok: str, ch: str, total: int) -> float:
    """Publish `total` messages in batches; return the seconds it took."""
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=30) as pub:
        for start in range(0, total, BATCH):
            body = [{"ch": ch, "data": {"i": i, "cpu": 12.5, "mem": 43.25}}
                    for i in range(start, min(total, start + BATCH))]
            r = await pub.post(url + "/publish", json=body, headers={"Authorization": f"Bearer {tok}"})
            r.raise_for_status()
    return time.perf_counter() - started


def publisher_process(url: str, tok: str, jobs: Any, out: Any) -> None:
    """Runs in its own process, so the clients' work doesn't slow the publishing down.

    Takes (channel, count) jobs until None; answers each with the seconds it took.
    """
    while (job := jobs.get()) is not None:
        ch, total = job
        out.put(asyncio.run(publish_all(url, tok, ch, total)))


class Publisher:
    def __init__(self, url: str, tok: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.jobs, self.out = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(target=publisher_process, args=(url, tok, self.jobs, self.out), daemon=True)
        self.proc.start()

    def start(self, ch: str, total: int) -> None:
        self.jobs.put((ch, total))

    async def result(self) -> float:
        seconds: float = await asyncio.to_thread(self.out.get, True, 30)
        return seconds

    def stop(self) -> None:
        self.jobs.put(None)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


async def phase(
    transport: str, ch: str, url: str, tok: str, publisher: Publisher, clients: int, total: int, limit: float
) -> Result:
    """One transport's run on a fresh channel; past `limit` seconds of delivery it is reported incomplete."""
    mes = [Client() for _ in range(clients)]
    readies = [asyncio.Event() for _ in range(clients)]
    https = [httpx.AsyncClient(timeout=60) for _ in range(clients)] if transport != "ws" else []
    makers: dict[str, Callable[[int], Coroutine[Any, Any, None]]] = {
        "ws": lambda i: ws_client(url, tok, ch, mes[i], readies[i], total),
        "sse": lambda i: sse_client(https[i], url, tok, ch, mes[i], readies[i], total),
        "poll": lambda i: poll_client(https[i], url, tok, ch, mes[i], readies[i], total),
    }
    tasks = [asyncio.create_task(makers[transport](i)) for i in range(clients)]
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 15)
        started = time.perf_counter()
        publisher.start(ch, total)
        done, _ = await asyncio.wait(tasks, timeout=limit)
        elapsed = time.perf_counter() - started
        publishing = await publisher.result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for h in https:
            await h.aclose()
    for t in done:
        if not t.cancelled() and t.exception() is not None:
            raise RuntimeError(f"a {transport} client failed: {t.exception()!r}")
    complete = sum(1 for me in mes if me.count == total and me.last_seq == total)
    note = "" if complete == clients else f"; only {complete} of {clients} clients got everything in time"
    print(f" {transport:<5} publishing took {publishing:.2f} s, delivery to all clients {elapsed:.2f} s{note}",
          flush=True)
    return Result(transport, clients, total, sum(me.count for me in mes), elapsed)


TRANSPORTS = ("ws", "sse", "poll")


async def run(clients: int, total: int, rounds: int) -> list[Result]:
    """Up to `rounds` rounds of ws, sse, poll in turn (a change in the machine's load hits all alike).

    A round is started only while the time budget is likely to hold it.
    """
    secret = secrets.token_urlsafe(32)
    tok = mint_token(secret, "bench", ["bench.*"], ["bench.*"], ttl=3600)
    proc, url = start_server(secret, history=max(1000, total))
    publisher = Publisher(url, tok)
    try:
        results: list[Result] = []
        deadline = time.monotonic() + BUDGET
        for r in range(rounds):
            began = time.monotonic()
            for i, transport in enumerate(TRANSPORTS):
                limit = max(5.0, (deadline - time.monotonic()) / (len(TRANSPORTS) - i))
                print(f"  round {r + 1}", end="", flush=True)
                ch = f"bench.{transport}.{r}"
                results.append(await phase(transport, ch, url, tok, publisher, clients, total, limit))
            if time.monotonic() + (time.monotonic() - began) > deadline:
                break
        return results
    finally:
        publisher.stop()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    print(f"pulseboard transports: {args.clients} clients per transport, {args.messages} messages, "
          f"{args.rounds} rounds, one server process; {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}", flush=True)
    results = asyncio.run(run(args.clients, args.messages, args.rounds))
    best = {t: median([r for r in results if r.transport == t]) for t in TRANSPORTS}
    ws_rate = best["ws"].rate or 1.0
    done = len(results) // len(TRANSPORTS)
    print(f"median of {done} round{'s' if done > 1 else ''}; load average now {os.getloadavg()[0]:.2f}")
    print(f"{'transport':<10}{'clients':>8}{'messages':>10}{'delivered':>11}{'seconds':>9}{'msgs/s':>10}"
          f"{'vs ws':>8}   each round (msgs/s)")
    for t, r in best.items():
        each = " ".join(f"{x.rate:.0f}" for x in results if x.transport == t)
        print(f"{r.transport:<10}{r.clients:>8}{r.messages:>10}{r.delivered:>11}{r.seconds:>9.2f}"
              f"{r.rate:>10.0f}{r.rate / ws_rate:>8.2f}   {each}")


def median(runs: list[Result]) -> Result:
    """The run with the median rate."""
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


if __name__ == "__main__":
    main()
