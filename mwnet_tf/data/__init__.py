"""Data: loaders, label noise, long-tail cut, meta split, tf.data pipelines.

Own data (image folders, CSV tables, .npz arrays, any tfds set): `own` (the `OwnData` object,
`make_own_biased_data`), `own_load` (`load_own_data`), `own_files`, `own_npz`, `own_tfds`.

Importing this package does not import TensorFlow: the pipeline functions (`normalize`,
`augment`, `make_train_dataset`, `make_test_dataset`) are loaded on first access.
"""

import importlib

from mwnet_tf.data.bias import BiasedData, make_biased_data
from mwnet_tf.data.datasets import DATASETS, Dataset, DataUnavailableError, load_dataset
from mwnet_tf.data.imbalance import long_tail_counts, long_tail_indices
from mwnet_tf.data.noise import (
    LABEL_NOISES,
    NOISE_TYPES,
    coarse_map,
    corrupt_labels,
    transition_matrix,
)
from mwnet_tf.data.own import OwnData, make_own_biased_data
from mwnet_tf.data.own_files import load_csv_table, load_image_folder
from mwnet_tf.data.own_load import OWN_DATASETS, load_own_data
from mwnet_tf.data.own_npz import load_npz_arrays
from mwnet_tf.data.own_tfds import load_tfds_dataset
from mwnet_tf.data.split import meta_split

_PIPELINE = ("normalize", "augment", "make_train_dataset", "make_test_dataset")

__all__ = [
    "DATASETS", "LABEL_NOISES", "NOISE_TYPES", "OWN_DATASETS", "BiasedData", "Dataset",
    "DataUnavailableError", "OwnData", "coarse_map", "load_csv_table", "load_image_folder",
    "load_npz_arrays", "load_own_data", "load_tfds_dataset", "make_own_biased_data",
    "corrupt_labels", "load_dataset", "long_tail_counts", "long_tail_indices",
    "make_biased_data", "meta_split", "transition_matrix", *_PIPELINE,
]


def __getattr__(name: str):
    if name in _PIPELINE:  # a lookup by name, as `mwnet_tf.methods.get`
        return getattr(importlib.import_module("mwnet_tf.data.pipeline"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
