"""Fashion-MNIST: 60,000/10,000 images of clothing, same format and shape as MNIST (text_recognizer.datasets)."""

from __future__ import annotations

from text_recognizer.data.base_data_module import BaseDataModule


class FashionMNIST(BaseDataModule):
    """Fashion-MNIST: 55,000 train / 5,000 val (fixed seed) and the 10,000-image test set.

    Reads Debian's copy in /usr/share/datasets/fashion-mnist when it is there, else torchvision's
    files in DATA_DIR/FashionMNIST/raw, downloading them when absent.
    """

    dataset = "FashionMNIST"
