"""Any tensorflow-datasets data set by name, prepared on this machine (this program never
downloads): its images and labels as uint8 arrays in memory.

The image and the label feature are found in the builder's features (top level): the one
`Image` and the one `ClassLabel`; a data set with several of either needs `image_key` /
`label_key`. Splits: "train" is the training split, the test set is "test", else
"validation", else a seeded, stratified `test_fraction` of "train" (`DEFAULT_TFDS_TEST_FRACTION`,
a tenth: there is no trusted set to spare here, the training split is large). The trusted set
is carved from the training split by `own.make_own_biased_data(meta_per_class=...)`, as for
CIFAR.
"""

from __future__ import annotations

import os

import numpy as np

from mwnet_tf.data.custom.biased import DEFAULT_SPLIT_SEED, OwnData, hold_out
from mwnet_tf.data.custom.from_npz import array_stats, is_image_array
from mwnet_tf.data.datasets import _missing_tfds_message
from mwnet_tf.errors import DataUnavailableError, data_error

DEFAULT_TFDS_TEST_FRACTION = 0.1


def _pick(features, kind, key: str | None, what: str, flag: str, name: str) -> str:
    candidates = [k for k in features.keys() if isinstance(features[k], kind)]
    if key is not None:
        if key not in candidates:
            raise data_error(f"tfds:{name}", f"{flag}={key} is not one of its {what} features "
                        f"({', '.join(candidates) or 'none'})")
        return key
    if len(candidates) != 1:
        raise data_error(f"tfds:{name}", f"{'no' if not candidates else 'several'} {what} features"
                    f" ({', '.join(candidates) or 'none'}): "
                    + (f"name one with {flag}" if candidates else "not a classification set "
                       "of images"))
    return candidates[0]


def load_tfds_dataset(name: str, data_dir: str | None = None, image_key: str | None = None,
                      label_key: str | None = None, *, image_size: int | None = None,
                      augment: bool | None = None,
                      test_fraction: float = DEFAULT_TFDS_TEST_FRACTION,
                      split_seed: int = DEFAULT_SPLIT_SEED) -> OwnData:
    """A prepared tfds data set as `OwnData` with `meta_x` None (module docstring).

    Args:
        name: The tfds name (with config / version if needed: "mnist", "cifar10:3.0.2").
        data_dir: The tfds data_dir it was prepared in (None: tfds' default).
        image_key: The image feature, when it has several.
        label_key: The label feature, when it has several.
        image_size: Resize every image to this square (needed when sizes vary).
        augment: Crop + flip training images (None: when the images are at least 8x8).
        test_fraction: Without a test or validation split: the held-out part of "train".
        split_seed: Seed of that hold-out.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if data_dir is not None and not os.path.isdir(data_dir):
        raise DataUnavailableError(f"--data_dir={data_dir} does not exist or is not a folder")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and others: tfds' exceptions vary by version
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise data_error(f"tfds:{name}", f"not a tensorflow-datasets data set ({first[:200]})") \
            from None
    if not builder.is_prepared():
        raise DataUnavailableError(_missing_tfds_message(name, os.fspath(builder.data_dir_root)))
    features = builder.info.features
    image = _pick(features, tfds.features.Image, image_key, "image", "--image_key", name)
    label = _pick(features, tfds.features.ClassLabel, label_key, "label (ClassLabel)",
                  "--label_key", name)
    names = tuple(features[label].names)
    shape = features[image].shape
    if image_size is None and None in shape[:2]:
        raise ValueError(f"tfds:{name} has images of varying sizes: give image_size")
    # No split information (e.g. `tfds.testing.mock_data`): "train" and "test" are assumed.
    splits = list(builder.info.splits.keys()) or ["train", "test"]
    if "train" not in splits:
        raise data_error(f"tfds:{name}", f"no train split (splits: {', '.join(splits)})")
    test_split = next((s for s in ("test", "validation") if s in splits), None)

    def read(split):
        def pick(ex):
            x = ex[image]
            if image_size is not None:
                x = tf.image.resize(x, [image_size, image_size], antialias=True)
                x = tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)
            return {"x": x, "y": ex[label]}
        ds = tfds.load(name, split=split, data_dir=data_dir, download=False).map(pick)
        chunks = list(tfds.as_numpy(ds.batch(10_000)))  # not batch_size=-1: see datasets.py
        return (np.concatenate([c["x"] for c in chunks]).astype(np.uint8),
                np.concatenate([c["y"] for c in chunks]).astype(np.int64))

    train_x, train_y = read("train")
    held = None
    if test_split is not None:
        test_x, test_y = read(test_split)
    else:
        keep, test = hold_out(train_y, test_fraction, split_seed, names,
                              f"tfds:{name} train split")
        train_x, train_y, test_x, test_y = (train_x[keep], train_y[keep], train_x[test],
                                            train_y[test])
        held = float(test_fraction)
    images = is_image_array(train_x)
    if augment and not images:
        raise ValueError(f"augmentation needs images of at least 8x8; tfds:{name} has "
                         f"{train_x.shape[1:]}")
    mean, std = array_stats(train_x)
    return OwnData(name=f"tfds:{name}", source=os.fspath(builder.data_dir_root),
                   class_names=names, train_x=train_x, train_y=train_y, meta_x=None,
                   meta_y=None, test_x=test_x, test_y=test_y, mean=mean, std=std,
                   augment=images if augment is None else bool(augment), test_held_out=held)
