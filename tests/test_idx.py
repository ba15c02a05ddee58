"""IDX files (Fashion-MNIST's format): parsing, every kind of bad file, the real loader path."""

import gzip
import os

import numpy as np
import pytest

from mwnet_tf.data import load_dataset
from mwnet_tf.data.idx import IDX_FILES, has_any_idx_file, load_idx_folder, read_idx
from mwnet_tf.errors import DataUnavailableError


def _idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x0803 if array.ndim == 3 else 0x0801
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path, array, gz=True):
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(_idx_bytes(array))


def _write_folder(folder, n_train=20, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    arrays = {"train_x": rng.integers(0, 256, (n_train, 28, 28)),
              "train_y": rng.integers(0, 10, n_train),
              "test_x": rng.integers(0, 256, (n_test, 28, 28)),
              "test_y": rng.integers(0, 10, n_test)}
    os.makedirs(folder, exist_ok=True)
    for key, stem in IDX_FILES.items():
        _write(os.path.join(folder, stem + (".gz" if gz else "")), arrays[key], gz)
    return arrays


def _raises_one_line(match, fn, *args):
    with pytest.raises(DataUnavailableError, match=match) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("gz", [True, False])
def test_round_trip(tmp_path, gz):
    arrays = _write_folder(tmp_path, gz=gz)
    train_x, train_y, test_x, test_y = load_idx_folder(str(tmp_path))
    for key, got in zip(IDX_FILES, (train_x, train_y, test_x, test_y)):
        np.testing.assert_array_equal(got, arrays[key])
    assert train_x.dtype == test_x.dtype == np.uint8
    assert train_y.dtype == test_y.dtype == np.int64
    assert train_x.shape == (20, 28, 28) and test_y.shape == (10,)
    train_x[0, 0, 0] = 1  # a writable array, not a view of the file's bytes


def test_has_any_idx_file(tmp_path):
    assert not has_any_idx_file(str(tmp_path / "nowhere"))
    assert not has_any_idx_file(str(tmp_path))
    _write(tmp_path / (IDX_FILES["test_y"] + ".gz"), np.zeros(3))
    assert has_any_idx_file(str(tmp_path))


def test_gzip_is_recognized_by_content_not_name(tmp_path):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    _write(tmp_path / "plain_named", images, gz=True)
    _write(tmp_path / "gz_named.gz", images, gz=False)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "plain_named")), images)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "gz_named.gz")), images)


def test_load_dataset_reads_fashion_mnist_from_an_idx_folder(tmp_path):
    arrays = _write_folder(tmp_path)
    ds = load_dataset("fashion_mnist", data_dir=str(tmp_path))
    assert ds.train_x.shape == (20, 28, 28, 1) and ds.test_x.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(ds.train_x[..., 0], arrays["train_x"])
    assert ds.num_classes == 10


def test_load_dataset_names_the_missing_file_of_a_partial_idx_folder(tmp_path):
    _write_folder(tmp_path)
    os.remove(tmp_path / (IDX_FILES["train_y"] + ".gz"))
    _raises_one_line(r"train-labels-idx1-ubyte: missing", load_dataset, "fashion_mnist",
                     str(tmp_path))


@pytest.mark.parametrize("mutate, needle", [
    (lambda b: b"\x00\x00\x08\x04" + b[4:], "magic 0x00000804"),
    (lambda b: b"\x00\x00\x0d\x03" + b[4:], "not an unsigned-byte IDX"),  # float32 IDX
    (lambda b: b[:-5], "truncated: 59 bytes, its header .* says 64"),
    (lambda b: b[:10], "truncated inside its 16-byte header"),
    (lambda b: b[:2], "truncated: 2 bytes"),
    (lambda b: b + b"\x00", "too long: 65 bytes"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, mutate, needle):
    path = tmp_path / "x.idx"
    path.write_bytes(mutate(_idx_bytes(np.zeros((3, 4, 4), np.uint8))))
    message = _raises_one_line(needle, read_idx, str(path))
    assert message.startswith(str(path))


def test_corrupt_gzip_is_an_error(tmp_path):
    data = gzip.compress(_idx_bytes(np.zeros((30, 4, 4), np.uint8)))
    (tmp_path / "bad.gz").write_bytes(data[:20] + b"garbage" + data[27:])
    (tmp_path / "cut.gz").write_bytes(data[:-12])
    _raises_one_line(r"bad\.gz: corrupt gzip", read_idx, str(tmp_path / "bad.gz"))
    _raises_one_line(r"cut\.gz: corrupt gzip", read_idx, str(tmp_path / "cut.gz"))


def test_missing_or_unreadable_file(tmp_path):
    _raises_one_line("absent: cannot read", read_idx, str(tmp_path / "absent"))
    _raises_one_line("cannot read", read_idx, str(tmp_path))  # a folder
    _write_folder(tmp_path)
    os.remove(tmp_path / (IDX_FILES["test_y"] + ".gz"))
    _raises_one_line(r"t10k-labels-idx1-ubyte: missing", load_idx_folder, str(tmp_path))


def test_count_mismatch_between_images_and_labels(tmp_path):
    _write_folder(tmp_path)
    _write(tmp_path / (IDX_FILES["test_y"] + ".gz"), np.zeros(7))
    _raises_one_line(r"t10k-labels-idx1-ubyte\.gz: 7 labels but t10k-images-idx3-ubyte\.gz "
                     "has 10 images", load_idx_folder, str(tmp_path))


@pytest.mark.parametrize("key, array, needle", [
    ("train_y", np.full(20, 10), r"train-labels-idx1-ubyte\.gz: label 10 is out of 0\.\.9"),
    ("train_x", np.zeros(20), r"train-images-idx3-ubyte\.gz: expected images \[N, H, W\]"),
    ("train_y", np.zeros((20, 2, 2)), r"train-labels-idx1-ubyte\.gz: expected labels \[N\]"),
    ("test_x", np.zeros((10, 32, 32)), r"t10k-images-idx3-ubyte\.gz: images of size"),
])
def test_wrong_contents_in_the_right_file(tmp_path, key, array, needle):
    _write_folder(tmp_path)
    _write(tmp_path / (IDX_FILES[key] + ".gz"), array)
    _raises_one_line(needle, load_idx_folder, str(tmp_path))
