// One channel's rows, sorted by x: the full-resolution data a chart holds. Every field
// is a column of numbers (NaN = no value in that row), so columns stay packed double
// arrays; a gap (continuity lost) is a row whose seq is GAP.

export const GAP = -1;

export class Track {
  xs: number[] = [];
  seqs: number[] = [];
  epochs: string[] = [];
  readonly cols = new Map<string, number[]>();
  /** Smoothed columns, aligned with the rows (kept by the chart). */
  readonly smooth = new Map<string, number[]>();
  /** Absolute number of row 0 (rows trimmed from the front keep counting). */
  base = 0;
  /** Bumped when rows change anywhere but the end: caches must start over. */
  version = 0;
  gapRows = 0;
  /** Values held, all fields (what `data-points` counts). */
  values = 0;
  lastX = -Infinity;
  /** The oldest message time held (unix seconds), whatever the x axis is. */
  firstTs = Infinity;

  constructor(readonly ch: string) {}

  get length(): number {
    return this.xs.length;
  }

  col(field: string): number[] {
    let c = this.cols.get(field);
    if (!c) {
      c = new Array<number>(this.xs.length).fill(NaN);
      this.cols.set(field, c);
    }
    return c;
  }

  /** Insert one row at its place by x; `values` maps fields to numbers. */
  insert(x: number, seq: number, epoch: string, values: Map<string, number>): void {
    for (const f of values.keys()) this.col(f);
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
      this.version += 1;
    }
    const append = at === this.xs.length;
    const put = <T>(arr: T[], v: T) => (append ? arr.push(v) : arr.splice(at, 0, v));
    put(this.xs, x);
    put(this.seqs, seq);
    put(this.epochs, epoch);
    for (const [f, c] of this.cols) put(c, values.get(f) ?? NaN);
    this.values += values.size;
    for (const c of this.smooth.values()) if (!append) c.length = Math.min(c.length, at);
    if (seq === GAP) this.gapRows += 1;
    else if (x > this.lastX) this.lastX = x;
  }

  /** Drop the first `n` rows. */
  trimFront(n: number): void {
    if (n <= 0) return;
    n = Math.min(n, this.xs.length);
    for (let i = 0; i < n; i++) if (this.seqs[i] === GAP) this.gapRows -= 1;
    for (const c of this.cols.values()) for (let i = 0; i < n; i++) if (c[i] === c[i]) this.values -= 1;
    this.xs.splice(0, n);
    this.seqs.splice(0, n);
    this.epochs.splice(0, n);
    for (const c of this.cols.values()) c.splice(0, n);
    for (const c of this.smooth.values()) c.splice(0, Math.min(n, c.length));
    this.base += n;
    if (!this.xs.length) {
      this.lastX = -Infinity;
      this.firstTs = Infinity;
    }
  }

  clear(): void {
    this.trimFront(this.xs.length);
    this.version += 1;
  }

  /** How many rows have x < `limit`. */
  olderThan(limit: number): number {
    let lo = 0;
    let hi = this.xs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.xs[mid] < limit) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The row nearest to `x` that has a value in `col`, or -1. */
  nearest(col: number[], x: number): number {
    const i = this.olderThan(x);
    let best = -1;
    for (let k = 0; k < 64; k++) {
      for (const j of [i - 1 - k, i + k]) {
        if (j < 0 || j >= col.length || Number.isNaN(col[j])) continue;
        if (best < 0 || Math.abs(this.xs[j] - x) < Math.abs(this.xs[best] - x)) best = j;
      }
      if (best >= 0) break;
    }
    return best;
  }

  /** The value of `col` in the last row that has one, or NaN. */
  latest(col: number[]): number {
    for (let i = col.length - 1; i >= 0 && i >= col.length - 256; i--) if (!Number.isNaN(col[i])) return col[i];
    return NaN;
  }
}
