"""tf.data pipelines: seeded stateless augmentation, normalization, train + endless meta stream.

Every random choice is a function of (seed, epoch, element index): a pipeline built twice with
the same arguments yields the same batches, whatever the global TensorFlow seed, so a resumed
run sees the same data as an uninterrupted one.

Data read from files (`BiasedData.from_files`, Clothing1M) takes the JPEG branch: the x arrays
hold paths, and each image is read and decoded in `tf.data` (`num_parallel_calls=AUTOTUNE`),
resized to a square of `resize_for(image_size)` (256 for 224: the paper's "resize the image to
256x256"), then randomly cropped to `image_size` and flipped for training, center-cropped for
the meta and test sets (the paper's "crop the middle 224x224").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from mwnet_tf.data.bias import BiasedData
from mwnet_tf.data.clothing1m import resize_for

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


def decode_jpeg(path: tf.Tensor, resize: int) -> tf.Tensor:
    """One JPEG file -> uint8 [resize, resize, 3] (bilinear, antialiased, as PIL resizes).

    A file that does not start like a JPEG fails with an `InvalidArgumentError` naming it; a
    JPEG damaged inside fails in TensorFlow's decoder, whose message does not name the file.
    """
    raw = tf.io.read_file(path)
    check = tf.debugging.Assert(tf.io.is_jpeg(raw), ["not a JPEG file:", path])
    with tf.control_dependencies([check]):
        image = tf.io.decode_jpeg(raw, channels=3)
    image = tf.image.resize(image, [resize, resize], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """The middle `size` x `size` of a square [S, S, C] image."""
    offset = (image.shape[0] - size) // 2
    return image[offset:offset + size, offset:offset + size, :]


def _jpeg_eval_map(image_size: int):
    resize = resize_for(image_size)

    def fn(element):
        element = dict(element)
        element["x"] = center_crop(decode_jpeg(element["x"], resize), image_size)
        return element
    return fn


def _jpeg_train(ds: tf.data.Dataset, image_size: int, base_seed: int) -> tf.data.Dataset:
    """Reads each element's `x` (a path): resize, random crop, random h-flip, seeded by
    [base_seed, element index]."""
    base, resize = tf.constant(base_seed, tf.int64), resize_for(image_size)

    def fn(index, element):
        element = dict(element)
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(
            tf.stack([base, index]), num=2))
        image = tf.image.stateless_random_crop(decode_jpeg(element["x"], resize),
                                               [image_size, image_size, 3], seed=crop_seed)
        element["x"] = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return element
    return ds.enumerate().map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def eval_images(data: BiasedData, x: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Batches of uint8 images of `x` as the test set gets them: in-memory images as they are,
    paths (data from files) decoded and center-cropped."""
    ds = tf.data.Dataset.from_tensor_slices({"x": x})
    if data.from_files:
        ds = ds.map(_jpeg_eval_map(data.image_size), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
    return ds.map(lambda e: e["x"]).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_images(data: BiasedData, x: np.ndarray) -> tf.Tensor:
    """`x` as one uint8 tensor [N, H, W, C] (paths decoded and center-cropped)."""
    if not data.from_files:
        return tf.constant(x)
    batches = list(eval_images(data, x, 256))
    return tf.concat(batches, 0) if batches else tf.zeros((0, *data.input_shape), tf.uint8)


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
    if data.from_files:  # decoded per image, center-cropped (the paper's meta preprocessing)
        meta = (index_batches.unbatch().map(gather)
                .map(_jpeg_eval_map(data.image_size), num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)
                .batch(meta_batch_size, drop_remainder=True))
    elif data.augment:  # per image, so that each one gets its own seed
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
    if data.from_files:
        train = _jpeg_train(train, data.image_size, _seed(seed, epoch, _TRAIN_AUGMENT))
    else:
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
    if data.from_files:
        ds = ds.map(_jpeg_eval_map(data.image_size), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
    return (ds.batch(batch_size)
            .map(_normalize_map(data.mean, data.std), num_parallel_calls=tf.data.AUTOTUNE,
                 deterministic=True)
            .prefetch(tf.data.AUTOTUNE))
