"""What a kernel snapshot costs: time to read a channel's history and build the snapshot, and
the size of what goes into the notebook (snapshot JSON, static SVG), for a run of N steps.

Runs a real `pulseboard serve` subprocess (memory broker, --history N) holding N messages of
F fields, then times `snapshot.take` (what runs on display and after every cell) against a
baseline in the same run: one `GET history` page of 1000 messages. Prints the figures and
the ratio, and the check run after a cell that published nothing (one `limit=1` request,
then the snapshot is kept). Stops by itself.

    .venv/bin/python bench/bench_snapshot.py [--steps 20000] [--fields 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request

from harness.servers import ServerProcess
from harness.tokens import token
from pulseboard import snapshot
from pulseboard.svg import render


def timed(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--fields", type=int, default=2)
    args = ap.parse_args()
    server = ServerProcess("--history", str(args.steps)).start()
    try:
        tok = token("bench")
        for start in range(0, args.steps, 1000):
            body = [{"ch": "bench.run",
                     "data": {"step": s, **{f"f{k}": (s * (k + 1)) % 97 / 7 for k in range(args.fields)}}}
                    for s in range(start, min(args.steps, start + 1000))]
            req = urllib.request.Request(server.url + "/publish", data=json.dumps(body).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=30).read()

        def one_page() -> None:
            req = urllib.request.Request(server.url + "/history?ch=bench.run&limit=1000",
                                         headers={"Authorization": f"Bearer {tok}"})
            urllib.request.urlopen(req, timeout=30).read()

        snap = snapshot.take(server.url, tok, ["bench.run"], None, "step", None)
        base = timed(one_page)
        took = timed(lambda: snapshot.take(server.url, tok, ["bench.run"], None, "step", None))
        unchanged = timed(lambda: snapshot.tops(server.url, tok, ["bench.run"]))
        svg = render(snap, "bench", "step")
        print(f"steps {args.steps}, fields {args.fields}")
        print(f"baseline: one history page of 1000     {base * 1000:8.1f} ms")
        print(f"kernel snapshot of the whole run       {took * 1000:8.1f} ms  ({took / base:.1f}x the baseline)")
        print(f"after a cell with nothing new (tops)   {unchanged * 1000:8.1f} ms  ({unchanged / base:.2f}x)")
        print(f"snapshot rows {len(snap['x'])}, JSON {len(json.dumps(snap)) / 1024:.0f} KiB; "
              f"static SVG {len(svg) / 1024:.0f} KiB")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
