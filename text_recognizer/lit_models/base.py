"""Training logic: loss, optimizer, schedule and metrics around any classifier nn.Module."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn


class BaseLitModel(pl.LightningModule):
    """Keyword arguments after `model` are the lit-model group's flags."""

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: str = "Adam",
        lr: float = 1e-3,
        loss: str = "cross_entropy",
        one_cycle_max_lr: float | None = None,
        one_cycle_total_steps: int = 100,
    ):
        super().__init__()
        self.model = model
        self.optimizer_class = getattr(torch.optim, optimizer)
        self.lr = lr
        self.loss_fn = getattr(nn.functional, loss)
        self.one_cycle_max_lr = one_cycle_max_lr
        self.one_cycle_total_steps = one_cycle_total_steps
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
        self.test_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def configure_optimizers(self):
        optimizer = self.optimizer_class(self.parameters(), lr=self.lr)
        if self.one_cycle_max_lr is None:
            return optimizer
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.one_cycle_max_lr, total_steps=self.one_cycle_total_steps
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def training_step(self, batch, batch_idx):
        x, y = batch  # (B, 1, 28, 28), (B,)
        logits = self(x)  # (B, num_classes)
        loss = self.loss_fn(logits, y)
        self.train_acc(logits, y)
        self.log("train_loss", loss)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val_loss", self.loss_fn(logits, y), prog_bar=True)
        self.log("val_acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.test_acc(logits, y)
        self.log("test_acc", self.test_acc, on_step=False, on_epoch=True)
