"""Messages/s delivered to N WebSocket clients by one node on the memory broker.

Runs a real `pulseboard serve` subprocess, N clients in this process, and a
publisher posting batches over HTTP. Prints delivered envelopes per second for
the default send path (5 ms batching tick) and for a baseline with batching off
(`--tick 0`), and their ratio. Stops by itself.

    .venv/bin/python bench/bench_fanout.py [--clients 100] [--messages 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support import ServerProcess, token
from wsutil import open_ws, subscribe


async def count_until(ws: object, n: int, counts: list[int], i: int, deadline: float) -> None:
    while counts[i] < n and time.monotonic() < deadline:
        frame = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))  # type: ignore[attr-defined]
        if frame.startswith("["):  # data frame: count envelopes without decoding (the server is measured)
            counts[i] += frame.count('"seq":')


async def run(tick: str, clients: int, messages: int, batch: int) -> tuple[float, int]:
    srv = ServerProcess("--tick", tick, "--max-buffer", str(64 << 20), "--log-level", "warning").start()
    try:
        conns = [await open_ws(srv) for _ in range(clients)]
        for ws in conns:
            await subscribe(ws, {"bench": None})
        counts = [0] * clients
        start = time.monotonic()
        deadline = start + 60
        readers = [asyncio.create_task(count_until(ws, messages, counts, i, deadline)) for i, ws in enumerate(conns)]

        async def publisher() -> None:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token()}"}) as http:
                for first in range(0, messages, batch):
                    body = [{"ch": "bench", "data": {"i": i, "v": i * 0.5}}
                            for i in range(first, min(messages, first + batch))]
                    (await http.post(srv.url + "/publish", json=body)).raise_for_status()

        await publisher()
        await asyncio.gather(*readers, return_exceptions=True)
        elapsed = time.monotonic() - start
        delivered = sum(counts)
        for ws in conns:
            await ws.close()
        return delivered / elapsed, delivered
    finally:
        srv.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--batch", type=int, default=20, help="messages per POST publish")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    print(f"fan-out: {args.clients} WebSocket clients, {args.messages} messages "
          f"in POSTs of {args.batch}, one node, memory broker")
    results: dict[str, float] = {}
    # Alternate the two configurations and keep each one's best run, so a noisy
    # neighbour on the machine doesn't decide the ratio.
    for _ in range(args.rounds):
        for label, tick in (("batched (tick 5 ms)", "0.005"), ("baseline (tick 0)", "0")):
            rate, delivered = asyncio.run(run(tick, args.clients, args.messages, args.batch))
            results[label] = max(results.get(label, 0.0), rate)
            expected = args.clients * args.messages
            print(f"  {label:22s} {rate:12,.0f} msg/s delivered  ({delivered:,}/{expected:,})")
    print("best of each:")
    for label, rate in results.items():
        print(f"  {label:22s} {rate:12,.0f} msg/s")
    base = results["baseline (tick 0)"]
    print(f"  ratio batched/baseline: {results['batched (tick 5 ms)'] / base:.2f}x")


if __name__ == "__main__":
    main()
