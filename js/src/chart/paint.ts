// Painting the lines on uPlot's canvas, inside the plot area: each series' points (NaN
// breaks the line), the smoothed line over a faded raw one, and threshold lines.

import type uPlot from "uplot";

/**
 * A series' line as a Path2D in data coordinates (relative to an origin, as Path2D keeps
 * float32), kept across frames: a live view only adds its new tail, and each frame maps it
 * to pixels with one transform instead of rebuilding every segment.
 */
export class LinePath {
  private prefix: Path2D | null = null;
  private upTo = 0;
  private ox = 0;
  private oy = 0;

  /** Forget the kept path (it was not kept up to date, e.g. on a log axis). */
  reset(): void {
    this.prefix = null;
  }

  /** The path of points [0, n); `dirty` is the first index rewritten since the last call. */
  build(xs: number[], ys: number[], dirty: number): { prefix: Path2D; tail: Path2D; ox: number; oy: number } {
    const n = xs.length;
    if (!this.prefix || dirty < this.upTo || n - this.upTo > 512) {
      let o = 0;
      while (o < n && ys[o] !== ys[o]) o++;
      this.ox = o < n ? xs[o] : 0;
      this.oy = o < n ? ys[o] : 0;
      this.upTo = Math.max(0, n - 1);
      this.prefix = trace(xs, ys, 0, this.upTo, this.ox, this.oy);
    }
    // The tail starts at the prefix's last point, so the line runs on without a break.
    return { prefix: this.prefix, tail: trace(xs, ys, Math.max(0, this.upTo - 1), n, this.ox, this.oy), ox: this.ox, oy: this.oy };
  }
}

function trace(xs: number[], ys: number[], from: number, to: number, ox: number, oy: number): Path2D {
  const path = new Path2D();
  let pen = false;
  for (let i = from; i < to; i++) {
    const y = ys[i];
    if (y !== y) {
      pen = false;
      continue;
    }
    if (pen) path.lineTo(xs[i] - ox, y - oy);
    else path.moveTo(xs[i] - ox, y - oy);
    pen = true;
  }
  return path;
}

export interface SeriesLines {
  show: boolean;
  scale: string;
  raw: [number[], number[]];
  smooth: [number[], number[]] | null;
  /** Kept paths and the first output index rewritten since the last paint, per line. */
  paths?: [LinePath, number, LinePath, number];
  /** The raw line's colour (faded when smoothed) and the smoothed line's. */
  color: string;
  strong: string;
}

export interface Rule {
  scale: string;
  value: number;
}

/**
 * Lines are stroked as one-device-pixel hairlines (repeated a pixel apart on high-density
 * screens): a wider stroke of a dense zigzag costs the canvas a hundred times more, and a
 * translucent one makes it resolve every overlap. Hence opaque, faded colours too.
 */
export function paintLines(
  u: uPlot, xRange: [number, number], yRanges: Record<string, [number, number]>, log: boolean,
  series: SeriesLines[], rules: Rule[],
): void {
  const ctx = u.ctx;
  const { left, top, width, height } = u.bbox;
  const dpr = devicePixelRatio || 1;
  const [x0, x1] = xRange;
  const kx = width / (x1 - x0);
  const tf = (v: number) => (log ? Math.log10(v) : v);
  const bottom = top + height;
  const repeat = Math.max(1, Math.round(dpr));
  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top, width, height);
  ctx.clip();
  const stroke = (path: Path2D) => {
    for (let k = 0; k < repeat; k++) {
      ctx.setTransform(1, 0, 0, 1, 0, k);
      ctx.stroke(path);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  };
  const line = ([xs, ys]: [number[], number[]], scale: string, color: string, kept?: [LinePath, number]) => {
    const r = yRanges[scale];
    if (!r || !xs.length) return;
    const b0 = tf(r[0]);
    const ky = height / (tf(r[1]) - b0);
    ctx.strokeStyle = color;
    ctx.lineWidth = 1;
    if (kept && !log) {
      const { prefix, tail, ox, oy } = kept[0].build(xs, ys, kept[1]);
      const m = new DOMMatrix([kx, 0, 0, -ky, left + (ox - x0) * kx, bottom - (oy - b0) * ky]);
      const path = new Path2D();
      path.addPath(prefix, m);
      path.addPath(tail, m);
      stroke(path);
      return;
    }
    kept?.[0].reset();
    const path = new Path2D();
    let pen = false;
    for (let i = 0; i < xs.length; i++) {
      let y = ys[i];
      if (y !== y) {
        pen = false; // NaN: a gap
        continue;
      }
      // A value a log axis cannot show is left out (the chart counts and says so): the
      // line runs on between its neighbours instead of breaking or dipping.
      if (log) {
        if (!(y > 0)) continue;
        y = Math.log10(y);
      }
      const px = left + (xs[i] - x0) * kx;
      const py = bottom - (y - b0) * ky;
      if (pen) path.lineTo(px, py);
      else path.moveTo(px, py);
      pen = true;
    }
    stroke(path);
  };
  for (const s of series) {
    if (!s.show) continue;
    const p = s.paths;
    line(s.raw, s.scale, s.color, p && [p[0], p[1]]);
    if (s.smooth) line(s.smooth, s.scale, s.strong, p && [p[2], p[3]]);
  }
  ctx.setLineDash([6 * dpr, 4 * dpr]);
  ctx.strokeStyle = "#d64545";
  ctx.lineWidth = dpr;
  for (const { scale, value } of rules) {
    const r = yRanges[scale];
    if (!r || (log && value <= 0)) continue;
    const py = bottom - ((tf(value) - tf(r[0])) * height) / (tf(r[1]) - tf(r[0]));
    ctx.beginPath();
    ctx.moveTo(left, py);
    ctx.lineTo(left + width, py);
    ctx.stroke();
  }
  ctx.restore();
}
