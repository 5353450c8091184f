"""Training logic: loss, optimizer, schedule and metrics around any classifier nn.Module."""

from __future__ import annotations

import inspect

import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn

from text_recognizer.config import LitModelConfig


def optimizer_names() -> list[str]:
    return sorted(
        name
        for name, value in vars(torch.optim).items()
        if isinstance(value, type) and issubclass(value, torch.optim.Optimizer) and value is not torch.optim.Optimizer
    )


class BaseLitModel(pl.LightningModule):
    """Keyword arguments after `model` are the lit-model group's flags (config.LitModelConfig, where their
    defaults, choices and bounds are stated).

    Training batches come in lists (see BATCHES_PER_STEP in the data modules) and the model makes one
    optimizer step per batch itself, with Lightning's manual optimization: backward and step still go
    through Lightning, so precision plugins and step counts work as in automatic optimization.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: str = LitModelConfig.optimizer,
        lr: float = LitModelConfig.lr,
        loss: str = LitModelConfig.loss,
        one_cycle_max_lr: float | None = LitModelConfig.one_cycle_max_lr,
        one_cycle_total_steps: int = LitModelConfig.one_cycle_total_steps,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.optimizer_class = getattr(torch.optim, optimizer)
        self.lr = lr
        self.loss_fn = getattr(nn.functional, loss)
        self.one_cycle_max_lr = one_cycle_max_lr
        self.one_cycle_total_steps = one_cycle_total_steps
        # Per-step values are accumulated and logged once per epoch: a self.log call costs about 0.5 ms
        # in Lightning 2.6, which is 15% of an MLP epoch on a CPU when done every step. The training loss
        # is a plain running sum: a torchmetrics update checks its input and costs ~50 us a step.
        self.train_loss_sum = torch.zeros(())
        self.train_steps = 0
        self.val_loss = torchmetrics.MeanMetric()
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
        self.test_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def configure_optimizers(self):
        # The fused implementation updates all parameters in one kernel: the same Adam (or AdamW, SGD,
        # Adagrad) step, an MLP epoch ~25% faster on a CPU. torch has it for CPUs and CUDA GPUs.
        fused = "fused" in inspect.signature(self.optimizer_class).parameters and self.device.type in ("cpu", "cuda")
        optimizer = self.optimizer_class(self.parameters(), lr=self.lr, **({"fused": True} if fused else {}))
        if self.one_cycle_max_lr is None:
            return optimizer
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.one_cycle_max_lr, total_steps=self.one_cycle_total_steps
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_epoch_start(self):
        self.train_loss_sum, self.train_steps = torch.zeros((), device=self.device), 0

    def training_step(self, batches, batch_idx):
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        for x, y in batches:  # (B, 1, 28, 28), (B,)
            loss = self.loss_fn(self.model(x), y)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            self.train_loss_sum += loss.detach()
            self.train_steps += 1

    def on_train_epoch_end(self):
        self.log("train_loss", self.train_loss_sum / max(1, self.train_steps))

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        self.val_loss.update(self.loss_fn(logits, y))
        self.val_acc.update(logits, y)

    def on_validation_epoch_end(self):
        self.log("val_loss", self.val_loss.compute(), prog_bar=True)
        self.log("val_acc", self.val_acc.compute(), prog_bar=True)
        self.val_loss.reset()
        self.val_acc.reset()

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_acc.update(self.model(x), y)

    def on_test_epoch_end(self):
        self.log("test_acc", self.test_acc.compute())
        self.test_acc.reset()
