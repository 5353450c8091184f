"""A trial of our trainer, in its worker: the same `train()` as every other run, reporting each epoch to the
driver, saving a checkpoint in its trial's directory to continue from (after a lost worker or a resume),
and ending itself, not failing, where a retry could not help. Imports torch and Lightning: sweep.trials.
trainer names it for Tune without them."""

from __future__ import annotations

import math
import os
import random
import time
import traceback
import uuid

import numpy as np
import pytorch_lightning as pl
import ray
import torch
from ray import tune

from sweep.record.files import CHECKPOINT
from sweep.record.storage import TrialFiles
from sweep.trials import reports
from text_recognizer.datasets import Splits
from text_recognizer.training import train


class ReportToTune(pl.Callback):
    """After each validation epoch, report val_acc and val_loss (so that early stopping can stop the trial),
    with how long the epoch took and the trial's Ray node; save a checkpoint first, at most once per
    `checkpoint_interval_s` of training (0: every epoch). The checkpoint holds the trial's reports so far: a
    trial continued from it sends them again, so the record has every epoch even where the driver died
    before it heard of them, or its copy in object storage lagged. A training loss that becomes NaN or
    infinite ends the trial at once, diverged."""

    def __init__(self, files: TrialFiles, checkpoint_interval_s: float):
        self.files = files
        self.checkpoint = files.folder / CHECKPOINT
        self.checkpoint_interval_s = checkpoint_interval_s
        self.last_checkpoint = time.monotonic()  # a trial shorter than the interval saves none
        self.epoch_start = 0.0
        self.diverged = False
        self.node = ray.get_runtime_context().get_node_id()
        self.reports: list[dict] = []  # every epoch's, kept in the checkpoint

    def state_dict(self) -> dict:
        return {"reports": self.reports}

    def load_state_dict(self, state_dict: dict) -> None:
        self.reports = state_dict["reports"]

    def on_train_start(self, trainer, pl_module):
        for report in self.reports:  # continued from a checkpoint: its epochs, which the record may lack
            tune.report(reports.replayed(report))

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not torch.isfinite(pl_module.train_loss_sum):  # a running sum: NaN or inf once any loss was
            self.diverged = trainer.should_stop = True
            tune.report(reports.end(diverged=True))

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or self.diverged:
            return
        metrics = {k: trainer.callback_metrics[k].item() for k in ("val_acc", "val_loss")}
        if not math.isfinite(metrics["val_loss"]):
            self.diverged = trainer.should_stop = True
            return tune.report(reports.end(diverged=True))
        epoch = trainer.current_epoch + 1
        report = reports.step(epoch, {**metrics, **gpu_use()}, time.perf_counter() - self.epoch_start, self.node)
        self.reports.append(report)
        due = time.monotonic() - self.last_checkpoint >= self.checkpoint_interval_s
        if due and epoch < trainer.max_epochs:  # the last epoch leaves nothing to continue
            aside = self.checkpoint.with_name(f".{CHECKPOINT}.{uuid.uuid4().hex}.tmp")
            trainer.save_checkpoint(aside)  # the callbacks' states in it: this report, the random generators
            os.replace(aside, self.checkpoint)  # a reader never sees half a checkpoint
            self.files.store(CHECKPOINT)  # where the experiment is: a bucket takes a whole object
            self.last_checkpoint = time.monotonic()
        tune.report(report)


def gpu_use() -> dict:
    """The most GPU memory the trial took (MiB), for benchmarks/gpu_check.sh; the GPUs it saw are Ray's."""
    return {"gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20} if torch.cuda.is_available() else {}


class RngState(pl.Callback):
    """Keeps the random generators' states in Lightning's checkpoints, and sets them again when a run
    continues from one: the batch order and the dropout masks draw from them, so a continued trial trains
    as the uninterrupted one would have."""

    def state_dict(self) -> dict:
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        numpy_state = (kind, keys.tolist(), position, has_gauss, gauss)  # plain types: torch.load's weights_only
        rng = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"rng": rng}

    def load_state_dict(self, state_dict: dict) -> None:
        rng = state_dict["rng"]
        torch.set_rng_state(rng["torch"])
        kind, keys, position, has_gauss, gauss = rng["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


# Messages of CUDA errors after which the CUDA context of the process is unusable ("sticky" errors).
CUDA_ERRORS = ("CUDA error", "CUBLAS_STATUS", "cuDNN error", "CUDNN_STATUS", "device-side assert")


def cuda_failure(exc: BaseException) -> str | None:
    """'oom' for CUDA's out of memory, 'cuda' for any other CUDA error, None for the rest."""
    if isinstance(exc, torch.OutOfMemoryError) or "CUDA out of memory" in str(exc):
        return "oom"
    if isinstance(exc, getattr(torch, "AcceleratorError", ())) or any(text in str(exc) for text in CUDA_ERRORS):
        return "cuda"
    return None


def training_failed(exc: Exception, gpus_per_trial: float, files: TrialFiles) -> None:
    """The training code raised. Most errors would come back on a retry: the trial ends with the error's
    line, its traceback in the trial's error.txt, and its worker goes on with the next trial.

    A CUDA error is raised again, for Tune to retry the trial (--max-failures, counted in `retries`) on a
    fresh worker: after an illegal memory access or a device-side assert, the worker's CUDA context is
    unusable and must serve no other trial. So is out of memory on a GPU that trials share (a fraction per
    trial), which can pass when the neighbours differ; on a GPU of its own it would come back, and it ends
    the trial as other errors do."""
    line = f"{type(exc).__name__}: {exc}".splitlines()[0]
    kind = cuda_failure(exc)
    if kind == "oom" and gpus_per_trial < 1:
        sharing = round(1 / gpus_per_trial)
        raise RuntimeError(
            f"{line} ({gpus_per_trial:g} GPU per trial: {sharing} trials share each GPU); retried on another "
            f"worker, or give each trial more with --gpus-per-trial {min(1.0, 2 * gpus_per_trial):g}"
        ) from exc
    if kind == "cuda":
        raise RuntimeError(
            f"{line}: its worker's CUDA context is unusable; the trial is retried on a fresh one"
        ) from exc
    (files.folder / "error.txt").write_text(traceback.format_exc())
    files.store("error.txt")
    tune.report(reports.end(failed=f"{line} (traceback: {files.where('error.txt')})"))


def train_trial(values: dict, *, spec, splits: Splits, files: TrialFiles) -> None:
    """Train one trial in its directory (`files`), continuing from the checkpoint there if any: a trial that
    Tune retries (its worker or node was lost) or that a resume asks again."""
    checkpoint = files.fetch(CHECKPOINT)
    callback = ReportToTune(files, spec.checkpoint_interval_s)
    # Concurrent trials each get their share of the cores instead of all fighting for all of them.
    torch.set_num_threads(max(1, int(spec.cpus_per_trial)))
    if torch.cuda.is_available():  # the peak of this trial's, not of the trials its worker ran before
        torch.cuda.reset_peak_memory_stats()
    try:
        train(
            spec.trial_config(values),
            splits=splits,
            callbacks=[callback, RngState()],
            quiet=True,
            ckpt_path=str(checkpoint) if checkpoint else None,
            run_dir=files.folder,  # W&B's files, with --wandb
            run_id=f"{spec.name}-{files.number:04d}",
        )
    except Exception as exc:
        training_failed(exc, spec.gpus_per_trial, files)
    finally:
        files.store_all(but=CHECKPOINT)  # W&B's offline run, with --wandb
