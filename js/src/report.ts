// The offline report page (`pulseboard report`): every chart drawn from the data inlined in
// the page, with the live charts' Chart class (zoom, hover values, legend toggles) and a CSV
// download of every point. No network: no server, no token.

import { quote } from "./chart/export";
import { Chart } from "./chart";
import type { ChartOptions, Snapshot } from "./chart";
import { injectStyles } from "./live";
import type { Envelope } from "./sync";

export interface ReportSnapshot extends Snapshot {
  gaps?: Record<string, number[]>;
  taken?: number;
  downsampled?: boolean;
}

export interface ReportChart {
  options: {
    channels: string[];
    fields?: string[] | null;
    title?: string | null;
    x?: string | null;
    units?: string | Record<string, string> | null;
    height?: number;
    window?: number;
  };
  snapshot: ReportSnapshot | null;
}

/** A step of the replay: envelopes to add, or a break to draw on a channel. */
export type Step = { add: Envelope[] } | { gap: string };

/** Turn a snapshot back into the envelopes (and gaps) the chart draws, in x order. */
export function replay(s: ReportSnapshot, xField: string | null): Step[] {
  const steps: Step[] = [];
  let batch: Envelope[] = [];
  const seq = new Map<string, number>();
  const breaks = new Map<string, number[]>(Object.entries(s.gaps ?? {}).map(([ch, xs]) => [ch, [...xs].sort((a, b) => a - b)]));
  const next = new Map<string, number>();
  for (let r = 0; r < s.x.length; r++) {
    const x = s.x[r];
    const byCh = new Map<string, Record<string, number>>();
    s.series.forEach((k, i) => {
      const v = s.y[i]?.[r];
      if (typeof v !== "number") return;
      const d = byCh.get(k.ch) ?? {};
      d[k.field] = v;
      byCh.set(k.ch, d);
    });
    for (const [ch, data] of byCh) {
      // A break recorded after an earlier x of this channel: draw it before this point.
      const xs = breaks.get(ch) ?? [];
      let b = next.get(ch) ?? 0;
      let broke = false;
      while (b < xs.length && xs[b] < x) {
        b += 1;
        broke = true;
      }
      next.set(ch, b);
      if (broke) {
        if (batch.length) steps.push({ add: batch });
        batch = [];
        steps.push({ gap: ch });
      }
      const n = (seq.get(ch) ?? 0) + 1;
      seq.set(ch, n);
      if (xField) data[xField] = x;
      batch.push({ ch, seq: n, ts: xField ? n : x, data });
    }
  }
  if (batch.length) steps.push({ add: batch });
  return steps;
}

function label(s: Snapshot, i: number): string {
  const k = s.series[i];
  const many = new Set(s.series.map((q) => q.ch)).size > 1;
  return many ? `${k.ch} · ${k.field}` : k.field;
}

/** Every point of the snapshot: header `x,<series>...` (as the chart toolbar's CSV), one row per x
 * (unix seconds on a time axis, else the x field's value). */
export function toCsv(s: Snapshot): string {
  const lines = [["x", ...s.series.map((_k, i) => label(s, i))].map(quote).join(",")];
  for (let r = 0; r < s.x.length; r++) {
    const vals = s.series.map((_k, i) => {
      const v = s.y[i]?.[r];
      return typeof v === "number" ? String(v) : "";
    });
    if (vals.every((v) => v === "")) continue;
    lines.push([String(s.x[r]), ...vals].join(","));
  }
  return lines.join("\n") + "\n";
}

function download(doc: Document, name: string, text: string): void {
  const a = doc.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  a.download = name;
  doc.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

function mount(host: HTMLElement, spec: ReportChart): Chart {
  const o = spec.options;
  const snap = spec.snapshot;
  const rows = snap?.x?.length ?? 0;
  const span = rows ? snap!.x[rows - 1] - snap!.x[0] : 0;
  host.innerHTML = "";
  const bar = host.ownerDocument.createElement("div");
  bar.className = "pulseboard-report-bar";
  const csv = host.ownerDocument.createElement("button");
  csv.type = "button";
  csv.dataset.action = "report-csv";
  csv.textContent = "Download CSV";
  const name = (o.title || o.channels.join("_")).replace(/[^A-Za-z0-9_.-]+/g, "_");
  csv.onclick = () => snap && download(host.ownerDocument, `${name}.csv`, toCsv(snap));
  const note = host.ownerDocument.createElement("span");
  note.className = "pulseboard-report-note";
  const when = snap?.taken ? new Date(snap.taken * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "";
  note.textContent = [`${rows} points`, snap?.downsampled ? "downsampled for drawing" : "", when && `snapshot ${when}`]
    .filter(Boolean).join(" · ");
  bar.append(csv, note);
  const opts: ChartOptions = {
    channels: o.channels,
    fields: o.fields ?? null,
    title: o.title ?? null,
    x: o.x ?? null,
    units: o.units ?? null,
    height: o.height ?? 300,
    theme: "light",
    // The whole snapshot stays drawn, however long it spans.
    window: Math.max(o.window ?? 300, span + 1),
    maxPoints: Math.max(20_000, rows * 2 + 2),
  };
  const chart = new Chart(host, opts);
  host.appendChild(bar);
  chart.setStatus({ status: "report", transport: "offline", lag: null, rate: 0, error: null });
  if (snap) {
    for (const step of replay(snap, opts.x ?? null)) {
      if ("add" in step) chart.add(step.add, () => "report");
      else chart.gap({ ch: step.gap, epoch: "report", seq: 0, reason: "gap in the saved data" });
    }
  } else {
    chart.showMessage("this chart has no saved data");
  }
  return chart;
}

function main(): void {
  const doc = document;
  const dataEl = doc.getElementById("pulseboard-report-data");
  if (!dataEl) return;
  injectStyles(doc);
  const specs = JSON.parse(dataEl.textContent || "[]") as ReportChart[];
  const charts: Chart[] = [];
  doc.querySelectorAll<HTMLElement>("[data-pulseboard-chart]").forEach((host) => {
    const spec = specs[Number(host.dataset.pulseboardChart)];
    if (spec) charts.push(mount(host, spec));
  });
  doc.body.dataset.pulseboardCharts = String(charts.length);
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
}
