"""Log redaction of a client-chosen request path: time per line as the path grows.

Before the fix, the parameter pattern tried every character of a run of name characters
as a start and backtracked over the rest of the run: `GET /` + 8,000 x `a` took seconds,
on the event loop. The baseline row runs that old pattern (the one line that differs) on
the same lines, in the same command, so a busy machine shows up in both columns.

    .venv/bin/python bench/redaction.py
"""

from __future__ import annotations

import re
import time

from pulseboard_server.redaction import redact

OLD_SECRET_PARAM = re.compile(r"([\w%.\-]+)(=|[\"']?\s*:\s*[\"']?)([^&\s\"',;}]+)")  # before: quadratic


def best_of(fn: object, line: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn(line)  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    print(f"{'path length':>12} {'redact() ms':>12} {'old pattern ms':>15}")
    for n in (1_000, 2_000, 4_000, 8_000, 64_000):
        line = f'127.0.0.1:5000 - "GET /{"a" * n} HTTP/1.1" 404'
        new = best_of(redact, line)
        old = best_of(lambda s: OLD_SECRET_PARAM.sub("", s), line, 1) if n <= 8_000 else float("nan")
        print(f"{n:>12,} {new * 1000:>12.2f} {old * 1000:>15.1f}")


if __name__ == "__main__":
    main()
