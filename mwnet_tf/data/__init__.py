"""Data: loaders, label noise, long-tail cut, meta split, tf.data pipelines.

Own data (image folders, CSV tables, .npz arrays, any tfds set) is `data.custom`: `biased`
(the `OwnData` object, `make_own_biased_data`), `load` (`load_own_data`, by format), and one
reader per format, `from_files`, `from_npz`, `from_tfds`.

Importing this package does not import TensorFlow: the pipeline functions (`normalize`,
`augment`, `make_train_dataset`, `make_test_dataset`) and the own-data loaders are loaded on
first access.
"""

import importlib

from mwnet_tf.data.bias import BiasedData, make_biased_data
from mwnet_tf.data.custom.biased import OwnData, make_own_biased_data
from mwnet_tf.data.datasets import DATASETS, Dataset, DataUnavailableError, load_dataset
from mwnet_tf.data.imbalance import long_tail_counts, long_tail_indices
from mwnet_tf.data.noise import (
    LABEL_NOISES,
    NOISE_TYPES,
    coarse_map,
    corrupt_labels,
    transition_matrix,
)
from mwnet_tf.data.split import meta_split

# loaded on first access: they import TensorFlow
_LAZY = {"normalize": "pipeline", "augment": "pipeline", "make_train_dataset": "pipeline",
         "make_test_dataset": "pipeline", "load_csv_table": "custom.from_files",
         "load_image_folder": "custom.from_files", "load_npz_arrays": "custom.from_npz",
         "load_tfds_dataset": "custom.from_tfds", "load_own_data": "custom.load"}

__all__ = [
    "DATASETS", "LABEL_NOISES", "NOISE_TYPES", "BiasedData", "Dataset",
    "DataUnavailableError", "OwnData", "coarse_map", "make_own_biased_data",
    "corrupt_labels", "load_dataset", "long_tail_counts", "long_tail_indices",
    "make_biased_data", "meta_split", "transition_matrix", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:  # a lookup by name, as `mwnet_tf.methods.get`
        return getattr(importlib.import_module(f"mwnet_tf.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
