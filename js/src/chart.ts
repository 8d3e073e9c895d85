// The chart: a uPlot wrapper with a bounded buffer, gaps drawn as breaks, themes
// from JupyterLab's CSS variables and a status line. It only draws; the client
// (client.ts) decides what is new.

import uPlot from "uplot";
import type { Envelope, Gap } from "./sync";

export interface ChartOptions {
  channels: string[];
  fields?: string[] | null;
  window?: number;
  maxPoints?: number;
  title?: string | null;
  height?: number;
  x?: string | null;
  units?: string | Record<string, string> | null;
  theme?: "auto" | "light" | "dark";
  /** Series drawn hidden at first (still in the legend); e.g. per-core CPU. */
  hidden?: (ch: string, field: string) => boolean;
}

export interface StatusInfo {
  status: string;
  transport: string;
  lag: number | null;
  rate: number;
  error: string | null;
}

interface SeriesKey {
  ch: string;
  field: string;
}

/** What the chart shows, small enough to save in widget state. */
export interface Snapshot {
  v: 1;
  series: SeriesKey[];
  x: number[];
  y: (number | null)[][];
}

const PALETTE = [
  "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
];
const GAP = -1; // the seq stored for a gap row

function cssVar(el: Element, name: string, fallback: string): string {
  const v = getComputedStyle(el).getPropertyValue(name).trim();
  return v || fallback;
}

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
  return String(parseFloat(v.toPrecision(3)));
}

export class Chart {
  readonly root: HTMLDivElement;
  private plotEl: HTMLDivElement;
  private statusEl: HTMLDivElement;
  private messageEl: HTMLDivElement;
  private u: uPlot | null = null;
  private opts: Required<Omit<ChartOptions, "hidden">> & Pick<ChartOptions, "hidden">;
  private series: SeriesKey[] = [];
  private index = new Map<string, number>();
  private xs: number[] = [];
  private ys: (number | null | undefined)[][] = [];
  private metaCh: string[] = [];
  private metaSeq: number[] = [];
  private metaEpoch: string[] = [];
  private gapRows = 0;
  private scratch: (number | null | undefined)[] = [];
  private gapsSeen = new Map<string, number>();
  private lastX = new Map<string, number>();
  private pending = false;
  private rebuild = false;
  private resize: ResizeObserver | null = null;
  private themeWatch: MutationObserver | null = null;
  private raf = 0;
  private dark = false;
  /** Frames drawn and points drawn in the last one (for the bench). */
  frames = 0;
  drawnPoints = 0;

  constructor(parent: HTMLElement, opts: ChartOptions) {
    this.opts = {
      fields: null, window: 300, maxPoints: 20_000, title: null, height: 300, x: null,
      units: null, theme: "auto", ...opts,
    };
    this.root = document.createElement("div");
    this.root.className = "pulseboard-chart";
    this.root.dataset.status = "connecting";
    this.root.dataset.transport = "ws";
    const title = document.createElement("div");
    title.className = "pulseboard-title";
    title.textContent = this.opts.title ?? this.opts.channels.join(", ");
    this.plotEl = document.createElement("div");
    this.plotEl.className = "pulseboard-plot";
    this.plotEl.style.minHeight = `${this.opts.height}px`;
    this.messageEl = document.createElement("div");
    this.messageEl.className = "pulseboard-message";
    this.messageEl.hidden = true;
    this.statusEl = document.createElement("div");
    this.statusEl.className = "pulseboard-status";
    this.root.append(title, this.messageEl, this.plotEl, this.statusEl);
    parent.appendChild(this.root);
    this.applyTheme();
    if (typeof MutationObserver !== "undefined" && this.opts.theme === "auto") {
      // JupyterLab marks its theme on <body>; follow a switch between light and dark.
      this.themeWatch = new MutationObserver(() => {
        const was = this.dark;
        this.applyTheme();
        if (was !== this.dark) {
          this.rebuild = true;
          this.schedule();
        }
      });
      this.themeWatch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name"] });
    }
    if (typeof ResizeObserver !== "undefined") {
      this.resize = new ResizeObserver(() => this.fit());
      this.resize.observe(this.root);
    }
    for (const f of this.opts.fields ?? []) {
      for (const ch of this.opts.channels) this.seriesFor(ch, f);
    }
    this.setStatus({ status: "connecting", transport: "ws", lag: null, rate: 0, error: null });
    Object.defineProperty(this.root, "__pulseboard", { value: this.debugHook(), configurable: true });
  }

