// The y range a frame draws in, from the lowest and highest value it shows. The same range
// is handed to uPlot's scale every frame (so the axis labels are painted from it) and read
// back from that scale when the lines are painted: labels and lines cannot disagree.

/** [lo, hi] of the values shown (Infinity, -Infinity when none) padded for drawing. */
export function paddedRange(lo: number, hi: number, log: boolean): [number, number] {
  if (!(lo <= hi) || !Number.isFinite(lo) || !Number.isFinite(hi)) return log ? [1, 10] : [0, 1];
  if (log) {
    // Only positive values reach here on a log axis (the rest are left out and counted).
    return [lo / 1.2, hi * 1.2];
  }
  const pad = (hi - lo) * 0.05 || Math.abs(lo) * 0.1 || 1;
  return [lo - pad, hi + pad];
}

/** The range a uPlot scale holds now (what its axis was last painted from), or null. */
export function scaleRange(scale: { min?: number | null; max?: number | null } | undefined): [number, number] | null {
  if (!scale || scale.min == null || scale.max == null || !(scale.max > scale.min)) return null;
  return [scale.min, scale.max];
}
