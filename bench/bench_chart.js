// Runs in the bench page (bench_chart.py): one chart holding `runs` channels x `fields`
// fields x `points` points, fed one message per channel per tick at 20 Hz for `seconds`;
// returns per-frame work timings and JS heap samples.
(async ({runs, fields, points, seconds, smoothing, heapEvery}) => {
  document.body.innerHTML = "";
  const style = document.createElement("style"); style.textContent = window.CSS_TEXT; document.head.appendChild(style);
  const host = document.createElement("div"); host.style.width = "1000px"; document.body.appendChild(host);
  const names = Array.from({length: fields}, (_, i) => "f" + i);
  const chs = Array.from({length: runs}, (_, r) => runs > 1 ? "train.run" + r : "bench");
  const chart = new window.Chart(host, {channels: runs > 1 ? ["train.*"] : chs, fields: names, x: "step",
    window: null, maxPoints: points, height: 300, smoothing});
  const env = (ch, r, step) => {
    const data = {step};
    for (let i = 0; i < fields; i++) data["f" + i] = Math.sin(step / (50 + i * 7 + r)) * (i + 1) + Math.random() * 0.2;
    return {ch, seq: step + 1, ts: step / 20, data};
  };
  // Pre-fill each channel to `points` (the buffer then stays full: it is bounded there).
  for (const [r, ch] of chs.entries()) {
    const fill = [];
    for (let s = 0; s < points; s++) fill.push(env(ch, r, s));
    chart.add(fill);
  }
  await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
  // Time each frame's work: the chart's draw plus uPlot's paint (queued as a microtask by setData).
  const draws = [];
  const draw = chart.draw.bind(chart);
  chart.draw = () => { const a = performance.now(); draw(); queueMicrotask(() => draws.push(performance.now() - a)); };
  const adds = [];
  const heap = [];
  const frames0 = chart.frames;
  let step = points, ticks = 0;
  const start = performance.now();
  let elapsed = 0;
  let lastHeap = start;
  await new Promise((done) => {
    const timer = setInterval(() => {
      const a = performance.now();
      const batch = chs.map((ch, r) => env(ch, r, step));
      step += 1;
      chart.add(batch);
      adds.push(performance.now() - a);
      ticks++;
      if (heapEvery && a - lastHeap >= heapEvery * 1000) {
        lastHeap = a;
        if (window.gc) window.gc();
        heap.push(performance.memory ? performance.memory.usedJSHeapSize : 0);
      }
      if (a - start >= seconds * 1000) { clearInterval(timer); elapsed = (performance.now() - start) / 1000; setTimeout(done, 100); }
    }, 50);
  });
  const frames = chart.frames - frames0;
  const hook = host.querySelector(".pulseboard-chart").__pulseboard;
  const held = hook.points();
  const drawn = chart.drawnPoints;
  chart.destroy();
  const p = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))] || 0; };
  // A frame's work: its draw plus the inserts since the previous frame (about one tick's).
  const work = draws.map((d, i) => d + (adds[i] || 0));
  return {runs, fields, points, held, drawn, ticks, frames, fps: frames / elapsed, tick_rate: ticks / elapsed,
          draw_p50: p(draws, 0.5), draw_p95: p(draws, 0.95), add_p95: p(adds, 0.95), work_p95: p(work, 0.95), heap};
})
