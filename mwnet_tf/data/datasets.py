"""Clean data sets as uint8 NumPy arrays: CIFAR-10/100 (tfds or the Python-pickle folders),
Fashion-MNIST (tfds or IDX files), sklearn digits.

Heavy libraries (tensorflow-datasets, scikit-learn) are imported inside the loaders, so that
importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from mwnet_tf.data.cifar_pickle import FOLDERS, URLS, find_folder, layout, load_folder
from mwnet_tf.data.idx import has_any_idx_file, load_idx_folder
from mwnet_tf.errors import DataUnavailableError

# clothing1m is read as file paths by `clothing1m.load_clothing1m`, not by `load_dataset`.
DATASETS = ("digits", "cifar10", "cifar100", "fashion_mnist", "clothing1m")

CIFAR_MEAN = tuple(v / 255.0 for v in (125.3, 123.0, 113.9))
CIFAR_STD = tuple(v / 255.0 for v in (63.0, 62.1, 66.7))
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
# ImageNet's statistics: the normalization of ImageNet-pretrained models (Clothing1M's ResNet-50)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Where the Debian package `dataset-fashion-mnist` puts the four IDX files.
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

DIGITS_TEST_SIZE = 500
DIGITS_SPLIT_SEED = 0  # fixed: the digits test set never depends on the run seed


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A clean, labelled data set with its train and test splits.

    Attributes:
        name: One of `DATASETS`.
        train_x: uint8 [N, H, W, C] training images.
        train_y: int64 [N] training labels.
        test_x: uint8 [M, H, W, C] test images.
        test_y: int64 [M] test labels.
        num_classes: Number of classes.
        mean: Per-channel mean, in [0, 1] pixel units.
        std: Per-channel standard deviation, in [0, 1] pixel units.
        augment: Whether the paper's training augmentation (reflect-pad 4, crop, flip) applies.
        train_coarse: CIFAR-100 coarse labels of the training images (None elsewhere).
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    train_coarse: np.ndarray | None = None


def load_dataset(name: str, data_dir: str | None = None) -> Dataset:
    """Loads a clean data set by name.

    Args:
        name: One of `DATASETS`.
        data_dir: tensorflow-datasets data directory (None: the tfds default); for CIFAR also
            a folder that holds (or is) `cifar-10-batches-py` / `cifar-100-python`, for
            Fashion-MNIST a folder that may hold the four IDX files.

    Raises:
        ValueError: unknown name.
        DataUnavailableError: the data is not on this machine (tfds never downloads here).
    """
    if name == "digits":
        return _load_digits()
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, data_dir)
    if name == "fashion_mnist":
        return _load_fashion_mnist(data_dir)
    if name == "clothing1m":
        raise ValueError("clothing1m is not held in memory: read it with "
                         "mwnet_tf.data.clothing1m.load_clothing1m")
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


def _load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits, with a fixed stratified 1,297 / 500 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=DIGITS_TEST_SIZE, stratify=labels,
        random_state=DIGITS_SPLIT_SEED)
    pixels = train_x.astype(np.float64) / 255.0
    return Dataset("digits", train_x, train_y, test_x, test_y, num_classes=10,
                   mean=(float(pixels.mean()),), std=(float(pixels.std()),), augment=False)


def _tfds_prepared(name: str, data_dir: str | None) -> tuple[bool, str]:
    """Whether tfds has `name` prepared under `data_dir`, and the data_dir tfds resolved.

    Only looks at local files, so it answers at once without a network.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    return builder.is_prepared(), os.fspath(builder.data_dir_root)


def _load_tfds(name: str, data_dir: str | None,
               keys: tuple[str, ...]) -> list[dict[str, np.ndarray]]:
    """The train and test splits of a prepared tfds data set as dicts of NumPy arrays."""
    import tensorflow_datasets as tfds

    splits = tfds.load(name, split=["train", "test"], data_dir=data_dir, download=False)
    out = []
    for ds in splits:
        # Not `batch_size=-1`: under `tfds.testing.mock_data` the split sizes are unknown and
        # tfds then batches with sys.maxsize, which aborts the process. Chunks work everywhere.
        ds = ds.map(lambda ex: {k: ex[k] for k in keys}).batch(10_000)
        chunks = list(tfds.as_numpy(ds))
        out.append({k: np.concatenate([c[k] for c in chunks]) for k in keys})
    return out


def _missing_tfds_message(name: str, root: str) -> str:
    command = f"import tensorflow_datasets as tfds; tfds.load('{name}', data_dir='{root}')"
    return (f"{name} is not prepared for tensorflow-datasets in {root} (this program never "
            f"downloads): on a machine with internet run `python -c \"{command}\"`, copy "
            f"{os.path.join(root, name)} to this machine and pass --data_dir={root}")


