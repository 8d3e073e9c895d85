// Drawing cost bounded by pixels: each series is cut into x buckets at most one pixel
// column wide, and a bucket of more than two points keeps only its lowest and highest
// (in x order). A line through those covers the same pixels as the line through every
// point: within a column the line spans min..max, and the segment joining two columns
// stays inside the span of the two. A single spike is never lost (it is its bucket's
// min or max).
//
// Buckets sit on a fixed grid (bucket b covers [b*width, (b+1)*width)), so while the
// view slides, finished buckets stay valid: `ColumnCache` only rescans the newest bucket
// and the rows appended since the last frame.

/** One bucket: one or two points, in x order; `gap` marks a break before it. */
export interface Bucket {
  b: number;
  /** Absolute row (rows trimmed from the front keep counting) where the bucket starts. */
  start: number;
  gap: boolean;
  xs: number[];
  ys: number[];
}

/** The bucket width for a visible range drawn on `pixels` columns: a power of two, so it changes rarely. */
export function bucketWidth(x0: number, x1: number, pixels: number): number {
  const raw = Math.max((x1 - x0) / Math.max(1, pixels), 1e-9);
  return Math.pow(2, Math.ceil(Math.log2(raw)));
}

/**
 * Scan rows [from, to) of (xs, ys) into buckets of `width`. NaN values are skipped;
 * rows where `isGap(i)` is true break the line. `base` is the absolute number of row 0.
 */
export function scan(
  xs: ArrayLike<number>, ys: ArrayLike<number>, from: number, to: number, width: number,
  base = 0, isGap: (i: number) => boolean = () => false,
): Bucket[] {
  const out: Bucket[] = [];
  let cur: Bucket | null = null;
  let fx = 0, fy = 0, lx = 0, ly = 0, nx = 0, ny = Infinity, mx = 0, my = -Infinity, count = 0;
  let pendingGap = false;
  let gapRow = 0;
  const close = () => {
    if (!cur) return;
    if (count === 1) {
      cur.xs.push(fx);
      cur.ys.push(fy);
    } else if (count === 2) {
      cur.xs.push(fx, lx);
      cur.ys.push(fy, ly);
    } else if (nx <= mx) {
      cur.xs.push(nx, mx);
      cur.ys.push(ny, my);
    } else {
      cur.xs.push(mx, nx);
      cur.ys.push(my, ny);
    }
    out.push(cur);
    cur = null;
  };
  for (let i = from; i < to; i++) {
    if (isGap(i)) {
      close();
      if (!pendingGap) gapRow = i;
      pendingGap = true;
      continue;
    }
    const y = ys[i];
    if (Number.isNaN(y)) continue;
    const x = xs[i];
    const b = Math.floor(x / width);
    if (!cur || cur.b !== b) {
      close();
      cur = { b, start: base + i, gap: pendingGap, xs: [], ys: [] };
      pendingGap = false;
      fx = nx = mx = x;
      fy = ny = my = y;
      count = 1;
    } else {
      count += 1;
      if (y < ny) { ny = y; nx = x; }
      if (y > my) { my = y; mx = x; }
    }
    lx = x;
    ly = y;
  }
  close();
  if (pendingGap) out.push({ b: Infinity, start: base + gapRow, gap: true, xs: [], ys: [] });
  return out;
}

/** The buckets of one series column, kept up to date as rows are appended and trimmed. */
export class ColumnCache {
  private width = 0;
  private version = NaN;
  private buckets: Bucket[] = [];
  /** Absolute row up to which the buckets are built. */
  private end = 0;
  /** The first bucket changed since the last `visible` (buckets before it drew the same). */
  private changedFrom = 0;
  /** What the last `visible` wrote: its first bucket, where each bucket's points start, the arrays. */
  private outFirst = -1;
  private outAt: number[] = [];
  private outTo: [number[], number[]] | null = null;
  /** The first output index rewritten since the last `takeDirty` (for the painter's cache). */
  private dirtyOut = 0;

  /** The first output index rewritten since the last call (Infinity: none). */
  takeDirty(): number {
    const d = this.dirtyOut;
    this.dirtyOut = Infinity;
    return d;
  }

  /** Forget everything (rows changed in the middle, or the channel was cleared). */
  invalidate(): void {
    this.buckets = [];
    this.end = 0;
    this.width = 0;
    this.changedFrom = 0;
    this.outTo = null;
  }

