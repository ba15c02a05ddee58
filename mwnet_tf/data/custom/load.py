"""`--dataset=folder|csv|npz|tfds:NAME`: the loader of each own data format, by name.

A module of its own: the loaders (`from_files`, `from_npz`, `from_tfds`) build on
`mwnet_tf.data.custom.biased`, so the dispatch to them cannot live there without an import circle.
"""

from __future__ import annotations

import os

import numpy as np

from mwnet_tf.config import OWN_DATASETS, is_own_dataset
from mwnet_tf.data.custom import from_files, from_npz, from_tfds
from mwnet_tf.data.custom.biased import DEFAULT_SPLIT_SEED, OwnData
from mwnet_tf.data.data_dir import problem as data_dir_problem
from mwnet_tf.errors import DataUnavailableError, data_error


def load_own_data(dataset: str, data_dir: str | None, *, image_size: int | None = None,
                  augment: bool | None = None, test_fraction: float | None = None,
                  split_seed: int = DEFAULT_SPLIT_SEED, verify: bool | None = None,
                  image_key: str | None = None, label_key: str | None = None,
                  need_trusted: bool = True) -> OwnData:
    """The loader of `--dataset` (`config.is_own_dataset`) on `--data_dir`: the image folder,
    the .csv file, the .npz file, or the tfds data_dir (None: tfds' default). Options left None
    take each loader's default; those a format has no use for are ignored (image_size: the
    images of a folder or table, resized tfds images; image_key / label_key: tfds).
    `need_trusted=False` (`--meta_source=selected`): a folder, table or .npz without a trusted
    set is taken (a tfds set's is carved from its training split either way)."""
    if not is_own_dataset(dataset):
        raise ValueError(f"unknown own data set {dataset!r}; expected one of "
                         f"{', '.join(OWN_DATASETS)}, tfds:NAME")
    split = {"split_seed": split_seed}
    if test_fraction is not None:
        split["test_fraction"] = test_fraction
    if dataset.startswith("tfds:"):
        return check_classes(from_tfds.load_tfds_dataset(
            dataset[5:], data_dir, image_key, label_key, image_size=image_size,
            augment=augment, **split))
    if data_dir is None:
        raise DataUnavailableError(data_dir_problem(dataset, None))
    if dataset == "npz":
        return check_classes(from_npz.load_npz_arrays(data_dir, augment=augment,
                                                      need_trusted=need_trusted, **split))
    files = dict(split, verify=verify, need_trusted=need_trusted)
    if image_size is not None:
        files["image_size"] = image_size
    if augment is not None:
        files["augment"] = augment
    if dataset == "csv":
        if os.path.isdir(data_dir):
            raise DataUnavailableError(data_dir_problem(dataset, data_dir))
        return check_classes(from_files.load_csv_table(data_dir, **files))
    return check_classes(from_files.load_image_folder(data_dir, **files))


def check_classes(own: OwnData) -> OwnData:
    """`own` if its training labels hold at least two classes: with one, every prediction
    is right and the run would report 100% while learning nothing."""
    present = np.unique(own.train_y)
    if len(present) < 2:
        only = (repr(own.class_names[int(present[0])]) if len(present) else "none")
        raise data_error(own.source, f"the training labels hold a single class ({only}): a "
                    "classifier needs at least two, else it is right on every image")
    return own
