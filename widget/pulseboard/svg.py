"""A self-contained SVG of a chart's snapshot: no script, no fonts or styles from outside.

Axes with tick labels, a title, a legend, one path per series with breaks at gaps. Each
series is thinned to at most four points per pixel column (first, min, max, last), so the
SVG stays small however long the run. The plot's geometry and data ranges are written as
attributes (`data-plot`, `data-x-domain`, `data-y-domain`) so a reader can map a drawn
point back to its value.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
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


def view_options(smoothing: Any, log_y: Any, zoom: Any, hidden: Any) -> dict[str, Any]:
    """The view part of a chart's options (smoothing, log y, zoom, hidden series), checked: what
    a saved notebook holds may be anything, and a value that doesn't fit is left at its default."""
    def num(v: Any) -> float | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        return float(v) if ok else None

    sm = num(smoothing)
    z = [num(v) for v in zoom] if isinstance(zoom, (list, tuple)) and len(zoom) == 2 else [None, None]
    return {"smoothing": sm if sm is not None and 0 <= sm < 1 else 0.0,
            "log_y": log_y is True,
            "zoom": [z[0], z[1]] if z[0] is not None and z[1] is not None and z[1] > z[0] else None,
            "hidden": [h for h in hidden if isinstance(h, str)][:1000] if isinstance(hidden, (list, tuple)) else []}


REF_SAMPLES = 16  # as the browser's smoothing (js/src/chart/ema.ts)


def smoothed(pts: list[tuple[float, float]], s: float) -> list[tuple[float, float]]:
    """The debiased EMA the live chart draws: weights `s ** (x distance / typical spacing)`."""
    deltas: list[float] = []
    for (a, _), (b, _) in itertools.pairwise(pts):
        if len(deltas) == REF_SAMPLES:
            break
        if b > a:
            deltas.append(b - a)
    deltas.sort()
    m = len(deltas) // 2
    step = 1.0 if not deltas else deltas[m] if len(deltas) % 2 else (deltas[m - 1] + deltas[m]) / 2
    out, num, den, last = [], 0.0, 0.0, math.nan
    for x, v in pts:
        decay = s ** ((x - last) / step) if not math.isnan(last) else 0.0
        num, den, last = num * decay + v, den * decay + 1.0, x
        out.append((x, num / den))
    return out


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten in [lo, hi] (lo > 0), with multiples between them when there are few."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9) if b - a <= 1 else (1, 2, 5) if b - a <= 3 else (1,)
    out = [m * 10.0**e for e in range(a, b + 1) for m in mults]
    return [t for t in out if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)] or [lo]


def render(snapshot: dict[str, Any] | None, title: str, x_field: str | None = None,
           units: str | dict[str, str] | None = None, height: int = 300,
           view: dict[str, Any] | None = None) -> str:
    """The SVG text for `snapshot` (the widget's snapshot dict), drawn as the chart was viewed:
    `view` holds `smoothing`, `log_y`, `zoom` and `hidden` (see `view_options`)."""
    o = view or {}
    v = view_options(o.get("smoothing"), o.get("log_y"), o.get("zoom"), o.get("hidden"))
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
    hidden = set(v["hidden"])
    log = v["log_y"]
    legend_rows = max(1, math.ceil(len(series) / 4))
    h = max(160, int(height))
    bottom = 28 + legend_rows * LEGEND_ROW
    pw, ph = WIDTH - LEFT - RIGHT, h - TOP - bottom
    notes = [n for n in ("log y" if log else "", f"smoothing {v['smoothing']:g}" if v["smoothing"] else "",
                         "zoomed" if v["zoom"] else "") if n]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="pulseboard-svg" width="{WIDTH}" height="{h}" '
        f'viewBox="0 0 {WIDTH} {h}" font-family="sans-serif" font-size="11" data-log-y="{str(log).lower()}" '
        f'data-smoothing="{v["smoothing"]!r}">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{h}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold" fill="#222">{escape(title)}</text>',
    ]
    if notes:
        parts.append(f'<text class="pulseboard-view" x="{WIDTH - RIGHT}" y="18" text-anchor="end" fill="#666">'
                     f"{escape(' · '.join(notes))}</text>")
    # Each shown series' points, as drawn: in the zoomed x range, positive only on a log axis.
    lines: list[tuple[int, list[tuple[float, float]]]] = []
    for i, s in enumerate(series):
        if _label(s, many) in hidden:
            continue
        col = ys[i] if i < len(ys) else []
        pts = [(x, y) for x, y in zip(xs, col, strict=False)
               if y is not None and math.isfinite(y) and (y > 0 or not log)]
        lines.append((i, pts))
    z = v["zoom"]
    in_x = [x for _, pts in lines for x, _ in pts if not z or z[0] <= x <= z[1]]
    finite = [y for _, pts in lines for x, y in pts if not z or z[0] <= x <= z[1]]
    if not in_x or not finite:
        parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>')
        what = "no data in this snapshot" if not xs else "no data in this view"
        parts.append(f'<text x="{LEFT + pw / 2}" y="{TOP + ph / 2}" text-anchor="middle" fill="#888">{what}</text>')
        parts.extend(_legend(series, many, hidden, pw, ph))
        parts.append("</svg>")
        return "".join(parts)
    x0, x1 = (z[0], z[1]) if z else (min(in_x), max(in_x))
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if log:
        y0, y1 = min(finite), max(finite)
        if y1 == y0:
            y0, y1 = y0 / 2, y1 * 2
        pad = (y1 / y0) ** 0.05
        y0, y1 = y0 / pad, y1 * pad
    else:
        y0, y1 = min(finite), max(finite)
        if y1 == y0:
            y0, y1 = y0 - 1, y1 + 1
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        if log:
            return TOP + (1 - (math.log10(y) - math.log10(y0)) / (math.log10(y1) - math.log10(y0))) * ph
        return TOP + (1 - (y - y0) / (y1 - y0)) * ph

    clip = "pb-clip-" + uuid.uuid4().hex[:12]  # unique among the page's charts
    parts.append(f'<clipPath id="{clip}"><rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}"/></clipPath>')
    parts.append(f'<g class="pulseboard-plot" data-plot="{LEFT} {TOP} {pw} {ph}" '
                 f'data-x-domain="{x0!r} {x1!r}" data-y-domain="{y0!r} {y1!r}">')
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>')
    for t in log_ticks(y0, y1) if log else nice_ticks(y0, y1):
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
    parts.append(f'<g clip-path="url(#{clip})">')
    for i, pts in lines:
        s = series[i]
        breaks = sorted(b for g in gaps.get(s["ch"]) or [] if (b := as_number(g)) is not None)
        color = PALETTE[i % len(PALETTE)]
        key = quoteattr(s["ch"] + ":" + s["field"])
        # Only what is in view (plus one point either side, so lines run to the edges) is drawn.
        shown = _in_view(pts, x0, x1)
        d = _path(shown, breaks, x0, x1 - x0, pw, sx, sy)
        if v["smoothing"]:
            # As on screen: the raw line faint, the smoothed one over it.
            parts.append(f'<path class="pulseboard-raw" data-series={key} d="{d}" fill="none" stroke="{color}" '
                         f'stroke-opacity="0.3" stroke-width="1"/>')
            sd = _path(_in_view(smoothed(pts, v["smoothing"]), x0, x1), breaks, x0, x1 - x0, pw, sx, sy)
            parts.append(f'<path class="pulseboard-line" data-series={key} data-smoothed="true" d="{sd}" '
                         f'fill="none" stroke="{color}" stroke-width="1.5" stroke-linejoin="round"/>')
        else:
            parts.append(f'<path class="pulseboard-line" data-series={key} '
                         f'd="{d}" fill="none" stroke="{color}" stroke-width="1.5" stroke-linejoin="round"/>')
    parts.append("</g></g>")
    parts.extend(_legend(series, many, hidden, pw, ph))
    parts.append("</svg>")
    return "".join(parts)


