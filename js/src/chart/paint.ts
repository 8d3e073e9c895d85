// Painting the lines on uPlot's canvas, inside the plot area: each series' points (NaN
// breaks the line), the smoothed line over a faded raw one, and threshold lines.

import type uPlot from "uplot";

export interface SeriesLines {
  show: boolean;
  scale: string;
  raw: [number[], number[]];
  smooth: [number[], number[]] | null;
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
  const line = ([xs, ys]: [number[], number[]], scale: string, color: string) => {
    const r = yRanges[scale];
    if (!r || !xs.length) return;
    const b0 = tf(r[0]);
    const ky = height / (tf(r[1]) - b0);
    const path = new Path2D();
    let pen = false;
    for (let i = 0; i < xs.length; i++) {
      let y = ys[i];
      if (log) y = y > 0 ? Math.log10(y) : NaN;
      if (y !== y) {
        pen = false; // NaN: a gap (or a value a log axis can't show)
        continue;
      }
      const px = left + (xs[i] - x0) * kx;
      const py = bottom - (y - b0) * ky;
      if (pen) path.lineTo(px, py);
      else path.moveTo(px, py);
      pen = true;
    }
    ctx.strokeStyle = color;
    ctx.lineWidth = 1;
    for (let k = 0; k < repeat; k++) {
      ctx.setTransform(1, 0, 0, 1, 0, k);
      ctx.stroke(path);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  };
  for (const s of series) {
    if (!s.show) continue;
    line(s.raw, s.scale, s.color);
    if (s.smooth) line(s.smooth, s.scale, s.strong);
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
