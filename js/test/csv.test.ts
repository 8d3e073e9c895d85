import { describe, expect, it } from "vitest";
import { quote, toCsv } from "../src/chart/export";
import { toCsv as reportCsv } from "../src/report";

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

  it("keeps negative numbers as numbers, in the chart's and the report's CSV", () => {
    const track = { length: 2, xs: [1, 2], seqs: [1, 2], cols: new Map([["=v", [-0.5, -2]]]) };
    expect(toCsv([{ name: "=v", track, field: "=v" }], "-x")).toBe("'-x,'=v\n1,-0.5\n2,-2\n");
    const snap = { v: 1, series: [{ ch: "a", field: "@f" }], x: [-1, 0], y: [[-0.5, 3]] };
    expect(reportCsv(snap as never)).toBe("x,'@f\n-1,-0.5\n0,3\n");
  });
});