def _original_order(ids: np.ndarray) -> np.ndarray | None:
    """The permutation that puts tfds' CIFAR examples back in the files' order.

    tfds stores CIFAR shuffled; its `id` feature ("train_00042") is the image's index in the
    original batches (the binary files, in the order of the Python batches). None when the ids
    are not of that form (e.g. under `tfds.testing.mock_data`).
    """
    try:
        index = np.array([int(bytes(i).decode().rsplit("_", 1)[1]) for i in ids])
    except (ValueError, IndexError, UnicodeError):
        return None
    if not np.array_equal(np.sort(index), np.arange(len(index))):
        return None
    return np.argsort(index)


def _missing_cifar_message(name: str, data_dir: str | None, root: str) -> str:

    if data_dir is None:
        return (_missing_tfds_message(name, root) + f", or pass --data_dir=DIR of a folder "
                f"holding {FOLDERS[name]} (unpacked from {URLS[name]})")
    command = f"import tensorflow_datasets as tfds; tfds.load('{name}', data_dir='{root}')"
    other = "cifar100" if name == "cifar10" else "cifar10"
    if os.path.isdir(os.path.join(data_dir, FOLDERS[other])):
        return (f"{name} not found in --data_dir={data_dir}: it holds {FOLDERS[other]}, "
                f"{other}'s Python folder, not {FOLDERS[name]}: pass --dataset={other}")
    return (f"{name} not found in --data_dir={data_dir}: it holds neither a tfds-prepared "
            f"{name} nor CIFAR's Python folder {layout(name)}, in it or as it (this program "
            f"never downloads): unpack {URLS[name]} there, or on a machine with internet run "
            f"`python -c \"{command}\"` and copy {os.path.join(root, name)} over")


def _load_cifar(name: str, data_dir: str | None) -> Dataset:
    """tfds `cifar10`/`cifar100` if prepared, else CIFAR's Python-pickle folder in `data_dir`.

    Either way the images come in the original files' order (tfds' shuffle is undone by its
    `id`), so a seed draws the same meta split from both, and per-image label files
    (CIFAR-N) index them directly.
    """
    if data_dir is not None and not os.path.isdir(data_dir):
        raise DataUnavailableError(f"--data_dir={data_dir} does not exist or is not a folder")
    prepared, root = _tfds_prepared(name, data_dir)
    keys = ("id", "image", "label") + (("coarse_label",) if name == "cifar100" else ())
    if prepared:
        splits = _load_tfds(name, data_dir, keys)
        for split in splits:
            order = _original_order(split.pop("id"))
            if order is not None:
                for k in split:
                    split[k] = split[k][order]
        train, test = splits
    else:

        folder = find_folder(name, data_dir) if data_dir is not None else None
        if folder is None:
            raise DataUnavailableError(_missing_cifar_message(name, data_dir, root))
        train, test = load_folder(name, folder)
    return Dataset(
        name, train["image"].astype(np.uint8), train["label"].astype(np.int64),
        test["image"].astype(np.uint8), test["label"].astype(np.int64),
        num_classes=100 if name == "cifar100" else 10, mean=CIFAR_MEAN, std=CIFAR_STD,
        augment=True,
        train_coarse=train["coarse_label"].astype(np.int64) if name == "cifar100" else None)


def _load_fashion_mnist(data_dir: str | None) -> Dataset:
    """tfds `fashion_mnist` if prepared, else the four IDX files.

    The IDX files are read from `data_dir` when it is given, else from Debian's folder. A
    `data_dir` that is given but holds neither is an error, never a silent fall-back to
    another copy of the data.
    """
    if data_dir is not None and not os.path.isdir(data_dir):
        raise DataUnavailableError(f"--data_dir={data_dir} does not exist or is not a folder")
    prepared, root = _tfds_prepared("fashion_mnist", data_dir)
    if prepared:
        train, test = _load_tfds("fashion_mnist", data_dir, ("image", "label"))
        arrays = (train["image"], train["label"], test["image"], test["label"])
    else:

        folder = data_dir if data_dir is not None else FASHION_MNIST_SYSTEM_DIR
        if not has_any_idx_file(folder) and data_dir is not None:
            raise DataUnavailableError(
                f"fashion_mnist not found in --data_dir={data_dir}: it holds neither a "
                "tfds-prepared fashion_mnist nor the four IDX files (train-images-idx3-ubyte.gz "
                "and the others); point --data_dir at one of those, or leave it out to read "
                f"Debian's {FASHION_MNIST_SYSTEM_DIR}")
        if not has_any_idx_file(folder):
            raise DataUnavailableError(
                f"fashion_mnist not found: not prepared for tensorflow-datasets in {root} and "
                f"no IDX files in {FASHION_MNIST_SYSTEM_DIR}; pass --data_dir=DIR (a tfds "
                "data_dir or a folder with the four IDX files) or run "
                "`apt-get install dataset-fashion-mnist`")
        # Some of the four files are there: a missing or damaged one is named by the reader.
        train_x, train_y, test_x, test_y = load_idx_folder(folder)
        arrays = (train_x[..., None], train_y, test_x[..., None], test_y)
    train_x, train_y, test_x, test_y = arrays
    return Dataset("fashion_mnist", train_x.astype(np.uint8), train_y.astype(np.int64),
                   test_x.astype(np.uint8), test_y.astype(np.int64), num_classes=10,
                   mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD, augment=False)
