"""Reader for the IDX files of MNIST-style datasets (Fashion-MNIST's four files).

Every check (magic number, dimensions, byte count, image/label agreement, label range) ends in
a one-line `DataUnavailableError` naming the file.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from mwnet_tf.data.datasets import DataUnavailableError

IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
_MAGIC = {0x00000803: 3, 0x00000801: 1}  # unsigned-byte images [N, H, W] and labels [N]


def _path(folder: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def has_idx_files(folder: str) -> bool:
    """Whether `folder` holds all four files (gzipped or not)."""
    return os.path.isdir(folder) and all(_path(folder, s) for s in IDX_FILES.values())


def read_idx(path: str) -> np.ndarray:
    """One IDX file (gzipped if its name ends in .gz) as a uint8 array."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataUnavailableError(f"cannot read {path}: {e}") from None
    if len(raw) < 4:
        raise DataUnavailableError(f"{path} is truncated: {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _MAGIC:
        raise DataUnavailableError(f"{path} is not an unsigned-byte IDX file (magic {magic:#010x})")
    ndim = _MAGIC[magic]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataUnavailableError(f"{path} is truncated inside its header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataUnavailableError(
            f"{path} has {len(raw)} bytes, its header {shape} says {expected}: truncated or "
            "corrupt")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def load_idx_folder(folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x uint8 [N, H, W], train_y int64 [N], test_x, test_y) from the four files."""
    arrays = {}
    for key, stem in IDX_FILES.items():
        path = _path(folder, stem)
        if path is None:
            raise DataUnavailableError(f"{os.path.join(folder, stem)}(.gz) is missing")
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1:
            raise DataUnavailableError(f"{folder}: {split} images must be [N, H, W] and labels "
                                       f"[N], got {x.shape} and {y.shape}")
        if len(x) != len(y):
            raise DataUnavailableError(f"{folder}: {len(x)} {split} images but {len(y)} labels")
        if y.size and y.max() > 9:
            raise DataUnavailableError(f"{folder}: {split} label {int(y.max())} is out of 0..9")
    if arrays["train_x"].shape[1:] != arrays["test_x"].shape[1:]:
        raise DataUnavailableError(f"{folder}: train and test images differ in size")
    return (arrays["train_x"], arrays["train_y"].astype(np.int64), arrays["test_x"],
            arrays["test_y"].astype(np.int64))
