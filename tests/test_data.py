"""Data modules: real files, split sizes, disjoint splits, normalisation, sliced batches."""

import numpy as np
import pytest
import torch

from text_recognizer.data import DATA_CLASSES, FashionMNIST, MNISTSample
from text_recognizer.data.base_data_module import TensorLoader
from text_recognizer.datasets import DEBIAN_DIR


def row_hashes(x: np.ndarray) -> set:
    return {row.tobytes() for row in x.reshape(len(x), -1)}


def test_mnist_sample_splits_are_stratified_disjoint_and_normalised():
    splits = MNISTSample().load_splits()
    assert splits.x_train.shape == (4000, 1, 28, 28)
    assert (len(splits.y_val), len(splits.y_test)) == (500, 500)
    for labels, per_class in ((splits.y_train, 400), (splits.y_val, 50), (splits.y_test, 50)):
        assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10
    train, val, test = (row_hashes(x) for x in (splits.x_train, splits.x_val, splits.x_test))
    assert not (train & val) and not (train & test) and not (val & test)
    assert abs(splits.x_train.mean()) < 0.05 and abs(splits.x_train.std() - 1) < 0.05


def test_mnist_sample_split_is_deterministic():
    first, second = MNISTSample().load_splits(), MNISTSample().load_splits()
    assert np.array_equal(first.y_val, second.y_val) and np.array_equal(first.x_test, second.x_test)


@pytest.mark.skipif(not DEBIAN_DIR.exists(), reason="needs Debian's dataset-fashion-mnist")
def test_fashion_mnist_reads_debian_copy_with_55k_5k_10k_split():
    splits = FashionMNIST().load_splits()
    assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (55_000, 5_000, 10_000)
    assert abs(splits.x_train.mean()) < 0.01 and abs(splits.x_train.std() - 1) < 0.01
    assert not (row_hashes(splits.x_val[:500]) & row_hashes(splits.x_train))


def test_tensor_loader_slices_every_image_once_per_epoch():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10)
    loader = TensorLoader(x, y, batch_size=4, shuffle=True)
    batches = list(loader)
    assert len(loader) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert all(torch.equal(bx[:, 0].long(), by) for bx, by in batches)  # images stay with their labels


def test_tensor_loader_groups_batches_in_order_and_keeps_the_last_partial_group():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10)
    loader = TensorLoader(x, y, batch_size=2, shuffle=False, group=4)
    groups = list(loader)
    assert len(loader) == len(groups) == 2 and [len(group) for group in groups] == [4, 1]
    assert [by.tolist() for group in groups for _, by in group] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_config_gives_dims_and_mapping():
    for data_class in DATA_CLASSES.values():
        config = data_class().config()
        assert config["input_dims"] == (1, 28, 28) and config["output_dims"] == (10,)
        assert len(config["mapping"]) == 10
