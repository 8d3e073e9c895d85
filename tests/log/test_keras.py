"""The Keras 3 callback, with real Keras on the JAX CPU backend training a tiny model."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from harness.channels import read_all
from harness.servers import ServerProcess
from harness.tokens import token

TRAIN = """
import numpy as np
import keras
import pulseboard
from pulseboard.integrations.keras import PulseboardCallback

assert keras.backend.backend() == "jax"
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
y = (x.sum(axis=1) > 0).astype("float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
model.fit(x, y, batch_size=16, epochs=3, validation_split=0.25, verbose=0,
          callbacks=[PulseboardCallback("keras.run", every_n_batches=2)])
assert pulseboard.flush(timeout=60)
model.fit(x, y, batch_size=16, epochs=2, verbose=0,  # a run of its own, started and finished by the callback
          callbacks=[PulseboardCallback(project="keras", name="fit2", config={"width": 8})])
"""


def test_keras_callback_logs_batches_and_epochs(server: ServerProcess) -> None:
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               PULSEBOARD_URL=server.url, PULSEBOARD_TOKEN=token())
    subprocess.run([sys.executable, "-c", TRAIN], env=env, check=True, timeout=240)
    (run,) = httpx.get(server.url + "/runs?project=keras", headers={"Authorization": f"Bearer {token()}"}
                       ).json()["runs"]
    assert run["name"] == "fit2" and run["status"] == "finished"
    assert run["config"]["width"] == 8 and run["config"]["epochs"] == 2 and run["config"]["optimizer"] == "Adam"
    assert run["config"]["learning_rate"] == 0.001
    assert [m["data"]["step"] for m in read_all(server.url, "keras.fit2")][-1] == 8  # 64 rows / 16, 2 epochs
    msgs = [m["data"] for m in read_all(server.url, "keras.run")]
    epochs = [m for m in msgs if "epoch/loss" in m]
    batches = [m for m in msgs if "train/loss" in m]
    # 48 training rows in batches of 16: 3 batches an epoch, 9 in all, every 2nd one logged
    assert [b["step"] for b in batches] == [2, 4, 6, 8]
    assert [(e["epoch"], e["step"]) for e in epochs] == [(0, 3), (1, 6), (2, 9)]
    for e in epochs:
        assert {"epoch/loss", "epoch/accuracy", "val/loss", "val/accuracy"} <= set(e)
        assert all(isinstance(e[k], float) for k in e if k.startswith(("epoch/", "val/")))
    assert all(isinstance(b["train/loss"], float) and 0 <= b["train/accuracy"] <= 1 for b in batches)
