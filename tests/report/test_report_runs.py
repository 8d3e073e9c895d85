"""A report holds the runs table: `pulseboard report --execute` of a notebook showing
`Runs(...)` writes its static table (statuses, differing config, metrics), readable offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from report_support import kernel_env, publish, pulseboard

from harness.notebooks import notebook
from harness.tokens import token


def test_a_report_holds_the_runs_table(server_factory: Any, offline_page: Any, tmp_path: Path) -> None:
    server = server_factory()
    headers = {"Authorization": f"Bearer {token()}"}
    for name, lr, op in (("alpha", 0.1, "finish"), ("beta", 0.01, "crash")):
        httpx.post(server.url + "/runs", headers=headers,
                   json={"project": "rep", "name": name, "op": "start", "config": {"lr": lr, "seed": 1}})
        publish(server.url, [{"ch": f"rep.{name}", "data": {"step": s, "loss": 1 / (s + 1) + lr}} for s in range(10)])
        httpx.post(server.url + "/runs", headers=headers, json={"project": "rep", "name": name, "op": op})
    env = kernel_env(server.url)
    notebook(tmp_path / "runs.ipynb", ["from pulseboard import Runs\nRuns('rep', metrics=['loss'])"])
    pulseboard("report", "runs.ipynb", "--execute", "-o", "runs.html", env=env, cwd=tmp_path)
    html = (tmp_path / "runs.html").read_text()
    assert env["PULSEBOARD_TOKEN"] not in html
    page = offline_page
    page.goto((tmp_path / "runs.html").as_uri())
    table = page.locator(".pulseboard-runs-static")
    assert table.count() == 1 and table.is_visible()
    heads = table.locator("th").all_inner_texts()
    assert heads[:4] == ["run", "status", "start", "duration"] and "lr" in heads and "seed" not in heads
    rows = {r: table.locator(f"tr[data-run={r}] td").all_inner_texts() for r in ("alpha", "beta")}
    assert rows["alpha"][1] == "finished" and rows["beta"][1] == "crashed"
    assert rows["beta"][heads.index("lr")] == "0.01"
    assert rows["alpha"][heads.index("loss min")] == "0.2" and rows["alpha"][heads.index("loss max")] == "1.1"
    assert page.blocked == []
    # the table's widget output is left out, as a chart's is: no `<...Runs object at 0x...>` line
    text = page.inner_text("body")
    assert "object at 0x" not in text and "Runs(" not in text.replace("Runs('rep', metrics", "")
