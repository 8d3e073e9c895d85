import { describe, expect, it } from "vitest";
import { ColumnCache, bucketWidth, scan } from "../src/chart/columns";
import { Ema, referenceStep, smoothInto } from "../src/chart/ema";
import { matching } from "../src/chart/glob";

/** The definition, computed the slow way: weighted mean with weights s^((x_k - x_i)/step). */
function reference(xs: number[], ys: number[], s: number, step: number): number[] {
  return xs.map((xk, k) => {
    let num = 0;
    let den = 0;
    for (let i = 0; i <= k; i++) {
      const w = Math.pow(s, (xk - xs[i]) / step);
      num += w * ys[i];
      den += w;
    }
    return num / den;
  });
}

describe("ema", () => {
  it("is TensorBoard's debiased EMA on even steps", () => {
    const ys = [3, 1, 4, 1, 5, 9, 2, 6];
    const xs = ys.map((_, i) => i);
    const out: number[] = [];
    smoothInto(xs, ys, out, 0, new Ema(0.6, 1));
    let last = 0;
    ys.forEach((v, i) => {
      last = last * 0.6 + (1 - 0.6) * v;
      expect(out[i]).toBeCloseTo(last / (1 - Math.pow(0.6, i + 1)), 12);
    });
    expect(out[0]).toBe(3); // debiased: the first point is not pulled towards zero
  });

  it("weights by x distance on uneven steps", () => {
    const xs = [0, 1, 2, 10, 11, 12, 40, 41];
    const ys = [1, 2, 3, 10, 11, 12, -5, 0];
    const out: number[] = [];
    smoothInto(xs, ys, out, 0, new Ema(0.8, 1));
    const want = reference(xs, ys, 0.8, 1);
    out.forEach((v, i) => expect(v).toBeCloseTo(want[i], 10));
    // A long jump forgets more than a short one would.
    const even: number[] = [];
    smoothInto(xs.map((_, i) => i), ys, even, 0, new Ema(0.8, 1));
    expect(Math.abs(out[3] - 10)).toBeLessThan(Math.abs(even[3] - 10));
  });

  it("skips missing values and continues incrementally", () => {
    const xs = [0, 1, 2, 3, 4, 5];
    const ys = [1, NaN, 3, 4, NaN, 6];
    const whole: number[] = [];
    smoothInto(xs, ys, whole, 0, new Ema(0.5, 1));
    const parts: number[] = [];
    const e = new Ema(0.5, 1);
    smoothInto(xs.slice(0, 3), ys.slice(0, 3), parts, 0, e);
    smoothInto(xs, ys, parts, 3, e);
    expect(parts).toEqual(whole);
    expect(Number.isNaN(whole[1])).toBe(true);
    const want = reference([0, 2, 3, 5], [1, 3, 4, 6], 0.5, 1);
    expect(whole[5]).toBeCloseTo(want[3], 12);
  });

  it("takes the median spacing of the first points as the step", () => {
    expect(referenceStep([0, 10, 20, 25, 35, 45], [1, 1, 1, 1, 1, 1])).toEqual([10, 5]);
    expect(referenceStep([5], [1])).toEqual([1, 0]);
  });
});

