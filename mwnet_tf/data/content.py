"""What the data is, by content: the trusted set's overlap with the training set, and the
fingerprint of a run's data.

Each image (or row) is known by the SHA-1 of its bytes: a file's content, streamed (an image
file reached twice, e.g. by a hard link, is read once), or an array row's bytes. The same image
under two names, or two copies of one file, has one key; an image resized or re-encoded is a
different one (the check is on bytes, not on pixels).

- `trusted_overlap`: how many images of the trusted set (and of the test set) are also
  training images. The trusted set must be clean images the training set does not hold:
  `check_overlap` refuses a trusted set of which half or more is in the training set (a
  `meta/` copied from `train/`) and warns with the counts when fewer are.
- `fingerprint`: a hash per split of the sorted (content key, label) pairs, so a run folder
  can tell whether it is resumed on the data it was started on: two class folders swapped,
  relabelled rows or replaced images change it even when every count stays the same.

Imports nothing heavy (no TensorFlow).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from mwnet_tf.errors import DataUnavailableError

# a trusted set of which this share or more is in the training set is refused ("most"); any
# smaller overlap is reported with its counts and the run goes on
REFUSED_SHARE = 0.5
_CHUNK = 1 << 20


class Hasher:
    """SHA-1 keys of images or rows; a file's key is kept, by its inode, size and mtime, for
    the next time the same file is met (the overlap check and the fingerprint of one start
    read each file once)."""

    def __init__(self):
        self._files: dict[tuple, str] = {}

    def file_key(self, path: str) -> str:
        try:
            st = os.stat(path)
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if key not in self._files:
                digest = hashlib.sha1()
                with open(path, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                self._files[key] = digest.hexdigest()
        except OSError as e:
            raise DataUnavailableError(f"{path}: cannot be read ({e.strerror or e})") from None
        return self._files[key]

    def keys(self, x: np.ndarray, from_files: bool) -> list[str]:
        """One key per image: `x` holds paths (`from_files`) or rows of an array."""
        if from_files:
            return [self.file_key(str(p)) for p in x]
        x = np.asarray(x)
        return [hashlib.sha1(np.ascontiguousarray(row).tobytes()).hexdigest() for row in x]


def trusted_overlap(train_x, meta_x, test_x, from_files: bool,
                    hasher: Hasher | None = None) -> dict:
    """{"meta": images of the trusted set whose content is a training image's, "meta_size",
    "test", "test_size"}."""
    hasher = hasher or Hasher()
    train = set(hasher.keys(train_x, from_files))
    out = {}
    for name, x in (("meta", meta_x), ("test", test_x)):
        keys = hasher.keys(x, from_files)
        out[name] = sum(k in train for k in keys)
        out[f"{name}_size"] = len(keys)
    return out


def check_overlap(own, log=None, hasher: Hasher | None = None) -> dict:
    """The overlap of own data's trusted set (and test set) with its training set: a
    `DataUnavailableError` when `REFUSED_SHARE` or more of the trusted set is training
    images, a warning line (`log`) with the counts when any overlap is smaller. Own data
    without a trusted set of its own (tfds: carved from the training split) is not checked.
    Returns the counts ({} when not checked)."""
    if own.meta_x is None:
        return {}
    counts = trusted_overlap(own.train_x, own.meta_x, own.test_x, own.from_files, hasher)
    meta, size = counts["meta"], counts["meta_size"]
    if size and meta >= REFUSED_SHARE * size:
        raise DataUnavailableError(
            f"{own.source}: {meta} of the {size} images of the trusted set are also training "
            "images (same content): the trusted set must be clean images the training set "
            "does not hold; put other images in it")
    if (meta or counts["test"]) and log is not None:
        log(f"warning: {meta} of the {size} trusted images and {counts['test']} of the "
            f"{counts['test_size']} test images are also training images (same content)")
    return counts


def fingerprint(data, contents: bool, hasher: Hasher | None = None) -> dict[str, str]:
    """{"train", "meta", "test"}: the SHA-256 of each split's sorted (key, label) pairs, with
    the run's training labels (its noise included). The key of an image read from files is
    its content's SHA-1 when `contents` (own data); of an array row, its bytes' SHA-1. Other
    files (Clothing1M's million images, which may move with --data_dir) are not read: their
    labels in order are hashed."""
    hasher = hasher or Hasher()
    out = {}
    for name, x, y in (("train", data.train_x, data.train_y), ("meta", data.meta_x, data.meta_y),
                       ("test", data.test_x, data.test_y)):
        labels = [int(v) for v in np.asarray(y)]
        if data.from_files and not contents:  # the labels in their order
            pairs = list(enumerate(labels))
        else:
            pairs = sorted(zip(hasher.keys(x, data.from_files), labels))
        digest = hashlib.sha256()
        for key, label in pairs:
            digest.update(f"{key} {label}\n".encode())
        out[name] = digest.hexdigest()
    return out
