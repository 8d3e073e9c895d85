"""Keras 3: `PulseboardCallback` logs batch and epoch metrics through `pulseboard.log`.

    from pulseboard.integrations.keras import PulseboardCallback
    model.fit(x, y, epochs=5, callbacks=[PulseboardCallback("train.run1")])

Every `every_n_batches` training batches it logs the batch's metrics (`loss`, `accuracy`,
...) with `step` (batches since training began), `epoch` and `batch`; at the end of each
epoch it logs that epoch's metrics, validation ones included, as `epoch/<name>` with the
same `step` and `epoch`, so one `LiveChart(channel, x="step")` shows both.
"""

from __future__ import annotations

from typing import Any

import keras

from ..sender import Sender, default_sender


class PulseboardCallback(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, channel: str, every_n_batches: int = 1, sender: Sender | None = None) -> None:
        super().__init__()
        if every_n_batches < 0:
            raise ValueError("every_n_batches must be 0 (epochs only) or more")
        self.channel = channel
        self.every_n_batches = every_n_batches
        self._sender = sender
        self._step = 0
        self._epoch = 0

    @property
    def sender(self) -> Sender:
        return self._sender or default_sender()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._step += 1
        if self.every_n_batches and self._step % self.every_n_batches == 0:
            data = {"epoch": self._epoch, "batch": batch, **(logs or {})}
            self.sender.log(self.channel, data, step=self._step)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        data = {"epoch": epoch, **{f"epoch/{k}": v for k, v in (logs or {}).items()}}
        self.sender.log(self.channel, data, step=self._step)


__all__ = ["PulseboardCallback"]
