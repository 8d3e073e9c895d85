// The runs table's data, without the DOM: run records (from `GET runs`), the config keys that
// differ between runs, per-run last/min/max of chosen metrics (from the runs' channels),
// filtering, sorting, and colours by a config value (for `LiveChart(color_by=...)`).

export type Status = "running" | "finished" | "crashed" | "stalled";
export const STATUSES: Status[] = ["running", "finished", "crashed", "stalled"];

export interface RunRecord {
  project: string;
  name: string;
  channel: string;
  config: Record<string, unknown>;
  tags: string[];
  host: string;
  status: Status;
  start: number;
  end: number | null;
  updated: number;
}

export interface Stat {
  last: number;
  min: number;
  max: number;
}

export type Scalar = string | number | boolean | null;

/** Nested config flattened to dotted keys (`optim.lr`); lists and the rest as JSON text. */
export function flatConfig(config: Record<string, unknown>, prefix = "", out: Record<string, Scalar> = {}): Record<string, Scalar> {
  for (const [k, v] of Object.entries(config ?? {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) flatConfig(v as Record<string, unknown>, key, out);
    else if (v === null || typeof v === "number" || typeof v === "string" || typeof v === "boolean") out[key] = v;
    else out[key] = JSON.stringify(v);
  }
  return out;
}

/** Config keys whose value is not the same in every run (missing counts as a value), sorted. */
export function differingKeys(configs: Record<string, Scalar>[]): string[] {
  if (configs.length < 2) return configs.length ? Object.keys(configs[0]).sort() : [];
  const keys = new Set<string>();
  for (const c of configs) for (const k in c) keys.add(k);
  const out: string[] = [];
  for (const k of keys) {
    const first = configs[0][k];
    if (configs.some((c) => c[k] !== first)) out.push(k);
  }
  return out.sort();
}

/** Status shown for a record: the server's, which already says `stalled` for silent runs. */
export function duration(r: RunRecord, now: number): number {
  return Math.max(0, (r.end ?? (r.status === "running" ? now : r.updated)) - r.start);
}

export function fmtDuration(s: number): string {
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`;
}

export function fmtStart(t: number): string {
  const d = new Date(t * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fmtValue(v: Scalar | undefined): string {
  if (v === undefined || v === null) return "";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(Number(v.toPrecision(5)));
  }
  return String(v);
}

/** Per run and metric: last, min and max, updated from envelopes as they arrive. */
export class MetricStats {
  readonly byChannel = new Map<string, Map<string, Stat>>();
  /** Metric names seen (when `metrics` is null), and whether one appeared since the last look. */
  private seen = new Set<string>();
  fresh = false;

  constructor(public metrics: string[] | null) {}

  /** Fold envelopes in; returns the channels whose stats changed. */
  add(envs: { ch: string; data: Record<string, unknown> }[]): Set<string> {
    const changed = new Set<string>();
    for (const env of envs) {
      let m = this.byChannel.get(env.ch);
      for (const f in env.data) {
        const v = env.data[f];
        if (typeof v !== "number" || !Number.isFinite(v) || f === "step") continue;
        if (this.metrics && !this.metrics.includes(f)) continue;
        if (!m) this.byChannel.set(env.ch, (m = new Map()));
        if (!this.seen.has(f)) {
          this.seen.add(f);
          this.fresh = true;
        }
        const s = m.get(f);
        if (!s) m.set(f, { last: v, min: v, max: v });
        else {
          s.last = v;
          if (v < s.min) s.min = v;
          if (v > s.max) s.max = v;
        }
        changed.add(env.ch);
      }
    }
    return changed;
  }

  reset(ch: string): void {
    this.byChannel.delete(ch);
  }

  /** The metrics seen, in the order asked for (else sorted). */
  names(): string[] {
    return this.metrics ?? [...this.seen].sort();
  }

  get(ch: string, metric: string): Stat | undefined {
    return this.byChannel.get(ch)?.get(metric);
  }
}

export interface Filter {
  status: Status | "";
  /** Words; each must match: `key=value` (config), `tag:name`, or text in the name, tags or host. */
  text: string;
}

export function matches(r: RunRecord, cfg: Record<string, Scalar>, f: Filter): boolean {
  if (f.status && r.status !== f.status) return false;
  for (const word of f.text.trim().split(/\s+/).filter(Boolean)) {
    const eq = word.indexOf("=");
    if (eq > 0) {
      const k = word.slice(0, eq);
      if (fmtValue(cfg[k]) !== word.slice(eq + 1)) return false;
    } else if (word.startsWith("tag:")) {
      if (!r.tags.includes(word.slice(4))) return false;
    } else {
      const w = word.toLowerCase();
      if (!r.name.toLowerCase().includes(w) && !r.host.toLowerCase().includes(w) &&
          !r.tags.some((t) => t.toLowerCase().includes(w))) return false;
    }
  }
  return true;
}

/** Compare two cell values for sorting: numbers numerically, missing last, the rest as text. */
export function compare(a: Scalar | undefined, b: Scalar | undefined): number {
  const na = a === undefined || a === null || a === "";
  const nb = b === undefined || b === null || b === "";
  if (na || nb) return na === nb ? 0 : na ? 1 : -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

// Viridis-like stops: readable on light and dark backgrounds, ordered from low to high.
const STOPS: [number, number, number][] = [
  [68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37],
];

/** t in [0, 1] to a colour; the top stops short of viridis' pale yellow, unreadable on white. */
function ramp(t: number): string {
  const x = Math.min(1, Math.max(0, t)) * 0.85 * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const c = STOPS[i].map((v, j) => Math.round(v + (STOPS[i + 1][j] - v) * f));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

/**
 * A colour per channel from one config value: numbers on a low-to-high ramp (a log scale when
 * all are positive and span over 20x, as learning rates do), other values one hue each.
 */
export function colorsBy(runs: RunRecord[], key: string): Map<string, string> {
  const vals = runs.map((r) => [r.channel, flatConfig(r.config)[key]] as const).filter(([, v]) => v !== undefined && v !== null);
  const out = new Map<string, string>();
  if (!vals.length) return out;
  if (vals.every(([, v]) => typeof v === "number")) {
    const nums = vals.map(([, v]) => v as number);
    let lo = Math.min(...nums);
    let hi = Math.max(...nums);
    const log = lo > 0 && hi / lo > 20;
    const f = (v: number) => (log ? Math.log10(v) : v);
    [lo, hi] = [f(lo), f(hi)];
    for (const [ch, v] of vals) out.set(ch, ramp(hi > lo ? (f(v as number) - lo) / (hi - lo) : 0.5));
    return out;
  }
  const distinct = [...new Set(vals.map(([, v]) => String(v)))].sort();
  for (const [ch, v] of vals) {
    const i = distinct.indexOf(String(v));
    out.set(ch, `hsl(${Math.round((i * 137.508) % 360)}, 60%, 48%)`);
  }
  return out;
}
