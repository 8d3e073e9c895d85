"""Frame work of the chart at the sizes users chart (up to 1M points, 10 series), in headless chromium.

A page holds one `Chart` (js/src/chart.ts, bundled here with esbuild), pre-filled and
bounded at its size, then fed one message per channel per tick at 20 Hz, like live runs.
Each frame's work (the chart's draw, uPlot's paint, and the inserts since the last frame)
is timed; the p95 is printed against the issue's target. A 500-point chart runs first as
the baseline, so a busy machine shows up as a high baseline (the ratio column).

    .venv/bin/python bench/bench_chart.py            # short: a few seconds per case (CI)
    PULSEBOARD_LONG=1 .venv/bin/python bench/bench_chart.py   # 32 runs for 5 minutes (heap)

Cases: 8 series x 200,000 points (one channel, 8 fields); 32 runs x 10,000 points (32
channels of `train.*`), with the JS heap sampled after a forced GC; 8 x 200,000 with
smoothing 0.6.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "js"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--enable-precise-memory-info",
        "--js-flags=--expose-gc", "--disable-component-update", "--disable-sync", "--no-first-run"]

ENTRY = """
import { Chart } from "./src/chart";
import css from "./src/styles.css";
import uplotCss from "uplot/dist/uPlot.min.css";
(window as any).Chart = Chart;
(window as any).CSS_TEXT = uplotCss + css;
"""

RUN = (Path(__file__).parent / "bench_chart.js").read_text()


def bundle() -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".ts", dir=JS, delete=False) as f:
        f.write(ENTRY)
        entry = Path(f.name)
    try:
        out = subprocess.run(
            [str(JS / "node_modules" / ".bin" / "esbuild"), entry.name, "--bundle", "--format=iife",
             "--loader:.css=text", "--target=es2020"],
            cwd=JS, check=True, capture_output=True, text=True,
        )
    finally:
        entry.unlink()
    return out.stdout


def main() -> None:
    long = os.environ.get("PULSEBOARD_LONG") == "1"
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds per case")
    ap.add_argument("--heap-seconds", type=float, default=300.0 if long else 20.0,
                    help="seconds of the 32-run case (heap)")
    args = ap.parse_args()
    cases: list[tuple[str, dict[str, Any], float]] = [
        ("8 series x 200,000 points", {"runs": 1, "fields": 8, "points": 200_000, "smoothing": 0}, 8.0),
        ("32 runs x 10,000 points", {"runs": 32, "fields": 1, "points": 10_000, "smoothing": 0,
                                     "heapEvery": 5, "seconds": args.heap_seconds}, 8.0),
        ("8 x 200,000, smoothing 0.6", {"runs": 1, "fields": 8, "points": 200_000, "smoothing": 0.6}, 10.0),
    ]
    code = bundle()
    results = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 500})
        page.set_content("<!doctype html><html><body></body></html>")
        page.add_script_tag(content=code)
        small = {"runs": 1, "fields": 8, "points": 500, "smoothing": 0, "seconds": 2}
        page.evaluate(RUN, small)  # warm up the JIT
        base = page.evaluate(RUN, {**small, "seconds": 3})
        print(f"baseline (8 x 500 points): frame work p95 {base['work_p95']:.2f} ms, "
              f"{base['tick_rate']:.1f} ticks/s")
        cols = ("case", "held", "drawn", "ticks/s", "frames/s", "draw p95", "add p95", "work p95", "target", "x base")
        print(f"{cols[0]:<28}" + "".join(f"{c:>10}" for c in cols[1:]))
        for name, cfg, target in cases:
            r = page.evaluate(RUN, {"seconds": args.seconds, "heapEvery": 0, **cfg})
            ok = r["work_p95"] <= target
            ratio = r["work_p95"] / max(base["work_p95"], 0.01)
            print(f"{name:<28}{r['held']:>10}{r['drawn']:>10}{r['tick_rate']:>10.1f}{r['fps']:>10.1f}"
                  f"{r['draw_p95']:>8.2f}ms{r['add_p95']:>8.2f}ms{r['work_p95']:>8.2f}ms{target:>8.0f}ms"
                  f"{ratio:>9.1f}x  {'ok' if ok else 'OVER'}")
            heap = [h / 2**20 for h in r.pop("heap")]
            if heap:
                first, last = heap[0], heap[-1]
                print(f"{'':<28}JS heap after GC: {first:.1f} MB at the start, {last:.1f} MB after "
                      f"{cfg['seconds']:.0f} s (max {max(heap):.1f} MB, {len(heap)} samples)")
                r["heap_mb"] = [round(h, 2) for h in heap]
            results.append({"case": name, "target_ms": target, "ok": ok, **r})
        browser.close()
    print(json.dumps({"baseline_work_p95_ms": round(base["work_p95"], 3), "long": long,
                      "load_average": [round(x, 2) for x in os.getloadavg()],
                      "cases": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in c.items()}
                                for c in results]}))


if __name__ == "__main__":
    main()
