"""Smoothing in chromium: the drawn EMA equals a reference computed here from the same data."""

from __future__ import annotations

import itertools
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

import pytest

from harness.browsers import PageServer, open_widget, widget_state
from harness.charts import VIEW, hook, publish, wait_drawn, wait_points
from harness.servers import ServerProcess, wait_until

pytestmark = pytest.mark.browser


def reference_ema(xs: Sequence[float], ys: Sequence[float], s: float) -> list[float]:
    """By the definition in docs/chart.md: the mean of every point so far, weighted by
    s ** (x distance / step), step = median of the first 16 x spacings."""
    spacings = [b - a for a, b in itertools.pairwise(xs) if b > a][:16]
    step = statistics.median(spacings) if spacings else 1.0
    out = []
    for k, xk in enumerate(xs):
        w = [s ** ((xk - xs[i]) / step) for i in range(k + 1)]
        out.append(sum(wi * y for wi, y in zip(w, ys, strict=False)) / sum(w))
    return out


def test_smoothing_matches_a_reference_ema_on_uneven_steps(
    page: Any, server: ServerProcess, page_server: PageServer
) -> None:
    rng = random.Random(7)
    steps, step = [], 0
    for i in range(300):
        step += 200 if i == 150 else rng.choice([1, 1, 1, 2, 5])  # uneven, with one long jump
        steps.append(step)
    loss = [2 * 0.99 ** i + rng.random() * 0.5 for i in range(300)]
    t0 = time.time() - 300
    publish(server.url, [{"ch": "train.s", "data": {"step": x, "loss": y}, "ts": t0 + i}
                         for i, (x, y) in enumerate(zip(steps, loss, strict=True))])
    state = widget_state(channels=["train.s"], fields=["loss"], x="step", url=server.url, token=VIEW,
                         smoothing=0.6, max_points=200_000, window=None)
    open_widget(page, page_server.url, state)
    wait_points(page, 300)
    wait_drawn(page)

    def check(s: float) -> None:
        held = hook(page, "smoothed('loss')")
        assert [p[0] for p in held] == steps and [p[1] for p in held] == pytest.approx(loss)
        want = reference_ema(steps, loss, s)
        assert [p[2] for p in held] == pytest.approx(want, rel=1e-9, abs=1e-12)
        # The smoothed line drawn is that EMA (all 300 points fit the plot's columns).
        drawn = hook(page, "drawn('loss')")
        assert len(drawn["sx"]) > 100 and len(drawn["x"]) > 100  # raw line drawn too
        by_x = dict(zip(steps, want, strict=True))
        assert all(by_x[x] == pytest.approx(y) for x, y in zip(drawn["sx"], drawn["sy"], strict=True))

    check(0.6)
    # Hover shows the smoothed and the raw value.
    box = page.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    legend = page.locator(".u-legend .u-series").nth(1)
    wait_until(lambda: "raw" in legend.inner_text(), what="hover values")
    # The toolbar slider recomputes it from the full-resolution data.
    page.locator("[data-action=smoothing]").fill("0.9")
    wait_until(lambda: hook(page, "smoothed('loss')")[-1][2] == pytest.approx(reference_ema(steps, loss, 0.9)[-1]),
               what="smoothing 0.9")
    check(0.9)
    # The smooth button turns it off (raw only) and on again.
    page.click("[data-action=smooth]")
    wait_until(lambda: hook(page, "drawn('loss')")["sx"] == [], what="smoothing off")
    page.click("[data-action=smooth]")
    wait_until(lambda: len(hook(page, "drawn('loss')")["sx"]) > 100, what="smoothing back on")
    check(0.9)
