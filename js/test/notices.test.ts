import { describe, expect, it } from "vitest";
import { distance, like, missingFieldsText, noDataText } from "../src/notices";

describe("notices", () => {
  it("finds channels like a typo", () => {
    expect(distance("train.rn1", "train.run1")).toBe(1);
    expect(like("train.rn1", ["sys.host", "train.run1", "train.run2", "eval.a"])).toEqual(["train.run1", "train.run2"]);
    expect(like("zzz", ["train.run1"])).toEqual([]);
  });

  it("says which channel has no data and what is readable like it", () => {
    expect(noDataText(["train.rn1"], ["sys.h", "train.run1"])).toBe(
      "no data yet on train.rn1; readable channels like it: train.run1",
    );
    expect(noDataText(["q.x"], ["train.run1"])).toBe("no data yet on q.x");
  });

  it("names missing fields and the ones that exist", () => {
    const seen = new Map([["train.run1", new Set(["loss", "step"])]]);
    expect(missingFieldsText(["los", "step"], seen)).toBe("no field los on train.run1 yet; its fields: loss, step");
    expect(missingFieldsText(["loss"], seen)).toBeNull();
    expect(missingFieldsText(["loss"], new Map())).toBeNull();
  });

  it("says when a field asked for comes but never as a number", () => {
    const seen = new Map([["train.s", new Set(["acc", "loss", "step"])]]);
    const numeric = new Map([["train.s", new Set(["loss", "step"])]]);
    expect(missingFieldsText(["acc"], seen, 12, numeric)).toBe(
      "field acc has no numbers on train.s yet (text or null values); numeric fields: loss, step",
    );
    expect(missingFieldsText(["loss"], seen, 12, numeric)).toBeNull();
    expect(missingFieldsText(["los"], seen, 12, numeric)).toBe("no field los on train.s yet; its fields: acc, loss, step");
  });
});
