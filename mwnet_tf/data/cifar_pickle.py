"""CIFAR-10/100 from the Python-pickle folders of https://www.cs.toronto.edu/~kriz/cifar.html.

`cifar-10-batches-py` (data_batch_1..5, test_batch, batches.meta) and `cifar-100-python`
(train, test, meta) are what torchvision and the authors' PyTorch scripts download. Each batch
is a Python 2 pickle of a dict: `data` a uint8 array [N, 3072] (each row channel-major: 1024
red, 1024 green, 1024 blue bytes of a 32x32 image, row by row), with `labels` (CIFAR-10) or
`fine_labels` and `coarse_labels` (CIFAR-100). Files are read through the restricted unpickler
(`safe_pickle`) and recognized by their keys; every problem is a one-line
`DataUnavailableError` naming the file.
"""

from __future__ import annotations

import os

import numpy as np

from mwnet_tf.data import safe_pickle
from mwnet_tf.errors import data_error

FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
TRAIN_FILES = {"cifar10": tuple(f"data_batch_{i}" for i in range(1, 6)),
               "cifar100": ("train",)}
TEST_FILES = {"cifar10": ("test_batch",), "cifar100": ("test",)}
META_FILES = {"cifar10": "batches.meta", "cifar100": "meta"}
LABEL_KEYS = {"cifar10": ("labels",), "cifar100": ("fine_labels", "coarse_labels")}
# The meta file's list of class names and its length.
META_NAMES = {"cifar10": ("label_names", 10), "cifar100": ("fine_label_names", 100)}
CLASSES = {"labels": 10, "fine_labels": 100, "coarse_labels": 20}
URLS = {"cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"}
_PIXELS = 32 * 32 * 3


def _files(name: str) -> tuple[str, ...]:
    return TRAIN_FILES[name] + TEST_FILES[name] + (META_FILES[name],)


def layout(name: str) -> str:
    """The folder and its files, for messages: `cifar-10-batches-py (data_batch_1..5, ...)`."""
    if name == "cifar10":
        return "cifar-10-batches-py (data_batch_1..5, test_batch, batches.meta)"
    return "cifar-100-python (train, test, meta)"


def find_folder(name: str, data_dir: str) -> str | None:
    """`data_dir` itself or `data_dir/<FOLDERS[name]>`, whichever holds a file of the layout
    (then all of them are expected); None if neither does."""
    for folder in (data_dir, os.path.join(data_dir, FOLDERS[name])):
        if any(os.path.isfile(os.path.join(folder, f)) for f in _files(name)):
            return folder
    return None


def _read_dict(path: str) -> dict:
    if not os.path.isfile(path):
        raise data_error(path, "missing")
    obj = safe_pickle.load(path, encoding="bytes")  # Python 2 pickles: keys are bytes
    if not isinstance(obj, dict):
        raise data_error(path, f"not a CIFAR file: it holds a {type(obj).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _int_labels(path: str, key: str, values, n: int) -> np.ndarray:
    try:
        labels = np.asarray(values)
    except (TypeError, ValueError):
        labels = np.asarray([], dtype=object)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise data_error(path, f"`{key}` must hold {n} integer labels (one per row of `data`), got "
                           f"{labels.dtype} of shape {labels.shape}")
    classes = CLASSES[key]
    bad = labels[(labels < 0) | (labels >= classes)]
    if bad.size:
        raise data_error(path, f"`{key}` has label {int(bad[0])} outside 0..{classes - 1}")
    return labels.astype(np.int64)


def read_batch(name: str, path: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One batch file: (uint8 images [N, 32, 32, 3], {label key: int64 [N]})."""
    d = _read_dict(path)
    other = "cifar100" if name == "cifar10" else "cifar10"
    if "data" not in d or not all(k in d for k in LABEL_KEYS[name]):
        if "data" in d and all(k in d for k in LABEL_KEYS[other]):
            raise data_error(path, f"a {other} batch (keys {', '.join(LABEL_KEYS[other])}), not a "
                               f"{name} one: pass --dataset={other}")
        raise data_error(path, f"not a {name} batch: expected the keys data, "
                           f"{', '.join(LABEL_KEYS[name])}; it has {', '.join(map(str, d))}")
    data = d["data"]
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != _PIXELS):
        what = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise data_error(path, f"`data` must be a uint8 array [N, {_PIXELS}], got {what}")
    n = len(data)
    labels = {k: _int_labels(path, k, d[k], n) for k in LABEL_KEYS[name]}
    # Rows are channel-major (3 planes of 32x32); tfds' images are [32, 32, 3].
    images = data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _check_meta(name: str, path: str) -> None:
    d = _read_dict(path)
    key, count = META_NAMES[name]
    names = d.get(key)
    if not isinstance(names, list) or len(names) != count:
        got = f"{len(names)} names" if isinstance(names, list) else "none"
        raise data_error(path, f"not {name}'s meta file: expected `{key}` with {count} class "
                         f"names, got {got} (keys {', '.join(map(str, d))})")


def load_folder(name: str, folder: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The train and test splits as dicts with `image` and the label keys (`label`, and for
    CIFAR-100 `label` (fine) and `coarse_label`), in the files' order."""
    _check_meta(name, os.path.join(folder, META_FILES[name]))
    splits = []
    for files in (TRAIN_FILES[name], TEST_FILES[name]):
        parts = [read_batch(name, os.path.join(folder, f)) for f in files]
        split = {"image": np.concatenate([p[0] for p in parts])}
        for key in LABEL_KEYS[name]:
            out = "coarse_label" if key == "coarse_labels" else "label"
            split[out] = np.concatenate([p[1][key] for p in parts])
        splits.append(split)
    return splits[0], splits[1]