  /**
   * Bring the buckets up to date with rows [0, xs.length), whose first row is absolute
   * row `base` (rows before it were trimmed), at bucket `width`. A new `version` means
   * rows changed elsewhere than at the ends: everything is rescanned.
   */
  update(xs: ArrayLike<number>, ys: ArrayLike<number>, base: number, width: number,
    isGap: (i: number) => boolean = () => false, version = 0): void {
    if (width !== this.width || version !== this.version) this.invalidate();
    this.width = width;
    this.version = version;
    // Trimmed rows: drop their buckets (a bucket cut in two keeps its old points; it sits
    // at the left edge, outside the window).
    let k = 0;
    while (k < this.buckets.length && this.buckets[k].start < base) k++;
    if (k) {
      this.buckets.splice(0, k);
      this.changedFrom = 0;
      this.outTo = null;
    }
    const stop = base + xs.length;
    if (this.end >= stop && this.end >= base) return;
    // Rescan the last bucket (it may have grown) and everything after it.
    let from = Math.max(base, this.end);
    let gapBefore = false;
    const last = this.buckets[this.buckets.length - 1];
    if (last && last.start >= base) {
      from = last.start;
      gapBefore = last.gap; // the gap row came before `start`: keep the break
      this.buckets.pop();
    } else if (this.buckets.length === 0) {
      from = base;
    }
    this.changedFrom = Math.min(this.changedFrom, this.buckets.length);
    const fresh = scan(xs, ys, from - base, xs.length, width, base, isGap);
    if (gapBefore && fresh.length) fresh[0].gap = true;
    for (const b of fresh) this.buckets.push(b);
    this.end = stop;
  }

  /**
   * The points to draw for x in [x0, x1], plus one bucket either side so the line runs
   * to the edges; NaN in `ox`/`oy` breaks the line. Returns [min y, max y] of the
   * points inside the range (Infinity/-Infinity when none), for the y axis. Called with
   * the same arrays frame after frame, a live view only rewrites the buckets that changed.
   */
  visible(x0: number, x1: number, ox: number[], oy: number[], positive = false): [number, number] {
    const bs = this.buckets;
    const b0 = Math.floor(x0 / this.width);
    const b1 = Math.floor(x1 / this.width);
    let lo = 0;
    let hi = bs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (bs[mid].b < b0) lo = mid + 1;
      else hi = mid;
    }
    const first = Math.max(0, lo - 1);
    // Does this view run to the last bucket, like the last one did, from the same first bucket?
    const toEnd = bs.length === 0 || bs[bs.length - 1].b <= b1 || (bs.length > 1 && bs[bs.length - 2].b <= b1);
    let k = first;
    if (toEnd && this.outTo && this.outTo[0] === ox && this.outTo[1] === oy && this.outFirst === first
      && this.changedFrom >= first && this.changedFrom - first <= this.outAt.length) {
      k = this.changedFrom;
      const at = k - first < this.outAt.length ? this.outAt[k - first] : ox.length;
      ox.length = oy.length = at;
      this.dirtyOut = Math.min(this.dirtyOut, at);
      this.outAt.length = k - first;
    } else {
      ox.length = oy.length = 0;
      this.outAt.length = 0;
      this.dirtyOut = 0;
    }
    for (; k < bs.length; k++) {
      const bk = bs[k];
      this.outAt.push(ox.length);
      if (bk.gap && ox.length) {
        ox.push(NaN);
        oy.push(NaN);
      }
      for (let j = 0; j < bk.xs.length; j++) {
        ox.push(bk.xs[j]);
        oy.push(bk.ys[j]);
      }
      if (bk.b > b1) break;
    }
    const reachedEnd = k >= bs.length - 1;
    this.outTo = toEnd && reachedEnd ? [ox, oy] : null;
    this.outFirst = first;
    this.changedFrom = bs.length;
    let ymin = Infinity;
    let ymax = -Infinity;
    for (let i = 0; i < ox.length; i++) {
      const x = ox[i];
      const y = oy[i];
      if (x >= x0 && x <= x1 && (!positive || y > 0)) {
        if (y < ymin) ymin = y;
        if (y > ymax) ymax = y;
      }
    }
    return [ymin, ymax];
  }
}
