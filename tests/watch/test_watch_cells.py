"""docs/python.md's TensorBoard and Keras cells and the README's framework cell, run as written in
a real kernel against a real server; their channels hold what was written (CI mode; the torch
cells run in tests/integrations, long mode)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cells import WAIT_WATCHED, doc_cell, kernel_env, run_cells, text_output
from tbsupport import channel, merged, write_steps, writer

from harness.servers import ServerProcess

__all__ = ["kernel_env"]  # the fixture
pytestmark = pytest.mark.jupyter  # starts kernels

@pytest.mark.parametrize("doc, cell", [("docs/python.md", "tensorboard"), ("README.md", "tensorboard")])
def test_tensorboard_cell(kernel_env: ServerProcess, tmp_path: Path, doc: str, cell: str) -> None:
    w = writer(tmp_path / "runs" / "exp1")
    want = write_steps(w, range(30), extras=True)
    w.close()
    nb = run_cells([doc_cell(cell, doc), WAIT_WATCHED.format(steps=30)], tmp_path)
    assert "delivered 30 {'histograms': 30, 'images': 30, 'text': 30}" in text_output(nb, 1)
    assert merged(channel(kernel_env.url, "tb.exp1")) == want


def test_keras_cell(kernel_env: ServerProcess, tmp_path: Path) -> None:
    run_cells([doc_cell("keras"), "import pulseboard\nassert pulseboard.flush(60)"], tmp_path)
    msgs = [m["data"] for m in channel(kernel_env.url, "train.keras-demo")]
    batches = [m for m in msgs if "train/loss" in m]
    epochs = [m for m in msgs if "val/loss" in m]
    assert len(batches) == 5 * 13  # 410 training rows in batches of 32, 5 epochs
    assert [e["epoch"] for e in epochs] == [0, 1, 2, 3, 4]
    assert all({"epoch/loss", "epoch/accuracy", "val/accuracy", "step"} <= set(e) for e in epochs)
