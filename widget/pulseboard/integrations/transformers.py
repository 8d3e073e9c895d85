"""Hugging Face Transformers: `PulseboardCallback`, a `TrainerCallback` that feeds `pulseboard.log`.

    from pulseboard.integrations.transformers import PulseboardCallback
    trainer = Trainer(..., callbacks=[PulseboardCallback(project="train", name="run1")])

Each `on_log` (every `logging_steps`, and after each evaluation) is one message with the
names Transformers' own TensorBoard callback writes: `eval_*` as `eval/<metric>`, `test_*` as
`test/<metric>`, everything else as `train/<metric>` (`train/loss`, `train/learning_rate`,
`train/grad_norm`), plus `epoch` and `step` (the global step). The run's
`TrainingArguments` become its config. Only the main process logs; `on_log` returns at once.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from ..sender import Sender
from ._run import RunLike, numbers, plain_config, start_run


def hf_names(logs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in numbers(logs).items():
        if k == "epoch":
            out["epoch"] = v
        elif k.startswith("eval_"):
            out["eval/" + k[5:]] = v
        elif k.startswith("test_"):
            out["test/" + k[5:]] = v
        else:
            out["train/" + k] = v
    return out


class PulseboardCallback(TrainerCallback):  # type: ignore[misc]
    """`name` defaults to `args.run_name`, else the start time; `channel` to `<project>.<name>`."""

    def __init__(self, project: str = "train", name: str | None = None, channel: str | None = None,
                 sender: Sender | None = None) -> None:
        self.project, self._name, self._channel, self._sender = project, name, channel, sender
        self.run: RunLike | None = None

    def _start(self, args: Any) -> RunLike:
        if self.run is None:
            name = self._name or getattr(args, "run_name", None)
            if name and name == getattr(args, "output_dir", None):  # Transformers' default run name
                name = None
            config = args.to_sanitized_dict() if hasattr(args, "to_sanitized_dict") else args
            self.run = start_run(self.project, name, plain_config(config), self._channel, self._sender)
        return self.run

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._start(args)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        data = hf_names(logs)
        if data:
            self._start(args).log(data, step=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is not None and state.is_world_process_zero:
            self.run.finish()


__all__ = ["PulseboardCallback", "hf_names"]
