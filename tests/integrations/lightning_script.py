"""Train a tiny LightningModule on torch CPU with PulseboardLogger; write what it logged to argv[1]."""

import json
import sys

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

import pulseboard
from pulseboard.integrations.lightning import PulseboardLogger

torch.manual_seed(0)


class Tiny(L.LightningModule):  # type: ignore[misc]  # (Any where lightning is not installed)
    def __init__(self, lr: float = 0.1, hidden: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
        self.train_losses: list[float] = []
        self.val_losses: list[float] = []

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        self.train_losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("val/loss", loss)  # one value an epoch: the mean over the validation batches
        self.val_losses.append(float(loss))

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


x = torch.randn(64, 3)
y = x.sum(dim=1, keepdim=True)
train = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=8)
val = DataLoader(TensorDataset(x[48:], y[48:]), batch_size=16)
logger = PulseboardLogger(project="lit", name="tiny")
model = Tiny()
trainer = L.Trainer(max_epochs=3, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                    accelerator="cpu")
trainer.fit(model, train, val)
logger.log_graph(model)  # ignored
assert pulseboard.flush(timeout=60)
json.dump({"channel": logger.channel, "config": logger.run.config, "train": model.train_losses,
           "val": model.val_losses}, open(sys.argv[1], "w"))