  // --- data in ------------------------------------------------------------------------

  /** Draw new envelopes; `epochOf` names each channel's current numbering (for the debug hook). */
  add(envs: Envelope[], epochOf: (ch: string) => string = () => ""): void {
    const xField = this.opts.x;
    for (const env of envs) {
      const x = xField ? env.data[xField] : env.ts;
      if (typeof x !== "number" || !Number.isFinite(x)) continue;
      const last = this.lastX.get(env.ch);
      if (xField && last !== undefined && x < last) {
        // The data field went backwards (a new run from step 0): show the new run alone
        // instead of zigzagging between the two.
        this.dropChannel(env.ch);
      }
      const cols: [number, number][] = [];
      const fields = this.opts.fields ?? Object.keys(env.data);
      for (const f of fields) {
        const v = env.data[f];
        if (f === xField || typeof v !== "number" || !Number.isFinite(v)) continue;
        cols.push([this.seriesFor(env.ch, f), v]);
      }
      this.insertRow(x, env.ch, env.seq, epochOf(env.ch), cols);
    }
    this.trim();
    this.schedule();
  }

  /** Continuity was lost on a channel: draw a break instead of a line across. */
  gap(g: Gap): void {
    this.gapsSeen.set(g.ch, (this.gapsSeen.get(g.ch) ?? 0) + 1);
    const at = this.lastX.get(g.ch);
    if (at === undefined) return; // nothing drawn yet, nothing to break
    const cols: [number, number | null][] = [];
    for (const [i, s] of this.series.entries()) if (s.ch === g.ch) cols.push([i, null]);
    this.insertRow(at, g.ch, GAP, g.epoch, cols);
    this.gapRows += 1;
    this.schedule();
  }

  clear(): void {
    this.xs = [];
    this.ys = this.series.map(() => []);
    this.metaCh = [];
    this.metaSeq = [];
    this.metaEpoch = [];
    this.gapRows = 0;
    this.lastX.clear();
    this.schedule();
  }

