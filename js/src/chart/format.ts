// Formatting and colours shared by the chart's pieces.

const PALETTE = [
  "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
];

/** Colour `i`: the palette, then evenly spread hues (stable: series keep their index). */
export function colorOf(i: number): string {
  if (i < PALETTE.length) return PALETTE[i];
  return `hsl(${Math.round((i * 137.508) % 360)}, 55%, 50%)`;
}

/**
 * Counters and positions rather than measurements (integers): not plotted as y unless
 * picked on the dashboard, and an x axis of one gets whole-number ticks only.
 */
export const STEP_LIKE = new Set(["step", "epoch", "batch", "global_step"]);

/** Tick spacings for an integer-valued axis: 1, 2, 5, 10, 20, 50, ... (never 2.5). */
export const WHOLE_INCRS: number[] = [];
for (let e = 1; e <= 1e15; e *= 10) WHOLE_INCRS.push(e, 2 * e, 5 * e);

export function cssVar(el: Element, name: string, fallback: string): string {
  const v = getComputedStyle(el).getPropertyValue(name).trim();
  return v || fallback;
}

export function fmt(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
  return String(parseFloat(v.toPrecision(3)));
}

/** An axis tick: as many decimals as the tick spacing needs, so close ticks differ. */
export function tick(v: number, incr: number): string {
  if (Math.abs(v) >= 1e4 || !(incr > 0)) return fmt(v);
  return v.toFixed(decimalsFor(incr));
}

/** Decimals that print multiples of `step` exactly (0.25 needs two: "0.75", not "0.8"). */
function decimalsFor(step: number): number {
  let d = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  while (d < 10) {
    const scaled = step * Math.pow(10, d);
    if (Math.abs(scaled - Math.round(scaled)) <= 1e-6 * scaled) break;
    d += 1;
  }
  return Math.min(10, d);
}

/**
 * An axis's labels (null: a tick left unlabelled). Linear ticks get the decimals their
 * spacing needs; log ticks (a decade apart, or 1-2-5 within one) each get the decimals of
 * their own size, as one spacing cannot fit 0.002 and 20 alike. Then, whatever the axis,
 * decimals are added until neighbouring labels differ: two ticks never both read "0.0".
 */
export function tickLabels(vals: (number | null)[], incr: number, log: boolean): string[] {
  const shown = vals.filter((v): v is number => v != null && Number.isFinite(v));
  for (let extra = 0; extra <= 10; extra++) {
    const out = vals.map((v) => {
      if (v == null || !Number.isFinite(v)) return "";
      if (Math.abs(v) >= 1e4) return fmt(v);
      const d = log ? (v > 0 ? decimalsFor(v) : 0) : incr > 0 ? decimalsFor(incr) : 0;
      return v.toFixed(Math.min(12, d + extra));
    });
    const texts = out.filter((t) => t !== "");
    if (new Set(texts).size === texts.length || shown.length < 2) return out;
  }
  return vals.map((v) => (v == null || !Number.isFinite(v) ? "" : String(v)));
}

let probe: CanvasRenderingContext2D | null = null;
const faded = new Map<string, string>();

/** `color` mixed into `bg`: `a` of the colour, the rest background (cached). */
export function fade(color: string, bg: string, a: number): string {
  const key = `${color}|${bg}|${a}`;
  let out = faded.get(key);
  if (out) return out;
  probe ??= document.createElement("canvas").getContext("2d");
  const rgb = (c: string): number[] => {
    if (!probe) return [128, 128, 128];
    probe.fillStyle = "#000";
    probe.fillStyle = c; // the canvas normalises any CSS colour to #rrggbb
    const n = parseInt(String(probe.fillStyle).slice(1, 7), 16);
    return Number.isNaN(n) ? [128, 128, 128] : [n >> 16, (n >> 8) & 255, n & 255];
  };
  const [c, b] = [rgb(color), rgb(bg)];
  out = `rgb(${c.map((v, i) => Math.round(v * a + b[i] * (1 - a))).join(",")})`;
  faded.set(key, out);
  return out;
}

export function luminance(color: string): number {
  const m = color.match(/^#([0-9a-f]{6})$/i);
  let r = 255;
  let g = 255;
  let b = 255;
  if (m) {
    const n = parseInt(m[1], 16);
    r = n >> 16;
    g = (n >> 8) & 255;
    b = n & 255;
  } else {
    const rgb = color.match(/\d+(\.\d+)?/g);
    if (rgb && rgb.length >= 3) [r, g, b] = rgb.slice(0, 3).map(Number);
  }
  return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
}
