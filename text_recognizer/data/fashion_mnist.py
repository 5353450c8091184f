"""Fashion-MNIST: 60,000/10,000 images of clothing, same format and shape as MNIST."""

from __future__ import annotations

from pathlib import Path

from text_recognizer.data.base_data_module import BaseDataModule
from text_recognizer.data.mnist import has_idx_files, read_idx_pair, split_train_val
from text_recognizer.util import UserError, made_by, remove_if_empty

# Installed by Debian's package dataset-fashion-mnist; used before any download.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


class FashionMNIST(BaseDataModule):
    """Fashion-MNIST: 55,000 train / 5,000 val (fixed seed) and the 10,000-image test set.

    Reads Debian's copy in /usr/share/datasets/fashion-mnist when it is there, else torchvision's
    files in DATA_DIR/FashionMNIST/raw, downloading them when absent.
    """

    mapping = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    mean, std = 0.2860, 0.3530  # over the 60,000 training images

    def load_raw(self):
        folder = DEBIAN_DIR if has_idx_files(DEBIAN_DIR) else self.data_dir / "FashionMNIST" / "raw"
        if not has_idx_files(folder):
            download_fashion_mnist(self.data_dir)
        train_images, train_labels = read_idx_pair(folder, "train")
        return {**split_train_val(train_images, train_labels, 5_000), "test": read_idx_pair(folder, "test")}


def download_fashion_mnist(data_dir: Path) -> None:
    import torchvision

    new_folders = made_by([*data_dir.parents, data_dir, data_dir / "FashionMNIST", data_dir / "FashionMNIST" / "raw"])
    try:
        for train in (True, False):
            torchvision.datasets.FashionMNIST(str(data_dir), train=train, download=True)
    except Exception as exc:
        remove_if_empty(new_folders)
        raise UserError(
            f"Fashion-MNIST is neither in {DEBIAN_DIR} nor in {data_dir / 'FashionMNIST' / 'raw'} and could "
            f"not be downloaded ({type(exc).__name__}). Install it with `apt-get install dataset-fashion-mnist`."
        ) from None
