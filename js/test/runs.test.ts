import { describe, expect, it } from "vitest";
import { MetricStats, colorsBy, compare, differingKeys, flatConfig, matches } from "../src/runs/model";
import type { RunRecord } from "../src/runs/model";

function run(name: string, config: Record<string, unknown>, extra: Partial<RunRecord> = {}): RunRecord {
  return { project: "p", name, channel: `p.${name}`, config, tags: [], host: "h", status: "running", start: 1, end: null,
    updated: 1, ...extra };
}

describe("runs table model", () => {
  it("shows only the config keys that differ, nested ones dotted", () => {
    const cfgs = [{ lr: 0.1, optim: { name: "adam", beta: 0.9 }, seed: 1 }, { lr: 0.01, optim: { name: "adam", beta: 0.99 }, seed: 1 },
      { lr: 0.1, optim: { name: "adam", beta: 0.9 }, seed: 1, extra: true }].map((c) => flatConfig(c));
    expect(differingKeys(cfgs)).toEqual(["extra", "lr", "optim.beta"]);
    expect(flatConfig({ layers: [64, 64] })).toEqual({ layers: "[64,64]" });
  });

  it("keeps last, min and max per run and metric, ignoring step and non-numbers", () => {
    const s = new MetricStats(null);
    const changed = s.add([{ ch: "p.a", data: { loss: 3, step: 1, note: "x" } }, { ch: "p.a", data: { loss: 1 } },
      { ch: "p.a", data: { loss: 2 } }]);
    expect([...changed]).toEqual(["p.a"]);
    expect(s.get("p.a", "loss")).toEqual({ last: 2, min: 1, max: 3 });
    expect(s.names()).toEqual(["loss"]);
    const only = new MetricStats(["acc"]);
    only.add([{ ch: "p.a", data: { loss: 3, acc: 0.5 } }]);
    expect(only.get("p.a", "loss")).toBeUndefined();
  });

  it("filters by status, config value, tag and text", () => {
    const r = run("brisk-otter-1", { lr: 0.01 }, { tags: ["baseline"], status: "finished" });
    const cfg = flatConfig(r.config);
    expect(matches(r, cfg, { status: "", text: "lr=0.01 tag:baseline otter" })).toBe(true);
    expect(matches(r, cfg, { status: "running", text: "" })).toBe(false);
    expect(matches(r, cfg, { status: "", text: "lr=0.1" })).toBe(false);
    expect(matches(r, cfg, { status: "", text: "tag:other" })).toBe(false);
  });

  it("sorts numbers as numbers and missing values last", () => {
    expect([10, 9, undefined, 100].sort(compare)).toEqual([9, 10, 100, undefined]);
    expect(["run-10", "run-9"].sort(compare)).toEqual(["run-9", "run-10"]);
  });

  it("colours numbers low to high on a log ramp when they span decades, other values by hue", () => {
    const c = colorsBy([run("a", { lr: 1e-4 }), run("b", { lr: 1e-3 }), run("c", { lr: 1e-2 }), run("d", {})], "lr");
    expect(c.get("p.a")).toBe("rgb(68, 1, 84)"); // the low end
    expect(c.get("p.c")).toBe("rgb(158, 213, 74)"); // the high end (short of pale yellow)
    expect(c.get("p.b")).toBe(colorsBy([run("x", { lr: 0.5 }), run("y", { lr: 0 }), run("z", { lr: 1 })], "lr").get("p.x"));
    expect(c.has("p.d")).toBe(false);
    const cat = colorsBy([run("a", { opt: "adam" }), run("b", { opt: "sgd" }), run("c", { opt: "adam" })], "opt");
    expect(cat.get("p.a")).toBe(cat.get("p.c"));
    expect(cat.get("p.a")).not.toBe(cat.get("p.b"));
  });
});
