"""Reader for the IDX files of MNIST-style datasets (Fashion-MNIST's four files).

Every check (readable, gzip intact, magic number, dimensions, byte count, image/label
agreement, label range) ends in a one-line `DataUnavailableError` naming the file.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from mwnet_tf.errors import data_error

IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
_MAGIC = {0x00000803: 3, 0x00000801: 1}  # unsigned-byte images [N, H, W] and labels [N]
_GZIP_MAGIC = b"\x1f\x8b"


def _path(folder: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def has_any_idx_file(folder: str) -> bool:
    """Whether `folder` holds at least one of the four files (then all four are expected)."""
    return os.path.isdir(folder) and any(_path(folder, s) for s in IDX_FILES.values())


def read_idx(path: str) -> np.ndarray:
    """One unsigned-byte IDX file (gzipped or not, told by its content) as a uint8 array."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise data_error(path, f"cannot read: {e.strerror or e}") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise data_error(path, f"corrupt gzip ({type(e).__name__}: {e})") from None
    if len(raw) < 4:
        raise data_error(path, f"truncated: {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _MAGIC:
        raise data_error(path, f"not an unsigned-byte IDX file (magic {magic:#010x}, expected "
                           "0x00000803 for images or 0x00000801 for labels)")
    ndim = _MAGIC[magic]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise data_error(path, f"truncated inside its {header}-byte header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "too long"
        raise data_error(path, f"{kind}: {len(raw)} bytes, its header (shape {shape}) says "
                           f"{expected}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape).copy()


def load_idx_folder(folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x uint8 [N, H, W], train_y int64 [N], test_x, test_y) from the four files."""
    arrays, paths = {}, {}
    for key, stem in IDX_FILES.items():
        paths[key] = _path(folder, stem)
        if paths[key] is None:
            raise data_error(os.path.join(folder, stem), "missing (neither it nor its .gz exists)")
        arrays[key] = read_idx(paths[key])
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        x_path, y_path = paths[f"{split}_x"], paths[f"{split}_y"]
        if x.ndim != 3:
            raise data_error(x_path, f"expected images [N, H, W], got shape {x.shape}")
        if y.ndim != 1:
            raise data_error(y_path, f"expected labels [N], got shape {y.shape}")
        if len(x) != len(y):
            raise data_error(y_path, f"{len(y)} labels but {os.path.basename(x_path)} has "
                                 f"{len(x)} images")
        if y.size and y.max() > 9:
            raise data_error(y_path, f"label {int(y.max())} is out of 0..9")
    if arrays["train_x"].shape[1:] != arrays["test_x"].shape[1:]:
        raise data_error(paths["test_x"], f"images of size {arrays['test_x'].shape[1:]}, training "
                                      f"images are {arrays['train_x'].shape[1:]}")
    return (arrays["train_x"], arrays["train_y"].astype(np.int64), arrays["test_x"],
            arrays["test_y"].astype(np.int64))
