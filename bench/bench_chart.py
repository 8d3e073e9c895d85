"""How many points the chart redraws per frame at 20 Hz without falling behind, in chromium.

A page holds one `Chart` (js/src/chart.ts, bundled here with esbuild) of `--series`
series. Its buffer is pre-filled to N points (and bounded at N, so it stays full); then a
timer adds one message per tick at 20 Hz for a few seconds, like a live 20 Hz channel.
For each N we measure the time of each redraw (uPlot setData and paint) plus the
insert/trim work, and count frames drawn against ticks sent. A size keeps up when it draws
at least 19 frames a second (of the 20 ticks) and its 95th-percentile work per tick fits in the 50 ms between
ticks; the figure printed is the largest N that keeps up (and the largest whose p95 also
fits one 60 fps frame, 16.7 ms).

    .venv/bin/python bench/bench_chart.py [--series 4] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "js"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SIZES = [1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 50_000, 100_000]

ENTRY = """
import { Chart } from "./src/chart";
import css from "./src/styles.css";
import uplotCss from "uplot/dist/uPlot.min.css";
(window as any).Chart = Chart;
(window as any).CSS_TEXT = uplotCss + css;
"""

RUN = """async ([n, series, seconds]) => {
  document.body.innerHTML = "";
  const style = document.createElement("style"); style.textContent = window.CSS_TEXT; document.head.appendChild(style);
  const host = document.createElement("div"); host.style.width = "1000px"; document.body.appendChild(host);
  const fields = Array.from({length: series}, (_, i) => "f" + i);
  const chart = new window.Chart(host, {channels: ["bench"], fields, window: 1e9, maxPoints: n, height: 300});
  const t0 = Date.now() / 1000 - n / 20;
  const env = (seq) => {
    const data = {};
    for (let i = 0; i < series; i++) data["f" + i] = Math.sin(seq / (50 + i * 7)) * (i + 1) + Math.random() * 0.2;
    return {ch: "bench", seq, ts: t0 + seq / 20, data};
  };
  const fill = [];
  for (let s = 1; s <= n; s++) fill.push(env(s));
  chart.add(fill);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  // Time each redraw: wrap the chart's draw (setData + paint happen inside it).
  const draws = [];
  const draw = chart.draw.bind(chart);
  // uPlot paints in a microtask queued by setData; ours, queued after, runs once it is done.
  chart.draw = () => { const a = performance.now(); draw(); queueMicrotask(() => draws.push(performance.now() - a)); };
  const adds = [];
  const frames0 = chart.frames;
  let seq = n, ticks = 0;
  const start = performance.now();
  let elapsed = 0;
  await new Promise((done) => {
    const timer = setInterval(() => {
      const a = performance.now();
      chart.add([env(++seq)]);
      adds.push(performance.now() - a);
      ticks++;
      if (a - start >= seconds * 1000) { clearInterval(timer); elapsed = (performance.now() - start) / 1000; setTimeout(done, 100); }
    }, 50);
  });
  const frames = chart.frames - frames0;
  const fps = frames / elapsed;
  const points = host.querySelector(".pulseboard-chart").__pulseboard.points();
  chart.destroy();
  const p = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))] || 0; };
  const work = draws.map((d, i) => d + (adds[i] || 0));
  return {n, points, ticks, frames, fps, tick_rate: ticks / elapsed, draw_p50: p(draws, 0.5), draw_p95: p(draws, 0.95), add_p95: p(adds, 0.95),
          work_p95: p(work, 0.95)};
}"""


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
        print(f"{'points':>9} {'ticks/s':>7} {'draws/s':>7} {'draw p50':>9} {'draw p95':>9} {'add p95':>8} {'p95/tick':>9}")
        for n in (int(s) for s in args.sizes.split(",")):
            r = page.evaluate(RUN, [n, args.series, args.seconds])
            ok = r["fps"] >= 19 and r["work_p95"] < 50
            print(f"{r['points']:>9} {r['tick_rate']:>7.1f} {r['fps']:>7.1f} {r['draw_p50']:>7.1f}ms {r['draw_p95']:>7.1f}ms"
                  f" {r['add_p95']:>6.1f}ms {r['work_p95']:>7.1f}ms {'ok' if ok else 'falls behind'}")
            if ok and keeps_up == last_ok:
                keeps_up = last_ok = n
                if r["work_p95"] < 1000 / 60:
                    smooth = n
            elif not ok:
                misses += 1
                if misses >= 2:
                    break
        browser.close()
    print(json.dumps({"series": args.series, "max_points_at_20hz": keeps_up, "max_points_within_60fps_frame": smooth}))
    print(f"the chart redraws up to {keeps_up:,} points ({args.series} series) per frame at 20 Hz without "
          f"falling behind; up to {smooth:,} within a 16.7 ms frame")


if __name__ == "__main__":
    main()
