"""Keras 3: `PulseboardCallback` logs batch and epoch metrics through `pulseboard.log`.

    from pulseboard.integrations.keras import PulseboardCallback
    model.fit(x, y, epochs=5, callbacks=[PulseboardCallback(project="train", name="run1")])

Names (the naming rule every integration shares, see docs/python.md): every
`every_n_batches` training batches it logs the batch's metrics as `train/<metric>`
(`train/loss`, `train/accuracy`) with `step` (batches since training began), `epoch` and
`batch`; at the end of each epoch it logs the epoch's training metrics as `epoch/<metric>`
and the validation ones (Keras's `val_loss`) as `val/<metric>`, with the same `step` and
`epoch`, so one `LiveChart("train.*", x="step")` shows them all.

Runs: with no channel, a run of `project` (`pulseboard.init`) starts when training begins,
its config being `config` plus what `fit` was given (optimizer, learning rate, epochs, steps),
and finishes when training ends; an uncaught exception marks it crashed. Pass a `Run`
(`PulseboardCallback(pulseboard.init("train", config=...))`) to log on one you started, or a
channel name to log there with no run record.
"""

from __future__ import annotations

from typing import Any

import keras

from ..sender import Sender, default_sender
from ._run import RunLike, numbers, start_run


class PulseboardCallback(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, channel: str | RunLike | None = None, every_n_batches: int = 1, sender: Sender | None = None,
                 project: str = "train", name: str | None = None, config: dict[str, Any] | None = None,
                 tags: list[str] | None = None) -> None:
        super().__init__()
        if every_n_batches < 0:
            raise ValueError("every_n_batches must be 0 (epochs only) or more")
        self.every_n_batches = every_n_batches
        self._sender = sender
        self.run: RunLike | None = None if channel is None or isinstance(channel, str) else channel
        self.channel = channel if isinstance(channel, str) else (self.run.channel if self.run else "")
        self._new_run = (project, name, dict(config or {}), list(tags or [])) if channel is None else None
        self._step = 0
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._new_run is None:
            return
        project, name, config, tags = self._new_run
        self.run = start_run(project, name, {**self._fit_config(), **config}, tags=tags, sender=self._sender)
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

    def _log(self, data: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log(data, step=self._step)
        else:
            (self._sender or default_sender()).log(self.channel, data, step=self._step)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._step += 1
        if self.every_n_batches and self._step % self.every_n_batches == 0:
            self._log({"epoch": self._epoch, "batch": batch, **{f"train/{k}": v for k, v in numbers(logs).items()}})

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        data: dict[str, Any] = {"epoch": epoch}
        for k, v in numbers(logs).items():
            data[f"val/{k[4:]}" if k.startswith("val_") else f"epoch/{k}"] = v
        self._log(data)


__all__ = ["PulseboardCallback"]
