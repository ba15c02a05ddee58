"""Loaders: sklearn digits for real, tfds CIFAR and Fashion-MNIST mocked, clear offline errors."""

import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from cifar_files import prepare_with_tfds, write_cifar100_binary  # (tests/cifar_files.py)

from mwnet_tf.data import DataUnavailableError, load_dataset
from mwnet_tf.data import datasets as datasets_lib


@pytest.fixture
def mock_tfds(monkeypatch):
    """`tfds.testing.mock_data` with the data counted as prepared.

    mock_data replaces the user's data_dir with its own (non-existent) metadata folder and fakes
    reading, but not `DatasetBuilder.is_prepared`, which the loaders check first.
    """
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)

    def mock(num_examples):
        return tfds.testing.mock_data(num_examples=num_examples)
    return mock


def test_digits_fixed_stratified_split():
    ds = load_dataset("digits")
    assert ds.train_x.shape == (1297, 8, 8, 1) and ds.test_x.shape == (500, 8, 8, 1)
    assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int64
    assert ds.train_x.max() == 255 and ds.train_x.min() == 0
    assert ds.num_classes == 10 and not ds.augment and ds.train_coarse is None
    assert np.all(np.abs(np.bincount(ds.test_y) - 50) <= 2)  # stratified
    pixels = ds.train_x / 255.0
    assert ds.mean[0] == pytest.approx(pixels.mean()) and ds.std[0] == pytest.approx(pixels.std())
    again = load_dataset("digits")
    np.testing.assert_array_equal(ds.test_x, again.test_x)
    np.testing.assert_array_equal(ds.train_y, again.train_y)


def test_unknown_dataset_raises_value_error():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_cifar_fails_fast_with_one_line(tmp_path, name):
    start = time.time()
    with pytest.raises(DataUnavailableError) as err:
        load_dataset(name, data_dir=str(tmp_path))
    assert time.time() - start < 20
    message = str(err.value)
    assert "\n" not in message
    assert name in message and str(tmp_path) in message and "--data_dir" in message
    assert f"tfds.load('{name}'" in message
    assert not list(tmp_path.iterdir())  # nothing downloaded or created


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_through_tfds(mock_tfds, tmp_path, name, classes):
    with mock_tfds(12):
        ds = load_dataset(name, data_dir=str(tmp_path))
    assert ds.name == name and ds.num_classes == classes and ds.augment
    assert ds.train_x.shape == (12, 32, 32, 3) and ds.test_x.shape == (12, 32, 32, 3)
    assert ds.train_x.dtype == np.uint8 and ds.test_x.dtype == np.uint8
    assert ds.train_y.dtype == np.int64 and ds.test_y.shape == (12,)
    assert ds.train_y.max() < classes
    assert ds.mean == pytest.approx((125.3 / 255, 123.0 / 255, 113.9 / 255))
    assert ds.std == pytest.approx((63.0 / 255, 62.1 / 255, 66.7 / 255))
    if name == "cifar100":
        assert ds.train_coarse.shape == (12,) and ds.train_coarse.dtype == np.int64
        assert ds.train_coarse.max() < 20
    else:
        assert ds.train_coarse is None


def test_cifar100_prepared_by_tfds_loads_without_mocks(monkeypatch, tmp_path):
    """Prepares a tiny real CIFAR-100 with the tfds builder (download faked), then loads it."""
    pytest.importorskip("importlib_resources")  # tfds 4.9.10 preparation needs it (#11212)
    src = tmp_path / "src" / "cifar-100-binary"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, fine, coarse = write_cifar100_binary(src / "train.bin", 30, rng)
    write_cifar100_binary(src / "test.bin", 7, rng)
    (src / "coarse_label_names.txt").write_text("\n".join(f"c{i}" for i in range(20)))
    (src / "fine_label_names.txt").write_text("\n".join(f"f{i}" for i in range(100)))
    data_dir = str(tmp_path / "tfds")
    prepare_with_tfds(monkeypatch, "cifar100", tmp_path / "src", data_dir)
    ds = load_dataset("cifar100", data_dir=data_dir)
    assert ds.train_x.shape == (30, 32, 32, 3) and ds.test_x.shape == (7, 32, 32, 3)
    rows = {x.tobytes(): i for i, x in enumerate(images)}
    idx = np.array([rows[x.tobytes()] for x in ds.train_x])  # tfds stores its own order
    assert sorted(idx.tolist()) == list(range(30))
    np.testing.assert_array_equal(ds.train_y, fine[idx])
    np.testing.assert_array_equal(ds.train_coarse, coarse[idx])


def test_fashion_mnist_through_tfds(mock_tfds, tmp_path):
    with mock_tfds(5):
        ds = load_dataset("fashion_mnist", data_dir=str(tmp_path))
    assert ds.train_x.shape == (5, 28, 28, 1) and ds.train_x.dtype == np.uint8
    assert ds.mean == (0.2860,) and ds.std == (0.3530,) and not ds.augment


def _fake_idx(monkeypatch, folders_with_files):
    """Replaces the IDX reader by a fake serving 3 + 2 images from the given folders."""
    calls = []

    def load_idx_folder(folder):
        calls.append(folder)
        rng = np.random.default_rng(0)
        return (rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), np.array([0, 1, 2]),
                rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), np.array([3, 4]))

    monkeypatch.setattr(datasets_lib, "has_any_idx_file",
                        lambda folder: folder in folders_with_files)
    monkeypatch.setattr(datasets_lib, "load_idx_folder", load_idx_folder)
    # Whatever ~/tensorflow_datasets holds on this machine, tfds has no fashion_mnist here.
    monkeypatch.setattr(datasets_lib, "_tfds_prepared", lambda name, data_dir: (False, "TFDS"))
    return calls


def test_fashion_mnist_reads_data_dir_else_the_system_folder(monkeypatch, tmp_path):
    system = str(tmp_path / "system")
    monkeypatch.setattr(datasets_lib, "FASHION_MNIST_SYSTEM_DIR", system)
    calls = _fake_idx(monkeypatch, {str(tmp_path), system})
    ds = load_dataset("fashion_mnist", data_dir=str(tmp_path))
    assert calls == [str(tmp_path)]
    assert ds.train_x.shape == (3, 28, 28, 1) and ds.test_x.shape == (2, 28, 28, 1)
    assert ds.train_y.dtype == np.int64 and ds.num_classes == 10
    load_dataset("fashion_mnist")
    assert calls == [str(tmp_path), system]


@pytest.mark.parametrize("given", ["absent", "empty"])
def test_fashion_mnist_given_data_dir_without_data_is_an_error_not_a_fallback(
        monkeypatch, tmp_path, given):
    system = str(tmp_path / "system")
    monkeypatch.setattr(datasets_lib, "FASHION_MNIST_SYSTEM_DIR", system)
    calls = _fake_idx(monkeypatch, {system})  # the system copy is there, but not asked for
    folder = tmp_path / given
    if given == "empty":
        folder.mkdir()
    with pytest.raises(DataUnavailableError) as err:
        load_dataset("fashion_mnist", data_dir=str(folder))
    message = str(err.value)
    assert "\n" not in message and f"--data_dir={folder}" in message
    assert calls == []


def test_missing_fashion_mnist_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets_lib, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "none"))
    _fake_idx(monkeypatch, set())
    with pytest.raises(DataUnavailableError) as err:
        load_dataset("fashion_mnist")
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "none") in message
    assert "--data_dir" in message and "apt-get install dataset-fashion-mnist" in message
