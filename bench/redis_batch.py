"""Redis `publish_many`: one pipelined round trip per batch, one script call per channel of
it, against one round trip per message (`publish_each`), in the same run, two rounds each.

    .venv/bin/python bench/redis_batch.py [--messages 20000] [--batch 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import warnings
from collections.abc import Awaitable, Callable

from harness.servers import RedisProcess
from pulseboard.protocol import Envelope
from pulseboard_server.brokers import open_broker
from pulseboard_server.brokers.base import PublishItem, publish_each


async def compare(url: str, n: int, batch: int) -> dict[str, list[float]]:
    broker = open_broker(url, 1000)
    await broker.start(lambda e: None, lambda c, e, s: None)
    ways: dict[str, Callable[[list[PublishItem]], Awaitable[list[Envelope]]]] = {
        "publish_each (before)": lambda items: publish_each(broker, items),
        "publish_many (batched)": broker.publish_many,
    }
    rates: dict[str, list[float]] = {}
    try:
        for _ in range(2):
            for name, publish in ways.items():
                t0 = time.perf_counter()
                for first in range(0, n, batch):
                    await publish([("bench.batch", {"i": i}, time.time(), None)
                                   for i in range(first, min(n, first + batch))])
                rates.setdefault(name, []).append(n / (time.perf_counter() - t0))
    finally:
        await broker.close()
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=2_000)
    a = ap.parse_args()
    warnings.simplefilter("ignore")  # redis-py's note on the sync Retry object
    redis = RedisProcess().start()
    print(f"{a.messages:,} messages in batches of {a.batch:,} into redis-server on loopback; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        for name, rates in asyncio.run(compare(redis.url, a.messages, a.batch)).items():
            print(f"  {name:26s} " + "  ".join(f"{r:9,.0f}" for r in rates) + " msgs/s")
    finally:
        redis.cleanup()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
