// The uPlot frame around pulseboard's own lines: axes, legend (with hover values),
// cursor, drag-to-zoom and double-click reset. Its data is only the x range; the lines
// are painted by the `paint` hook from the chart's thinned points.

import uPlot from "uplot";
import { cssVar, fmt, STEP_LIKE, tickLabels, WHOLE_INCRS } from "./format";

export interface FrameSeries {
  label: string;
  scale: string;
  color: string;
  show: boolean;
}

export interface FrameHost {
  root: HTMLElement;
  plotEl: HTMLElement;
  dark: boolean;
  height: number;
  /** The data field on x, or null for time. */
  x: string | null;
  logY: boolean;
  yUnit: string | undefined;
  vUnit: string | undefined;
  series: FrameSeries[];
  xRange(): [number, number];
  yRange(scale: string): [number, number] | undefined;
  /** Legend text of series `i`: at x (hovering) or its latest (x null). */
  hover(i: number, x: number | null): string;
  /** The x of the data point nearest `x` that the legend's values come from (x itself if none). */
  snapX(x: number): number;
  zoom(a: number, b: number): void;
  resetZoom(): void;
  /** Keyboard zoom: `scale` the x range around its middle, then `shift` it by a fraction of it. */
  zoomBy(scale: number, shift: number): void;
  changed(): void;
  paint(u: uPlot): void;
  /** The tick labels just painted on each axis (by scale), with their offsets in CSS pixels. */
  painted(ticks: Record<string, PaintedTick[]>): void;
}

export interface PaintedTick {
  text: string;
  /** Offset from the canvas's left (x) or top (y), CSS pixels. */
  pos: number;
}

/** uPlot's per-axis state after a draw: the labels it painted and the values they sit at. */
interface DrawnAxis {
  scale?: string;
  show?: boolean;
  _values?: (string | null)[] | null;
  _splits?: number[] | null;
}

/** What uPlot just painted on its axes, read from the arrays its axis painter drew from. */
function paintedTicks(u: uPlot): Record<string, PaintedTick[]> {
  const out: Record<string, PaintedTick[]> = {};
  const dpr = devicePixelRatio || 1;
  for (const a of u.axes as DrawnAxis[]) {
    const scale = a.scale ?? "x";
    if (a.show === false || !a._values || !a._splits) continue;
    out[scale] = a._splits.map((v, i) => ({ text: String(a._values![i] ?? ""), pos: u.valToPos(v, scale) + (scale === "x" ? u.bbox.left : u.bbox.top) / dpr }))
      .filter((t) => t.text !== "");
  }
  return out;
}

export function makeFrame(h: FrameHost): uPlot {
  const fg = cssVar(h.root, "--jp-ui-font-color1", h.dark ? "#e0e0e0" : "#333");
  const grid = cssVar(h.root, "--jp-border-color2", h.dark ? "#3a3a3a" : "#e6e6e6");
  const font = `11px ${cssVar(h.root, "--jp-ui-font-family", "system-ui, sans-serif")}`;
  const axis = (scale: string, side: number, label?: string): uPlot.Axis => ({
    scale, side, stroke: fg, font, labelFont: font, label, labelSize: label ? 16 : 0,
    grid: { stroke: grid, width: 1, show: scale !== "v" },
    ticks: { stroke: grid, width: 1 },
    values: scale === "x" && !h.x ? undefined
      : (_u, vals, _ax, _space, incr) => tickLabels(vals, incr, scale !== "x" && h.logY),
    size: scale === "x" ? 50 : 56,
    // A step-like x holds whole numbers: ticks 2.5 apart would label points that do not exist.
    ...(scale === "x" && h.x && STEP_LIKE.has(h.x) ? { incrs: WHOLE_INCRS } : {}),
  });
  const axes: uPlot.Axis[] = [axis("x", 2, h.x ?? undefined), axis("y", 3, h.yUnit)];
  if (h.series.some((s) => s.scale === "v")) axes.push(axis("v", 1, h.vUnit));
  const yScale = (name: string): uPlot.Scale => ({
    distr: h.logY ? 3 : 1, auto: false, range: () => h.yRange(name) ?? (h.logY ? [1, 10] : [0, 1]),
  });
  const hoverX = (u: uPlot): number | null =>
    u.cursor.left == null || u.cursor.left < 0 ? null : u.posToVal(u.cursor.left, "x");
  const opts: uPlot.Options = {
    width: Math.max(200, h.plotEl.clientWidth || h.root.clientWidth || 600),
    height: h.height,
    scales: { x: { time: !h.x, auto: false, range: () => h.xRange() }, y: yScale("y"), v: yScale("v") },
    axes,
    cursor: {
      points: { show: false },
      drag: { x: true, y: false, setScale: false },
      bind: { dblclick: () => () => null },
    },
    legend: { live: true },
    hooks: {
      setSelect: [(u) => {
        if (u.select.width > 2) h.zoom(u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x"));
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      }],
      setSeries: [() => h.changed()],
      draw: [(u) => h.paint(u)],
      drawAxes: [(u) => h.painted(paintedTicks(u))],
    },
    series: [
      {
        label: h.x ?? "time",
        value: (u, _v, _si, idx) => {
          const at = idx == null ? null : hoverX(u);
          if (at == null) return "";
          const x = h.snapX(at);
          return h.x ? fmt(x) : new Date(x * 1000).toLocaleTimeString();
        },
      },
      ...h.series.map((s, i): uPlot.Series => ({
        label: s.label, scale: s.scale, stroke: s.color, width: 1, points: { show: false }, show: s.show,
        value: (u, _v, _si, idx) => h.hover(i, idx == null ? null : hoverX(u)),
      })),
    ],
  };
  const u = new uPlot(opts, [[0, 1], ...h.series.map(() => [null, null])] as unknown as uPlot.AlignedData, h.plotEl);
  u.over.addEventListener("dblclick", () => h.resetZoom());
  // The plot itself takes the keyboard: + and - zoom, arrows pan, 0 or Escape resets.
  u.over.tabIndex = 0;
  u.over.setAttribute("aria-label", "plot: + and - zoom, arrow keys pan, 0 resets");
  u.over.addEventListener("keydown", (ev) => {
    const keys: Record<string, [number, number]> = {
      "+": [0.5, 0], "=": [0.5, 0], "-": [2, 0], ArrowLeft: [1, -0.25], ArrowRight: [1, 0.25],
    };
    if (ev.key === "0" || ev.key === "Escape") h.resetZoom();
    else if (keys[ev.key]) h.zoomBy(...keys[ev.key]);
    else return;
    ev.preventDefault();
  });
  // Legend entries: reachable with Tab, toggled with Enter or Space.
  u.root.querySelectorAll<HTMLElement>(".u-legend .u-series").forEach((row, i) => {
    if (i === 0) return;
    row.tabIndex = 0;
    row.setAttribute("role", "button");
    // uPlot toggles a series on a click of its name only; a click on its value (wide with
    // smoothing on: "0.41 (raw 0.52)", so that is where a click on the entry lands) too.
    row.addEventListener("click", (ev) => {
      if ((ev.target as Element | null)?.closest("th")) return;
      u.setSeries(i, { show: !u.series[i].show });
    });
    row.addEventListener("keydown", (ev) => {
      if (ev.key !== "Enter" && ev.key !== " ") return;
      ev.preventDefault();
      u.setSeries(i, { show: !u.series[i].show });
    });
  });
  return u;
}
