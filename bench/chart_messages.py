"""How soon a chart says why it shows nothing, in headless chromium, next to a baseline: the
time the same widget takes to go live with data on a good channel, in the same run.

Scenarios: no server at the URL ("cannot reach ..."), a channel typo ("no data yet on ...;
readable channels like it: ..."), a field typo ("no field ... yet; its fields: ..."). Also
`LiveChart(...)` construction with nothing configured, in a plain Python process (discovery
failing over to its message). Targets: the messages within 5 s, `LiveChart` within 3 s.

    .venv/bin/python bench/chart_messages.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.browsers import PageServer, chromium, open_widget, widget_state
from harness.charts import VIEW, publish
from harness.servers import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent


def seconds_until(page: Any, js: str, limit: float = 30.0) -> float:
    t0 = time.monotonic()
    page.wait_for_function(js, timeout=limit * 1000, polling=20)
    return time.monotonic() - t0


MESSAGE = "() => { const m = document.querySelector('.pulseboard-message'); return m && !m.hidden && m.textContent }"
LIVE = "() => { const c = document.querySelector('.pulseboard-chart'); return c && c.dataset.points > 0 }"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    srv = ServerProcess("--broker", "memory://").start()
    publish(srv.url, [{"ch": "train.run1", "data": {"loss": 1 / (i + 1), "step": i}} for i in range(50)])
    pages = PageServer()
    dead = f"http://127.0.0.1:{free_port()}"
    cases = {
        "baseline: live with data": (dict(channels=["train.run1"], fields=["loss"], url=srv.url), LIVE),
        "no server at the URL": (dict(channels=["train.run1"], fields=["loss"], url=dead), MESSAGE),
        "channel typo": (dict(channels=["train.rn1"], fields=["loss"], url=srv.url), MESSAGE),
        "field typo": (dict(channels=["train.run1"], fields=["los"], url=srv.url), MESSAGE),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    try:
        with chromium() as b:
            for _ in range(args.runs):
                for name, (state, until) in cases.items():
                    ctx = b.new_context()
                    page = ctx.new_page()
                    # From the widget's render (the page is loaded and the bundle imported) on.
                    open_widget(page, pages.url, widget_state(x="step", token=VIEW, **state))
                    times[name].append(seconds_until(page, until))
                    ctx.close()
    finally:
        srv.stop()
        pages.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSEBOARD_", "JUPYTERHUB_"))}
    code = ("import time; t = time.monotonic(); from pulseboard import LiveChart; LiveChart('x'); "
            "print(time.monotonic() - t)")
    lc = [float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                               check=True).stdout) for _ in range(args.runs)]
    print(f"{'scenario':32} {'median s':>9} {'max s':>7}  (target)")
    for name, ts in times.items():
        target = "" if name.startswith("baseline") else "(5 s)"
        print(f"{name:32} {statistics.median(ts):9.2f} {max(ts):7.2f}  {target}")
    print(f"{'LiveChart() with no settings':32} {statistics.median(lc):9.2f} {max(lc):7.2f}  (3 s; import included)")


if __name__ == "__main__":
    main()
