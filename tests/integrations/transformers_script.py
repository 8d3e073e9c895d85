"""Train a tiny torch model with Transformers' Trainer on CPU and PulseboardCallback; write what
Transformers logged (its log_history) to argv[1]."""

import json
import sys

import torch
from transformers import Trainer, TrainingArguments

import pulseboard
from pulseboard.integrations.transformers import PulseboardCallback

torch.manual_seed(0)


class Tiny(torch.nn.Module):  # type: ignore[misc]  # (Any where torch is not installed)
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3, 1)

    def forward(self, x, labels=None):  # type: ignore[no-untyped-def]
        out = self.net(x)
        loss = torch.nn.functional.mse_loss(out, labels) if labels is not None else None
        return {"loss": loss, "logits": out}


x = torch.randn(40, 3)
y = x.sum(dim=1, keepdim=True)
rows = [{"x": x[i], "labels": y[i]} for i in range(40)]
args = TrainingArguments(output_dir=sys.argv[2], num_train_epochs=2, per_device_train_batch_size=8,
                         learning_rate=0.05, logging_steps=1, eval_strategy="epoch", report_to="none",
                         use_cpu=True, save_strategy="no", disable_tqdm=True, run_name="tiny-hf")
callback = PulseboardCallback(project="hf")
trainer = Trainer(model=Tiny(), args=args, train_dataset=rows[:32], eval_dataset=rows[32:], callbacks=[callback])
trainer.train()
assert pulseboard.flush(timeout=60)
assert callback.run is not None
json.dump({"channel": callback.run.channel, "config": callback.run.config, "history": trainer.state.log_history},
          open(sys.argv[1], "w"))
