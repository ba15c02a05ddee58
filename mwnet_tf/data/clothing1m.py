"""Clothing1M (Xiao et al., CVPR 2015) from its published folder, as file paths (Table 4).

The layout, as distributed by its authors (one folder holding the annotation files and the
unpacked `images/` tree)::

    DIR/category_names_eng.txt     14 class names, line k names class k
    DIR/noisy_label_kv.txt         "images/0/00/xxxx.jpg LABEL" per line (~1M noisy labels)
    DIR/clean_label_kv.txt         the same format (~72k clean labels)
    DIR/noisy_train_key_list.txt   one key per line: the noisy training set
    DIR/clean_train_key_list.txt   the clean training subset (not used by this protocol)
    DIR/clean_val_key_list.txt     the clean validation subset (~14k keys)
    DIR/clean_test_key_list.txt    the clean test subset (~10k keys)
    DIR/images/0/00/...jpg ... DIR/images/9/99/...jpg

What was verified, and where (public sources, read through the code search of this project;
none of their code is copied): the file names, the "key label" format and the tree
`images/0` .. `images/9` from the dataset authors' README (github.com/Cysu/noisy_label,
README.md, "Clothing1M Experiments", and the README.md shipped with the data: "14 classes,
numbered from 0 to 13", "Notice that some images have both noisy and clean labels"); that keys
begin with `images/` and are relative to DIR from `data/clothing1M/make_aux_data.py` there
(keys of the key lists are looked up in the kv files as they are) and from DivideMix's loader
(github.com/LiJunnan1992/DivideMix, `dataloader_clothing1M.py`, commit 39740b2, which strips
the 7 characters of `images/` because its root is the images folder). Some copies put the
annotation files in `DIR/annotations/`; that folder is also accepted. The official MW-Net code
(github.com/xjtushujun/meta-weight-net) has no Clothing1M script, so the protocol is the paper's
(Sec. 4.3): training = the noisy training keys with their noisy labels, meta set = the clean
validation images (the paper's "7k clean data"; the published list may hold more keys, all are
used), test = the clean test keys, with clean labels.

Images are never loaded here: `BiasedData.train_x`, `meta_x` and `test_x` hold the image
paths, and `pipeline` decodes them in `tf.data`. Every problem found here (a missing folder,
annotation file or image, a malformed line, a label outside 0..13, a key without a label) is a
one-line `DataUnavailableError` naming the file.
"""

from __future__ import annotations

import os

import numpy as np

from mwnet_tf.data.bias import BiasedData
from mwnet_tf.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from mwnet_tf.errors import DataUnavailableError, data_error

NUM_CLASSES = 14
CLASS_NAMES = "category_names_eng.txt"
NOISY_LABELS, CLEAN_LABELS = "noisy_label_kv.txt", "clean_label_kv.txt"
TRAIN_KEYS, VAL_KEYS, TEST_KEYS = ("noisy_train_key_list.txt", "clean_val_key_list.txt",
                                   "clean_test_key_list.txt")
ANNOTATIONS = (CLASS_NAMES, NOISY_LABELS, CLEAN_LABELS, TRAIN_KEYS, VAL_KEYS, TEST_KEYS)
CROP, RESIZE = 224, 256  # the paper: resize to 256x256, crop 224x224
SOURCE = "https://github.com/Cysu/noisy_label (ask the authors for the download link)"


def resize_for(crop: int) -> int:
    """The square resize before a `crop` x `crop` crop, in the paper's ratio 256 / 224."""
    return int(round(crop * RESIZE / CROP))


def annotation_folder(data_dir: str) -> str:
    """`data_dir`, or `data_dir/annotations` when the files are there instead."""
    if not os.path.isdir(data_dir):
        raise DataUnavailableError(f"--data_dir={data_dir} does not exist or is not a folder")
    for folder in (data_dir, os.path.join(data_dir, "annotations")):
        if any(os.path.isfile(os.path.join(folder, f)) for f in ANNOTATIONS):
            return folder
    raise DataUnavailableError(
        f"clothing1m not found in --data_dir={data_dir}: it holds none of Clothing1M's "
        f"annotation files ({', '.join(ANNOTATIONS)}) nor an annotations/ folder with them; "
        f"point --data_dir at the unpacked data set ({SOURCE})")


