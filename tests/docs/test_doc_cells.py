"""Every ```python block of README.md and docs/*.md, pasted as written into one notebook cell,
runs, and a block that makes charts shows each of them: the widget view and the static SVG.

The convention (README, "Code in these docs"): a ```python block is one notebook cell; a
```python fragment block is a piece of the reader's own code (it needs their model, or runs
until stopped) and is not run; shell is ```bash / ```sh. All blocks run in order in one kernel,
against one real server whose host collector is on, so the host-metric charts have data."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from harness.servers import ROOT, ServerProcess
from harness.tokens import token

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CHART_MIME = "application/vnd.pulseboard.chart+json"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.S | re.M)
CHART_CALL = re.compile(r"\bLiveChart\(")
TABLE_CALL = re.compile(r"\bRuns\(")  # a runs table: a widget view, no static chart


@dataclass
class Block:
    where: str  # file:line
    source: str

    @property
    def charts(self) -> int:
        """The charts this cell makes (each `LiveChart(...)` call shows one)."""
        return len(CHART_CALL.findall(self.source))

    @property
    def tables(self) -> int:
        """The runs tables this cell makes (each `Runs(...)` call shows one)."""
        return len(TABLE_CALL.findall(self.source))


def notebook_blocks() -> list[Block]:
    """The ```python blocks meant as notebook cells, in reading order (README, then docs/)."""
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for m in FENCE.finditer(text):
            info = m.group(1).split()
            if info[:1] == ["python"] and "fragment" not in info[1:]:
                line = text[: m.start()].count("\n") + 1
                out.append(Block(f"{path.relative_to(ROOT)}:{line}", m.group(2)))
    return out


def test_the_docs_hold_notebook_cells_and_mark_the_rest() -> None:
    blocks = notebook_blocks()
    assert any(b.where.startswith("README.md") and b.charts == 2 for b in blocks), "README's first example"
    # A ```python block that is not a cell must say so; "py" or a bare fence would slip past this test.
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for m in FENCE.finditer(path.read_text()):
            info = m.group(1).split()
            assert info[:1] != ["py"], f"{path.name}: write ```python (a cell) or ```python fragment"


@pytest.mark.jupyter  # starts a kernel
def test_every_doc_cell_runs_as_written_and_shows_its_charts(
    server_factory: Callable[..., ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = server_factory("--collect-interval", "0.2")
    monkeypatch.setenv("PULSEBOARD_URL", server.url)  # the kernel inherits these
    monkeypatch.setenv("PULSEBOARD_TOKEN", token("reader", read=["*"], publish=["*"]))
    blocks = notebook_blocks()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(b.source) for b in blocks])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    # allow_errors: every failing block is reported below by name, not just the first.
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    problems = []
    for block, cell in zip(blocks, nb.cells, strict=True):
        outputs: list[dict[str, Any]] = cell.outputs
        errors = [f"{o['ename']}: {o['evalue']}" for o in outputs if o["output_type"] == "error"]
        if errors:
            problems.append(f"{block.where}: {errors[0]}")
            continue
        views = [o for o in outputs if WIDGET_VIEW in o.get("data", {})]
        statics = [o["data"] for o in outputs if CHART_MIME in o.get("data", {})]
        if len(views) != block.charts + block.tables or len(statics) != block.charts:
            problems.append(f"{block.where}: makes {block.charts} charts, shows {len(views)} widget views "
                            f"and {len(statics)} static charts")
            continue
        for data in statics:
            assert "<svg" in data["image/svg+xml"]
            rows = len((data[CHART_MIME]["snapshot"] or {}).get("x") or [])
            if rows == 0:
                problems.append(f"{block.where}: the static chart {data['text/plain']} holds no data")
    assert not problems, "\n".join(problems)


def test_the_quickstart_notebook_logs_without_blocking() -> None:
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "pulseboard.log(" in code and "pulseboard.publish(" not in code
