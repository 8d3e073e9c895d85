"""The copy-paste cells of docs/python.md and README.md (marked `<!-- cell: NAME -->`), run in a
real kernel by nbclient, in a folder of the test's, with a check cell of the test's after them."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
_CELL = re.compile(r"<!-- cell: ([\w-]+) -->\n```python\n(.*?)```", re.DOTALL)


def doc_cell(name: str, doc: str = "docs/python.md") -> str:
    cells = dict(_CELL.findall((ROOT / doc).read_text()))
    assert name in cells, f"no cell {name!r} in {doc} (has {sorted(cells)})"
    return cells[name]


def run_cells(sources: list[str], cwd: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Run the cells in order in a fresh python3 kernel (which inherits this process's
    environment: set PULSEBOARD_URL / PULSEBOARD_TOKEN first); fails on the first error."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def text_output(nb: nbformat.NotebookNode, index: int) -> str:
    return "".join(o.get("text", "") for o in nb.cells[index].outputs if o.get("output_type") == "stream")
