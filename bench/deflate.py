"""What permessage-deflate costs the server per delivered frame, three ways, in one run.

- `per-client`: what uvicorn does by default (and this server did before): each client
  has its own compressor with context takeover (window 12 bits, memLevel 5), so each
  frame is compressed once per client, and each connection keeps a compressor;
- `shared`: what the server does now: no context takeover, each frame compressed once
  for all clients (`FrameCache.deflated`), and frames under DEFLATE_MIN bytes sent plain;
- `plain`: no compression (a client that offered none).

For each frame size (live frames of 1 and 20 envelopes, a backfill frame of 500), it
prints CPU per delivery over C clients (framing included, no sockets) and the bytes on
the wire, and the memory one per-client compressor holds.

    .venv/bin/python bench/deflate.py [--clients 200]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
import zlib

from pulseboard_server.fanout import DEFLATE_MIN, FrameCache
from pulseboard_server.transports.ws import text_frame


def frame(n: int, start: int = 0) -> bytes:
    envs = [json.dumps({"ch": "train/loss", "seq": i, "ts": 1765000000.0 + i * 0.02,
                        "data": {"loss": 1.0 / (i + 1), "step": i}}, separators=(",", ":"))
            for i in range(start, start + n)]
    return ("[" + ",".join(envs) + "]").encode()


def per_client(frames: list[bytes], clients: int) -> tuple[float, int]:
    """Seconds and wire bytes: every client compresses every frame with its own context."""
    ctxs = [zlib.compressobj(6, zlib.DEFLATED, -12, 5) for _ in range(clients)]
    wire = 0
    t0 = time.process_time()
    for data in frames:
        for c in ctxs:
            out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
            wire += len(text_frame(out[:-4], False))
    return time.process_time() - t0, wire


def shared(frames: list[bytes], clients: int, compress: bool) -> tuple[float, int]:
    wire = 0
    t0 = time.process_time()
    for data in frames:
        cache = FrameCache()  # one tick: every client gets the same frame
        for _ in range(clients):
            wire += len(text_frame(data, compress, cache))
    return time.process_time() - t0, wire


def context_bytes() -> int:
    """Memory one per-client compressor holds once it has compressed a frame."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    c = zlib.compressobj(6, zlib.DEFLATED, -12, 5)
    c.compress(frame(5))
    c.flush(zlib.Z_SYNC_FLUSH)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--frames", type=int, default=50, help="frames of each size")
    a = ap.parse_args()
    print(f"{a.clients} clients, {a.frames} frames of each size; DEFLATE_MIN {DEFLATE_MIN} bytes; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n| frame | bytes | way | CPU per delivery | vs plain | wire per delivery |\n|---|---|---|---|---|---|")
    for envs in (1, 20, 500):
        frames = [frame(envs, k * envs) for k in range(a.frames if envs < 500 else max(2, a.frames // 10))]
        deliveries = len(frames) * a.clients
        plain_t, plain_w = shared(frames, a.clients, False)
        rows = [("plain", plain_t, plain_w), ("shared (now)", *shared(frames, a.clients, True)),
                ("per-client (before)", *per_client(frames, a.clients))]
        for way, t, w in rows:
            print(f"| {envs} envelope(s) | {len(frames[0]):,} | {way} | {1e6 * t / deliveries:.2f} µs | "
                  f"{t / plain_t if plain_t else float('nan'):.1f}x | {w / deliveries:,.0f} B |")
    print(f"\na per-client compressor (context takeover, 12-bit window, memLevel 5) holds "
          f"{context_bytes() / 1024:.0f} KiB (zlib's own allocation, traced); shared holds none between frames")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
