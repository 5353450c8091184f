"""`train(config) -> metrics`: the one code path of every training run.

`training/run_experiment.py`, each sweep trial and the sweep's final run call it; only the callbacks,
the data hand-off and the outputs differ.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from text_recognizer.config import TrainerConfig, group_kwargs
from text_recognizer.data import DATA_CLASSES
from text_recognizer.data.base_data_module import BATCHES_PER_STEP
from text_recognizer.datasets import Splits
from text_recognizer.lit_models import BaseLitModel
from text_recognizer.models import MODELS
from text_recognizer.util import UserError, skip_nvml_probe_without_driver


def choose_device(trainer_config: TrainerConfig) -> tuple[str, int | str]:
    """(accelerator, devices) for Lightning; asking for a GPU that is not there is an error, not a CPU run."""
    if trainer_config.gpus:
        accelerator, devices = "gpu", trainer_config.gpus
    else:
        accelerator, devices = trainer_config.accelerator, trainer_config.devices
    if accelerator in ("gpu", "cuda"):
        available = torch.cuda.device_count()
        wanted = devices if isinstance(devices, int) else 1
        if available < wanted:
            raise UserError(
                f"asked for {wanted} GPU(s) but this machine has {available} "
                "(torch.cuda.device_count()); drop --gpus or pass --accelerator=cpu"
            )
    return accelerator, devices


def limit_train_steps(limit_train_batches: int | float) -> int | float:
    """Lightning counts training steps, each a list of BATCHES_PER_STEP batches: a whole number of
    batches becomes the steps that hold them (rounded up); a fraction is a fraction of either."""
    if isinstance(limit_train_batches, int):
        return math.ceil(limit_train_batches / BATCHES_PER_STEP)
    return limit_train_batches


def train(
    config: dict,
    *,
    splits: Splits | None = None,
    callbacks: list[pl.Callback] | None = None,
    output_dir: str | Path | None = None,
    quiet: bool = False,
    ckpt_path: str | None = None,
    run_dir: str | Path | None = None,
    run_id: str | None = None,
) -> dict:
    """Fit the model that `config` (a resolved config, see `resolve_config`) describes.

    With `output_dir`, saves the best checkpoint and TensorBoard logs there and evaluates the best
    checkpoint on the validation and test sets. Without, it is a sweep trial: no files, no test set.
    `quiet` turns off the progress bar, the model summary and Lightning's info lines. `ckpt_path`: a
    Lightning checkpoint of this run to continue from (a sweep trial that Tune retries or resumes).
    With the `wandb` flag, W&B gets the run too (its files in `run_dir`, else `output_dir`; `run_id`: its id).
    Returns val_acc, val_loss, epochs run and, with `output_dir`, test_acc and the checkpoint path.
    """
    groups = group_kwargs(config)
    trainer_config = TrainerConfig(**groups["trainer"])
    accelerator, devices = choose_device(trainer_config)
    pl.seed_everything(trainer_config.seed, verbose=False)
    skip_nvml_probe_without_driver()
    data = DATA_CLASSES[config["data_class"]](**groups["data"])
    if splits is not None:
        data.splits = splits
    data.setup()  # load now, so that missing data is reported before the trainer starts
    model = MODELS[config["model_class"]](data.config(), **groups["model"])
    lit_model = BaseLitModel(model, num_classes=len(data.mapping), **groups["lit_model"])
    if quiet:
        logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)

    callbacks = list(callbacks or [])
    checkpoint, loggers = None, []
    if output_dir is not None:
        checkpoint = pl.callbacks.ModelCheckpoint(
            monitor="val_acc", mode="max", filename="best-{epoch:02d}-{val_acc:.4f}"
        )
        callbacks.append(checkpoint)
        loggers.append(
            pl.loggers.TensorBoardLogger(
                save_dir=str(output_dir), name=f"{config['model_class']}_{config['data_class']}"
            )
        )
    if trainer_config.wandb:
        loggers.append(wandb_logger(config, run_dir or output_dir or ".", run_id))
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        precision=trainer_config.precision,
        max_epochs=trainer_config.max_epochs,
        fast_dev_run=trainer_config.fast_dev_run,
        limit_train_batches=limit_train_steps(trainer_config.limit_train_batches),
        limit_val_batches=trainer_config.limit_val_batches,
        callbacks=callbacks,
        logger=loggers or False,
        enable_checkpointing=checkpoint is not None,
        enable_progress_bar=not quiet,
        enable_model_summary=not quiet,
        num_sanity_val_steps=0 if output_dir is None else 2,
        # Metrics are logged once per epoch; Lightning warns when an epoch has fewer steps than this.
        log_every_n_steps=1,
    )
    try:
        with warnings.catch_warnings():
            # Lightning 2.6 calls a torch API that torch 2.14 deprecates; nothing a user can act on.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            return fit_and_evaluate(trainer, lit_model, data, checkpoint, quiet, ckpt_path)
    finally:
        if trainer_config.wandb:  # also when a sweep's scheduler stops the trial mid-fit
            import wandb

            wandb.finish()


def wandb_logger(config: dict, save_dir: str | Path, run_id: str | None) -> pl.loggers.WandbLogger:
    """Lightning's W&B logger, offline unless WANDB_MODE is set (the later FSDL labs' --wandb)."""
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    logger = pl.loggers.WandbLogger(save_dir=str(save_dir), offline="WANDB_MODE" not in os.environ, id=run_id)
    logger.log_hyperparams(config)
    return logger


def fit_and_evaluate(trainer, lit_model, data, checkpoint, quiet: bool, ckpt_path: str | None = None) -> dict:
    """Fit; with a checkpoint callback, evaluate the best checkpoint on the validation and test sets."""
    trainer.fit(lit_model, datamodule=data, ckpt_path=ckpt_path)
    metrics = {"epochs": trainer.current_epoch}
    if checkpoint is None:
        metrics.update({k: trainer.callback_metrics[k].item() for k in ("val_acc", "val_loss")})
        return metrics
    best = checkpoint.best_model_path or None  # None under fast_dev_run, which saves nothing
    verbose = not quiet
    metrics.update(trainer.validate(lit_model, datamodule=data, ckpt_path=best, verbose=verbose)[0])
    metrics.update(trainer.test(lit_model, datamodule=data, ckpt_path=best, verbose=verbose)[0])
    metrics["checkpoint"] = best
    return metrics
