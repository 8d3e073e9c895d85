"""Toolbar details, read from what the user gets: the legend hides a smoothed series (its
pixels leave the canvas), the PNG file holds the title, legend and an opaque background at the
chart's size, download names come from the title or pattern, log-y labels differ, and values
<= 0 on a log axis are left out and counted on screen."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import pytest

from harness.browsers import PageServer, open_widget, widget_state
from harness.charts import VIEW, hook, publish, wait_drawn, wait_points
from harness.painted import check_labels, line_row, on_png, rgb, ticks
from harness.servers import ServerProcess, wait_until

pytestmark = pytest.mark.browser
N = 200


def loss(i: int) -> float:
    return 3 * math.exp(-i / 40) + 0.02


def open_chart(page: Any, server: ServerProcess, page_server: PageServer, ch: str = "train.t",
               values: Any = loss, **over: Any) -> None:
    t0 = time.time() - N
    publish(server.url, [{"ch": ch, "data": {"step": i, "loss": values(i), "acc": 0.2 + i / N / 2}, "ts": t0 + i}
                         for i in range(N)])
    over.setdefault("height", 260)
    state = widget_state(channels=[ch], x="step", url=server.url, token=VIEW, window=None, **over)
    open_widget(page, page_server.url, state)
    wait_points(page, N)
    wait_drawn(page)


def inked(page: Any, color: str, nth: int = 0) -> int:
    """Canvas pixels within a small distance of `color` (the line's own pixels)."""
    n: int = page.evaluate(
        """([nth, c]) => {
            const cv = document.querySelectorAll('.pulseboard-chart')[nth].querySelector('.pulseboard-plot canvas');
            const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
                if (Math.abs(d[i] - c[0]) + Math.abs(d[i + 1] - c[1]) + Math.abs(d[i + 2] - c[2]) < 40) n++;
            return n;
        }""",
        [nth, list(rgb(color))],
    )
    return n


def test_legend_hides_a_smoothed_series(page: Any, server: ServerProcess, page_server: PageServer) -> None:
    open_chart(page, server, page_server, fields=["loss", "acc"], smoothing=0.6)
    acc = hook(page, "colors()")[1]
    assert inked(page, acc) > 50, "the smoothed acc line is not on the canvas"
    page.locator(".u-legend .u-series").nth(2).click()
    wait_until(lambda: page.get_attribute(".pulseboard-chart", "data-series") == "1", what="acc hidden")
    wait_drawn(page)
    assert inked(page, acc) == 0, "the hidden series is still painted"
    assert inked(page, hook(page, "colors()")[0]) > 50, "the other series went too"
    page.locator(".u-legend .u-series").nth(2).click()
    wait_until(lambda: inked(page, acc) > 50, what="acc painted again")


def decode(page: Any, data: bytes) -> dict[str, Any]:
    """Size, opacity and colours of a PNG, decoded by chromium."""
    got: dict[str, Any] = on_png(page, data, """
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        let transparent = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] < 255) transparent++;
        const row = (y) => Array.from(ctx.getImageData(0, y, c.width, 1).data);
        const rows = Array.from({length: c.height}, (_, y) => row(y));
        return {width: img.width, height: img.height, transparent, rows};""")
    return got


def test_png_carries_title_legend_and_background_at_the_chart_size(
    page: Any, server: ServerProcess, page_server: PageServer, tmp_path: Path
) -> None:
    open_chart(page, server, page_server, ch="train.png", fields=["loss", "acc"], title="loss and acc")
    with page.expect_download() as info:
        page.click("[data-action=png]")
    assert info.value.suggested_filename == "loss_and_acc.png"
    path = Path(os.environ.get("PULSEBOARD_SHOTS", tmp_path)) / "chart-truth-item7-download.png"
    info.value.save_as(path)
    img = decode(page, path.read_bytes())
    box = page.locator(".pulseboard-chart").bounding_box()
    assert (img["width"], img["height"]) == (round(box["width"]), round(box["height"]))
    assert img["transparent"] == 0, "the PNG has see-through pixels"

    def band(el: str) -> tuple[int, int]:
        b = page.locator(el).first.bounding_box()
        return round(b["y"] - box["y"]), round(b["y"] - box["y"] + b["height"])

    def has(rows: list[list[int]], test: Any) -> bool:
        return any(test(r[i:i + 3]) for r in rows for i in range(0, len(r), 4))

    dark = lambda p: max(p) < 110  # noqa: E731  (text)
    top, bottom = band(".pulseboard-title")
    assert has(img["rows"][top:bottom], dark), "no title text in the PNG"
    top, bottom = band(".u-legend")
    for color in hook(page, "colors()"):
        c = rgb(color)
        assert has(img["rows"][top:bottom], lambda p, c=c: sum(abs(p[k] - c[k]) for k in range(3)) < 30), \
            f"no legend swatch of {color} in the PNG"
    assert has(img["rows"][top:bottom], dark), "no legend text in the PNG"


@pytest.mark.parametrize(("channels", "title", "name"), [
    (["train.*"], None, "train"), (["demo.r"], None, "demo.r"), (["a.b", "c.d"], None, "a.b_c.d"),
    (["demo.r"], "My run / 3", "My_run_3"),
])
def test_download_names(page: Any, server: ServerProcess, page_server: PageServer,
                        channels: list[str], title: str | None, name: str) -> None:
    state = widget_state(channels=channels, title=title, url=server.url, token=VIEW)
    open_widget(page, page_server.url, state)
    page.locator(".pulseboard-chart").wait_for()
    for kind in ("csv", "png"):
        with page.expect_download() as info:
            page.click(f"[data-action={kind}]")
        assert info.value.suggested_filename == f"{name}.{kind}"


def test_log_y_labels_differ_and_read_true(page: Any, server: ServerProcess, page_server: PageServer) -> None:
    small = lambda i: 0.08 * math.exp(-i / 25) + 0.00005  # noqa: E731  (all below 0.1, three decades)
    open_chart(page, server, page_server, ch="train.small", values=small, fields=["loss"], log_y=True, height=420)
    labels = [t for t, _ in ticks(page)["y"]]
    assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
    assert all(float(t) > 0 for t in labels), labels
    check_labels(page, hook(page, "colors()")[0], lambda x: small(int(x)) if 0 <= x < N else None, log=True)


def test_values_at_or_below_zero_on_log_y_are_left_out_and_counted(
    page: Any, server: ServerProcess, page_server: PageServer
) -> None:
    bad = {40, 80, 120, 160}  # labelled steps, so the columns read are exactly where they are

    def values(i: int) -> float:
        return (0.0 if i % 80 == 0 else -1.0) if i in bad else loss(i)

    open_chart(page, server, page_server, ch="train.neg", values=values, fields=["loss"], log_y=True, smoothing=0.5)
    note = page.locator(".pulseboard-note")
    wait_until(lambda: note.is_visible(), what="the note about left-out values")
    assert note.inner_text() == "log y: 4 values ≤ 0 left out (loss: 4)"
    assert page.get_attribute(".pulseboard-chart", "data-log-omitted") == "4"
    color = hook(page, "colors()")[0]
    # No dip: the smoothed line on the labels stays on the positive values around them.
    sm = {x: v for x, _raw, v in hook(page, "smoothed('loss')")}
    check_labels(page, color, lambda x: sm.get(x), log=True)
    assert all(v is None or v > 0.01 for v in sm.values())
    # Next to each left-out point, the raw line is drawn (it runs on, no break).
    x_ticks = {float(t): p for t, p in ticks(page)["x"]}
    assert all(line_row(page, 0, x_ticks[float(s)] + 1, color) is not None for s in bad if float(s) in x_ticks)
    # Linear y again: every value is drawn and the note goes.
    page.click("[data-action=log-y]")
    wait_until(lambda: note.is_hidden(), what="the note to go")
    wait_drawn(page)
