"""A self-contained SVG of a chart's snapshot: no script, no fonts or styles from outside.

Axes with tick labels, a title, a legend, one path per series with breaks at gaps. Each
series is thinned to at most four points per pixel column (first, min, max, last), so the
SVG stays small however long the run. The plot's geometry and data ranges are written as
attributes (`data-plot`, `data-x-domain`, `data-y-domain`) so a reader can map a drawn
point back to its value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from .snapshot import as_number

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
           "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
WIDTH = 800
LEFT, RIGHT, TOP = 64, 16, 30
LEGEND_ROW = 18


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out = []
    k = 0
    while first + k * step <= hi + step * 1e-9 and k < 50:
        out.append(round(first + k * step, 12))
        k += 1
    return out


def fmt(v: float) -> str:
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.1f}G"
    if a >= 1e6:
        return f"{v / 1e6:.1f}M"
    if a >= 1e4:
        return f"{v / 1e3:.1f}k"
    if a >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.3g}"


def fmt_time(t: float, span: float) -> str:
    lt = time.localtime(t)
    return time.strftime("%H:%M:%S" if span < 3 * 3600 else "%m-%d %H:%M", lt)


def _label(s: dict[str, Any], many_channels: bool) -> str:
    return f"{s['ch']} · {s['field']}" if many_channels else str(s["field"])


def _thin_columns(pts: list[tuple[float, float]], lo: float, span: float, px: float) -> list[tuple[float, float]]:
    """Per pixel column keep the first, min, max and last point (in x order)."""
    if len(pts) <= 4 * px:
        return pts
    out: list[tuple[float, float]] = []
    col: list[tuple[float, float]] = []
    cur = None
    for p in [*pts, (math.inf, 0.0)]:
        c = math.inf if p[0] == math.inf else int((p[0] - lo) / span * px)
        if c != cur and col:
            keep = {0, len(col) - 1, min(range(len(col)), key=lambda i: col[i][1]),
                    max(range(len(col)), key=lambda i: col[i][1])}
            out.extend(col[i] for i in sorted(keep))
            col = []
        cur = c
        col.append(p)
    return out


def render(snapshot: dict[str, Any] | None, title: str, x_field: str | None = None,
           units: str | dict[str, str] | None = None, height: int = 300) -> str:
    """The SVG text for `snapshot` (the widget's snapshot dict)."""
    snap = snapshot or {}
    series: list[dict[str, Any]] = list(snap.get("series") or [])
    # Anything that isn't a drawable number (a huge int, a string, NaN) is drawn as missing.
    xs_all = [as_number(x) for x in snap.get("x") or []]
    ys_all = [[as_number(v) for v in col] if isinstance(col, list) else [] for col in snap.get("y") or []]
    keep = [i for i, x in enumerate(xs_all) if x is not None]
    xs: list[float] = [xs_all[i] for i in keep]  # type: ignore[misc]
    ys: list[list[float | None]] = [[col[i] if i < len(col) else None for i in keep] for col in ys_all]
    gaps: dict[str, list[float]] = dict(snap.get("gaps") or {})
    many = len({s["ch"] for s in series}) > 1
    legend_rows = max(1, math.ceil(len(series) / 4))
    h = max(160, int(height))
    bottom = 28 + legend_rows * LEGEND_ROW
    pw, ph = WIDTH - LEFT - RIGHT, h - TOP - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="pulseboard-svg" width="{WIDTH}" height="{h}" '
        f'viewBox="0 0 {WIDTH} {h}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{h}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold" fill="#222">{escape(title)}</text>',
    ]
    finite = [v for col in ys for v in col if v is not None]
    if not xs or not finite:
        parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>')
        parts.append(f'<text x="{LEFT + pw / 2}" y="{TOP + ph / 2}" text-anchor="middle" fill="#888">'
                     "no data in this snapshot</text></svg>")
        return "".join(parts)
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(finite), max(finite)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return TOP + (1 - (y - y0) / (y1 - y0)) * ph

    parts.append(f'<g class="pulseboard-plot" data-plot="{LEFT} {TOP} {pw} {ph}" '
                 f'data-x-domain="{x0!r} {x1!r}" data-y-domain="{y0!r} {y1!r}">')
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>')
    for t in nice_ticks(y0, y1):
        y = sy(t)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.2f}" y2="{y:.2f}" stroke="#eee"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.2f}" text-anchor="end" fill="#444">{escape(fmt(t))}</text>')
    for t in nice_ticks(x0, x1, 6):
        x = sx(t)
        label = fmt(t) if x_field else fmt_time(t, x1 - x0)
        parts.append(f'<line x1="{x:.2f}" x2="{x:.2f}" y1="{TOP}" y2="{TOP + ph}" stroke="#eee"/>')
        parts.append(f'<text x="{x:.2f}" y="{TOP + ph + 14}" text-anchor="middle" fill="#444">{escape(label)}</text>')
    unit = units if isinstance(units, str) else None
    if unit:
        parts.append(f'<text transform="translate(12 {TOP + ph / 2}) rotate(-90)" text-anchor="middle" '
                     f'fill="#444">{escape(unit)}</text>')
    for i, s in enumerate(series):
        col = ys[i] if i < len(ys) else []
        breaks = sorted(b for g in gaps.get(s["ch"]) or [] if (b := as_number(g)) is not None)
        pts = [(x, v) for x, v in zip(xs, col, strict=False) if v is not None]
        d = _path(pts, breaks, x0, x1 - x0, pw, sx, sy)
        color = PALETTE[i % len(PALETTE)]
        parts.append(f'<path class="pulseboard-line" data-series={quoteattr(s["ch"] + ":" + s["field"])} '
                     f'd="{d}" fill="none" stroke="{color}" stroke-width="1.5" stroke-linejoin="round"/>')
    parts.append("</g>")
    for i, s in enumerate(series):
        lx = LEFT + (i % 4) * (pw / 4)
        ly = TOP + ph + 30 + (i // 4) * LEGEND_ROW
        color = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{lx:.1f}" y="{ly - 8}" width="12" height="3" fill="{color}"/>')
        parts.append(f'<text x="{lx + 16:.1f}" y="{ly - 3}" fill="#222">{escape(_label(s, many))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _path(pts: list[tuple[float, float]], breaks: Sequence[float], lo: float, span: float, px: float,
          sx: Any, sy: Any) -> str:
    """`M`/`L` commands through `pts`; a new `M` after each break x (a gap drawn as a break)."""
    segments: list[list[tuple[float, float]]] = [[]]
    b = 0
    for p in pts:
        while b < len(breaks) and breaks[b] < p[0]:
            if segments[-1]:
                segments.append([])
            b += 1
        segments[-1].append(p)
    out = []
    for seg in segments:
        for k, (x, y) in enumerate(_thin_columns(seg, lo, span, px)):
            out.append(f"{'M' if k == 0 else 'L'}{sx(x):.2f},{sy(y):.2f}")
    return " ".join(out)


CHART_MIME = "application/vnd.pulseboard.chart+json"


def static_bundle(static_id: str, snapshot: dict[str, Any] | None, options: dict[str, Any]) -> dict[str, Any]:
    """The chart's static output: the SVG (as HTML and as an image) and its data for `pulseboard report`.

    No token and no URL: nothing in it can read or publish.
    """
    svg = render(snapshot, str(options.get("title") or ""), options.get("x"), options.get("units"),
                 int(options.get("height") or 300))
    rows = len((snapshot or {}).get("x") or [])
    return {
        "text/html": f'<div class="pulseboard-static" data-pulseboard-static="{escape(static_id)}">{svg}</div>',
        "image/svg+xml": svg,
        "text/plain": f"[pulseboard chart: {options.get('title')}, {rows} rows]",
        CHART_MIME: {"id": static_id, "options": options, "snapshot": snapshot},
    }
