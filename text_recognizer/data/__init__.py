from text_recognizer.data.base_data_module import BaseDataModule
from text_recognizer.data.fashion_mnist import FashionMNIST
from text_recognizer.data.mnist import MNIST, MNISTSample
from text_recognizer.datasets import Splits

DATA_CLASSES: dict[str, type[BaseDataModule]] = {
    "MNIST": MNIST,
    "MNISTSample": MNISTSample,
    "FashionMNIST": FashionMNIST,
}

__all__ = ["DATA_CLASSES", "BaseDataModule", "Splits", "MNIST", "MNISTSample", "FashionMNIST"]
