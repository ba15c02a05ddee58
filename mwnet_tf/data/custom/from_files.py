"""Own images read from files: a folder tree (Keras' `image_dataset_from_directory` layout) or
a CSV table of paths and labels. Images stay on disk: `OwnData.train_x` (and `meta_x`,
`test_x`) hold their paths, and `pipeline` decodes them in `tf.data`, as for Clothing1M.

Folder layout::

    DIR/train/<class>/...   the training images, labels as given (noisy)
    DIR/meta/<class>/...    the trusted set, clean labels
    DIR/test/<class>/...    optional; without it a stratified part of meta/ is held out

Without a trusted set (`need_trusted=False`, a run whose meta set is selected from the
training set) meta/ is optional; with neither meta/ nor test/, a stratified part of train/ is
held out with its given labels (`OwnData.test_labels_given`).

Class names are the sorted folder names of train/; meta/ (and test/) must have the same ones.
Images may sit in sub-folders of a class folder. The folders are walked by
`image_files.walk_images` (the rule `predict` also follows): hidden files and folders
(`.name`) are ignored, every other file must be a regular image file by its extension,
symlinks may not lead out of the data folder, and no folder is entered twice.

Table: a CSV with a header and the columns `path` and `label`, optional `split` (train, meta
or test) and `true_label`. A table without a `split` column is refused: MW-Net needs a
trusted set, and only the user knows which labels can be trusted (taking it at random out of
noisy labels would make the "trusted" set as noisy as the rest). A run whose meta set is
selected from the training set (`need_trusted=False`) takes such a table as all training
rows, and a table with a split column but no meta rows.

Images: JPEG, PNG, BMP or GIF (first frame), recognized by their first bytes when the files
are listed (a file that is not one of them is an error naming it). Their headers are read
(PIL, `image_files.read_header`: at most `image_files.MAX_PIXELS` pixels) to choose the
channels: 3 if any image has color (a GIF counts as color), else 1.
When the data set holds at most `VERIFY_LIMIT` files every image is also decoded once at
load time (the decoder of training), so a damaged one is named before the run starts; for
larger sets `pipeline.name_unreadable` finds it after TensorFlow's error.

Normalization: mean and std per channel of a seeded sample of `STATS_SAMPLE` training images
as the pipeline decodes them (or fixed: `mean_std="imagenet"`, for a pretrained model, or
`(mean, std)`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np

from mwnet_tf.data.custom.biased import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_TEST_FRACTION,
    MAX_CLASSES,
    NO_TRUSTED_WAY,
    OwnData,
    hold_out,
    hold_out_training,
)
from mwnet_tf.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from mwnet_tf.data.image_files import is_hidden, read_header, resolved_inside, walk_images
from mwnet_tf.data.pipeline import decode_image, find_undecodable
from mwnet_tf.errors import DataUnavailableError, data_error

DEFAULT_IMAGE_SIZE = 32
VERIFY_LIMIT = 10_000
STATS_SAMPLE = 512
SPLITS = ("train", "meta", "test")
_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")


def image_has_color(path: str) -> bool:
    """Whether an image file has color (its header, `image_files.read_header`); a file that is
    not a regular JPEG, PNG, BMP or GIF file, whose header is damaged or that declares more than
    `image_files.MAX_PIXELS` pixels, is a `DataUnavailableError`."""
    fmt, mode, _ = read_header(path)
    return fmt == "GIF" or mode not in _GRAY_MODES


def _class_folders(split_dir: str, root: str, seen: dict) -> dict[str, list[str]]:
    """{class name: its files} of one split folder (`image_files.walk_images`)."""
    classes = {}
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if is_hidden(entry.name):
            continue
        if not entry.is_dir():
            raise data_error(entry.path, f"a file directly in {split_dir}: images go into class "
                        "folders, <split>/<class>/<image>")
        files = walk_images(entry.path, root, seen)
        if not files:
            raise data_error(entry.path, "empty class folder (no image in it)")
        classes[entry.name] = files
    if not classes:
        raise data_error(split_dir, "no class folders in it (expected <split>/<class>/<image>)")
    return classes


def list_image_folder(data_dir: str, *, need_trusted: bool = True
                      ) -> tuple[tuple[str, ...], dict]:
    """The files of an image folder's layout, checked but not decoded: (class names,
    {split: (paths, int64 labels)}) for train, meta and test (each of the last two when
    present; meta/ required with `need_trusted`). Also what `mwnet_tf.predict` reads such a
    folder with."""
    if not os.path.isdir(data_dir):
        raise DataUnavailableError(f"--data_dir={data_dir} does not exist or is not a folder")
    present = {s: os.path.join(data_dir, s) for s in SPLITS
               if os.path.isdir(os.path.join(data_dir, s))}
    for split_dir in present.values():
        resolved_inside(split_dir, data_dir)
    for needed in ("train", "meta") if need_trusted else ("train",):
        if needed not in present:
            raise data_error(os.path.join(data_dir, needed),
                        "missing: an image folder needs train/<class>/ (labels as given) and "
                        "meta/<class>/ (the trusted set), test/<class>/ optional"
                        + (f"; {NO_TRUSTED_WAY}" if needed == "meta" else ""))
    seen: dict = {}  # the folders entered: none twice, across the splits
    folders = {s: _class_folders(d, data_dir, seen) for s, d in present.items()}
    names = tuple(folders["train"])
    for split in ("meta", "test"):
        if split not in folders:
            continue
        extra = [c for c in folders[split] if c not in names]
        if extra:
            raise data_error(os.path.join(present[split], extra[0]),
                        f"class {extra[0]!r} is not a class of train/ ({', '.join(names)})")
        lacking = [c for c in names if c not in folders[split]]
        if lacking:
            raise data_error(os.path.join(present[split], lacking[0]),
                        f"missing: class {lacking[0]!r} of train/ has no folder in {split}/")

    def flat(split):
        classes = folders[split]
        paths = [p for c in names for p in classes[c]]
        labels = np.concatenate([np.full(len(classes[c]), k, np.int64)
                                 for k, c in enumerate(names)])
        return np.array(paths), labels

    return names, {s: flat(s) for s in folders}


def load_image_folder(data_dir: str, *, image_size: int = DEFAULT_IMAGE_SIZE,
                      augment: bool = True, test_fraction: float | None = None,
                      split_seed: int = DEFAULT_SPLIT_SEED, verify: bool | None = None,
                      mean_std=None, need_trusted: bool = True) -> OwnData:
    """Images in `data_dir/train/<class>/`, `data_dir/meta/<class>/` and optionally
    `data_dir/test/<class>/` (module docstring).

    Args:
        data_dir: The folder holding train/, meta/ and maybe test/.
        image_size: Side of the square the images are resized to.
        augment: Random crop (after reflect padding of image_size // 8) and horizontal flip of
            the training and trusted images.
        test_fraction: Without test/: the part of each class of meta/ held out for testing
            (None: `DEFAULT_TEST_FRACTION`); without meta/ either, the part of train/ held
            out with its given labels (None: `DEFAULT_HELDOUT_FRACTION`).
        split_seed: Seed of that hold-out (fixed by default: every run tests on the same set).
        verify: Decode every image at load time (None: when there are at most VERIFY_LIMIT).
        mean_std: None (from a sample of the training images), "imagenet" or (mean, std).
        need_trusted: Refuse a folder without meta/ (False: a run whose meta set is selected
            from the training set, `--meta_source=selected`).
    """
    names, splits = list_image_folder(data_dir, need_trusted=need_trusted)
    return _finish("folder", data_dir, names, splits, None, image_size=image_size,
                   augment=augment, test_fraction=test_fraction, split_seed=split_seed,
                   verify=verify, mean_std=mean_std)


def _inside(path: str, root: str, csv_path: str, line: int) -> str:
    """`path` (relative to `root`) as an absolute path, checked to exist inside `root`."""
    full = os.path.normpath(os.path.join(root, path))
    where = f"{csv_path} line {line}"
    real_root = os.path.realpath(root)
    if os.path.commonpath([os.path.abspath(full), os.path.abspath(root)]) != \
            os.path.abspath(root):
        raise data_error(where, f"path {path!r} leaves the data folder {root} (through '..' or "
                    "an absolute path)")
    if not os.path.lexists(full):
        raise data_error(where, f"path {path!r}: no such file ({full})")
    real = os.path.realpath(full)
    if os.path.commonpath([real, real_root]) != real_root:
        raise data_error(where, f"path {path!r} leaves the data folder {root} through a symlink "
                    f"(to {real})")
    if not os.path.isfile(real):
        raise data_error(where, f"path {path!r} is not a file ({full})")
    return full


def _label_kind(values: Sequence[str]) -> bool:
    """True when every label is an integer, False when none is; else an error (raised by the
    caller, which knows the file)."""
    ints = [v.lstrip("-").isdigit() for v in values]
    if all(ints):
        return True
    if not any(ints):
        return False
    raise ValueError(next(v for v, i in zip(values, ints) if i))


def _int(label: str) -> int:
    """An integer label's value (leading zeros do not count against Python's digit limit)."""
    return int(label.lstrip("0") or "0")


def _read_csv_rows(csv_path: str, training: bool, need_trusted: bool = True
                   ) -> tuple[list[str], list]:
    """(header, [(line number, row dict)]) of a CSV table, its columns checked."""
    if not os.path.isfile(csv_path):
        raise DataUnavailableError(f"{csv_path}: no such file (the CSV table of the data)")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise data_error(csv_path, f"not a readable CSV text file ({e})") from None
    missing = [c for c in ("path", "label") if c not in header]
    if missing:
        raise data_error(csv_path, f"no {' or '.join(missing)} column in its header "
                    f"({','.join(header) or 'empty'}): expected path,label[,split][,true_label]")
    if "split" not in header and training and need_trusted:
        raise data_error(csv_path, "no split column: mark each row train, meta (the trusted, "
                    "clean labels) or test; the trusted rows cannot be guessed; "
                    f"{NO_TRUSTED_WAY}: a table without a split column is all training rows")
    if not rows:
        raise data_error(csv_path, "no rows")
    return header, rows


def _csv_records(csv_path: str, header: list[str], rows: list, training: bool,
                 need_trusted: bool = True) -> list:
    """[(line, path, label, split, true label or None)] of the rows, each checked; rows
    without a split column are training rows (`training`) or test rows (predict's)."""
    has_true = "true_label" in header
    records = []
    for line, row in rows:
        if None in row or any(row.get(c) is None for c in header):
            raise data_error(f"{csv_path} line {line}",
                             f"has {len(header) + len(row.get(None, []))} fields where the "
                             f"header has {len(header)}")
        split = (row["split"].strip().lower() if "split" in header
                 else "train" if training else "test")
        if split not in SPLITS:
            raise data_error(f"{csv_path} line {line}", f"split {row['split']!r} is not one of "
                        f"{', '.join(SPLITS)}")
        label, true = row["label"].strip(), row["true_label"].strip() if has_true else None
        if not row["path"].strip() or not label or (has_true and not true):
            raise data_error(f"{csv_path} line {line}", "an empty path, label or true_label")
        records.append((line, row["path"].strip(), label, split, true))
    for split in _needed_splits(training, need_trusted):
        if not any(r[3] == split for r in records):
            raise data_error(csv_path, f"no {split} rows (split column): a table needs train rows "
                        "and meta rows (the trusted set)"
                        + (f"; {NO_TRUSTED_WAY}" if split == "meta" else ""))
    return records


def _needed_splits(training: bool, need_trusted: bool) -> tuple[str, ...]:
    """The splits a table must have rows of."""
    return () if not training else ("train", "meta") if need_trusted else ("train",)


def _csv_classes(csv_path: str, records: list, classes, has_true: bool):
    """(class names, `label_of(value, line) -> class index`) of a table's labels."""
    every = [r[2] for r in records] + ([r[4] for r in records] if has_true else [])
    try:
        integers = _label_kind(every)
    except ValueError as e:
        raise data_error(csv_path, f"labels mix integers (e.g. {str(e)!r}) and class names: "
                         "use one kind") from None
    if integers:
        for line, _, label, _, true in records:
            for value in (label, true) if has_true else (label,):
                if value.startswith("-"):
                    raise data_error(f"{csv_path} line {line}", f"label {value[:40]!r}: labels are "
                                "class indices 0, 1, ... (no negative labels)")
                if len(value.lstrip("0")) > 6 or _int(value) >= MAX_CLASSES:
                    raise data_error(f"{csv_path} line {line}", f"label {value[:40]!r}: integer "
                                f"labels are class indices below {MAX_CLASSES} (at most "
                                f"{MAX_CLASSES} classes)")
    if classes is not None:
        names = tuple(str(c) for c in classes)
    elif integers:
        names = tuple(str(k) for k in range(max(_int(r[2]) for r in records
                                                if r[3] == "train") + 1))
    else:
        names = tuple(sorted({r[2] for r in records if r[3] == "train"}))
        if len(names) > MAX_CLASSES:
            raise data_error(csv_path, f"{len(names)} class names, more than the {MAX_CLASSES} "
                        "classes own data may have")
    # integer labels index the classes, names name them
    index = {(str(k) if integers else n): k for k, n in enumerate(names)}

    def label_of(value, line) -> int:
        key = str(_int(value)) if integers else value
        if key not in index:
            raise data_error(f"{csv_path} line {line}", f"label {value!r} is not one of the "
                        f"{len(names)} classes ({_short(names)})")
        return index[key]

    return names, label_of


def list_csv_table(csv_path: str, *, classes: Sequence[str] | None = None,
                   training: bool = True, need_trusted: bool = True
                   ) -> tuple[tuple[str, ...], dict, np.ndarray | None]:
    """The rows of a CSV table, checked but not decoded: (class names, {split: (absolute
    paths, int64 labels)}, the training rows' true labels or None). `training=False` (what
    `mwnet_tf.predict` reads a table with, `classes` the run's): the split column is optional
    (rows without one count as test) and no split is required. `need_trusted=False` (a run
    whose meta set is selected from the training set): meta rows are optional, and a table
    without a split column is all training rows."""
    header, rows = _read_csv_rows(csv_path, training, need_trusted)
    records = _csv_records(csv_path, header, rows, training, need_trusted)
    has_true = "true_label" in header
    names, label_of = _csv_classes(csv_path, records, classes, has_true)
    root = os.path.dirname(os.path.abspath(csv_path))
    splits: dict[str, tuple[list, list, list]] = {}
    for line, path, label, split, true in records:
        full = _inside(path, root, csv_path, line)
        paths, labels, trues = splits.setdefault(split, ([], [], []))
        paths.append(full)
        labels.append(label_of(label, line))
        trues.append(label_of(true, line) if has_true else -1)
    for split in [s for s in ("train", "meta") if s in splits] if training else ():
        counts = np.bincount(splits[split][1], minlength=len(names))
        if (counts == 0).any():
            name = names[int(np.argmin(counts))]
            raise data_error(csv_path, f"class {name!r} has no {split} rows")
    arrays = {s: (np.array(p), np.array(y, np.int64)) for s, (p, y, _) in splits.items()}
    true_y = (np.array(splits["train"][2], np.int64) if has_true and "train" in splits
              else None)
    return names, arrays, true_y


def load_csv_table(csv_path: str, *, classes: Sequence[str] | None = None,
                   image_size: int = DEFAULT_IMAGE_SIZE, augment: bool = True,
                   test_fraction: float | None = None,
                   split_seed: int = DEFAULT_SPLIT_SEED, verify: bool | None = None,
                   mean_std=None, need_trusted: bool = True) -> OwnData:
    """Images listed in a CSV table (module docstring).

    Paths are relative to the table's folder and must stay inside it (no `..`, no symlink
    out). Labels are all class names or all integers (true_label of the same kind); the
    classes are `classes` when given, else the sorted names (integers: 0..max) of the
    training rows. Other arguments as `load_image_folder`.
    """
    names, arrays, true_y = list_csv_table(csv_path, classes=classes,
                                           need_trusted=need_trusted)
    return _finish("csv", csv_path, names, arrays, true_y, image_size=image_size,
                   augment=augment, test_fraction=test_fraction, split_seed=split_seed,
                   verify=verify, mean_std=mean_std)


def _short(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)})" if len(names) > limit else "")


