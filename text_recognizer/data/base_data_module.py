"""Base class for data modules: images decoded once (text_recognizer.datasets), batches sliced from memory."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytorch_lightning as pl
import torch

from text_recognizer.config import DataConfig
from text_recognizer.datasets import DATASETS, Splits, load_splits, resolve_data_dir

# Training batches reach Lightning in lists of this many; the lit model makes one optimizer step per batch.
# Lightning's machinery around each of its steps (~1,900 Python calls, ~0.3 ms) then runs once per 8
# batches: on a CPU it cost ~10% of an MLP epoch (on a GPU, where the step is shorter, likely more).
BATCHES_PER_STEP = 8


class TensorLoader:
    """Batches sliced from tensors in memory, on the training device: no per-image work, no worker processes.

    Replaces a DataLoader over per-image transforms, which doubles the time of an MLP epoch. Shuffling
    slices a random permutation and gathers each batch, so no shuffled copy of the dataset is made.
    With `group` > 1 it yields lists of up to `group` (x, y) batches rather than single batches.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        shuffle: bool,
        device: torch.device | None = None,
        group: int = 1,
    ):
        with warnings.catch_warnings():
            # Arrays from Ray's object store are read-only; we never write into them.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            # On a GPU the whole split moves there once; batches are then sliced on the device.
            self.x = torch.from_numpy(x).to(device or "cpu")
            self.y = torch.from_numpy(y).to(device or "cpu")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.group = group

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.y) / self.batch_size) / self.group)

    def __iter__(self):
        batches = self.batches()
        if self.group == 1:
            yield from batches
            return
        group = []
        for batch in batches:
            group.append(batch)
            if len(group) == self.group:
                yield group
                group = []
        if group:
            yield group

    def batches(self):
        # Torch's global generator, seeded by the run's --seed: same seed, same batches.
        order = torch.randperm(len(self.y), device=self.y.device) if self.shuffle else None
        for start in range(0, len(self.y), self.batch_size):
            batch = slice(start, start + self.batch_size)
            if order is not None:
                batch = order[batch]
            yield self.x[batch], self.y[batch]


class BaseDataModule(pl.LightningDataModule):
    """Subclasses name their dataset (a key of text_recognizer.datasets.DATASETS).

    The constructor's keyword arguments are the data group's command-line flags (config.DataConfig).
    """

    dataset = ""
    input_dims = (1, 28, 28)

    def __init__(
        self,
        batch_size: int = DataConfig.batch_size,
        num_workers: int = DataConfig.num_workers,
        data_dir: str | None = DataConfig.data_dir,
    ):
        super().__init__()
        self.batch_size = batch_size
        # Kept for the seed's interface: batches are sliced in memory, so no worker process is started.
        self.num_workers = num_workers
        self.data_dir = resolve_data_dir(data_dir)
        self.splits: Splits | None = None

    @property
    def mapping(self) -> list[str]:
        return list(DATASETS[self.dataset].mapping)

    def load_splits(self) -> Splits:
        return load_splits(self.dataset, str(self.data_dir))

    def config(self) -> dict:
        return {"input_dims": self.input_dims, "output_dims": (len(self.mapping),), "mapping": self.mapping}

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = self.load_splits()

    def loader(self, x: np.ndarray, y: np.ndarray, shuffle: bool, group: int = 1) -> TensorLoader:
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        return TensorLoader(x, y, self.batch_size, shuffle, device, group)

    def train_dataloader(self):
        return self.loader(self.splits.x_train, self.splits.y_train, shuffle=True, group=BATCHES_PER_STEP)

    def val_dataloader(self):
        return self.loader(self.splits.x_val, self.splits.y_val, shuffle=False)

    def test_dataloader(self):
        return self.loader(self.splits.x_test, self.splits.y_test, shuffle=False)
