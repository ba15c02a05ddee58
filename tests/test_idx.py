"""IDX files (Fashion-MNIST's format): parsing, every kind of bad file, the real loader path."""

import gzip
import os

import numpy as np
import pytest

from mwnet_tf.data import DataUnavailableError, load_dataset
from mwnet_tf.data.idx import IDX_FILES, load_idx_folder, read_idx


def _idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x0803 if array.ndim == 3 else 0x0801
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_folder(folder, n_train=20, n_test=10, gz=True, size=28):
    rng = np.random.default_rng(0)
    arrays = {"train_x": rng.integers(0, 256, (n_train, size, size)),
              "train_y": rng.integers(0, 10, n_train),
              "test_x": rng.integers(0, 256, (n_test, size, size)),
              "test_y": rng.integers(0, 10, n_test)}
    os.makedirs(folder, exist_ok=True)
    for key, stem in IDX_FILES.items():
        data = _idx_bytes(arrays[key])
        path = os.path.join(folder, stem + (".gz" if gz else ""))
        with (gzip.open if gz else open)(path, "wb") as f:
            f.write(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_round_trip(tmp_path, gz):
    arrays = _write_folder(tmp_path, gz=gz)
    train_x, train_y, test_x, test_y = load_idx_folder(str(tmp_path))
    np.testing.assert_array_equal(train_x, arrays["train_x"])
    np.testing.assert_array_equal(test_y, arrays["test_y"])
    assert train_x.dtype == np.uint8 and train_y.dtype == np.int64


def test_load_dataset_reads_fashion_mnist_from_an_idx_folder(tmp_path):
    arrays = _write_folder(tmp_path)
    ds = load_dataset("fashion_mnist", data_dir=str(tmp_path))
    assert ds.train_x.shape == (20, 28, 28, 1) and ds.test_x.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(ds.train_x[..., 0], arrays["train_x"])
    assert ds.num_classes == 10


def _single(tmp_path, data: bytes, name="x.idx"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("mutate, needle", [
    (lambda b: b"\x00\x00\x08\x04" + b[4:], "magic"),
    (lambda b: b[:-5], "truncated"),
    (lambda b: b[:10], "header"),
    (lambda b: b + b"\x00", "bytes"),
])
def test_bad_files_are_one_line_errors(tmp_path, mutate, needle):
    good = _idx_bytes(np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(DataUnavailableError, match=needle) as e:
        read_idx(_single(tmp_path, mutate(good)))
    assert "\n" not in str(e.value)


def test_corrupt_gzip_is_an_error(tmp_path):
    data = gzip.compress(_idx_bytes(np.zeros((3, 4, 4), np.uint8)))
    path = _single(tmp_path, data[:20] + b"garbage" + data[27:], "x.gz")
    with pytest.raises(DataUnavailableError, match="cannot read"):
        read_idx(path)


def test_count_mismatch_and_missing_file(tmp_path):
    _write_folder(tmp_path)
    os.remove(tmp_path / (IDX_FILES["test_y"] + ".gz"))
    with pytest.raises(DataUnavailableError, match="missing"):
        load_idx_folder(str(tmp_path))
    with gzip.open(tmp_path / (IDX_FILES["test_y"] + ".gz"), "wb") as f:
        f.write(_idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(DataUnavailableError, match="10 test images but 7 labels"):
        load_idx_folder(str(tmp_path))
