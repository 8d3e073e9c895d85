"""A logging process (`pulseboard.log` in a child) across server restarts, for tests and benches."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from harness.channels import top_seq
from harness.servers import ROOT, ServerProcess, wait_until
from harness.tokens import token

LOG_SCRIPT = ROOT / "tests" / "log" / "log_script.py"


def log_across_restarts(args: Sequence[str], ch: str, n: int, rate: int, restarts: int,
                        timeout: float) -> tuple[ServerProcess, str, str, int]:
    """Log `n` messages on `ch` at `rate`/s from a child process while the server (`serve *args`)
    is restarted `restarts` times, spread over the run, alternating SIGTERM and kill -9.

    Returns (the last server, stopped; the child's stdout, stderr, exit status). Restart it with
    `ServerProcess(*args, port=server.port)` to read back what it kept.
    """
    server = ServerProcess(*args).start()
    env = dict(os.environ, PULSEBOARD_URL=server.url, PULSEBOARD_TOKEN=token())
    child = subprocess.Popen([sys.executable, str(LOG_SCRIPT), ch, str(n), str(rate), str(int(timeout))],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for k in range(restarts):
            target = (k + 1) * n // (restarts + 2)
            wait_until(lambda t=target, url=server.url: top_seq(url, ch) >= t, timeout, 0.05,
                       what=f"seq {target} before restart {k + 1}")
            if k % 2 == 0:
                server.terminate()
            else:
                server.kill()
            server = ServerProcess(*args, port=server.port).start()
        out, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
        server.stop()
    return server, out, err, child.returncode
