"""What an explicit `--history N` costs the embedded store: the writer trims each
channel to its last N after every batch. Prints msgs/s without a count limit (the sqlite://
default) and with `--history 1000`, and their ratio, from runs in this one command.

    .venv/bin/python bench/history_count.py [--messages 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from pulseboard_server.brokers import open_broker
from pulseboard_server.brokers.base import PublishItem


async def rate(history: int | None, n: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        broker = open_broker(f"sqlite://{d}/bench.db", history, retention=1e12)
        await broker.start(lambda env: None, lambda ch, epoch, top: None)
        items: list[PublishItem] = [(f"c{i % 10}", {"loss": i * 0.5, "step": i}, 1000.0 + i, None) for i in range(n)]
        t = time.perf_counter()
        for k in range(0, n, 1000):
            await broker.publish_many(items[k : k + 1000])
        dt = time.perf_counter() - t
        await broker.close()
        return n / dt


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    for _ in range(a.rounds):
        free, capped = await rate(None, a.messages), await rate(1000, a.messages)
        print(f"sqlite:// publish_many, {a.messages:,} msgs over 10 channels: no count limit {free:,.0f} msgs/s, "
              f"--history 1000 {capped:,.0f} msgs/s, ratio {capped / free:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
