"""How many points the chart redraws per frame at 20 Hz without falling behind, in chromium.

A page holds one `Chart` (js/src/chart.ts, bundled here with esbuild) of `--series`
series. Its buffer is pre-filled to N points (and bounded at N, so it stays full); then a
timer adds one message per tick at 20 Hz for a few seconds, like a live 20 Hz channel.
For each N we time each redraw (uPlot setData and paint) plus the insert/trim work, and
count frames drawn against ticks received. A size keeps up when the page's own 20 Hz timer
still fires at least 19 times a second (browser work we can't time, such as paint and GC,
shows up as late ticks), it draws a frame for at least 90% of the ticks (rAF may fold two
late ticks into one frame) and the 95th-percentile work per tick fits in the 50 ms between
ticks. The figure printed is the largest N that keeps up, and the largest whose p95 also
fits a 60 fps frame (16.7 ms). A 500-point baseline first tells whether the machine is busy.

    .venv/bin/python bench/bench_chart.py [--series 4] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "js"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SIZES = [1_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000]

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
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--sizes", type=str, default=",".join(map(str, SIZES)))
    args = ap.parse_args()
    code = bundle()
    keeps_up = last_ok = smooth = misses = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 500})
        page.set_content("<!doctype html><html><body></body></html>")
        page.add_script_tag(content=code)
        print(f"chart of {args.series} series, one message per tick at 20 Hz, {args.seconds:g} s per size")
        cols = ("points", "ticks/s", "draws/s", "draw p50", "draw p95", "add p95", "p95/tick")
        print(" ".join(f"{c:>9}" for c in cols))
        page.evaluate(RUN, [500, args.series, 1])  # warm up the JIT
        base = page.evaluate(RUN, [500, args.series, 2])
        starved = base["tick_rate"] < 19.5
        if starved:
            print(f"note: even a 500-point chart gets {base['tick_rate']:.1f} ticks/s: the machine is busy")
        for n in (int(s) for s in args.sizes.split(",")):
            r = page.evaluate(RUN, [n, args.series, args.seconds])
            # Falling behind: the page's own 20 Hz timer runs late (hidden browser work such as
            # paint and GC counts too), frames are skipped, or a tick's work overruns 50 ms.
            ok = r["tick_rate"] >= 19 and r["fps"] >= 0.9 * r["tick_rate"] and r["work_p95"] < 50
            ms = [f"{r[k]:>7.1f}ms" for k in ("draw_p50", "draw_p95", "add_p95", "work_p95")]
            rates = f"{r['points']:>9} {r['tick_rate']:>9.1f} {r['fps']:>9.1f}"
            print(rates, *ms, "ok" if ok else "falls behind")
            if ok and keeps_up == last_ok:
                keeps_up = last_ok = n
                if r["work_p95"] < 1000 / 60:
                    smooth = n
            elif not ok:
                misses += 1
                if misses >= 2:
                    break
        browser.close()
    print(json.dumps({"series": args.series, "max_points_at_20hz": keeps_up,
                      "max_points_within_60fps_frame": smooth, "busy_machine": starved,
                      "load_average": [round(x, 2) for x in os.getloadavg()]}))
    print(f"the chart redraws up to {keeps_up:,} points ({args.series} series) per frame at 20 Hz without "
          f"falling behind; up to {smooth:,} within a 16.7 ms frame")


if __name__ == "__main__":
    main()