def _in_view(pts: list[tuple[float, float]], x0: float, x1: float) -> list[tuple[float, float]]:
    first = next((k for k, p in enumerate(pts) if p[0] >= x0), len(pts))
    last = next((k for k in range(len(pts) - 1, -1, -1) if pts[k][0] <= x1), -1)
    return pts[max(0, first - 1):last + 2]


def _legend(series: list[dict[str, Any]], many: bool, hidden: set[str], pw: float, ph: float) -> list[str]:
    """One entry per series; a series hidden in the browser stays listed, greyed and struck out."""
    out = []
    for i, s in enumerate(series):
        lx = LEFT + (i % 4) * (pw / 4)
        ly = TOP + ph + 30 + (i // 4) * LEGEND_ROW
        color = PALETTE[i % len(PALETTE)]
        name = _label(s, many)
        off = name in hidden
        style = ' opacity="0.4" text-decoration="line-through"' if off else ""
        out.append(f'<g class="pulseboard-legend" data-hidden="{str(off).lower()}"{style}>'
                   f'<rect x="{lx:.1f}" y="{ly - 8}" width="12" height="3" fill="{color}"/>'
                   f'<text x="{lx + 16:.1f}" y="{ly - 3}" fill="#222">{escape(name)}</text></g>')
    return out


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
# The class on the outer <div> of every static output (a chart's SVG, a runs table): what
# `pulseboard report` recognises them by, and Lab's CSS hides while the live widget shows.
STATIC_CLASS = "pulseboard-static"


def is_static_html(html: object) -> bool:
    """`html` is a static output pulseboard wrote (a chart's or a runs table's)."""
    return isinstance(html, str) and html.startswith(f'<div class="{STATIC_CLASS}')


def _no_model_style(sid: str) -> str:
    """Hide JupyterLab's "Error displaying widget: model not found" for this chart's widget output.

    A notebook saved without widget state (JupyterLab's default) and reopened has outputs
    naming widget models that no longer exist; Lab's widget renderer then writes that line
    right under this static output, which already shows the chart. Only its error paths give
    the renderer's own node the class `jupyter-widgets` (a rendered widget is a child node
    inside it), so the rule hides the error and never a chart that rendered.
    """
    if not sid:
        return ""
    me = f'.jp-OutputArea-child:has([data-pulseboard-static="{sid}"])'
    return f"<style>{me} + .jp-OutputArea-child:has(> .jp-OutputArea-output.jupyter-widgets){{display:none}}</style>"


def static_bundle(static_id: str, snapshot: dict[str, Any] | None, options: dict[str, Any]) -> dict[str, Any]:
    """The chart's static output: the SVG (as HTML and as an image) and its data for `pulseboard report`.

    No token and no URL: nothing in it can read or publish.
    """
    svg = render(snapshot, str(options.get("title") or ""), options.get("x"), options.get("units"),
                 int(options.get("height") or 300), view=options)
    rows = len((snapshot or {}).get("x") or [])
    sid = escape(static_id)
    return {
        "text/html": f'<div class="{STATIC_CLASS}" data-pulseboard-static="{sid}">{svg}{_no_model_style(sid)}</div>',
        "image/svg+xml": svg,
        "text/plain": f"[pulseboard chart: {options.get('title')}, {rows} rows]",
        CHART_MIME: {"id": static_id, "options": options, "snapshot": snapshot},
    }
