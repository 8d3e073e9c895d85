"""The static SVG drawn as the chart was viewed: log y, smoothing, zoom, hidden series; and a
saved notebook's view values that don't fit are left at their defaults."""

from __future__ import annotations

import re

from pulseboard.svg import render, smoothed, view_options

SNAP = {"v": 1, "series": [{"ch": "t", "field": "loss"}, {"ch": "t", "field": "lr"}],
        "x": [float(i) for i in range(100)],
        "y": [[10.0 / (1 + i) for i in range(100)], [0.001 * (1 + i % 3) for i in range(100)]]}


def domain(svg: str, axis: str) -> tuple[float, float]:
    m = re.search(rf'data-{axis}-domain="([^ "]+) ([^ "]+)"', svg)
    assert m
    return float(m.group(1)), float(m.group(2))


def test_log_y_ticks_are_powers_of_ten_and_the_svg_says_so() -> None:
    svg = render(SNAP, "t", "step", view={"log_y": True})
    assert 'data-log-y="true"' in svg and "log y" in svg
    labels = re.findall(r'text-anchor="end" fill="#444">([^<]+)<', svg)
    assert {"0.001", "0.01", "0.1", "1", "10"} <= set(labels)


def test_hidden_series_are_not_drawn_but_stay_in_the_legend() -> None:
    svg = render(SNAP, "t", "step", view={"hidden": ["lr"]})
    assert re.findall(r'class="pulseboard-line" data-series="([^"]+)"', svg) == ["t:loss"]
    assert re.findall(r'class="pulseboard-legend" data-hidden="(\w+)"', svg) == ["false", "true"]
    # The y range is the shown series' own (lr's values are not in it).
    lo, hi = 10 / 100, 10.0
    assert domain(svg, "y") == (lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.05)


def test_zoom_sets_the_x_domain_and_the_y_range_of_what_is_in_view() -> None:
    svg = render(SNAP, "t", "step", view={"zoom": [50, 60], "hidden": ["lr"]})
    assert domain(svg, "x") == (50.0, 60.0)
    y0, y1 = domain(svg, "y")
    assert y0 < 10 / 61 and 10 / 51 < y1 < 10 / 40  # loss over steps 50..60, padded
    assert "zoomed" in svg


def test_smoothing_draws_the_raw_line_faint_and_the_debiased_ema_over_it() -> None:
    svg = render(SNAP, "t", "step", view={"smoothing": 0.6, "hidden": ["lr"]})
    assert 'class="pulseboard-raw"' in svg and 'data-smoothed="true"' in svg
    pts = [(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)]
    # Debiased: the first point is itself; then weights 0.6 ** distance.
    assert smoothed(pts, 0.6) == [(0.0, 1.0), (1.0, (0.6 * 1 + 3) / 1.6),
                                  (2.0, (0.36 * 1 + 0.6 * 3 + 2) / (0.36 + 0.6 + 1))]


def test_view_values_that_do_not_fit_are_left_at_their_defaults() -> None:
    assert view_options("a lot", "yes", ["a", 3], "lr") == {"smoothing": 0.0, "log_y": False, "zoom": None,
                                                            "hidden": []}
    assert view_options(1.5, True, [5, 1], ["lr", 3]) == {"smoothing": 0.0, "log_y": True, "zoom": None,
                                                          "hidden": ["lr"]}
    assert view_options(0.5, False, [1, 5], []) == {"smoothing": 0.5, "log_y": False, "zoom": [1.0, 5.0],
                                                    "hidden": []}
