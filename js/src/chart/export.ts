// Downloads: every point a chart holds as CSV (full resolution, one column per series),
// and the plot as PNG.

import { GAP } from "./store";

/** Rows of one channel (a Track, or the tail of one). */
export interface Rows {
  readonly length: number;
  xs: number[];
  seqs: number[];
  readonly cols: Map<string, number[]>;
}

export interface Column {
  name: string;
  track: Rows;
  field: string;
}

/** The last `n` rows of `t`. */
export function tail(t: Rows, n: number): Rows {
  const from = Math.max(0, t.length - n);
  const cols = new Map<string, number[]>();
  for (const [f, c] of t.cols) cols.set(f, c.slice(from));
  return { length: t.length - from, xs: t.xs.slice(from), seqs: t.seqs.slice(from), cols };
}

function cell(v: number): string {
  return Number.isNaN(v) ? "" : String(v);
}

/**
 * A text cell (a series or x-field name; numbers go through `cell`): quoted when it holds a
 * quote, comma or line break, and prefixed with `'` when it starts like a spreadsheet formula
 * (`=`, `+`, `-`, `@`, tab, CR), so opening the CSV never runs a formula a field name carries.
 * Numeric cells such as -0.5 are data and are written as numbers, never prefixed.
 */
export function quote(name: string): string {
  const text = /^[=+\-@\t\r]/.test(name) ? `'${name}` : name;
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * The CSV text: header `x,<series>...`, then one row per held row of every channel,
 * merged by x (rows of different channels at the same x share a line). Gap rows are left out.
 */
export function toCsv(columns: Column[], xName = "x"): string {
  const tracks = [...new Set(columns.map((c) => c.track))];
  const byTrack = tracks.map((t) => columns.map((c, i) => [i, c] as const).filter(([, c]) => c.track === t));
  const at = tracks.map(() => 0);
  const lines: string[] = [[quote(xName), ...columns.map((c) => quote(c.name))].join(",")];
  const row: string[] = new Array(columns.length).fill("");
  for (;;) {
    let x = Infinity;
    for (const [k, t] of tracks.entries()) {
      while (at[k] < t.length && t.seqs[at[k]] === GAP) at[k] += 1;
      if (at[k] < t.length && t.xs[at[k]] < x) x = t.xs[at[k]];
    }
    if (x === Infinity) break;
    row.fill("");
    let any = false;
    for (const [k, t] of tracks.entries()) {
      if (at[k] >= t.length || t.xs[at[k]] !== x) continue;
      for (const [i, c] of byTrack[k]) {
        const v = t.cols.get(c.field)?.[at[k]] ?? NaN;
        row[i] = cell(v);
        if (row[i]) any = true;
      }
      at[k] += 1;
    }
    if (any) lines.push(String(x) + "," + row.join(","));
  }
  return lines.join("\n") + "\n";
}

export function download(name: string, href: string): void {
  const a = document.createElement("a");
  a.href = href;
  a.download = name;
  a.style.display = "none";
  document.body.appendChild(a);
  a.click();
  a.remove();
}

export function downloadText(name: string, text: string, type = "text/csv"): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  download(name, url);
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * A file-name-safe stem from a chart title: pattern characters are dropped and other
 * unsafe runs become "_", with no dot or "_" left at either end (`train.*` gives `train`,
 * so the file is `train.csv`, not `train..csv`).
 */
export function stem(title: string): string {
  return title.replace(/[*?]+/g, "").replace(/[^A-Za-z0-9_.-]+/g, "_").replace(/[._]{2,}/g, (m) => m[0])
    .replace(/^[._-]+|[._-]+$/g, "") || "chart";
}
