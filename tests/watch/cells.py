"""The copy-paste cells of docs/python.md and README.md (marked `<!-- cell: NAME -->`), run in a
real kernel by nbclient, in a folder of the test's, with a check cell of the test's after them."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from harness.servers import ServerProcess
from harness.tokens import token

ROOT = Path(__file__).resolve().parents[2]
_CELL = re.compile(r"<!-- cell: ([\w-]+) -->\n```python[^\n]*\n(.*?)```", re.DOTALL)


def doc_cell(name: str, doc: str = "docs/python.md") -> str:
    cells = dict(_CELL.findall((ROOT / doc).read_text()))
    assert name in cells, f"no cell {name!r} in {doc} (has {sorted(cells)})"
    return str(cells[name])


def run_cells(sources: list[str], cwd: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Run the cells in order in a fresh python3 kernel (which inherits this process's
    environment: set PULSEBOARD_URL / PULSEBOARD_TOKEN first); fails on the first error."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb  # type: ignore[no-any-return]


def text_output(nb: nbformat.NotebookNode, index: int) -> str:
    return "".join(o.get("text", "") for o in nb.cells[index].outputs if o.get("output_type") == "stream")


@pytest.fixture
def kernel_env(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> ServerProcess:
    """The server, with the environment a kernel started now inherits pointing at it."""
    monkeypatch.setenv("PULSEBOARD_URL", server.url)
    monkeypatch.setenv("PULSEBOARD_TOKEN", token())
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("PULSEBOARD_DATA_DIR", str(server.data_dir / "kernel"))  # the watcher's state
    return server


WAIT_WATCHED = """
import time
import pulseboard
watcher = pulseboard.watch("runs")  # the one the cell started
while watcher.status().delivered < {steps}:  # its thread runs on: wait until it sent every step
    time.sleep(0.05)
print("delivered", watcher.status().delivered, watcher.status().skipped)
"""
