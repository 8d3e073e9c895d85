"""Keras 3: `PulseboardCallback` logs batch and epoch metrics through `pulseboard.log`.

    from pulseboard.integrations.keras import PulseboardCallback
    model.fit(x, y, epochs=5, callbacks=[PulseboardCallback(project="train", name="run1")])

Names (the naming rule every integration shares, see docs/python.md): every
`every_n_batches` training batches it logs the batch's metrics as `train/<metric>`
(`train/loss`, `train/accuracy`) with `step` (batches since training began), `epoch` and
`batch`; at the end of each epoch it logs the epoch's training metrics as `epoch/<metric>`
and the validation ones (Keras's `val_loss`) as `val/<metric>`, with the same `step` and
`epoch`, so one `LiveChart("train.*", x="step")` shows them all.
"""

from __future__ import annotations

from typing import Any

import keras

from ..sender import Sender
from ._run import RunLike, numbers, start_run


class PulseboardCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """`channel`: where to log (default `<project>.<name>`, `name` defaulting to the start time)."""

    def __init__(self, channel: str | None = None, every_n_batches: int = 1, sender: Sender | None = None,
                 project: str = "train", name: str | None = None) -> None:
        super().__init__()
        if every_n_batches < 0:
            raise ValueError("every_n_batches must be 0 (epochs only) or more")
        self.every_n_batches = every_n_batches
        self.run: RunLike = start_run(project, name, channel=channel, sender=sender)
        self.channel = self.run.channel
        self._step = 0
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        model = getattr(self, "model", None)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not self.run.config:
            try:
                self.run.config.update({"optimizer": type(optimizer).__name__,
                                        "learning_rate": float(optimizer.learning_rate)})
            except (TypeError, ValueError, AttributeError):  # a schedule, not a number
                pass

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._step += 1
        if self.every_n_batches and self._step % self.every_n_batches == 0:
            data = {"epoch": self._epoch, "batch": batch, **{f"train/{k}": v for k, v in numbers(logs).items()}}
            self.run.log(data, step=self._step)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        data: dict[str, Any] = {"epoch": epoch}
        for k, v in numbers(logs).items():
            data[f"val/{k[4:]}" if k.startswith("val_") else f"epoch/{k}"] = v
        self.run.log(data, step=self._step)


__all__ = ["PulseboardCallback"]
