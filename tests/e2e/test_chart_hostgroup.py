"""Host metrics as a group of small charts by unit, from the real collector."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from harness.browsers import PageServer, open_widget, widget_state
from harness.charts import VIEW
from harness.servers import ServerProcess, wait_until

pytestmark = pytest.mark.browser
GROUPS = ["cpu", "mem", "disk", "net", "load"]

SERIES = """() => [...document.querySelectorAll('.pulseboard-chart')].map((el) => ({
    group: el.dataset.group || null, series: el.__pulseboard.series(),
    shown: [...el.querySelectorAll('.u-legend .u-series')].slice(1).map((r) => !r.classList.contains('u-off')),
    visible: el.offsetParent !== null}))"""


def host_channel(server: ServerProcess) -> str:
    def find() -> str | None:
        req = urllib.request.Request(server.url + "/channels", headers={"Authorization": f"Bearer {VIEW}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            names = [c["ch"] for c in json.loads(r.read())["channels"]]
        return next((n for n in names if n.startswith("sys.")), None)
    return wait_until(find, what="the collector's channel")  # type: ignore[no-any-return]


def test_host_channel_shows_a_group_of_charts_by_unit(
    page: Any, server_factory: Any, page_server: PageServer
) -> None:
    server: ServerProcess = server_factory("--collect-interval", "0.5")
    ch = host_channel(server)
    open_widget(page, page_server.url, widget_state(channels=[ch], url=server.url, token=VIEW))
    def grouped() -> list[dict[str, Any]] | None:
        shown: list[dict[str, Any]] = page.evaluate(SERIES)
        drawn = all(c["shown"] for c in shown if c["group"])  # each legend built
        return shown if [c["group"] for c in shown if c["group"]] == GROUPS and drawn else None

    # One reading for the checks below, once every chart has drawn its legend: the charts are
    # built again as fields arrive.
    charts = {c["group"]: c for c in wait_until(grouped, 20, what="one chart per unit, in order")}
    fields = {g: [s.split(":", 1)[1] for s in c["series"]] for g, c in charts.items()}
    assert fields["mem"] == ["mem_percent", "swap_percent"]
    assert sorted(fields["disk"]) == ["disk_read_bps", "disk_write_bps"]
    assert sorted(fields["net"]) == ["net_rx_bps", "net_tx_bps"]
    assert "load1" in fields["load"]
    cpu = charts["cpu"]
    assert cpu["series"][0] == f"{ch}:cpu_percent" and cpu["shown"][0]
    # Per-core CPU is there but hidden by default.
    cores = [i for i, s in enumerate(cpu["series"]) if s.startswith(f"{ch}:cpu_percent.")]
    assert cores and not any(cpu["shown"][i] for i in cores)
    # Nothing else is left over, so the chart for the rest stays out of the way.
    rest = charts[None]
    assert rest["series"] == [] and not rest["visible"]
    assert all(c["visible"] for g, c in charts.items() if g)
    # Each chart carries the status line.
    assert page.locator(".pulseboard-chart[data-group] .pulseboard-status").count() == 5
    # fields= still picks one chart.
    page.evaluate("window.cleanup()")
    open_widget(page, page_server.url, widget_state(channels=[ch], fields=["load1"], url=server.url, token=VIEW))
    wait_until(lambda: page.evaluate(SERIES) and page.evaluate(SERIES)[0]["series"] == [f"{ch}:load1"],
               what="the one chart")
    assert page.locator(".pulseboard-chart").count() == 1


def test_dashboard_shows_the_host_group(page: Any, server_factory: Any) -> None:
    server: ServerProcess = server_factory("--collect-interval", "0.5")
    ch = host_channel(server)
    page.goto(f"{server.url}/#token={VIEW}")
    wait_until(lambda: page.locator(f"section.pb-slot[data-channel='{ch}'] .pulseboard-chart[data-group]").count() == 5,
               20, what="the host group on the dashboard")
