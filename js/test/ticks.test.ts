import { describe, expect, it } from "vitest";
import { tickLabels } from "../src/chart/format";
import { paddedRange, scaleRange } from "../src/chart/range";

describe("y range", () => {
  it("pads the values shown, on a linear axis", () => {
    const [lo, hi] = paddedRange(0.1, 2.0, false);
    expect(lo).toBeLessThan(0.1);
    expect(hi).toBeGreaterThan(2.0);
    expect(hi - lo).toBeCloseTo(1.9 * 1.1, 12);
  });

  it("follows the data: a falling series' range moves down with it", () => {
    expect(paddedRange(1.2, 2.0, false)[0]).toBeGreaterThan(1);
    expect(paddedRange(0.09, 2.0, false)[0]).toBeLessThan(0.09);
  });

  it("stays positive on a log axis and has a default when nothing is shown", () => {
    const [lo, hi] = paddedRange(0.001, 3, true);
    expect(lo).toBeGreaterThan(0);
    expect(lo).toBeLessThan(0.001);
    expect(hi).toBeGreaterThan(3);
    expect(paddedRange(Infinity, -Infinity, true)).toEqual([1, 10]);
    expect(paddedRange(Infinity, -Infinity, false)).toEqual([0, 1]);
  });

  it("gives a flat series some height", () => {
    const [lo, hi] = paddedRange(5, 5, false);
    expect(lo).toBeLessThan(5);
    expect(hi).toBeGreaterThan(5);
  });

  it("reads a scale back only when it holds a range", () => {
    expect(scaleRange({ min: 0.1, max: 2 })).toEqual([0.1, 2]);
    expect(scaleRange({ min: null, max: 2 })).toBeNull();
    expect(scaleRange(undefined)).toBeNull();
  });
});

describe("tick labels", () => {
  it("print multiples of the spacing exactly", () => {
    expect(tickLabels([0.5, 0.75, 1, 1.25], 0.25, false)).toEqual(["0.50", "0.75", "1.00", "1.25"]);
    expect(tickLabels([0, 0.2, 0.4], 0.2, false)).toEqual(["0.0", "0.2", "0.4"]);
    expect(tickLabels([0, 5, 10], 5, false)).toEqual(["0", "5", "10"]);
  });

  it("never read 0.0, 0.0 on a log axis", () => {
    const vals = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 1, 10];
    const out = tickLabels(vals, 0.1, true);
    expect(out).toEqual(["0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "1", "10"]);
    expect(new Set(out).size).toBe(out.length);
  });

  it("leave unlabelled ticks empty and add decimals until neighbours differ", () => {
    expect(tickLabels([1, null, 3], 1, true)).toEqual(["1", "", "3"]);
    const close = tickLabels([1.0001, 1.0002, 1.0003], 0.01, false);
    expect(new Set(close).size).toBe(3);
  });
});
