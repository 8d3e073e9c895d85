// The offline report page (`pulseboard report`): every chart drawn from the data inlined in
// the page, with the live charts' Chart class (zoom, hover values, legend toggles) and a CSV
// download of every point. No network: no server, no token.

import { Chart } from "./chart";
import type { ChartOptions, Snapshot } from "./chart";
import { matching } from "./chart/glob";
import { injectStyles } from "./live";
import { fieldList, fieldsNamed } from "./notices";
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
    // The view as it was on screen when the snapshot was taken.
    smoothing?: number;
    log_y?: boolean;
    zoom?: [number, number] | null;
    hidden?: string[];
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

/**
 * Why a report's chart draws less than it asks for, or null: a channel (or pattern) with no
 * numbers when the snapshot was taken (a typo in its name, most often), or a field asked for
 * that held none. Without it such a chart is blank with no word why.
 */
export function savedGapsText(o: ReportChart["options"], snap: ReportSnapshot): string | null {
  const drawn = new Map<string, Set<string>>(); // channel -> the fields with a number
  snap.series.forEach((k, i) => {
    if (!(snap.y[i] ?? []).some((v) => typeof v === "number")) return;
    drawn.set(k.ch, (drawn.get(k.ch) ?? new Set<string>()).add(k.field));
  });
  const parts: string[] = [];
  const empty = o.channels.filter((ch) => !matching([ch], [...drawn.keys()]).length);
  if (empty.length) parts.push(`no numbers on ${empty.join(", ")} when this snapshot was taken`);
  if (drawn.size) {
    const have = new Set([...drawn.values()].flatMap((fs) => [...fs]));
    const missing = (o.fields ?? []).filter((f) => f !== o.x && !have.has(f));
    if (missing.length) parts.push(`no numbers in ${fieldsNamed(missing)}; fields drawn: ${fieldList([...have])}`);
  }
  return parts.length ? parts.join(" · ") : null;
}

function mount(host: HTMLElement, spec: ReportChart): Chart {
  const o = spec.options;
  const snap = spec.snapshot;
  const rows = snap?.x?.length ?? 0;
  const span = rows ? snap!.x[rows - 1] - snap!.x[0] : 0;
  host.innerHTML = "";
  // (The chart's own toolbar has the CSV button: every point of the snapshot.)
  const bar = host.ownerDocument.createElement("div");
  bar.className = "pulseboard-report-bar";
  const note = host.ownerDocument.createElement("span");
  note.className = "pulseboard-report-note";
  const when = snap?.taken ? new Date(snap.taken * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "";
  note.textContent = [`${rows} points`, snap?.downsampled ? "downsampled for drawing" : "", when && `snapshot ${when}`]
    .filter(Boolean).join(" · ");
  bar.append(note);
  const hidden = o.hidden ?? [];
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
    smoothing: o.smoothing ?? 0,
    logY: o.log_y ?? false,
    zoom: o.zoom ?? null,
    hidden: (ch, field) => hidden.includes(field) || hidden.includes(`${ch} · ${field}`),
  };
  const chart = new Chart(host, opts);
  host.appendChild(bar);
  chart.setStatus({ status: "report", transport: "offline", lag: null, rate: 0, error: null });
  if (snap) {
    for (const step of replay(snap, opts.x ?? null)) {
      if ("add" in step) chart.add(step.add, () => "report");
      else chart.gap({ ch: step.gap, epoch: "report", seq: 0, reason: "gap in the saved data" });
    }
    chart.showMessage(savedGapsText(o, snap));
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