  private seriesFor(ch: string, field: string): number {
    const key = `${ch}\u0000${field}`;
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.series.length;
      this.series.push({ ch, field });
      this.index.set(key, i);
      this.ys.push(new Array(this.xs.length).fill(undefined));
      this.rebuild = true;
    }
    return i;
  }

  private insertRow(x: number, ch: string, seq: number, epoch: string, cols: [number, number | null][]): void {
    let at = this.xs.length;
    if (at > 0 && x < this.xs[at - 1]) {
      let lo = 0;
      let hi = at;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.xs[mid] <= x) lo = mid + 1;
        else hi = mid;
      }
      at = lo;
    }
    const append = at === this.xs.length;
    const put = <T>(arr: T[], v: T) => (append ? arr.push(v) : arr.splice(at, 0, v));
    put(this.xs, x);
    put(this.metaCh, ch);
    put(this.metaSeq, seq);
    put(this.metaEpoch, epoch);
    // Push each column's final value once: columns that only ever hold numbers stay
    // packed double arrays in V8 (no boxing), which keeps big buffers cheap to redraw.
    const row = this.scratch;
    row.length = this.ys.length;
    row.fill(undefined);
    for (const [i, v] of cols) row[i] = v;
    for (let c = 0; c < this.ys.length; c++) put(this.ys[c], row[c]);
    if (seq !== GAP) this.lastX.set(ch, Math.max(x, this.lastX.get(ch) ?? -Infinity));
  }

  /**
   * Keep the buffer within `maxPoints` rows and `window` seconds. Rows are dropped in
   * batches (a few percent of the buffer at a time, never above `maxPoints`): dropping one
   * row per message from the front of big arrays costs the browser far more than the draw.
   * Rows older than the window wait for their batch hidden, outside the x range.
   */
  private trim(): void {
    const n = this.xs.length;
    const slack = Math.max(32, this.opts.maxPoints >> 4);
    let drop = n > this.opts.maxPoints ? n - this.opts.maxPoints + Math.min(slack, this.opts.maxPoints >> 1) : 0;
    if (!this.opts.x && n) {
      const old = this.olderThan(this.xs[n - 1] - this.opts.window);
      if (old >= slack || (old > 0 && old === n)) drop = Math.max(drop, old);
    }
    if (!drop) return;
    for (let i = 0; i < drop; i++) if (this.metaSeq[i] === GAP) this.gapRows -= 1;
    this.xs.splice(0, drop);
    this.metaCh.splice(0, drop);
    this.metaSeq.splice(0, drop);
    this.metaEpoch.splice(0, drop);
    for (const col of this.ys) col.splice(0, drop);
  }

  /** Forget every row of one channel. */
  private dropChannel(ch: string): void {
    const keep: number[] = [];
    for (let i = 0; i < this.xs.length; i++) {
      if (this.metaCh[i] !== ch) keep.push(i);
      else if (this.metaSeq[i] === GAP) this.gapRows -= 1;
    }
    const pick = <T>(arr: T[]): T[] => keep.map((i) => arr[i]);
    this.xs = pick(this.xs);
    this.metaCh = pick(this.metaCh);
    this.metaSeq = pick(this.metaSeq);
    this.metaEpoch = pick(this.metaEpoch);
    this.ys = this.ys.map((col) => pick(col));
    this.lastX.delete(ch);
  }

  /** How many rows have x < `limit` (rows are sorted by x). */
  private olderThan(limit: number): number {
    let lo = 0;
    let hi = this.xs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.xs[mid] < limit) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  // --- drawing --------------------------------------------------------------------------

  private schedule(): void {
    if (this.pending) return;
    this.pending = true;
    this.raf = requestAnimationFrame(() => this.draw());
  }

  private draw(): void {
    this.pending = false;
    if (this.rebuild || !this.u) this.build();
    else this.u.setData(this.data());
    this.frames += 1;
    this.drawnPoints = this.xs.length;
  }

  /** The latest value of series `si` (1-based, as uPlot counts), or null. */
  private latest(si: number): number | null {
    const col = this.ys[si - 1];
    if (!col) return null;
    for (let i = col.length - 1; i >= 0; i--) {
      const v = col[i];
      if (typeof v === "number") return v;
    }
    return null;
  }

  private data(): uPlot.AlignedData {
    return [this.xs, ...this.ys] as unknown as uPlot.AlignedData;
  }

  private unitOf(field: string): string {
    const u = this.opts.units;
    if (!u) return "";
    return typeof u === "string" ? u : u[field] ?? "";
  }

  private scaleOf(field: string): string {
    const percent = this.series.some((s) => s.field.includes("percent"));
    const other = this.series.some((s) => !s.field.includes("percent"));
    return percent && other && !field.includes("percent") ? "v" : "y";
  }

  private build(): void {
    this.rebuild = false;
    const shown = this.u ? this.u.series.slice(1).map((s) => s.show) : [];
    this.u?.destroy();
    const fg = cssVar(this.root, "--jp-ui-font-color1", this.dark ? "#e0e0e0" : "#333");
    const grid = cssVar(this.root, "--jp-border-color2", this.dark ? "#3a3a3a" : "#e6e6e6");
    const font = `11px ${cssVar(this.root, "--jp-ui-font-family", "system-ui, sans-serif")}`;
    const multi = this.opts.channels.length > 1;
    const usesV = this.series.some((s) => this.scaleOf(s.field) === "v");
    const axis = (scale: string, side: number, label?: string): uPlot.Axis => ({
      scale, side, stroke: fg, font, labelFont: font, label, labelSize: label ? 16 : 0,
      grid: { stroke: grid, width: 1, show: scale !== "v" },
      ticks: { stroke: grid, width: 1 },
      values: scale === "x" && !this.opts.x ? undefined : (_u, vals) => vals.map((v) => (v == null ? "" : fmt(v))),
      size: scale === "x" ? 50 : 56,
    });
    const allPercent = this.series.length > 0 && this.series.every((s) => s.field.includes("percent"));
    const yUnit = typeof this.opts.units === "string" ? this.opts.units : usesV || allPercent ? "%" : undefined;
    const axes: uPlot.Axis[] = [axis("x", 2, this.opts.x ?? undefined), axis("y", 3, yUnit)];
    const vFields = this.series.filter((s) => this.scaleOf(s.field) === "v").map((s) => s.field);
    const vUnit = vFields.length > 0 && vFields.every((f) => f.endsWith("_bps")) ? "bytes/s" : undefined;
    if (usesV) axes.push(axis("v", 1, vUnit));
    const opts: uPlot.Options = {
      width: Math.max(200, this.plotEl.clientWidth || this.root.clientWidth || 600),
      height: this.opts.height,
      scales: {
        // A time axis shows the last `window` seconds (older rows wait hidden for their trim).
        x: this.opts.x
          ? { time: false }
          : { time: true, range: (_u, lo, hi) => [Math.max(lo, hi - this.opts.window), hi] },
        y: { auto: true },
        v: { auto: true },
      },
      axes,
      cursor: { points: { size: 6 } },
      legend: { live: true },
      series: [
        { label: this.opts.x ?? "time", value: this.opts.x ? (_u, v) => (v == null ? "" : fmt(v)) : undefined },
        ...this.series.map((s, i): uPlot.Series => {
          const unit = this.unitOf(s.field);
          return {
            label: (multi ? `${s.ch} ${s.field}` : s.field) + (unit && typeof this.opts.units !== "string" ? ` (${unit})` : ""),
            scale: this.scaleOf(s.field),
            stroke: PALETTE[i % PALETTE.length],
            width: 1,
            points: { show: false },
            show: shown[i] ?? !(this.opts.hidden?.(s.ch, s.field) ?? false),
            value: (_u, v, si, idx) => {
              // Off the plot the legend shows each series' latest value.
              const shown = idx == null ? this.latest(si) : v;
              return shown == null ? "–" : fmt(shown) + (unit ? ` ${unit}` : "");
            },
            gaps: (u, si, i0, i1) => this.gapsOf(u, si, i0, i1),
          };
        }),
      ],
    };
    this.u = new uPlot(opts, this.data(), this.plotEl);
  }

  /** Break a series' line from the point before each gap row to the point after it. */
  private gapsOf(u: uPlot, si: number, i0: number, i1: number): [number, number][] {
    if (this.gapRows === 0) return [];
    const ys = u.data[si] as (number | null | undefined)[];
    const xs = u.data[0] as number[];
    const out: [number, number][] = [];
    for (let i = i0; i <= i1; i++) {
      if (ys[i] !== null) continue;
      let j = i - 1;
      while (j >= 0 && ys[j] == null) j--;
      let k = i + 1;
      while (k < ys.length && ys[k] == null) k++;
      const from = j >= 0 ? Math.round(u.valToPos(xs[j], "x", true)) + 1 : 0;
      const to = k < ys.length ? Math.round(u.valToPos(xs[k], "x", true)) - 1 : u.bbox.left + u.bbox.width + 1;
      if (to > from) out.push([from, to]);
      i = k - 1;
    }
    return out;
  }

  private fit(): void {
    if (!this.u) return;
    const w = Math.max(200, this.plotEl.clientWidth);
    if (Math.abs(w - this.u.width) > 1) this.u.setSize({ width: w, height: this.opts.height });
  }

  private applyTheme(): void {
    const t = this.opts.theme;
    const bg = getComputedStyle(this.root).getPropertyValue("--jp-layout-color0").trim();
    const jpLight = typeof document !== "undefined" ? document.body?.dataset.jpThemeLight : undefined;
    if (t === "dark") this.dark = true;
    else if (t === "light") this.dark = false;
    else if (jpLight === "true" || jpLight === "false") this.dark = jpLight === "false";
    else if (bg) this.dark = luminance(bg) < 0.4;
    else this.dark = typeof matchMedia !== "undefined" && matchMedia("(prefers-color-scheme: dark)").matches;
    this.root.dataset.theme = this.dark ? "dark" : "light";
  }

  // --- status, messages, snapshots --------------------------------------------------------

  setStatus(s: StatusInfo): void {
    this.root.dataset.status = s.status;
    this.root.dataset.transport = s.transport;
    const parts = [s.status, s.transport];
    if (s.lag !== null) parts.push(`lag ${s.lag < 10 ? s.lag.toFixed(2) : s.lag.toFixed(0)} s`);
    parts.push(`${s.rate < 10 ? s.rate.toFixed(1) : s.rate.toFixed(0)} msg/s`);
    this.statusEl.innerHTML = "";
    const dot = document.createElement("span");
    dot.className = `pulseboard-dot pulseboard-${s.status}`;
    const text = document.createElement("span");
    text.textContent = parts.join(" · ");
    this.statusEl.append(dot, text);
    this.showMessage(s.error);
  }

  showMessage(text: string | null): void {
    this.messageEl.hidden = !text;
    this.messageEl.textContent = text ?? "";
  }

  snapshot(maxRows = 1000): Snapshot {
    const from = Math.max(0, this.xs.length - maxRows);
    return {
      v: 1,
      series: this.series.map((s) => ({ ...s })),
      x: this.xs.slice(from),
      y: this.ys.map((col) => col.slice(from).map((v) => (v === undefined ? null : v))),
    };
  }

  /** Draw a saved snapshot (e.g. no server is reachable from an exported notebook). */
  loadSnapshot(s: Snapshot): void {
    if (!s || s.v !== 1 || !Array.isArray(s.x)) return;
    this.clear();
    const cols = s.series.map((k) => this.seriesFor(k.ch, k.field));
    for (let r = 0; r < s.x.length; r++) {
      this.xs.push(s.x[r]);
      this.metaCh.push("");
      this.metaSeq.push(0);
      this.metaEpoch.push("");
      for (const col of this.ys) col.push(undefined);
      cols.forEach((c, i) => {
        const v = s.y[i]?.[r];
        this.ys[c][r] = v === null ? undefined : v;
      });
    }
    this.schedule();
  }

  destroy(): void {
    cancelAnimationFrame(this.raf);
    this.resize?.disconnect();
    this.themeWatch?.disconnect();
    this.u?.destroy();
    this.u = null;
    this.root.remove();
  }

  private debugHook() {
    const chart = this;
    const held = (ch: string) => {
      const out: { epoch: string; seq: number }[] = [];
      for (let i = 0; i < chart.metaCh.length; i++) {
        if (chart.metaCh[i] === ch) out.push({ epoch: chart.metaEpoch[i], seq: chart.metaSeq[i] });
      }
      return out;
    };
    return Object.freeze({
      points: () => chart.xs.length - chart.gapRows,
      /** Seqs held for `ch`, oldest first; -1 marks a drawn gap. */
      seqs: (ch: string) => held(ch).map((r) => r.seq),
      /** Runs of seqs between gaps, each with its epoch. */
      segments: (ch: string) => {
        const segs: { epoch: string; seqs: number[] }[] = [];
        let cur: { epoch: string; seqs: number[] } | null = null;
        for (const r of held(ch)) {
          if (r.seq === GAP) {
            cur = null;
            continue;
          }
          if (!cur || cur.epoch !== r.epoch) segs.push((cur = { epoch: r.epoch, seqs: [] }));
          cur.seqs.push(r.seq);
        }
        return segs;
      },
      gaps: (ch: string) => chart.gapsSeen.get(ch) ?? 0,
      series: () => chart.series.map((s) => `${s.ch}:${s.field}`),
      frames: () => chart.frames,
      get status() {
        return chart.root.dataset.status;
      },
      get transport() {
        return chart.root.dataset.transport;
      },
    });
  }
}

function luminance(color: string): number {
  const m = color.match(/^#([0-9a-f]{6})$/i);
  let r = 255;
  let g = 255;
  let b = 255;
  if (m) {
    const n = parseInt(m[1], 16);
    r = n >> 16;
    g = (n >> 8) & 255;
    b = n & 255;
  } else {
    const rgb = color.match(/\d+(\.\d+)?/g);
    if (rgb && rgb.length >= 3) [r, g, b] = rgb.slice(0, 3).map(Number);
  }
  return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
}