def _lines(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise data_error(path, "missing (part of Clothing1M's published annotation files)")
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError:
        raise data_error(path, "not a text file") from None


def read_labels(path: str) -> dict[str, int]:
    """A `*_label_kv.txt`: key -> label."""
    out = {}
    for number, line in enumerate(_lines(path), 1):
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise data_error(path, f"line {number} is not `images/.../NAME.jpg LABEL`: "
                             f"{line[:80]!r}")
        label = int(parts[1])
        if not 0 <= label < NUM_CLASSES:
            raise data_error(path, f"line {number} has label {label} outside 0..{NUM_CLASSES - 1}")
        out[parts[0]] = label
    return out


def read_keys(path: str) -> list[str]:
    """A `*_key_list.txt`: one image key per line."""
    keys = _lines(path)
    bad = next((k for k in keys if len(k.split()) != 1), None)
    if bad is not None:
        raise data_error(path, f"not a key list: line {bad[:80]!r} holds more than one key")
    if not keys:
        raise data_error(path, "empty")
    return keys


def _labelled(keys: list[str], labels: dict[str, int], keys_file: str,
              labels_file: str) -> np.ndarray:
    missing = next((k for k in keys if k not in labels), None)
    if missing is not None:
        raise data_error(keys_file, f"key {missing} has no label in {labels_file}")
    return np.array([labels[k] for k in keys], np.int64)


def _existing_images(data_dir: str) -> set[str]:
    """Every file under `data_dir/images`, as keys (`images/0/00/x.jpg`): one directory listing
    per folder rather than a `stat` per image (1M images)."""
    root = os.path.join(data_dir, "images")
    if not os.path.isdir(root):
        raise DataUnavailableError(
            f"{root}: missing: --data_dir={data_dir} holds Clothing1M's annotation files but "
            "not its images/ folder (unpack the image archives there)")
    found = set()
    for folder, _, files in os.walk(root):
        rel = os.path.relpath(folder, data_dir).replace(os.sep, "/")
        found.update(f"{rel}/{name}" for name in files)
    return found


def load_clothing1m(data_dir: str, image_size: int = CROP) -> BiasedData:
    """Clothing1M's training, meta and test sets as image paths with their labels.

    `train_clean_y` is the clean label where `clean_label_kv.txt` has one for a training image
    (the published overlap), else its noisy label (unknown: not counted as corrupted);
    `realized_noise_rate` is measured on that overlap (NaN without one).

    Args:
        data_dir: The Clothing1M folder (annotation files, or `annotations/`, and `images/`).
        image_size: Side of the crops the pipeline gives the model (224 in the paper).
    """
    folder = annotation_folder(data_dir)

    def path(name):
        return os.path.join(folder, name)

    names = _lines(path(CLASS_NAMES))
    if len(names) != NUM_CLASSES:
        raise data_error(path(CLASS_NAMES), f"holds {len(names)} class names, not {NUM_CLASSES}")
    noisy, clean = read_labels(path(NOISY_LABELS)), read_labels(path(CLEAN_LABELS))
    train_keys, val_keys, test_keys = (read_keys(path(f)) for f in (TRAIN_KEYS, VAL_KEYS,
                                                                     TEST_KEYS))
    train_y = _labelled(train_keys, noisy, path(TRAIN_KEYS), NOISY_LABELS)
    meta_y = _labelled(val_keys, clean, path(VAL_KEYS), CLEAN_LABELS)
    test_y = _labelled(test_keys, clean, path(TEST_KEYS), CLEAN_LABELS)
    existing = _existing_images(data_dir)
    for keys, keys_file in ((train_keys, TRAIN_KEYS), (val_keys, VAL_KEYS),
                            (test_keys, TEST_KEYS)):
        missing = next((k for k in keys if k not in existing), None)
        if missing is not None:
            raise data_error(os.path.join(data_dir, missing),
                         f"missing: {keys_file} names it but there is no such image")
    known = np.array([k in clean for k in train_keys])
    train_clean_y = np.array([clean.get(k, noisy[k]) for k in train_keys], np.int64)
    rate = float(np.mean(train_y[known] != train_clean_y[known])) if known.any() else np.nan

    def paths(keys):
        return np.array([os.path.join(data_dir, k) for k in keys])

    transition = np.full((NUM_CLASSES, NUM_CLASSES), np.nan)
    if known.any():
        counts = np.zeros((NUM_CLASSES, NUM_CLASSES))
        np.add.at(counts, (train_clean_y[known], train_y[known]), 1)
        rows = counts.sum(axis=1, keepdims=True)
        transition = np.divide(counts, rows, out=np.full_like(counts, np.nan), where=rows > 0)
    return BiasedData(
        train_x=paths(train_keys), train_y=train_y, train_clean_y=train_clean_y,
        meta_x=paths(val_keys), meta_y=meta_y, test_x=paths(test_keys), test_y=test_y,
        num_classes=NUM_CLASSES, mean=IMAGENET_MEAN, std=IMAGENET_STD, augment=True,
        transition=transition, realized_noise_rate=rate,
        train_index=np.arange(len(train_keys), dtype=np.int64),
        meta_index=np.arange(len(val_keys), dtype=np.int64), image_size=image_size,
        corruption_known=False)
