"""What runs inside a Ray Tune trial: the same `train()` as every other run, reporting to Tune."""

from __future__ import annotations

import time

import pytorch_lightning as pl
import ray
import torch
from ray import tune

from text_recognizer.data import Splits
from text_recognizer.training import train


class ReportToTune(pl.Callback):
    """After each validation epoch, `tune.report` val_acc and val_loss, so ASHA can stop the trial.

    Ray's TuneReportCheckpointCallback reports only metrics that Lightning logged; we also report when
    the trial started and how long the epoch took (train + validation), which results.csv and the
    efficiency benchmark need and which float32 logging would round away. No checkpoints: ASHA does not
    resume trials, and writing them costs time in every epoch.
    """

    def __init__(self, trial_start: float):
        self.trial_start = trial_start
        self.epoch_start = 0.0
        self.node = ray.get_runtime_context().get_node_id()  # the Ray node this trial runs on

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        tune.report(
            {
                "val_acc": trainer.callback_metrics["val_acc"].item(),
                "val_loss": trainer.callback_metrics["val_loss"].item(),
                "epoch": trainer.current_epoch + 1,
                "epoch_time_s": time.perf_counter() - self.epoch_start,
                "trial_start": self.trial_start,
                "node": self.node,
            }
        )


def run_trial(values: dict, *, spec, splits: Splits) -> None:
    """Tune's function trainable; `spec` and `splits` arrive once per node through the object store."""
    trial_start = time.time()
    # Concurrent trials each get their share of the cores instead of all fighting for all of them.
    torch.set_num_threads(max(1, int(spec.cpus_per_trial)))
    train(spec.trial_config(values), splits=splits, callbacks=[ReportToTune(trial_start)], quiet=True)
