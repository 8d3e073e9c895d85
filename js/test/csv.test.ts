import { describe, expect, it } from "vitest";
import { quote, toCsv } from "../src/chart/export";

// A CSV opened in a spreadsheet runs a cell that starts like a formula; field names are text
// anyone who can publish chooses, numbers are data.
describe("CSV cells", () => {
  it("neutralises text that starts like a formula", () => {
    for (const bad of ["=1+1", "+1", "-cmd", "@SUM(A1)", "\tx", "\rx"]) {
      expect(quote(bad).replace(/^"/, "").startsWith("'")).toBe(true);
    }
    expect(quote('=HYPERLINK("http://e","x")')).toBe(`"'=HYPERLINK(""http://e"",""x"")"`);
    expect(quote("loss")).toBe("loss");
    expect(quote("a,b")).toBe('"a,b"');
  });

  it("keeps negative numbers as numbers (reports use the chart's own CSV button)", () => {
    const track = { length: 2, xs: [1, 2], seqs: [1, 2], cols: new Map([["=v", [-0.5, -2]]]) };
    expect(toCsv([{ name: "=v", track, field: "=v" }], "-x")).toBe("'-x,'=v\n1,-0.5\n2,-2\n");
  });
});