def _decoded_stats(paths: np.ndarray, image_size: int, channels: int,
                   ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of `paths` as the pipeline decodes them."""
    import tensorflow as tf


    def decode(p):
        return decode_image(p, image_size, channels)

    ds = (tf.data.Dataset.from_tensor_slices(paths)
          .map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(64))
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    try:
        for batch in ds:
            x = batch.numpy().astype(np.float64).reshape(-1, channels) / 255.0
            total += x.sum(0)
            squares += (x ** 2).sum(0)
            count += x.shape[0]
    except tf.errors.OpError:
        found = find_undecodable(paths, decode)
        if found is None:
            raise
        raise data_error(found[0], f"damaged image: cannot be decoded ({found[1]})") from None
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
    std = np.where(std > 1e-6, std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _finish(name: str, source: str, names: tuple[str, ...],
            splits: dict[str, tuple[np.ndarray, np.ndarray]], true_y: np.ndarray | None, *,
            image_size: int, augment: bool, test_fraction: float | None, split_seed: int,
            verify: bool | None, mean_std) -> OwnData:
    """Checks the files, holds out a test set if needed, verifies, computes the statistics."""
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if not names:
        raise data_error(source, "no classes")
    color = False
    for paths, _ in splits.values():
        for path in paths:
            color = image_has_color(path) or color
    channels = 3 if color else 1
    meta_x, meta_y = splits.get("meta", (None, None))
    train_x, train_y = splits["train"]
    held, given = None, False
    if "test" in splits:
        test_x, test_y = splits["test"]
    elif meta_x is None:  # neither: a part of the training set, its labels as given
        train_x, train_y, true_y, test_x, test_y, held = hold_out_training(
            train_x, train_y, true_y, test_fraction, split_seed, names, source)
        given = True
    else:
        held = DEFAULT_TEST_FRACTION if test_fraction is None else float(test_fraction)
        keep, test = hold_out(meta_y, held, split_seed, names, f"{source} trusted set")
        test_x, test_y = meta_x[test], meta_y[test]
        meta_x, meta_y = meta_x[keep], meta_y[keep]
    every = np.concatenate([train_x, test_x] + ([] if meta_x is None else [meta_x]))
    verified = len(every) <= VERIFY_LIMIT if verify is None else bool(verify)
    if verified:

        found = find_undecodable(every, lambda p: decode_image(p, 8, channels))
        if found is not None:
            raise data_error(found[0], f"damaged image: cannot be decoded ({found[1]})")
    if mean_std is None:
        rng = np.random.default_rng(split_seed)
        sample = (train_x if len(train_x) <= STATS_SAMPLE
                  else train_x[np.sort(rng.choice(len(train_x), STATS_SAMPLE, replace=False))])
        mean, std = _decoded_stats(sample, image_size, channels)
    else:
        if mean_std == "imagenet":
            mean_std = IMAGENET_MEAN, IMAGENET_STD
        mean, std = (tuple(float(v) for v in m) for m in mean_std)
        if channels == 1 and len(mean) == 3:
            mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
        if len(mean) not in (1, channels) or len(std) != len(mean):
            raise ValueError(f"mean_std must give 1 or {channels} values each")
    return OwnData(name=name, source=source, class_names=names, train_x=train_x,
                   train_y=train_y, meta_x=meta_x, meta_y=meta_y, test_x=test_x, test_y=test_y,
                   mean=mean, std=std, augment=bool(augment), train_true_y=true_y,
                   image_size=int(image_size), channels=channels, test_held_out=held,
                   verified=verified, test_labels_given=given)
