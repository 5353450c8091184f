"""A run continued from a Lightning checkpoint of a sweep trial (as Tune's retries and `sweep resume` do)
trains exactly as the uninterrupted run: the epoch, the optimizer and the random generators' states that
the batch order and dropout draw from all come back. Real Lightning fits on the MNIST sample."""

from pathlib import Path

import pytest
import pytorch_lightning as pl

from sweep.trials.trainer_worker import RngState
from text_recognizer.config import resolve_config
from text_recognizer.training import train

pytestmark = pytest.mark.slow


class Record(pl.Callback):
    """val_loss after each epoch, and a checkpoint after epoch `save_at`, saved where a trial saves it."""

    def __init__(self, save_at: int = 0, path: Path | None = None):
        self.values, self.save_at, self.path = [], save_at, path

    def on_validation_end(self, trainer, pl_module):
        self.values.append((trainer.current_epoch + 1, trainer.callback_metrics["val_loss"].item()))
        if trainer.current_epoch + 1 == self.save_at:
            trainer.save_checkpoint(self.path)


def test_a_continued_run_trains_as_the_uninterrupted_one(tmp_path):
    config = resolve_config({"data_class": "MNISTSample", "max_epochs": 5, "dropout": 0.3}, "test")
    ckpt = tmp_path / "trial.ckpt"
    whole = Record(save_at=2, path=ckpt)
    train(config, callbacks=[whole, RngState()], quiet=True)
    continued = Record()
    train(config, callbacks=[continued, RngState()], quiet=True, ckpt_path=str(ckpt))
    assert [epoch for epoch, _ in continued.values] == [3, 4, 5]
    assert continued.values == whole.values[2:]  # the same numbers, not merely close
    without_rng = Record()
    train(config, callbacks=[without_rng], quiet=True, ckpt_path=str(ckpt))
    assert without_rng.values != whole.values[2:]  # other batches and dropout masks: RngState is needed
