"""`pulseboard publish CHANNEL` with no JSON argument: one message per JSON line on stdin.

Lines go through the same background sender as `pulseboard.log` (batched per tick,
retried with idempotency keys while the server restarts), so `tail -f metrics.jsonl |
pulseboard publish train.run1` keeps up with a fast writer. A line that is not a JSON
object (or a list of objects) is reported with its number and skipped. At the end of
input everything is flushed; the exit status is 1 if anything was skipped, and `PublishError`
is raised when the server can't be found or something was left undelivered.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from .discovery import DiscoveryError, discover_for_kernel
from .protocol import PulseboardError, check_channel
from .publish import PublishError
from .sender import Sender


def publish_lines(channel: str, url: str | None, token: str | None, flush_timeout: float,
                  lines: TextIO | None = None) -> int:
    """Publish every JSON line of `lines` (stdin) on `channel`; return the exit status."""
    try:
        check_channel(channel)
        found_url, found_token = discover_for_kernel(url, token)
    except (PulseboardError, DiscoveryError) as e:
        raise PublishError(e.code, e.detail) from None
    sender = Sender(found_url, found_token)
    source = lines if lines is not None else sys.stdin
    skipped = 0
    try:
        for n, line in enumerate(iter(source.readline, ""), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                data = None
            if not (isinstance(data, dict) or (isinstance(data, list) and all(isinstance(r, dict) for r in data))):
                skipped += 1
                print(f"pulseboard: line {n} skipped: not a JSON object", file=sys.stderr, flush=True)
                continue
            sender.log(channel, data)
    except KeyboardInterrupt:
        sender.flush(min(flush_timeout, 5.0))
        raise
    delivered = sender.flush(flush_timeout)
    status = sender.status()
    print(f"pulseboard: published {status.sent} messages", file=sys.stderr, flush=True)
    if not delivered:
        undelivered = f"{status.queued} messages not delivered in {flush_timeout:g} s: {status.last_error}"
        raise PublishError("unavailable", undelivered)
    return 1 if skipped or status.rejected else 0
