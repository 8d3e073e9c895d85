"""Lightning and Transformers against the real libraries on torch CPU (long mode only).

torch from the package index brings CUDA libraries (several GB), so these run with
`PULSEBOARD_LONG=1` after installing a CPU torch and the two libraries:

    .venv/bin/pip install torch==2.13.0            # or the CPU wheel of your platform
    .venv/bin/pip install lightning transformers    # keeps that torch
    PULSEBOARD_LONG=1 .venv/bin/pytest tests/integrations -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.channels import read_all
from harness.servers import ServerProcess
from harness.tokens import token
from pulseboard.integrations.transformers import hf_names
from watch.cells import WAIT_WATCHED, doc_cell, kernel_env, run_cells, text_output
from watch.tbsupport import channel

__all__ = ["kernel_env"]  # the fixture

HERE = Path(__file__).parent
# long mode only (PULSEBOARD_LONG=1, with torch, lightning, transformers): tests/conftest.py leaves it out otherwise
pytestmark = [pytest.mark.long, pytest.mark.jupyter]  # the doc cells run in a kernel


def run_script(name: str, server: ServerProcess, *args: str) -> dict:  # type: ignore[type-arg]
    out = Path(server.data_dir) / f"{name}.json"
    env = dict(os.environ, PULSEBOARD_URL=server.url, PULSEBOARD_TOKEN=token(), TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, str(HERE / name), str(out), *args], env=env, check=True, timeout=600)
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_lightning_logger_publishes_what_the_module_logged(server: ServerProcess) -> None:
    got = run_script("lightning_script.py", server)
    assert got["channel"] == "lit.tiny"
    assert got["config"] == {"lr": 0.1, "hidden": 4}
    msgs = [m["data"] for m in read_all(server.url, "lit.tiny")]
    train = [m for m in msgs if "train/loss" in m]
    val = [m for m in msgs if "val/loss" in m]
    assert [m["train/loss"] for m in train] == pytest.approx(got["train"], rel=1e-6)  # 6 batches x 3 epochs
    assert len(train) == 18 and [m["step"] for m in train] == list(range(18))
    assert [m["epoch"] for m in train] == [e for e in range(3) for _ in range(6)]
    assert len(val) == 3 and [m["epoch"] for m in val] == [0, 1, 2]
    assert all(isinstance(m["val/loss"], float) for m in val)


def test_transformers_callback_publishes_the_trainers_log_history(server: ServerProcess, tmp_path: Path) -> None:
    got = run_script("transformers_script.py", server, str(tmp_path / "out"))
    assert got["channel"] == "hf.tiny-hf"
    assert got["config"]["learning_rate"] == 0.05 and got["config"]["num_train_epochs"] == 2
    msgs = [m["data"] for m in read_all(server.url, "hf.tiny-hf")]
    expected = [{**hf_names({k: v for k, v in h.items() if k != "step"}), "step": h["step"]} for h in got["history"]]
    assert msgs == expected  # every log entry, value by value, in order
    assert sum("train/loss" in m for m in msgs) == 8 and sum("eval/loss" in m for m in msgs) == 2


def test_pytorch_cell(kernel_env: ServerProcess, tmp_path: Path) -> None:
    nb = run_cells([doc_cell("pytorch"), WAIT_WATCHED.format(steps=200)], tmp_path)
    assert "delivered 200" in text_output(nb, 1)
    msgs = [m["data"] for m in channel(kernel_env.url, "tb.linear")]
    assert sorted(m["step"] for m in msgs) == list(range(200))
    assert msgs[-1]["train/loss"] < msgs[0]["train/loss"]


def test_lightning_cell(kernel_env: ServerProcess, tmp_path: Path) -> None:
    run_cells([doc_cell("lightning"), "import pulseboard\nassert pulseboard.flush(60)"], tmp_path)
    msgs = [m["data"] for m in channel(kernel_env.url, "train.lightning-demo")]
    assert sum("train/loss" in m for m in msgs) == 14  # 14 batches x 5 epochs, every 5th step
    assert [m["epoch"] for m in msgs if "val/loss" in m] == [0, 1, 2, 3, 4]


def test_transformers_cell(kernel_env: ServerProcess, tmp_path: Path) -> None:
    run_cells([doc_cell("transformers"), "import pulseboard\nassert pulseboard.flush(60)"], tmp_path)
    msgs = [m["data"] for m in channel(kernel_env.url, "train.hf-demo")]
    assert [m["step"] for m in msgs if "train/loss" in m] == list(range(5, 85, 5))  # 28 steps x 3 epochs
    assert [m["epoch"] for m in msgs if "eval/loss" in m] == [1.0, 2.0, 3.0]
