// The report page's pure parts: a snapshot replayed into envelopes and gaps, the CSV, and
// which snapshot the widget keeps (the kernel's whole range vs the browser's buffer).
import { describe, expect, it } from "vitest";
import { replay, savedGapsText } from "../src/report";
import type { ReportSnapshot } from "../src/report";
import { supersedes } from "../src/widget";

const snap: ReportSnapshot = {
  v: 1,
  series: [{ ch: "a", field: "loss" }, { ch: "b", field: "loss" }],
  x: [0, 1, 2, 3, 4],
  y: [[1, null, 0.5, null, 0.25], [null, 2, null, 3, null]],
  gaps: { a: [2] },
};

describe("replay", () => {
  it("turns rows back into envelopes per channel, with the x field set", () => {
    const steps = replay(snap, "step");
    const envs = steps.flatMap((s) => ("add" in s ? s.add : []));
    expect(envs.map((e) => [e.ch, e.seq, e.data])).toEqual([
      ["a", 1, { loss: 1, step: 0 }], ["b", 1, { loss: 2, step: 1 }], ["a", 2, { loss: 0.5, step: 2 }],
      ["b", 2, { loss: 3, step: 3 }], ["a", 3, { loss: 0.25, step: 4 }],
    ]);
  });
  it("draws a break on a channel before its first point after the gap", () => {
    const order = replay(snap, null).map((s) => ("gap" in s ? `gap:${s.gap}` : s.add.map((e) => `${e.ch}${e.ts}`).join(" ")));
    expect(order).toEqual(["a0 b1 a2 b3", "gap:a", "a4"]);
  });
  it("uses x as the time when there is no x field", () => {
    const [first] = replay(snap, null);
    expect("add" in first && first.add[0].ts).toBe(0);
  });
});

describe("what a report chart says it lacks", () => {
  const opts = (channels: string[], fields: string[] | null = null, x: string | null = null) => ({ channels, fields, x });
  it("nothing when every channel and field drew", () => {
    expect(savedGapsText(opts(["a", "b"], ["loss"]), snap)).toBeNull();
    expect(savedGapsText(opts(["*"]), snap)).toBeNull();
  });
  it("names a channel with no numbers (a typo, most often), and a pattern that matched none", () => {
    const typo: ReportSnapshot = { v: 1, series: [{ ch: "train.rn1", field: "loss" }], x: [], y: [[]] };
    expect(savedGapsText(opts(["train.rn1"], ["loss"]), typo)).toBe("no numbers on train.rn1 when this snapshot was taken");
    expect(savedGapsText(opts(["a", "c", "z.*"]), snap)).toBe("no numbers on c, z.* when this snapshot was taken");
  });
  it("names a field asked for that held no numbers, and the fields that did; not the x field", () => {
    const s: ReportSnapshot = { ...snap, series: [...snap.series, { ch: "a", field: "los" }], y: [...snap.y, [null, null, null, null, null]] };
    expect(savedGapsText(opts(["a", "b"], ["los", "step"], "step"), s)).toBe("no numbers in field los; fields drawn: loss");
  });
  it("lists at most 12 of the fields drawn, as the live chart's notice does", () => {
    const names = Array.from({ length: 30 }, (_, i) => `f${String(i).padStart(2, "0")}`);
    const wide: ReportSnapshot = { v: 1, series: names.map((field) => ({ ch: "a", field })), x: [0], y: names.map(() => [1]) };
    expect(savedGapsText(opts(["a"], ["los"]), wide)).toBe(
      `no numbers in field los; fields drawn: ${names.slice(0, 12).join(", ")}, … (30 in all)`,
    );
  });
});

describe("which snapshot the widget keeps", () => {
  const kernel = { ...snap, source: "kernel" };
  it("the browser's only once it holds newer data than the kernel's", () => {
    expect(supersedes({ v: 1, series: [], x: [3, 4], y: [] }, kernel)).toBe(false);
    expect(supersedes({ v: 1, series: [], x: [3, 5], y: [] }, kernel)).toBe(true);
    expect(supersedes({ v: 1, series: [], x: [1], y: [] }, { ...snap })).toBe(true);
    expect(supersedes({ v: 1, series: [], x: [1], y: [] }, null)).toBe(true);
  });
});
