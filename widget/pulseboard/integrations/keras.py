"""Keras 3: `PulseboardCallback` logs batch and epoch metrics through `pulseboard.log`.

    from pulseboard.integrations.keras import PulseboardCallback
    model.fit(x, y, epochs=5, callbacks=[PulseboardCallback("train.run1")])

Every `every_n_batches` training batches it logs the batch's metrics (`loss`, `accuracy`,
...) with `step` (batches since training began), `epoch` and `batch`; at the end of each
epoch it logs that epoch's metrics, validation ones included, as `epoch/<name>` with the
same `step` and `epoch`, so one `LiveChart(channel, x="step")` shows both.

Runs: pass a `Run` (`PulseboardCallback(pulseboard.init("train", config=...))`) to log on its
channel, or `PulseboardCallback(project="train", config={...})` to start a run when training
begins (its config plus the optimizer, its learning rate, epochs and batches per epoch) and
finish it when training ends; an exception in `fit` marks it crashed.
"""

from __future__ import annotations

from typing import Any

import keras

from ..sender import Sender, default_sender
from ..tracking import Run, init


class PulseboardCallback(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, channel: str | Run | None = None, every_n_batches: int = 1, sender: Sender | None = None,
                 *, project: str | None = None, name: str | None = None, config: dict[str, Any] | None = None,
                 tags: list[str] | None = None) -> None:
        super().__init__()
        if every_n_batches < 0:
            raise ValueError("every_n_batches must be 0 (epochs only) or more")
        if (channel is None) == (project is None):
            raise ValueError("give a channel (or a Run), or project= to start a run when training begins")
        self.run: Run | None = channel if isinstance(channel, Run) else None
        self.channel = channel.channel if isinstance(channel, Run) else (channel or "")
        self._new_run = (project, name, dict(config or {}), list(tags or [])) if project is not None else None
        self.every_n_batches = every_n_batches
        self._sender = sender
        self._step = 0
        self._epoch = 0

    @property
    def sender(self) -> Sender:
        return self._sender or default_sender()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._new_run is None:
            return
        project, name, config, tags = self._new_run
        self.run = init(project, name=name, config={**self._fit_config(), **config}, tags=tags)
        self.channel = self.run.channel

    def _fit_config(self) -> dict[str, Any]:
        """What `fit` was given that is worth comparing runs by."""
        out: dict[str, Any] = {k: v for k, v in (self.params or {}).items() if k in ("epochs", "steps")}
        opt = getattr(self.model, "optimizer", None)
        if opt is not None:
            out["optimizer"] = type(opt).__name__
            try:
                lr = float(keras.ops.convert_to_numpy(opt.learning_rate))
                out["learning_rate"] = float(f"{lr:.7g}")  # a float32: 0.001, not 0.0010000000474974513
            except (TypeError, ValueError, AttributeError):  # a schedule: its value changes anyway
                pass
        return out

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._new_run is not None and self.run is not None:
            self.run.finish()

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
