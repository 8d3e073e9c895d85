// The test-only debug hook on a chart's root element (`el.__pulseboard`): read-only views
// of what the chart holds and drew. Production code never reads it.

import { GAP, Track } from "./store";

export interface DebugSeries {
  ch: string;
  field: string;
  name: string;
  color: string;
  track: Track;
  ox: number[];
  oy: number[];
  sx: number[];
  sy: number[];
}

export interface DebugSource {
  held(): number;
  tracks: Map<string, Track>;
  gapsSeen: Map<string, number>;
  series(): DebugSeries[];
  frames(): number;
  idle(): boolean;
  range(): { x: number[]; y: Record<string, [number, number]>; log: boolean; zoomed: boolean };
  csv(): string;
  root: HTMLElement;
}

export function debugHook(src: DebugSource) {
  const byName = (name: string) => src.series().find((s) => s.name === name || `${s.ch}:${s.field}` === name);
  return Object.freeze({
    points: () => src.held(),
    /** Seqs held for `ch`, oldest first; -1 marks a drawn gap. */
    seqs: (ch: string) => [...(src.tracks.get(ch)?.seqs ?? [])],
    /** Runs of seqs between gaps, each with its epoch. */
    segments: (ch: string) => {
      const t = src.tracks.get(ch);
      const segs: { epoch: string; seqs: number[] }[] = [];
      let cur: { epoch: string; seqs: number[] } | null = null;
      for (let i = 0; t && i < t.length; i++) {
        if (t.seqs[i] === GAP) {
          cur = null;
          continue;
        }
        if (!cur || cur.epoch !== t.epochs[i]) segs.push((cur = { epoch: t.epochs[i], seqs: [] }));
        cur.seqs.push(t.seqs[i]);
      }
      return segs;
    },
    gaps: (ch: string) => src.gapsSeen.get(ch) ?? 0,
    series: () => src.series().map((s) => `${s.ch}:${s.field}`),
    /** Legend names, in order. */
    names: () => src.series().map((s) => s.name),
    colors: () => src.series().map((s) => s.color),
    frames: () => src.frames(),
    /** True when everything received has been drawn (no frame pending). */
    idle: () => src.idle(),
    /** What the last frame drew: x range, y range per scale, log or not, zoomed or not. */
    range: () => src.range(),
    /** The points of one series drawn in the last frame (raw and smoothed). */
    drawn: (name: string) => {
      const s = byName(name);
      return s ? { x: [...s.ox], y: [...s.oy], sx: [...s.sx], sy: [...s.sy] } : null;
    },
    /** Every held point of one series: [x, raw, smoothed] (smoothed null when off). */
    smoothed: (name: string) => {
      const s = byName(name);
      if (!s) return null;
      const col = s.track.cols.get(s.field)!;
      const sm = s.track.smooth.get(s.field) ?? [];
      const out: [number, number, number | null][] = [];
      for (let i = 0; i < s.track.length; i++) {
        if (!Number.isNaN(col[i])) out.push([s.track.xs[i], col[i], Number.isNaN(sm[i] ?? NaN) ? null : sm[i]]);
      }
      return out;
    },
    csv: () => src.csv(),
    get status() {
      return src.root.dataset.status;
    },
    get transport() {
      return src.root.dataset.transport;
    },
  });
}
