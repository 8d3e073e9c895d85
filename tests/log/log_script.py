"""A training-loop stand-in: log N messages {"i": 0..N-1} at about RATE per second, then flush.

Usage: python log_script.py CHANNEL N RATE FLUSH_TIMEOUT   (server from PULSEBOARD_URL/TOKEN)
Prints the sender's status as JSON; exits 0 when everything was delivered.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import pulseboard


def main() -> int:
    channel, n, rate, flush_timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    chunk = max(1, int(rate / 100))
    start = time.monotonic()
    for i in range(n):
        pulseboard.log(channel, {"i": i})
        if i % chunk == chunk - 1:  # pace like a training loop would
            time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    ok = pulseboard.flush(timeout=flush_timeout)
    print(json.dumps(dataclasses.asdict(pulseboard.sender_status())), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
