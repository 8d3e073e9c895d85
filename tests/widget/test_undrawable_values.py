"""A value a chart can't draw (a 400-digit integer, one past a float's range) is drawn as
missing: the chart, its snapshot and its static SVG never raise (issue: one string must not
stop the server, finding "a huge integer breaks viewers' notebooks")."""

from __future__ import annotations

import json

import httpx
import pytest

from harness.servers import ServerProcess
from harness.tokens import auth, token
from pulseboard import LiveChart, snapshot
from pulseboard.svg import render

HUGE = 10**400  # valid JSON; float() of it raises OverflowError


def test_a_huge_integer_is_missing_in_the_chart_and_its_svg(server: ServerProcess) -> None:
    body = [{"ch": "big.run", "data": {"step": i, "v": v}}
            for i, v in enumerate([1.0, HUGE, 3.0, -HUGE, 2**53 + 1, 1e308])]
    body.append({"ch": "big.run", "data": {"step": HUGE, "v": 9.0}})  # an x that can't be drawn
    r = httpx.post(server.url + "/publish", content=json.dumps(body), headers=auth(), timeout=10)
    assert r.status_code == 200, r.text
    chart = LiveChart("big.run", url=server.url, token=token(), x="step")  # raised OverflowError before
    try:
        snap = chart.snapshot()
        assert chart.problem == ""
        assert snap["x"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # the row at step 10**400 is left out
        # huge ints and 1e308 (past what a span can hold) are missing; 2**53+1 is drawn, rounded
        assert snap["y"] == [[1.0, None, 3.0, None, float(2**53), None]]
        bundle = chart._static_bundle()
        assert "pulseboard-line" in bundle["image/svg+xml"] and "nan" not in bundle["image/svg+xml"]
    finally:
        chart.close()


@pytest.mark.parametrize("bad", [HUGE, "text", None, float("nan"), float("inf"), [1], True])
def test_svg_draws_anything_it_cannot_draw_as_missing(bad: object) -> None:
    snap = {"v": 1, "series": [{"ch": "a", "field": "v"}], "x": [1.0, 2.0, bad, 4.0],
            "y": [[1.0, bad, 5.0, 2.0]], "gaps": {"a": [bad, 1.5]}}
    svg = render(snap, "t", x_field="step")
    assert "pulseboard-line" in svg and "nan" not in svg.lower()
    assert snapshot.as_number(bad) is None
