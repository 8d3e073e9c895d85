"""docs/python.md's TensorBoard and Keras cells and the README's framework cell, run as written in
a real kernel against a real server; their channels hold what was written (CI mode; the torch
cells run in tests/integrations, long mode)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cells import doc_cell, run_cells, text_output
from tbsupport import channel, merged, write_steps, writer

from support import ServerProcess, token

WAIT_WATCHED = """
import time
while watcher.status().delivered < {steps}:  # the watcher thread runs on; wait until it sent all
    time.sleep(0.05)
print("delivered", watcher.status().delivered, watcher.status().skipped)
"""


@pytest.fixture
def kernel_env(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> ServerProcess:
    monkeypatch.setenv("PULSEBOARD_URL", server.url)  # the kernel inherits these
    monkeypatch.setenv("PULSEBOARD_TOKEN", token())
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("PULSEBOARD_DATA_DIR", str(server.data_dir / "kernel"))  # the watcher's state
    return server


@pytest.mark.parametrize("doc, cell", [("docs/python.md", "tensorboard"), ("README.md", "tensorboard")])
def test_tensorboard_cell(kernel_env: ServerProcess, tmp_path: Path, doc: str, cell: str) -> None:
    w = writer(tmp_path / "runs" / "exp1")
    want = write_steps(w, range(30), extras=True)
    w.close()
    source = doc_cell(cell, doc)
    if "watcher =" not in source:  # the check cell needs the Watcher that pulseboard.watch() returns
        source = source.replace("pulseboard.watch(", "watcher = pulseboard.watch(")
    nb = run_cells([source, WAIT_WATCHED.format(steps=30)], tmp_path)
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
