"""Read what a live chart painted, as a user would read it: the axis labels uPlot drew
(recorded in `data-ticks` by the chart's axis-drawing hook) and where a series' line sits
in the canvas pixels. A value is read off the y labels at the line's pixel row, as a person
reads a chart, and compared to the data the test published."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from typing import Any

# Canvas pixels (RGBA) of one column of the nth chart's plot, top to bottom, and its painted ticks.
COLUMN_JS = """([nth, x]) => {
    const root = document.querySelectorAll('.pulseboard-chart')[nth];
    const canvas = root && root.querySelector('.pulseboard-plot canvas');
    if (!canvas || !root.dataset.ticks) return null;
    const dpr = canvas.width / canvas.getBoundingClientRect().width;
    const ctx = canvas.getContext('2d');
    const col = Math.round(x * dpr);
    const d = ctx.getImageData(col, 0, 1, canvas.height).data;
    return {ticks: JSON.parse(root.dataset.ticks), plot: JSON.parse(root.dataset.plot),
            dpr, px: Array.from(d)};
}"""


def rgb(color: str) -> tuple[int, int, int]:
    """A CSS colour as the chart gives it: `#rrggbb` or `rgb(r, g, b)` (run colours)."""
    if color.startswith("rgb"):
        r, g, b = (int(float(v)) for v in color[color.index("(") + 1:color.index(")")].split(",")[:3])
        return r, g, b
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def number(text: str) -> float | None:
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}
    try:
        if text and text[-1] in scale:
            return float(text[:-1]) * scale[text[-1]]
        return float(text)
    except ValueError:
        return None


def ticks(page: Any, nth: int = 0) -> dict[str, list[tuple[str, float]]]:
    """{scale: [(label text, offset px)]}: the labels painted on each axis of the nth chart."""
    raw = page.evaluate(
        "(nth) => document.querySelectorAll('.pulseboard-chart')[nth]?.dataset.ticks ?? null", nth
    )
    assert raw, "the chart painted no axis labels"
    return {k: [(t, float(p)) for t, p in v] for k, v in json.loads(raw).items()}


def read_y(labels: list[tuple[str, float]], py: float, log: bool) -> float:
    """The value a reader takes from the y labels at pixel row `py` (interpolating between
    the two nearest labels, in log space on a log axis)."""
    pts = [(v, p) for t, p in labels if (v := number(t)) is not None and (not log or v > 0)]
    assert len(pts) >= 2, f"fewer than two numeric y labels: {labels}"
    pts.sort(key=lambda vp: abs(vp[1] - py))
    (v0, p0), (v1, p1) = pts[0], next(q for q in pts[1:] if q[1] != pts[0][1])
    f = (lambda v: math.log10(v)) if log else (lambda v: v)
    y = f(v0) + (py - p0) * (f(v1) - f(v0)) / (p1 - p0)
    return 10 ** y if log else y


def line_row(page: Any, nth: int, x_px: float, color: str) -> float | None:
    """The pixel row (CSS px from the canvas top) where the line of `color` crosses column
    `x_px`, or None when it does not."""
    got = page.evaluate(COLUMN_JS, [nth, x_px])
    assert got, "no chart canvas"
    target = rgb(color)
    px, dpr = got["px"], got["dpr"]
    rows = []
    for r in range(len(px) // 4):
        d = sum(abs(px[4 * r + i] - target[i]) for i in range(3))
        if d < 90 and px[4 * r + 3] > 0:
            rows.append((d, r))
    if not rows:
        return None
    best = min(d for d, _ in rows)
    near = sorted(r for d, r in rows if d <= best + 30)
    return float(near[len(near) // 2] / dpr + 0.5 / dpr)


def check_labels(page: Any, color: str, truth: Callable[[float], float | None], nth: int = 0,
                 log: bool = False, scale: str = "y", tolerance: float = 0.04) -> list[tuple[float, float, float]]:
    """At every labelled x (a numeric x axis), read the line's value off the painted y labels
    and compare it to `truth(x)` (None: no point there). Tolerance: a share of the labelled
    span (in decades on a log axis). Returns (x, read, true) for each column checked."""
    t = ticks(page, nth)
    ys = t[scale]
    values = [v for s, _ in ys if (v := number(s)) is not None and (not log or v > 0)]
    span = (math.log10(max(values)) - math.log10(min(values))) if log else max(values) - min(values)
    checked: list[tuple[float, float, float]] = []
    for text, x_px in t["x"]:
        x = number(text)
        want = truth(x) if x is not None else None
        if want is None:
            continue
        # A pixel either side of the tick's grid line, which is drawn over the same column.
        row = line_row(page, nth, x_px + 1, color)
        if row is None:
            continue
        got = read_y(ys, row, log)
        assert got is not None, f"no y label to read at x={x}"
        err = abs(math.log10(got) - math.log10(want)) if log else abs(got - want)
        assert err <= tolerance * span + 1e-12, (
            f"at x={x} the line is painted at {got:.4g} on the y labels {[s for s, _ in ys]}, "
            f"but the data there is {want:.4g}"
        )
        checked.append((float(x or 0.0), float(got), float(want)))
    assert len(checked) >= 3, f"too few columns where the line could be read: {checked}, ticks {t}"
    return checked


def labels_cover(page: Any, lo: float, hi: float, nth: int = 0, scale: str = "y") -> None:
    """The painted y labels span the data shown: no value lies beyond a labelled step past them."""
    ys = [v for s, _ in ticks(page, nth)[scale] if (v := number(s)) is not None]
    assert len(ys) >= 2, ys
    step = (max(ys) - min(ys)) / (len(ys) - 1)
    assert min(ys) - step <= lo and hi <= max(ys) + step, f"labels {ys} for data in [{lo}, {hi}]"


def on_png(page: Any, png: bytes, body: str) -> Any:
    """Decode `png` in chromium onto a canvas and run `body` on it: JS statements with `img`,
    `c` (the canvas) and `ctx` in scope, returning what the test reads."""
    return page.evaluate(
        """async (b64) => {
            const img = new Image();
            img.src = 'data:image/png;base64,' + b64;
            await img.decode();
            const c = document.createElement('canvas');
            c.width = img.width; c.height = img.height;
            const ctx = c.getContext('2d');
            ctx.drawImage(img, 0, 0);
        """ + body + "}",
        base64.b64encode(png).decode(),
    )


# The column (CSS px from the canvas's left) where the line of one colour reaches highest.
PEAK_JS = """([nth, target]) => {
    const root = document.querySelectorAll('.pulseboard-chart')[nth];
    const canvas = root && root.querySelector('.pulseboard-plot canvas');
    if (!canvas) return null;
    const dpr = canvas.width / canvas.getBoundingClientRect().width;
    const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let r = 0; r < canvas.height; r++) {
        const cols = [];
        for (let c = 0; c < canvas.width; c++) {
            const i = 4 * (r * canvas.width + c);
            const e = Math.abs(d[i] - target[0]) + Math.abs(d[i + 1] - target[1]) + Math.abs(d[i + 2] - target[2]);
            if (e < 60 && d[i + 3] > 0) cols.push(c);
        }
        if (cols.length) return (cols[0] + cols[cols.length - 1]) / 2 / dpr + 0.5 / dpr;
    }
    return null;
}"""


def seconds(text: str) -> float | None:
    """The seconds a time-axis label shows (":25", ":27.500"; its first line), or None."""
    m = re.search(r":(\d\d(?:\.\d+)?)$", text.split("\n")[0])
    return float(m.group(1)) if m else None


def read_x(labels: list[tuple[str, float]], px: float, value: Callable[[str], float | None] = number) -> float:
    """The x a reader takes from the painted x labels at column `px` (between the two nearest)."""
    pts = sorted(((v, p) for t, p in labels if (v := value(t)) is not None), key=lambda vp: abs(vp[1] - px))
    assert len(pts) >= 2, f"fewer than two numeric x labels: {labels}"
    (v0, p0), (v1, p1) = pts[0], next(q for q in pts[1:] if q[1] != pts[0][1])
    return v0 + (px - p0) * (v1 - v0) / (p1 - p0)


def check_x_at_peak(page: Any, color: str, x_peak: float, nth: int = 0, tolerance: float = 0.01,
                    value: Callable[[str], float | None] = number) -> float:
    """The line of `color` peaks at data x `x_peak`: read that column's x off the painted x labels,
    as a person would, and compare (tolerance: a share of the labelled x span). `value` reads a
    label (`seconds` on a time axis, with `x_peak` in seconds of its minute). Returns the read x."""
    t = ticks(page, nth)["x"]
    px = page.evaluate(PEAK_JS, [nth, list(rgb(color))])
    assert px is not None, "the line is not painted"
    got = read_x(t, px, value)
    values = [v for s, _ in t if (v := value(s)) is not None]
    span = max(values) - min(values)
    assert abs(got - x_peak) <= tolerance * span + 1e-9, (
        f"the peak at x={x_peak} is painted at {got:.4g} on the x labels {[s for s, _ in t]}"
    )
    return got
