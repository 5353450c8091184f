"""A trial of our trainer, in its worker: the same `train()` as every other run, reporting to Tune, saving
checkpoints to continue from, and ending itself (not failing) where a retry could not help. Imports torch
and Lightning: sweep.trial names it for Tune without them."""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import ray
import torch
from ray import tune

from sweep.files import CHECKPOINT_FILE, META_FILE
from text_recognizer.datasets import Splits
from text_recognizer.training import train


class ReportToTune(pl.Callback):
    """After each validation epoch, `tune.report` val_acc and val_loss, so ASHA can stop the trial, with a
    checkpoint at most once per `checkpoint_interval_s` of training (0: every epoch).

    Ray's TuneReportCheckpointCallback reports only metrics that Lightning logged; we also report when
    the trial started, how long the epoch took (train + validation) and the trial's Ray node, which
    results.csv and the benchmarks need. A training loss that becomes NaN or infinite ends the trial at
    once with `diverged` in its last result.
    """

    def __init__(self, trial_start: float, checkpoint_interval_s: float):
        self.trial_start = trial_start
        self.checkpoint_interval_s = checkpoint_interval_s
        self.last_checkpoint = time.monotonic()  # a trial shorter than the interval saves none
        self.epoch_start = 0.0
        self.diverged = False
        self.node = ray.get_runtime_context().get_node_id()

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not torch.isfinite(pl_module.train_loss_sum):  # a running sum: NaN or inf once any loss was
            self.diverged = trainer.should_stop = True
            self.report(trainer, diverged=True)

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or self.diverged:
            return
        if not math.isfinite(trainer.callback_metrics["val_loss"].item()):
            self.diverged = trainer.should_stop = True
            return self.report(trainer, diverged=True)
        due = time.monotonic() - self.last_checkpoint >= self.checkpoint_interval_s
        if not due or trainer.current_epoch + 1 >= trainer.max_epochs:  # nothing left to continue
            return self.report(trainer)
        with tempfile.TemporaryDirectory() as folder:
            trainer.save_checkpoint(Path(folder) / CHECKPOINT_FILE)
            meta = {"trial_start": self.trial_start, "epoch": trainer.current_epoch + 1}
            (Path(folder) / META_FILE).write_text(json.dumps(meta))
            self.report(trainer, checkpoint=tune.Checkpoint.from_directory(folder))  # Tune copies it
        self.last_checkpoint = time.monotonic()

    def result(self, **values) -> dict:
        """What every report holds; a trial that failed before an epoch ended reports NaN and epoch 0. The
        GPUs it sees (Ray's for it) and the most memory it took on them, for benchmarks/gpu_check.sh."""
        nan = float("nan")
        base = {"val_acc": nan, "val_loss": nan, "epoch": 0, "epoch_time_s": 0.0, "diverged": False, "failed": ""}
        gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
        gpus = {"gpu_ids": os.environ.get("CUDA_VISIBLE_DEVICES", ""), "gpu_peak_mb": gpu_mb}
        return {**base, "trial_start": self.trial_start, "node": self.node, **gpus, **values}

    def report(self, trainer, checkpoint=None, diverged: bool = False) -> None:
        metrics = trainer.callback_metrics
        measured = {} if diverged else {k: metrics[k].item() for k in ("val_acc", "val_loss") if k in metrics}
        epoch = {"epoch": trainer.current_epoch + 1, "epoch_time_s": time.perf_counter() - self.epoch_start}
        tune.report(self.result(**measured, **epoch, diverged=diverged), checkpoint=checkpoint)


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


def training_failed(exc: Exception, spec, callback) -> None:
    """The training code raised. Most errors would come back on a retry: the trial ends with the error in
    its last result (`failed`), its traceback in error.txt, and its worker goes on with the next trial.

    A CUDA error is raised again, for Tune to retry the trial (--max-failures, counted in `retries`) on a
    fresh worker: after an illegal memory access or a device-side assert, the worker's CUDA context is
    unusable and must serve no other trial. So is out of memory on a GPU that trials share (a fraction per
    trial), which can pass when the neighbours differ; on a GPU of its own it would come back, and it ends
    the trial as other errors do."""
    line = f"{type(exc).__name__}: {exc}".splitlines()[0]
    kind = cuda_failure(exc)
    if kind == "oom" and spec.gpus_per_trial < 1:
        sharing = round(1 / spec.gpus_per_trial)
        raise RuntimeError(
            f"{line} ({spec.gpus_per_trial:g} GPU per trial: {sharing} trials share each GPU); retried on another "
            f"worker, or give each trial more with --gpus-per-trial {min(1.0, 2 * spec.gpus_per_trial):g}"
        ) from exc
    if kind == "cuda":
        raise RuntimeError(
            f"{line}: its worker's CUDA context is unusable; the trial is retried on a fresh one"
        ) from exc
    trial_dir = Path(tune.get_context().get_trial_dir())
    (trial_dir / "error.txt").write_text(traceback.format_exc())
    tune.report(callback.result(failed=line))


def train_trial(values: dict, *, spec, splits: Splits, experiment_dir: str) -> None:
    """A trial that Tune retries (its worker or node was lost) continues from its latest checkpoint. An
    exception of the training code itself ends the trial (see `training_failed`)."""
    context = tune.get_context()
    trial_start = time.time()
    callback = ReportToTune(trial_start, spec.checkpoint_interval_s)
    if not os.access(experiment_dir, os.W_OK):  # this node does not see the driver's storage path
        return tune.report(
            callback.result(
                failed=f"node {callback.node[:8]} cannot write to the sweep's storage path {experiment_dir}: pass "
                "--storage-path on a filesystem that every node mounts at the same place (NFS)"
            )
        )
    # Concurrent trials each get their share of the cores instead of all fighting for all of them.
    torch.set_num_threads(max(1, int(spec.cpus_per_trial)))
    with tempfile.TemporaryDirectory() as folder:
        ckpt_path = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            checkpoint.to_directory(folder)
            ckpt_path = str(Path(folder) / CHECKPOINT_FILE)
            callback.trial_start = json.loads((Path(folder) / META_FILE).read_text())["trial_start"]
        try:
            train(
                spec.trial_config(values),
                splits=splits,
                callbacks=[callback, RngState()],
                quiet=True,
                ckpt_path=ckpt_path,
                run_dir=Path(experiment_dir) / Path(context.get_trial_dir()).name,  # W&B's files, with --wandb
                run_id=context.get_trial_id(),
            )
        except Exception as exc:
            training_failed(exc, spec, callback)
