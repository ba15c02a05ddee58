"""tf.data pipelines: seeded stateless augmentation, normalization, train + endless meta stream.

Every random choice is a function of (seed, epoch, element index): a pipeline built twice with
the same arguments yields the same batches, whatever the global TensorFlow seed, so a resumed
run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from mwnet_tf.data.bias import BiasedData

# Stream ids that make the seeds of the different random streams of one epoch independent.
_TRAIN_ORDER, _TRAIN_AUGMENT, _META_ORDER, _META_AUGMENT = range(4)


def normalize(images: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """uint8 images [..., C] to float32 `(x / 255 - mean) / std` per channel."""
    x = tf.cast(images, tf.float32) / 255.0
    return (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def augment(image: tf.Tensor, seed: tf.Tensor, pad: int = 4) -> tf.Tensor:
    """The paper's augmentation of ONE image [H, W, C]: reflect-pad, random crop, random h-flip.

    Args:
        image: [H, W, C] image of any dtype; H and W must exceed `pad`.
        seed: int32/int64 [2] seed of the stateless random ops.
        pad: Reflect padding on each side; the crop offset is uniform in [0, 2 * pad].

    Returns:
        The augmented [H, W, C] image, same dtype.
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    cropped = tf.image.stateless_random_crop(padded, tf.shape(image), seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(cropped, seed=flip_seed)


def _seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit integer seed for one random stream of one epoch."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def _augmented(ds: tf.data.Dataset, do_augment: bool, base_seed: int) -> tf.data.Dataset:
    """Augments each element's `x` with seed [base_seed, element index] (if `do_augment`)."""
    if not do_augment:
        return ds
    base = tf.constant(base_seed, tf.int64)

    def fn(index, element):
        element = dict(element)
        element["x"] = augment(element["x"], tf.stack([base, index]))
        return element
    return ds.enumerate().map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _normalize_map(mean: Sequence[float], std: Sequence[float]):
    """dict batch -> the same batch with `x` normalized."""
    def fn(batch):
        batch = dict(batch)
        batch["x"] = normalize(batch["x"], mean, std)
        return batch
    return fn


def _meta_stream(data: BiasedData, meta_batch_size: int, seed: int,
                 epoch: int) -> tf.data.Dataset:
    """Endless meta batches: a fresh seeded permutation of the meta set per pass."""
    m = len(data.meta_y)
    batches_per_pass = m // meta_batch_size  # whole batches only: none spans two passes
    images = tf.constant(data.meta_x)
    labels = tf.constant(data.meta_y.astype(np.int32))
    order_seed = tf.constant(_seed(seed, epoch, _META_ORDER), tf.int64)

    def permutation(pass_index):
        keys = tf.random.stateless_uniform([m], seed=tf.stack([order_seed, pass_index]))
        order = tf.argsort(keys)[:batches_per_pass * meta_batch_size]
        return tf.reshape(order, [batches_per_pass, meta_batch_size])

    def gather(i):
        return {"x": tf.gather(images, i), "y": tf.gather(labels, i)}

    index_batches = tf.data.Dataset.counter().map(permutation).unbatch()
    if data.augment:  # per image, so that each one gets its own seed
        meta = _augmented(index_batches.unbatch().map(gather), True,
                          _seed(seed, epoch, _META_AUGMENT))
        meta = meta.batch(meta_batch_size, drop_remainder=True)
    else:
        meta = index_batches.map(gather)
    return meta.map(_normalize_map(data.mean, data.std), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)


def make_train_dataset(data: BiasedData, *, batch_size: int, meta_batch_size: int, seed: int,
                       epoch: int, with_meta: bool = True) -> tf.data.Dataset:
    """One epoch of training batches, each zipped with a batch of the endless meta stream.

    The training set is shuffled with a seed derived from (seed, epoch) and batched with the
    global `batch_size` (incomplete last batch dropped); images are augmented (when
    `data.augment`) with stateless ops seeded from (seed, epoch, element index), then
    normalized.

    Returns:
        Elements `({"x": float32 [B, H, W, C], "y": int32 [B], "y_clean": int32 [B],
        "corrupted": bool [B]}, {"x": float32 [Bm, H, W, C], "y": int32 [Bm]})`; with
        `with_meta=False` the meta set is not read and elements are `(batch,)`.
    """
    n, m = len(data.train_y), len(data.meta_y)
    if batch_size < 1 or meta_batch_size < 1:
        raise ValueError("batch sizes must be >= 1")
    if n < batch_size:
        raise ValueError(f"the training set ({n} images) is smaller than one batch "
                         f"({batch_size}): lower the batch size")
    if with_meta and m < meta_batch_size:
        raise ValueError(f"the meta set ({m} images) is smaller than one meta batch "
                         f"({meta_batch_size}): lower the meta batch size or raise "
                         "meta_per_class")
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, _TRAIN_ORDER]))
    order = rng.permutation(n)
    train = tf.data.Dataset.from_tensor_slices({
        "x": data.train_x[order],
        "y": data.train_y[order].astype(np.int32),
        "y_clean": data.train_clean_y[order].astype(np.int32),
        "corrupted": data.corrupted[order],
    })
    train = _augmented(train, data.augment, _seed(seed, epoch, _TRAIN_AUGMENT))
    train = (train.batch(batch_size, drop_remainder=True)
             .map(_normalize_map(data.mean, data.std), num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True))
    if not with_meta:
        return train.map(lambda batch: (batch,)).prefetch(tf.data.AUTOTUNE)
    meta = _meta_stream(data, meta_batch_size, seed, epoch)
    return tf.data.Dataset.zip((train, meta)).prefetch(tf.data.AUTOTUNE)


def make_test_dataset(data: BiasedData, *, batch_size: int) -> tf.data.Dataset:
    """The test set in order, normalized, not augmented: `{"x": float32, "y": int32}`."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    ds = tf.data.Dataset.from_tensor_slices({"x": data.test_x,
                                             "y": data.test_y.astype(np.int32)})
    return (ds.batch(batch_size)
            .map(_normalize_map(data.mean, data.std), num_parallel_calls=tf.data.AUTOTUNE,
                 deterministic=True)
            .prefetch(tf.data.AUTOTUNE))
