// The chart: full-resolution data per channel (chart/store.ts), drawn at most a few
// points per pixel column (chart/columns.ts), optionally smoothed (chart/ema.ts), on a
// uPlot frame that gives the axes, legend, cursor and drag selection. It only draws; the
// client (client.ts) decides what is new.

import uPlot from "uplot";
import type { Envelope, Gap } from "./sync";
import { ColumnCache, bucketWidth } from "./chart/columns";
import { SmoothedColumn } from "./chart/ema";
import { GAP, Track } from "./chart/store";
import { Toolbar } from "./chart/toolbar";
import { download, downloadText, stem, tail, toCsv } from "./chart/export";
import type { Rows } from "./chart/export";
import { isPattern } from "./chart/glob";
import { colorOf, cssVar, fade, fmt, luminance, tick } from "./chart/format";
import { makeFrame } from "./chart/frame";
import type { PaintedTick } from "./chart/frame";
import { paddedRange, scaleRange } from "./chart/range";
import { LinePath, paintLines } from "./chart/paint";
import { debugHook } from "./chart/debug";
import type { DebugSource } from "./chart/debug";

export { colorOf, fmt, tick };

export type Threshold = number | { above?: number; below?: number };

export interface ChartOptions {
  channels: string[];
  fields?: string[] | null;
  /** Seconds of a time axis shown (and kept); null = everything held. */
  window?: number | null;
  maxPoints?: number;
  title?: string | null;
  height?: number;
  x?: string | null;
  units?: string | Record<string, string> | null;
  theme?: "auto" | "light" | "dark";
  /** Smoothing factor in [0, 1): 0 draws the raw line only. */
  smoothing?: number;
  logY?: boolean;
  /** Per field: a value (marked when the series goes above it) or {above, below}. */
  thresholds?: Record<string, Threshold> | null;
  /** Series drawn hidden at first (still in the legend); e.g. per-core CPU. */
  hidden?: (ch: string, field: string) => boolean;
  /** Fields this chart takes (others are ignored); e.g. one chart of a host group. */
  accept?: (field: string) => boolean;
  /**
   * Fields that become the x axis when the first message carries one (the first found
   * wins; e.g. ["step"] to compare runs by step); x stays time when none is there.
   */
  autoX?: string[] | null;
  /** Called once for every numeric field seen, taken or not (e.g. to offer it in a picker). */
  onField?: (field: string) => void;
  /** Called when a series first appears. */
  onSeries?: (ch: string, field: string) => void;
  /** Called when the x range is zoomed (null: reset), e.g. to fetch it at full resolution. */
  onZoom?: (range: [number, number] | null) => void;
  /** The x range shown at first (null: follow the data). */
  zoom?: [number, number] | null;
  /** Called when the view changes (smoothing, log y, zoom, legend), e.g. to save it with the notebook. */
  onView?: (view: ViewState) => void;
}

/** What a person set on the chart: reports and saved notebooks show the chart this way. */
export interface ViewState {
  smoothing: number;
  logY: boolean;
  zoom: [number, number] | null;
  /** Series switched off in the legend, by legend name (`field`, or `channel · field`). */
  hidden: string[];
}

export interface StatusInfo {
  status: string;
  transport: string;
  lag: number | null;
  rate: number;
  error: string | null;
  /** Why it is not live, when known (e.g. "token expired"): replaces the status word. */
  reason?: string | null;
  /** Added to the status line, e.g. "thinning" (the kernel relay downsamples). */
  note?: string | null;
}

/** What the chart shows, small enough to save in widget state. */
export interface Snapshot {
  v: 1;
  series: { ch: string; field: string }[];
  x: number[];
  y: (number | null)[][];
}

interface Series {
  ch: string;
  field: string;
  track: Track;
  color: string;
  raw: ColumnCache;
  smooth: ColumnCache;
  ema: SmoothedColumn;
  rawPath: LinePath;
  smoothPath: LinePath;
  // Points drawn in the last frame (NaN breaks the line).
  ox: number[];
  oy: number[];
  sx: number[];
  sy: number[];
  /** On a log axis: the column with values <= 0 left out (NaN), kept for the smoothing. */
  pos: number[];
  posKey: string;
}

