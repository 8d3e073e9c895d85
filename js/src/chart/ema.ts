// Smoothing: a debiased exponential moving average weighted by x distance.
//
// The smoothed value at point k is the weighted mean of every point up to k,
//   ema_k = sum_i w_i * v_i / sum_i w_i,   w_i = s ** ((x_k - x_i) / step),
// where `s` is the smoothing factor in [0, 1) and `step` the series' typical x spacing
// (the median spacing of its first REF_SAMPLES + 1 points). Dividing by the sum of the
// weights is the debiasing: the first points are not pulled towards zero. With even
// steps this is TensorBoard's debiased EMA; with uneven steps a long jump forgets more,
// so the curve does not depend on how often a run logged.

/** How many x spacings fix a series' reference step. */
export const REF_SAMPLES = 16;

/**
 * The median of the first positive x spacings (at most REF_SAMPLES of them), or 1 when
 * there are none, and how many spacings it saw (REF_SAMPLES means it is final).
 */
export function referenceStep(xs: ArrayLike<number>, ys: ArrayLike<number>, from = 0, to = xs.length): [number, number] {
  const deltas: number[] = [];
  let prev = NaN;
  for (let i = from; i < to && deltas.length < REF_SAMPLES; i++) {
    if (Number.isNaN(ys[i])) continue;
    if (!Number.isNaN(prev) && xs[i] > prev) deltas.push(xs[i] - prev);
    prev = xs[i];
  }
  if (!deltas.length) return [1, 0];
  deltas.sort((a, b) => a - b);
  const m = deltas.length >> 1;
  return [deltas.length % 2 ? deltas[m] : (deltas[m - 1] + deltas[m]) / 2, deltas.length];
}

/** The running state of one series' average; feed points in x order. */
export class Ema {
  private num = 0;
  private den = 0;
  private lastX = NaN;

  constructor(readonly s: number, readonly step: number) {}

  /** Add one point and return the smoothed value there. */
  push(x: number, v: number): number {
    const d = Number.isNaN(this.lastX) ? 0 : Math.pow(this.s, Math.max(0, x - this.lastX) / this.step);
    this.num = this.num * d + v;
    this.den = this.den * d + 1;
    this.lastX = x;
    return this.num / this.den;
  }
}

/**
 * Smooth `ys` (NaN = no value) into `out` from row `from` on, continuing `ema`.
 * Rows without a value get NaN. The caller keeps `ema` to extend the result when rows
 * are appended, and starts a new one when rows change before `from`.
 */
export function smoothInto(xs: ArrayLike<number>, ys: ArrayLike<number>, out: number[], from: number, ema: Ema): void {
  out.length = Math.min(out.length, from);
  for (let i = out.length; i < from; i++) out.push(NaN);
  for (let i = from; i < xs.length; i++) {
    const v = ys[i];
    out.push(Number.isNaN(v) ? NaN : ema.push(xs[i], v));
  }
}

/**
 * One series' smoothed column, kept up to date as rows are appended (and trimmed at the
 * front): appended rows extend the average; anything else (rows changed in the middle,
 * a new factor, the reference step still settling) recomputes it, and bumps `gen`.
 */
export class SmoothedColumn {
  values: number[] = [];
  gen = 0;
  private ema: Ema | null = null;
  private step = 1;
  private final = false;
  private end = 0;
  private version = NaN;
  private s = NaN;

  reset(): void {
    this.ema = null;
  }

  /** Rows [0, xs.length) start at absolute row `base`; `version` changes when rows change in the middle. */
  update(xs: number[], col: number[], base: number, version: number, s: number): number[] {
    if (this.ema && !this.final) {
      const [step, n] = referenceStep(xs, col);
      if (step !== this.step) this.ema = null;
      else if (n >= REF_SAMPLES) this.final = true;
    }
    if (!this.ema || this.version !== version || this.s !== s || this.end < base) {
      const [step, n] = referenceStep(xs, col);
      this.ema = new Ema(s, step);
      Object.assign(this, { step, final: n >= REF_SAMPLES, end: base, version, s, values: [] });
      this.gen += 1;
    }
    smoothInto(xs, col, this.values, this.end - base, this.ema);
    this.end = base + xs.length;
    return this.values;
  }
}