describe("columns", () => {
  it("keeps min and max per bucket (at most two points), so a spike survives", () => {
    const n = 200_000;
    const xs = Array.from({ length: n }, (_, i) => i);
    const ys = xs.map((i) => Math.sin(i / 1000));
    ys[123_457] = 50;
    const w = bucketWidth(0, n, 1000);
    const cache = new ColumnCache();
    cache.update(xs, ys, 0, w);
    const ox: number[] = [];
    const oy: number[] = [];
    const [lo, hi] = cache.visible(0, n, ox, oy);
    expect(hi).toBe(50);
    expect(lo).toBeCloseTo(-1, 3);
    expect(ox.length).toBeLessThanOrEqual(2 * (n / w + 2));
    expect(ox).toContain(123_457);
    for (let i = 1; i < ox.length; i++) expect(ox[i]).toBeGreaterThanOrEqual(ox[i - 1]);
  });

  it("matches a fresh scan after appends and front trims", () => {
    const xs: number[] = [];
    const ys: number[] = [];
    const cache = new ColumnCache();
    let base = 0;
    for (let i = 0; i < 5000; i++) {
      xs.push(i * 0.37);
      ys.push(Math.cos(i) * i);
      if (i % 97 === 0) cache.update(xs, ys, base, 4);
      if (i % 1000 === 999) {
        xs.splice(0, 300);
        ys.splice(0, 300);
        base += 300;
      }
    }
    cache.update(xs, ys, base, 4);
    const a: number[][] = [[], []];
    cache.visible(xs[0] + 8, xs[xs.length - 1], a[0], a[1]);
    const fresh = new ColumnCache();
    fresh.update(xs, ys, base, 4);
    const b: number[][] = [[], []];
    fresh.visible(xs[0] + 8, xs[xs.length - 1], b[0], b[1]);
    expect(a).toEqual(b);
  });

  it("rewrites only the changed buckets of a live view, with the same result", () => {
    const xs: number[] = [];
    const ys: number[] = [];
    const [live, all, window] = [new ColumnCache(), new ColumnCache(), new ColumnCache()];
    const [ox, oy, ax, ay, wx, wy]: number[][] = [[], [], [], [], [], []];
    let base = 0;
    for (let i = 0; i < 12_000; i++) {
      xs.push(i);
      ys.push(i % 7 === 0 ? NaN : Math.sin(i / 37) * (i % 13));
      if (i % 3000 === 2999) {
        xs.splice(0, 600);
        ys.splice(0, 600);
        base += 600;
      }
      if (i % 197 > 2) continue; // pairs of calls: the second one is incremental
      // One cache follows everything held, one a sliding window, one switches between them.
      const views: [ColumnCache, number[], number[], number][] = [
        [live, ox, oy, i % 3 === 0 ? xs[0] : Math.max(xs[0], i - 3000)],
        [all, ax, ay, xs[0]],
        [window, wx, wy, Math.max(xs[0], i - 3000)],
      ];
      for (const [cache, cx, cy, x0] of views) {
        cache.update(xs, ys, base, 8, (r) => (r + base) % 101 === 0);
        const want: number[][] = [[], []];
        const fresh = new ColumnCache();
        fresh.update(xs, ys, base, 8, (r) => (r + base) % 101 === 0);
        const r1 = fresh.visible(x0, i, want[0], want[1]);
        const r2 = cache.visible(x0, i, cx, cy);
        expect([cx, cy]).toEqual(want);
        expect(r2).toEqual(r1);
      }
    }
  });

  it("breaks the line at gap rows", () => {
    const xs = [0, 1, 2, 3, 4];
    const ys = [1, 2, NaN, 4, 5];
    const bs = scan(xs, ys, 0, 5, 1, 0, (i) => i === 2);
    expect(bs.map((b) => b.gap)).toEqual([false, false, true, false]);
    const cache = new ColumnCache();
    cache.update(xs, ys, 0, 1, (i) => i === 2);
    const ox: number[] = [];
    const oy: number[] = [];
    cache.visible(0, 4, ox, oy);
    expect(oy.map((v) => (Number.isNaN(v) ? "|" : v))).toEqual([1, 2, "|", 4, 5]);
  });
});

describe("glob", () => {
  it("matches channel patterns like the server's grants", () => {
    expect(matching(["train.*"], ["train.a", "train.b.c", "eval.a", "trainx"])).toEqual(["train.a", "train.b.c"]);
    expect(matching(["run-?"], ["run-1", "run-10"])).toEqual(["run-1"]);
  });
});

describe("csv", () => {
  it("merges channels by x, keeps every row and leaves gaps out", async () => {
    const { toCsv, tail } = await import("../src/chart/export");
    const { Track, GAP } = await import("../src/chart/store");
    const a = new Track("a");
    const b = new Track("b");
    a.insert(1, 1, "", new Map([["v", 0.1]]));
    a.insert(2, 2, "", new Map([["v", 0.2]]));
    a.insert(2, GAP, "", new Map());
    a.insert(3, 3, "", new Map([["v", 0.30000000000000004]]));
    b.insert(2, 1, "", new Map([["v", 5]]));
    b.insert(2, 2, "", new Map([["v", 6]])); // same x twice: both rows kept
    const cols = [{ name: "a · v", track: a, field: "v" }, { name: "b · v", track: b, field: "v" }];
    expect(toCsv(cols, "step")).toBe("step,a · v,b · v\n1,0.1,\n2,0.2,5\n2,,6\n3,0.30000000000000004,\n");
    expect(toCsv([{ name: "v", track: tail(a, 1), field: "v" }])).toBe("x,v\n3,0.30000000000000004\n");
  });
});

describe("host groups", () => {
  it("puts each collector field in its unit's chart, per-core CPU hidden", async () => {
    const { groupOf, isHostChart } = await import("../src/chart/hostgroup");
    const key = (f: string) => groupOf(f)?.key ?? null;
    expect(["cpu_percent", "cpu_percent.3", "mem_percent", "swap_percent", "disk_read_bps", "net_tx_bps", "load1", "v"]
      .map(key)).toEqual(["cpu", "cpu", "mem", "mem", "disk", "net", "load", null]);
    expect(groupOf("cpu_percent.3")?.hidden?.("cpu_percent.3")).toBe(true);
    expect(groupOf("cpu_percent")?.hidden?.("cpu_percent")).toBe(false);
    expect(isHostChart(["sys.a"], null)).toBe(true);
    expect(isHostChart(["sys.a"], ["load1"])).toBe(false);
    expect(isHostChart(["sys.a", "train.x"], null)).toBe(false);
  });
});

describe("history ranges", () => {
  it("finds the thinned parts a zoom overlaps and cuts out what came back whole", async () => {
    const { overlaps, cut } = await import("../src/chart/history");
    expect(overlaps([[0, 10], [20, 30]], 5, 25)).toEqual([[5, 10], [20, 25]]);
    expect(overlaps([[0, 10]], 10, 20)).toEqual([]);
    expect(cut(0, 10, 3, 5)).toEqual([[0, 3], [5, 10]]);
    expect(cut(0, 10, -Infinity, 5)).toEqual([[5, 10]]);
    expect(cut(0, 10, -1, 11)).toEqual([]);
  });
});