export class Chart {
  readonly root: HTMLDivElement;
  private plotEl: HTMLDivElement;
  private statusEl: HTMLDivElement;
  private titleEl: HTMLDivElement;
  private noteEl: HTMLDivElement;
  private note = "";
  private messageEl: HTMLDivElement;
  private toolbar: Toolbar;
  private u: uPlot | null = null;
  private opts: ChartOptions & { window: number | null; maxPoints: number; height: number; smoothing: number; logY: boolean };
  private series: Series[] = [];
  /** Colours by channel (a chart coloured by a run's config value); the palette elsewhere. */
  private channelColors: Map<string, string> | null = null;
  private index = new Map<string, number>();
  private tracks = new Map<string, Track>();
  private gapsSeen = new Map<string, number>();
  private zoom: [number, number] | null = null;
  private xRange: [number, number] = [0, 1];
  private yRanges: Record<string, [number, number]> = {};
  private breach = "";
  private xDecided = false;
  private fieldsSeen = new Set<string>();
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
      fields: null, maxPoints: 200_000, title: null, height: 300, x: null,
      units: null, theme: "auto", smoothing: 0, logY: false, thresholds: null, ...opts,
      window: opts.window === undefined ? 300 : opts.window,
    };
    this.opts.smoothing = Math.min(0.999, Math.max(0, Number(this.opts.smoothing) || 0));
    const z = opts.zoom;
    if (z && Number.isFinite(z[0]) && Number.isFinite(z[1]) && z[1] > z[0]) this.zoom = [z[0], z[1]];
    this.root = document.createElement("div");
    this.root.className = "pulseboard-chart";
    this.root.dataset.status = "connecting";
    this.root.dataset.transport = "ws";
    this.root.dataset.series = "0";
    this.root.dataset.points = "0";
    this.root.dataset.zoomed = String(this.zoom !== null);
    const head = document.createElement("div");
    head.className = "pulseboard-head";
    const title = (this.titleEl = document.createElement("div"));
    title.className = "pulseboard-title";
    title.textContent = this.opts.title ?? this.opts.channels.join(", ");
    this.toolbar = new Toolbar({
      resetZoom: () => this.resetZoom(),
      toggleLog: () => this.setLog(!this.opts.logY),
      setSmoothing: (s) => this.setSmoothing(s),
      csv: () => downloadText(`${stem(this.titleText())}.csv`, this.csv()),
      png: () => this.png(),
    }, this.opts.smoothing);
    this.toolbar.setLog(this.opts.logY);
    this.viewKey = JSON.stringify(this.view());
    head.append(title, this.toolbar.el);
    this.plotEl = document.createElement("div");
    this.plotEl.className = "pulseboard-plot";
    this.plotEl.style.minHeight = `${this.opts.height}px`;
    this.messageEl = document.createElement("div");
    this.messageEl.className = "pulseboard-message";
    this.messageEl.hidden = true;
    this.statusEl = document.createElement("div");
    this.statusEl.className = "pulseboard-status";
    this.noteEl = document.createElement("div");
    this.noteEl.className = "pulseboard-note";
    this.noteEl.hidden = true;
    this.root.append(head, this.messageEl, this.plotEl, this.noteEl, this.statusEl);
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
      for (const ch of this.opts.channels) if (!isPattern(ch) && this.takes(f)) this.seriesFor(ch, f);
    }
    this.setStatus({ status: "connecting", transport: "ws", lag: null, rate: 0, error: null });
    Object.defineProperty(this.root, "__pulseboard", { value: debugHook(this.debugSource()), configurable: true });
  }

  // --- data in ------------------------------------------------------------------------

  /** Draw new envelopes; `epochOf` names each channel's current numbering (for the debug hook). */
  add(envs: Envelope[], epochOf: (ch: string) => string = () => ""): void {
    const values = new Map<string, number>();
    for (const env of envs) this.insertEnv(env, epochOf(env.ch), values, false);
    this.trim();
    this.schedule();
  }

  /**
   * Add older envelopes of `ch` (from the server's history) under what is held; those
   * whose seq is already held are skipped.
   */
  addOlder(ch: string, envs: Envelope[], epoch: string): number {
    const held = new Set(this.tracks.get(ch)?.seqs ?? []);
    const values = new Map<string, number>();
    let added = 0;
    for (const env of envs) {
      if (env.ch !== ch || held.has(env.seq)) continue;
      if (this.insertEnv(env, epoch, values, true)) added += 1;
    }
    this.trim();
    this.schedule();
    return added;
  }

  /** Points held, all series (gap rows not counted). */
  held(): number {
    let n = 0;
    for (const t of this.tracks.values()) n += t.length - t.gapRows;
    return n;
  }

  seriesCount(): number {
    return this.series.length;
  }

  /** The oldest message time held for `ch` (unix seconds), or null. */
  oldestTs(ch: string): number | null {
    const t = this.tracks.get(ch);
    return t && t.length && t.firstTs !== Infinity ? t.firstTs : null;
  }

  private insertEnv(env: Envelope, epoch: string, values: Map<string, number>, older: boolean): boolean {
    if (this.opts.autoX && !this.xDecided && !this.opts.x) {
      this.xDecided = true;
      const found = this.opts.autoX.find((f) => typeof env.data[f] === "number");
      if (found) {
        this.opts.x = found;
        this.rebuild = true; // the x axis is a data field now, not time
      }
    }
    const xField = this.opts.x;
    if (this.opts.onField) {
      for (const f in env.data) {
        if (f === xField || this.fieldsSeen.has(f) || typeof env.data[f] !== "number") continue;
        this.fieldsSeen.add(f);
        this.opts.onField(f);
      }
    }
    const x = xField ? env.data[xField] : env.ts;
    if (typeof x !== "number" || !Number.isFinite(x)) return false;
    let track = this.tracks.get(env.ch);
    if (!older && xField && track && track.length && x < track.lastX) {
      // The data field went backwards (a new run from step 0): show the new run alone
      // instead of zigzagging between the two.
      this.dropChannel(env.ch);
    }
    values.clear();
    for (const f of this.opts.fields ?? Object.keys(env.data)) {
      const v = env.data[f];
      if (f === xField || typeof v !== "number" || !Number.isFinite(v) || !this.takes(f)) continue;
      this.seriesFor(env.ch, f);
      values.set(f, v);
    }
    if (!values.size) return false;
    track = this.trackOf(env.ch);
    track.insert(x, env.seq, epoch, values);
    if (env.ts < track.firstTs) track.firstTs = env.ts;
    return true;
  }

  /** Continuity was lost on a channel: draw a break instead of a line across. */
  gap(g: Gap): void {
    this.gapsSeen.set(g.ch, (this.gapsSeen.get(g.ch) ?? 0) + 1);
    const track = this.tracks.get(g.ch);
    if (!track || !track.length || track.lastX === -Infinity) return; // nothing drawn yet, nothing to break
    track.insert(track.lastX, GAP, g.epoch, new Map());
    this.schedule();
  }

  clear(): void {
    for (const t of this.tracks.values()) t.clear();
    for (const s of this.series) this.forget(s);
    this.schedule();
  }

  private takes(field: string): boolean {
    return this.opts.accept ? this.opts.accept(field) : true;
  }

  private trackOf(ch: string): Track {
    let t = this.tracks.get(ch);
    if (!t) this.tracks.set(ch, (t = new Track(ch)));
    return t;
  }

  private seriesFor(ch: string, field: string): Series {
    const key = `${ch}\u0000${field}`;
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.series.length;
      const track = this.trackOf(ch);
      track.col(field);
      this.series.push({
        ch, field, track, color: this.channelColors?.get(ch) ?? colorOf(i), raw: new ColumnCache(), smooth: new ColumnCache(), ema: new SmoothedColumn(),
        rawPath: new LinePath(), smoothPath: new LinePath(), ox: [], oy: [], sx: [], sy: [], pos: [], posKey: "",
      });
      this.index.set(key, i);
      this.rebuild = true;
      this.opts.onSeries?.(ch, field);
    }
    return this.series[i];
  }

  private forget(s: Series): void {
    s.raw.invalidate();
    s.smooth.invalidate();
    s.ema.reset();
    s.track.smooth.delete(s.field);
  }

  /**
   * Keep each channel within `maxPoints` rows and a time axis within `window` seconds.
   * Rows are dropped in batches (a few percent of the buffer at a time, never above
   * `maxPoints`): dropping one row per message from the front of big arrays costs the
   * browser far more than the draw. Rows older than the window wait for their batch
   * hidden, outside the x range.
   */
  private trim(): void {
    const max = this.opts.maxPoints;
    const slack = Math.max(32, max >> 4);
    const newest = this.newestX();
    for (const t of this.tracks.values()) {
      const n = t.length;
      let drop = n > max ? n - max + Math.min(slack, max >> 1) : 0;
      if (!this.opts.x && this.opts.window !== null && n) {
        const old = t.olderThan(newest - this.opts.window);
        if (old >= slack || (old > 0 && old === n)) drop = Math.max(drop, old);
      }
      t.trimFront(drop);
    }
  }

  /** Forget every row of one channel. */
  private dropChannel(ch: string): void {
    const t = this.tracks.get(ch);
    if (!t) return;
    t.clear();
    for (const s of this.series) if (s.ch === ch) this.forget(s);
  }

  private newestX(): number {
    let x = -Infinity;
    for (const t of this.tracks.values()) if (t.lastX > x) x = t.lastX;
    return x;
  }

  private heldRange(): [number, number] {
    let lo = Infinity;
    let hi = -Infinity;
    for (const t of this.tracks.values()) {
      if (!t.length) continue;
      lo = Math.min(lo, t.xs[0]);
      hi = Math.max(hi, t.xs[t.length - 1]);
    }
    return [lo, hi];
  }

  // --- controls ---------------------------------------------------------------------------

  /** Show x in [x0, x1] (null: follow the data again). */
  setZoom(range: [number, number] | null): void {
    this.zoom = range && range[1] > range[0] ? [range[0], range[1]] : null;
    this.root.dataset.zoomed = String(this.zoom !== null);
    this.opts.onZoom?.(this.zoom);
    this.noteView();
    this.schedule();
  }

  /** The view as set now (see ViewState). */
  view(): ViewState {
    const hidden = this.series.filter((_s, i) => this.u?.series[i + 1]?.show === false).map((s) => this.nameOf(s));
    return { smoothing: this.opts.smoothing, logY: this.opts.logY, zoom: this.zoom ? [...this.zoom] : null, hidden };
  }

  /** The last view reported (at first: the one the chart was made with, which is no change). */
  private viewKey = "";

  private noteView(): void {
    if (!this.opts.onView) return;
    const v = this.view();
    const key = JSON.stringify(v);
    if (key === this.viewKey) return;
    this.viewKey = key;
    this.opts.onView(v);
  }

  resetZoom(): void {
    this.setZoom(null);
  }

  setLog(on: boolean): void {
    this.opts.logY = on;
    this.toolbar.setLog(on);
    // The smoothed line on a log axis averages the values it can show (see smoothed()).
    for (const se of this.series) {
      se.ema.reset();
      se.smooth.invalidate();
    }
    this.noteView();
    this.rebuild = true;
    this.schedule();
  }

  /** Colour each channel's series (e.g. runs by a config value); the others keep the palette. */
  setColors(colors: Map<string, string> | null): void {
    this.channelColors = colors;
    this.series.forEach((s, i) => (s.color = colors?.get(s.ch) ?? colorOf(i)));
    this.rebuild = true;
    this.schedule();
  }

  setSmoothing(s: number): void {
    this.opts.smoothing = Math.min(0.999, Math.max(0, s));
    this.toolbar.setSmoothing(this.opts.smoothing);
    this.noteView();
    for (const se of this.series) {
      se.ema.reset();
      se.smooth.invalidate();
    }
    this.schedule();
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
    this.prepare();
    const u = this.u!;
    // The y scales are set from this frame's ranges every frame. (They are not uPlot
    // auto-scales, and uPlot asks a non-auto scale's range function only once, when the
    // plot is made: labels then stayed those of the first frames while the data moved on.)
    u.batch(() => {
      u.setData([this.xRange, ...this.series.map(() => [null, null])] as unknown as uPlot.AlignedData);
      for (const k of Object.keys(u.scales)) {
        if (k === "x") continue;
        const [min, max] = this.yRanges[k] ?? paddedRange(Infinity, -Infinity, this.opts.logY);
        u.setScale(k, { min, max });
      }
    });
    this.frames += 1;
    let points = 0;
    for (const t of this.tracks.values()) points += t.values;
    let shown = 0;
    for (const [i, s] of this.series.entries()) if (u.series[i + 1]?.show !== false && s.track.length) shown += 1;
    this.root.dataset.points = String(points);
    this.root.dataset.series = String(shown);
    this.root.dataset.empty = String(this.series.length === 0);
  }

  /** Work out the x range, each shown series' points to draw, and the y ranges. */
  private prepare(): void {
    const [lo, hi] = this.heldRange();
    let x0: number;
    let x1: number;
    if (this.zoom) [x0, x1] = this.zoom;
    else if (lo === Infinity) [x0, x1] = [0, 1];
    else if (!this.opts.x && this.opts.window !== null) [x0, x1] = [Math.max(lo, hi - this.opts.window), hi];
    else [x0, x1] = [lo, hi];
    if (!(x1 > x0)) x1 = x0 + 1;
    this.xRange = [x0, x1];
    const pixels = this.u ? this.u.bbox.width / (devicePixelRatio || 1) : 600;
    const width = bucketWidth(x0, x1, pixels);
    const ranges: Record<string, [number, number]> = {};
    const log = this.opts.logY;
    let drawn = 0;
    let breach = "";
    const omitted: string[] = [];
    let omittedAll = 0;
    const smoothing = this.opts.smoothing;
    for (const [i, s] of this.series.entries()) {
      const col = s.track.cols.get(s.field)!;
      const isGap = (r: number) => s.track.seqs[r] === GAP;
      const th = this.opts.thresholds?.[s.field];
      if (th !== undefined && this.past(s.track.latest(col), th)) breach = s.field;
      if (this.u && this.u.series[i + 1]?.show === false) continue;
      s.raw.update(s.track.xs, col, s.track.base, width, isGap, s.track.version);
      const [a, b] = s.raw.visible(x0, x1, s.ox, s.oy, log);
      drawn += s.ox.length;
      if (log) {
        const n = this.nonPositive(s.track, col, x0, x1);
        if (n) {
          omitted.push(`${this.nameOf(s)}: ${n}`);
          omittedAll += n;
        }
      }
      const scale = this.scaleOf(s.field);
      const r = (ranges[scale] ??= [Infinity, -Infinity]);
      r[0] = Math.min(r[0], a);
      r[1] = Math.max(r[1], b);
      if (smoothing > 0) {
        const sm = this.smoothed(s, col);
        s.smooth.update(s.track.xs, sm, s.track.base, width, isGap, s.ema.gen);
        s.smooth.visible(x0, x1, s.sx, s.sy, log);
        drawn += s.sx.length;
      } else {
        s.sx.length = s.sy.length = 0;
      }
      if (th !== undefined) for (const v of this.limits(th)) if (!log || v > 0) { r[0] = Math.min(r[0], v); r[1] = Math.max(r[1], v); }
    }
    for (const [scale, r] of Object.entries(ranges)) ranges[scale] = paddedRange(r[0], r[1], log);
    this.yRanges = ranges;
    this.drawnPoints = drawn;
    const note = omittedAll
      ? `log y: ${omittedAll} value${omittedAll === 1 ? "" : "s"} ≤ 0 left out (${omitted.join(", ")})` : "";
    if (note !== this.note) {
      this.note = note;
      this.noteEl.textContent = note;
      this.noteEl.hidden = !note;
      this.root.dataset.logOmitted = String(omittedAll);
    }
    if (breach !== this.breach) {
      this.breach = breach;
      this.root.classList.toggle("pulseboard-breach", !!breach);
      if (breach) this.root.dataset.breach = breach;
      else delete this.root.dataset.breach;
    }
  }

  /** Values <= 0 of `col` held for x in [x0, x1] (a log axis leaves them out). */
  private nonPositive(t: Track, col: number[], x0: number, x1: number): number {
    let n = 0;
    for (let r = t.olderThan(x0); r < t.length && t.xs[r] <= x1; r++) if (col[r] <= 0) n += 1;
    return n;
  }

  /** `col` with values <= 0 as NaN (no value), extended as rows are appended. */
  private positive(s: Series, col: number[]): number[] {
    const t = s.track;
    const key = `${t.version}:${t.base}`;
    if (s.posKey !== key || s.pos.length > col.length) {
      s.pos = [];
      s.posKey = key;
    }
    for (let i = s.pos.length; i < col.length; i++) s.pos.push(col[i] > 0 ? col[i] : NaN);
    return s.pos;
  }

  /**
   * Bring a series' smoothed column up to date (full resolution, appended rows only). On a
   * log axis it averages the positive values only: a value it cannot show would otherwise
   * pull the average down into a dip.
   */
  private smoothed(s: Series, col: number[]): number[] {
    const t = s.track;
    const input = this.opts.logY ? this.positive(s, col) : col;
    const out = s.ema.update(t.xs, input, t.base, t.version, this.opts.smoothing);
    t.smooth.set(s.field, out); // trimmed with the rows
    return out;
  }

  private limits(th: Threshold): number[] {
    if (typeof th === "number") return [th];
    return [th.above, th.below].filter((v): v is number => typeof v === "number");
  }

  private past(v: number, th: Threshold): boolean {
    if (Number.isNaN(v)) return false;
    if (typeof th === "number") return v > th;
    return (th.above !== undefined && v > th.above) || (th.below !== undefined && v < th.below);
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

  private nameOf(s: { ch: string; field: string }): string {
    const multi = this.opts.channels.length > 1 || this.opts.channels.some(isPattern) || this.tracks.size > 1;
    return multi ? `${s.ch} · ${s.field}` : s.field;
  }

  private titleText(): string {
    return this.opts.title ?? this.opts.channels.join(", ");
  }

  private build(): void {
    this.rebuild = false;
    const shown = this.u ? this.u.series.slice(1).map((s) => s.show) : [];
    const focused = !!this.u && this.u.over === document.activeElement;
    this.u?.destroy();
    const usesV = this.series.some((s) => this.scaleOf(s.field) === "v");
    const allPercent = this.series.length > 0 && this.series.every((s) => s.field.includes("percent"));
    const vFields = this.series.filter((s) => this.scaleOf(s.field) === "v").map((s) => s.field);
    const units = this.opts.units;
    this.u = makeFrame({
      root: this.root, plotEl: this.plotEl, dark: this.dark, height: this.opts.height, x: this.opts.x ?? null,
      logY: this.opts.logY,
      yUnit: typeof units === "string" ? units : usesV || allPercent ? "%" : undefined,
      vUnit: vFields.length > 0 && vFields.every((f) => f.endsWith("_bps")) ? "bytes/s" : undefined,
      series: this.series.map((s, i) => {
        const unit = this.unitOf(s.field);
        return {
          label: this.nameOf(s) + (unit && typeof units !== "string" ? ` (${unit})` : ""),
          scale: this.scaleOf(s.field),
          color: s.color,
          show: shown[i] ?? !(this.opts.hidden?.(s.ch, s.field) ?? false),
        };
      }),
      xRange: () => this.xRange,
      yRange: (scale) => this.yRanges[scale],
      hover: (i, x) => this.hoverText(this.series[i], x, this.unitOf(this.series[i].field)),
      snapX: (x) => this.snapX(x),
      zoom: (a, b) => this.setZoom([a, b]),
      resetZoom: () => this.resetZoom(),
      zoomBy: (scale, shift) => {
        // From the zoom as set, not as last drawn: two key presses before the next frame are
        // two steps (the drawn range only catches up in that frame).
        const [a, b] = this.zoom ?? this.xRange;
        const mid = (a + b) / 2 + (b - a) * shift;
        const half = ((b - a) * scale) / 2;
        this.setZoom([mid - half, mid + half]);
      },
      changed: () => this.schedule(),
      paint: (u) => this.paint(u),
      painted: (ticks) => this.painted(ticks),
    });
    if (focused) this.u.over.focus(); // a rebuilt plot keeps the keyboard
  }

  /** The x of the point nearest `x` in the first shown series holding data (what hover values show). */
  private snapX(x: number): number {
    for (const [i, s] of this.series.entries()) {
      const col = s.track.cols.get(s.field);
      if (!col || this.u?.series[i + 1]?.show === false) continue;
      const row = s.track.nearest(col, x);
      if (row >= 0) return s.track.xs[row];
    }
    return x;
  }

  /** The legend text of one series: its value at the cursor (raw and smoothed), else its latest. */
  private hoverText(s: Series, x: number | null, unit: string): string {
    const col = s.track.cols.get(s.field);
    if (!col) return "–";
    const row = x === null ? this.lastRow(col) : s.track.nearest(col, x);
    if (row < 0) return "–";
    const u = unit ? ` ${unit}` : "";
    const sm = s.track.smooth.get(s.field);
    if (this.opts.smoothing > 0 && sm && row < sm.length && !Number.isNaN(sm[row])) {
      return `${fmt(sm[row])}${u} (raw ${fmt(col[row])})`;
    }
    return fmt(col[row]) + u;
  }

  private lastRow(col: number[]): number {
    for (let i = col.length - 1; i >= 0 && i >= col.length - 256; i--) if (!Number.isNaN(col[i])) return i;
    return -1;
  }

  /** Draw the lines and threshold lines, inside the plot area (uPlot's draw hook). */
  private paint(u: uPlot): void {
    this.noteView(); // a legend click shows up here first
    const smoothing = this.opts.smoothing > 0;
    const bg = smoothing ? cssVar(this.root, "--pb-bg", this.dark ? "#1e1e1e" : "#ffffff") : "";
    // Lines are mapped with the ranges uPlot's scales hold, the very ones the axes were
    // just painted from.
    const ranges: Record<string, [number, number]> = {};
    for (const k of Object.keys(u.scales)) {
      const r = scaleRange(u.scales[k]);
      if (r && k !== "x") ranges[k] = r;
    }
    const xr = scaleRange(u.scales.x) ?? this.xRange;
    paintLines(u, xr, ranges, this.opts.logY, this.series.map((s, i) => ({
      show: u.series[i + 1]?.show !== false, scale: this.scaleOf(s.field),
      raw: [s.ox, s.oy], smooth: smoothing ? [s.sx, s.sy] : null,
      color: smoothing ? fade(s.color, bg, 0.3) : s.color, strong: s.color,
      paths: [s.rawPath, s.raw.takeDirty(), s.smoothPath, s.smooth.takeDirty()],
    })), Object.entries(this.opts.thresholds ?? {}).flatMap(([f, th]) =>
      this.limits(th).map((v) => ({ scale: this.scaleOf(f), value: v }))));
  }

  /**
   * Record the tick labels uPlot just painted, in `data-ticks` ({scale: [[text, offset px]]}):
   * tests read what the user sees from it, not the chart's idea of its range.
   */
  private painted(ticks: Record<string, PaintedTick[]>): void {
    const out: Record<string, [string, number][]> = {};
    for (const [k, ts] of Object.entries(ticks)) out[k] = ts.map((t) => [t.text, Math.round(t.pos * 10) / 10]);
    this.root.dataset.ticks = JSON.stringify(out);
    if (this.u) {
      const d = devicePixelRatio || 1;
      const b = this.u.bbox;
      this.root.dataset.plot = JSON.stringify([b.left / d, b.top / d, b.width / d, b.height / d]);
    }
  }

  private fit(): void {
    if (!this.u) return;
    const w = Math.max(200, this.plotEl.clientWidth);
    if (Math.abs(w - this.u.width) > 1) {
      this.u.setSize({ width: w, height: this.opts.height });
      this.schedule();
    }
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

  // --- status, messages, downloads, snapshots --------------------------------------------

  setStatus(s: StatusInfo): void {
    this.root.dataset.status = s.status;
    this.root.dataset.transport = s.transport;
    const parts = [s.reason && s.status !== "live" ? s.reason : s.status, s.transport];
    // Lag is how late live messages arrive; with none arriving (a finished run, whose last
    // message only gets older) there is no lag to show.
    if (s.lag !== null && (s.rate >= 0.05 || s.lag < 10)) parts.push(`lag ${s.lag < 10 ? s.lag.toFixed(2) : s.lag.toFixed(0)} s`);
    else if (s.lag !== null && s.status === "live") parts.push("no new messages");
    parts.push(`${s.rate < 10 ? s.rate.toFixed(1) : s.rate.toFixed(0)} msg/s`);
    if (s.note) parts.push(s.note);
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

  /** Every point held, full resolution: header `x,<series>...`. */
  csv(): string {
    const cols = this.series.map((s) => ({ name: this.nameOf(s), track: s.track, field: s.field }));
    return toCsv(cols, this.opts.x ?? "time");
  }

  png(): void {
    download(`${stem(this.titleText())}.png`, this.picture().toDataURL("image/png"));
  }

  /**
   * The chart as it shows, at its size: an opaque background, the title, the plot with its
   * axes, the legend (hidden series struck through, as on screen) and the notes under it.
   */
  picture(): HTMLCanvasElement {
    const dpr = devicePixelRatio || 1;
    const box = this.root.getBoundingClientRect();
    const out = document.createElement("canvas");
    out.width = Math.round(box.width * dpr);
    out.height = Math.round(box.height * dpr);
    const ctx = out.getContext("2d")!;
    const bg = getComputedStyle(this.root).backgroundColor;
    const opaque = bg && !/^rgba\(.*,\s*0\)$|^transparent$/.test(bg) ? bg : "";
    ctx.fillStyle = opaque || cssVar(this.root, "--jp-layout-color0", this.dark ? "#1e1e1e" : "#ffffff");
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.scale(dpr, dpr);
    const at = (el: Element): [number, number, number, number] => {
      const r = el.getBoundingClientRect();
      return [r.left - box.left, r.top - box.top, r.width, r.height];
    };
    const write = (el: Element | null) => {
      if (!el || (el as HTMLElement).hidden) return;
      const st = getComputedStyle(el);
      const [x, y, , h] = at(el);
      ctx.font = `${st.fontWeight} ${st.fontSize} ${st.fontFamily}`;
      ctx.fillStyle = st.color;
      ctx.textBaseline = "middle";
      ctx.fillText(el.textContent ?? "", x, y + h / 2);
    };
    write(this.titleEl);
    if (this.u) {
      const [x, y, w, h] = at(this.u.ctx.canvas);
      ctx.drawImage(this.u.ctx.canvas, x, y, w, h);
      this.u.root.querySelectorAll(".u-legend .u-series").forEach((row, i) => {
        const marker = row.querySelector(".u-marker");
        if (marker && i > 0) {
          const [mx, my, mw, mh] = at(marker);
          ctx.fillStyle = this.series[i - 1]?.color ?? "#888";
          ctx.fillRect(mx, my, mw, mh);
        }
        const label = row.querySelector(".u-label");
        const value = row.querySelector(".u-value");
        write(label);
        write(value);
        if (row.classList.contains("u-off") && label) {
          const [lx, ly, lw, lh] = at(label);
          ctx.fillStyle = getComputedStyle(label).color;
          ctx.fillRect(lx, ly + lh / 2, lw, 1);
        }
      });
    }
    write(this.messageEl);
    write(this.noteEl);
    write(this.statusEl.lastElementChild);
    return out;
  }

  /** The last `maxRows` rows (merged by x) of every series, for the widget state. */
  snapshot(maxRows = 1000): Snapshot {
    const tails = new Map<Track, Rows>();
    for (const t of this.tracks.values()) tails.set(t, tail(t, maxRows));
    const cols = this.series.map((s) => ({ name: s.field, track: tails.get(s.track)!, field: s.field }));
    const lines = toCsv(cols).trimEnd().split("\n").slice(1);
    const rows = lines.slice(Math.max(0, lines.length - maxRows)).map((l) => l.split(","));
    return {
      v: 1,
      series: this.series.map((s) => ({ ch: s.ch, field: s.field })),
      x: rows.map((r) => Number(r[0])),
      y: this.series.map((_, i) => rows.map((r) => (r[i + 1] === "" ? null : Number(r[i + 1])))),
    };
  }

  /** Draw a saved snapshot (e.g. no server is reachable from an exported notebook). */
  loadSnapshot(s: Snapshot): void {
    if (!s || s.v !== 1 || !Array.isArray(s.x)) return;
    this.clear();
    const values = new Map<string, number>();
    for (let r = 0; r < s.x.length; r++) {
      for (const ch of new Set(s.series.map((k) => k.ch))) {
        values.clear();
        s.series.forEach((k, i) => {
          const v = s.y[i]?.[r];
          if (k.ch === ch && typeof v === "number") values.set(k.field, v);
        });
        for (const f of values.keys()) this.seriesFor(ch, f);
        if (values.size) this.trackOf(ch).insert(s.x[r], 0, "", values);
      }
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

  /** What the test-only debug hook reads (see chart/debug.ts). */
  private debugSource(): DebugSource {
    return {
      held: () => this.held(),
      tracks: this.tracks,
      gapsSeen: this.gapsSeen,
      series: () => this.series.map((s) => ({ ...s, name: this.nameOf(s) })),
      frames: () => this.frames,
      idle: () => !this.pending && this.frames > 0,
      range: () => ({ x: [...this.xRange], y: { ...this.yRanges }, log: this.opts.logY, zoomed: this.zoom !== null }),
      csv: () => this.csv(),
      root: this.root,
    };
  }
}
