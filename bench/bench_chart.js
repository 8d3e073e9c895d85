// Runs in the bench page (bench_chart.py): one chart of N points fed at 20 Hz; returns timings.
(async ([n, series, seconds]) => {
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
})
