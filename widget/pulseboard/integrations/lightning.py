"""PyTorch Lightning: `PulseboardLogger`, a Lightning logger that feeds `pulseboard.log`.

    from pulseboard.integrations.lightning import PulseboardLogger
    trainer = lightning.Trainer(logger=PulseboardLogger(project="train", name="run1"))

Every `log_metrics` call (what `self.log(...)` in a LightningModule becomes) is one message on
the run's channel, with the metrics named as the module logged them (`train/loss`,
`val/loss`, `train_loss_epoch`, ...), `epoch` when Lightning adds it, and `step`. It returns
at once (the background sender delivers). Hyperparameters (`save_hyperparameters()`)
become the run's config; `log_graph` is ignored. Works with `lightning` or `pytorch_lightning`.
"""

from __future__ import annotations

from argparse import Namespace
from typing import Any

try:
    from lightning.pytorch.loggers.logger import Logger
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # the older package name
    from pytorch_lightning.loggers.logger import Logger  # type: ignore[no-redef,assignment]
    from pytorch_lightning.utilities import rank_zero_only  # type: ignore[no-redef,assignment]

from ..sender import Sender
from ._run import RunLike, numbers, plain_config, start_run


class PulseboardLogger(Logger):  # type: ignore[misc]
    """`channel`: where to log (default `<project>.<name>`, `name` defaulting to the start time)."""

    def __init__(self, project: str = "train", name: str | None = None, channel: str | None = None,
                 sender: Sender | None = None) -> None:
        super().__init__()
        self._args = (project, name, channel, sender)
        self._config: dict[str, Any] = {}
        self._run: RunLike | None = None

    @property
    def run(self) -> RunLike:
        """The run, started at its first use (rank 0 only logs), with the hyperparameters Lightning
        gave by then as its config: `log_hyperparams` comes before the first metrics."""
        if self._run is None:
            project, name, channel, sender = self._args
            self._run = start_run(project, name, self._config, channel=channel, sender=sender)
        return self._run

    @property
    def name(self) -> str:
        return self.run.project

    @property
    def version(self) -> str:
        return self.run.name

    @property
    def channel(self) -> str:
        return self.run.channel

    @rank_zero_only  # type: ignore[untyped-decorator,misc]
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        if self._run is None:
            self._config.update(plain_config(params))  # the run's record starts with them
        else:
            self.run.config.update(plain_config(params))

    @rank_zero_only  # type: ignore[untyped-decorator,misc]
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        data = numbers(metrics)
        if data:
            self.run.log(data, step=step)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Ignored: pulseboard draws metrics, not graphs."""

    @rank_zero_only  # type: ignore[untyped-decorator,misc]
    def finalize(self, status: str) -> None:
        self.run.finish(0 if status == "success" else 1)


__all__ = ["PulseboardLogger"]
