"""The snapshot core (pure) and its edge against a real server, and the SVG drawn from it."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from report_support import publish

from harness.servers import ServerProcess
from harness.tokens import token
from pulseboard.snapshot import MAX_CELLS, Env, Fetched, SnapshotError, build, fetch, fetch_pages, thin
from pulseboard.svg import render
from pulseboard.widget import LiveChart


def envs(values: list[float], ch: str = "a", start_seq: int = 1) -> list[Env]:
    return [Env(ch, start_seq + i, 1000.0 + i, {"step": i, "v": v}) for i, v in enumerate(values)]


def test_thinning_keeps_the_ends_and_the_extremes() -> None:
    values = [float(i % 10) for i in range(10_000)]
    values[5003] = 1e6  # a spike
    values[7001] = -1e6
    kept = thin(envs(values), 400, "step")
    assert len(kept) <= 400
    seqs = {e.seq for e in kept}
    assert {1, 10_000, 5004, 7002} <= seqs


def test_a_hole_in_the_numbering_is_a_gap_and_the_svg_breaks_there() -> None:
    a = [Env("a", i + 1, 1000.0 + i, {"v": float(i)}) for i in range(3)]
    b = [Env("a", 10 + i, 1010.0 + i, {"v": float(i)}) for i in range(3)]
    snap = build({"a": Fetched(a + b)}, None, None)
    assert snap["gaps"] == {"a": [1002.0]}
    d = re.search(r'class="pulseboard-line"[^>]* d="([^"]*)"', render(snap, "t"))
    assert d and d.group(1).count("M") == 2
    whole = build({"a": Fetched(a)}, None, None)
    d = re.search(r'class="pulseboard-line"[^>]* d="([^"]*)"', render(whole, "t"))
    assert whole["gaps"] == {} and d and d.group(1).count("M") == 1


def test_a_new_run_of_the_x_field_replaces_the_old_one() -> None:
    old = [Env("a", i + 1, 1.0, {"step": i, "v": 9.0}) for i in range(5)]
    new = [Env("a", 6 + i, 2.0, {"step": i, "v": 1.0}) for i in range(3)]
    snap = build({"a": Fetched(old + new)}, None, "step")
    assert snap["x"] == [0.0, 1.0, 2.0] and snap["y"] == [[1.0, 1.0, 1.0]]


def test_many_series_are_thinned_to_the_cell_bound_keeping_the_whole_range() -> None:
    rows = [Env("a", i + 1, float(i), {f"f{k}": float(i + k) for k in range(40)}) for i in range(5000)]
    snap = build({"a": Fetched(rows)}, None, None)
    assert len(snap["x"]) * len(snap["series"]) <= MAX_CELLS
    assert snap["x"][0] == 0.0 and snap["x"][-1] == 4999.0 and snap["downsampled"]


# Recent timestamps: the store drops messages older than --retention (30 days) by their ts.
T0 = float(int(time.time()) - 10_000)


def test_fetch_asks_the_server_to_downsample_a_long_range(server_factory: Any) -> None:
    server: ServerProcess = server_factory("--history", "3000")
    publish(server.url, [{"ch": "p.a", "data": {"v": float(i)}, "ts": T0 + i} for i in range(2500)])
    reader = token("reader", publish=[])
    got = fetch(server.url, reader, "p.a", None, None)  # 2,500 kept, at most POINTS (2,000) asked for
    seqs = [e.seq for e in got.envs]
    assert got.downsampled and len(seqs) <= 2000 and seqs[0] == 1 and seqs[-1] == 2500 and seqs == sorted(seqs)
    whole = fetch(server.url, reader, "p.a", None, None, points=5000)
    assert [e.seq for e in whole.envs] == list(range(1, 2501)) and not whole.downsampled
    later = fetch(server.url, reader, "p.a", T0 + 2000, None)
    assert [e.data["v"] for e in later.envs] == [float(i) for i in range(2000, 2500)] and not later.downsampled
    assert fetch(server.url, reader, "p.none", None, None).envs == []


def test_fetch_pages_reads_exact_pages_from_a_real_server(server_factory: Any) -> None:
    """The path for servers that answer no `downsampled` (older servers): exact since/limit pages."""
    server: ServerProcess = server_factory("--history", "3000")
    publish(server.url, [{"ch": "p.a", "data": {"v": float(i)}, "ts": T0 + i} for i in range(2500)])
    reader = token("reader", publish=[])
    got = fetch_pages(server.url, reader, "p.a", None, None, 1, 2500, "")
    assert [e.seq for e in got.envs] == list(range(1, 2501)) and not got.downsampled
    later = fetch_pages(server.url, reader, "p.a", T0 + 2000, None, 1, 2500, "")
    assert [e.data["v"] for e in later.envs] == [float(i) for i in range(2000, 2500)]


def test_snapshot_needs_a_readable_server(server: ServerProcess) -> None:
    chart = LiveChart("p.a", url=server.url, token=token("nobody", read=["other.*"], publish=[]))
    with pytest.raises(SnapshotError, match="not allowed"):
        chart.snapshot()
    down = LiveChart("p.a", url="http://127.0.0.1:9", token="x")
    with pytest.raises(SnapshotError, match=r"Connection refused.*cannot get a read-only token"):
        down.snapshot()


def test_chart_snapshot_stores_the_server_history_and_no_token(server: ServerProcess) -> None:
    publish(server.url, [{"ch": "p.b", "data": {"step": i, "loss": 1 / (i + 1)}} for i in range(50)])
    secret = token("notebook", publish=["*"])
    chart = LiveChart("p.b", x="step", url=server.url, token=secret)
    chart.snapshot()
    state = chart.get_state()
    assert state["_snapshot"]["x"] == [float(i) for i in range(50)]
    assert state["_snapshot"]["y"][0][0] == 1.0
    assert secret not in str(state["_snapshot"])


def test_after_a_cell_the_snapshot_is_read_again_only_when_something_was_published(server: ServerProcess) -> None:
    publish(server.url, [{"ch": "p.c", "data": {"step": i, "v": float(i)}} for i in range(10)])
    chart = LiveChart("p.c", x="step", url=server.url, token=token("notebook", publish=[]))
    first = chart.snapshot()
    chart._try_snapshot(if_changed=True)  # what IPython's post_run_cell runs
    assert chart._snapshot is first
    publish(server.url, [{"ch": "p.c", "data": {"step": 10, "v": 10.0}}])
    chart._try_snapshot(if_changed=True)
    assert chart._snapshot is not first and chart._snapshot["x"][-1] == 10.0


def test_fetch_reads_what_a_small_history_keeps(server_factory: Any) -> None:
    server: ServerProcess = server_factory("--broker", "memory://", "--history", "50")  # keeps the last 50
    publish(server.url, [{"ch": "p.s", "data": {"v": float(i)}} for i in range(80)])
    got = fetch(server.url, token("reader", publish=[]), "p.s", None, None)
    assert [e.seq for e in got.envs] == list(range(31, 81))
    pages = fetch_pages(server.url, token("reader", publish=[]), "p.s", None, None, 31, 80, "")
    assert [e.seq for e in pages.envs] == list(range(31, 81))


def test_report_of_a_notebook_saved_before_reports_uses_its_browser_snapshot() -> None:
    from nbformat import from_dict

    from pulseboard.report import prepare

    snap = {"v": 1, "series": [{"ch": "old", "field": "v"}], "x": [1.0, 2.0], "y": [[3.0, 4.0]]}
    state = {"channels": ["old"], "title": None, "token": "eyJ.a.b", "snapshot": snap}
    nb = from_dict({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {
            "state": {"m1": {"model_name": "AnyModel", "state": state}}, "version_major": 2, "version_minor": 0}}},
        "cells": [{"cell_type": "code", "id": "c", "metadata": {}, "execution_count": 1, "source": "chart",
                   "outputs": [{"output_type": "execute_result", "execution_count": 1, "metadata": {}, "data": {
                       "application/vnd.jupyter.widget-view+json": {"model_id": "m1", "version_major": 2,
                                                                    "version_minor": 0},
                       "text/plain": "LiveChart"}}]}],
    })
    out, charts = prepare(nb)
    assert charts == [{"options": {"title": "old", "channels": ["old"], "fields": None, "x": None, "units": None,
                                   "height": None, "window": None, "smoothing": 0.0, "log_y": False, "zoom": None,
                                   "hidden": []}, "snapshot": snap}]
    assert "widgets" not in out.metadata and "eyJ" not in str(out)
    assert 'data-pulseboard-chart="0"' in out.cells[0].outputs[0].data["text/html"]
