"""tf.data pipelines: seeded stateless augmentation, normalization, train + endless meta stream.

Every random choice is a function of (seed, epoch, element index): a pipeline built twice with
the same arguments yields the same batches, whatever the global TensorFlow seed, so a resumed
run sees the same data as an uninterrupted one.

Data read from files (`BiasedData.from_files`, Clothing1M) takes the JPEG branch: the x arrays
hold paths, and each image is read and decoded in `tf.data` (`num_parallel_calls=AUTOTUNE`),
resized to a square of `resize_for(image_size)` (256 for 224: the paper's "resize the image to
256x256"), then randomly cropped to `image_size` and flipped for training, center-cropped for
the meta and test sets (the paper's "crop the middle 224x224").

An own image folder or table (`BiasedData.resize_crop` False, `mwnet_tf.data.custom.biased`)
takes the image branch: JPEG, PNG, BMP or GIF (first frame) decoded by `decode_image`,
resized straight to `image_size`, then augmented as in-memory images (reflect-pad
`image_size // 8`, crop, flip) when `augment`, for the training and the meta set.

Under multi-worker training, `make_train_dataset(..., input_context=ctx)` is the function for
`strategy.distribute_datasets_from_function`: each worker keeps its share of the elements
before any file is read (`shard` on the element index), so it reads only its own files; the
global batches hold the same images, with the same augmentation, as without sharding.
`find_undecodable` names the file behind a decoding error, which TensorFlow does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

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


def decode_image(path: tf.Tensor, size: int | tuple[int, int], channels: int) -> tf.Tensor:
    """One JPEG, PNG, BMP or GIF (first frame) file -> uint8 [height, width, channels] (`size`:
    both, or a square's side).

    Decoded as RGB (16-bit PNGs scaled to 8 bits, alpha dropped), resized (bilinear,
    antialiased, aspect ratio not kept, as Keras' `image_dataset_from_directory`), then for
    `channels=1` turned to gray with ITU-R 601 weights (a gray image comes back unchanged).
    """
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, dtype=tf.uint8,
                               expand_animations=False)
    image.set_shape([None, None, 3])
    size = [size, size] if isinstance(size, int) else list(size)
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    if channels == 1:
        image = tf.reduce_sum(image * tf.constant([0.2989, 0.5870, 0.1140]), -1, keepdims=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def file_decoder(data: BiasedData) -> Callable[[tf.Tensor], tf.Tensor]:
    """path -> uint8 image as the meta and test sets of `data` (read from files) get it."""
    if data.resize_crop:
        resize = resize_for(data.image_size)
        return lambda path: center_crop(decode_jpeg(path, resize), data.image_size)
    return lambda path: decode_image(path, data.image_size, data.channels)


def find_undecodable(paths: Sequence[str], decode: Callable[[tf.Tensor], tf.Tensor],
                     ) -> tuple[str, str] | None:
    """The first of `paths` that `decode` (e.g. `file_decoder(data)`) fails on, with the
    first line of TensorFlow's message, or None when all decode.

    The same decoder as training, in parallel: an ordered `tf.data` map reports an element's
    error in its place, so the culprit is the element after the last one that came out.
    """
    if len(paths) == 0:
        return None
    paths = np.asarray(paths)
    ds = (tf.data.Dataset.from_tensor_slices(paths).enumerate()
          # the pixels are used (a max), so that the decoding cannot be optimized away
          .map(lambda i, p: (i, tf.reduce_max(decode(p))), num_parallel_calls=tf.data.AUTOTUNE,
               deterministic=True))
    last = -1
    try:
        for index, _ in ds:
            last = int(index)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
        text = str(getattr(e, "message", e))
        line = next((t for t in text.splitlines() if t.strip()), type(e).__name__)
        line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line).strip()[:160]
        return str(paths[last + 1]), line
    return None


def training_paths(data: BiasedData, *, seed: int, epoch: int, batch_size: int,
                   first_step: int = 0, num_steps: int | None = None) -> np.ndarray:
    """The training paths of steps [first_step, first_step + num_steps) of an epoch, in the
    order `make_train_dataset` reads them: where to look first for a file that failed."""
    order = np.random.default_rng(np.random.SeedSequence([seed, epoch, _TRAIN_ORDER])
                                  ).permutation(len(data.train_y))
    stop = None if num_steps is None else (first_step + num_steps) * batch_size
    return data.train_x[order][first_step * batch_size:stop]


def name_unreadable(data: BiasedData, *, seed: int, epoch: int, batch_size: int,
                    step: int, lookahead_steps: int = 16,
                    full_scan_limit: int = 200_000) -> str | None:
    """After a decoding error while training `data` (read from files): "PATH: cannot be
    decoded (TensorFlow's reason)", or None if no file fails now.

    Looks where the error most likely came from first: the training batches of `epoch` from
    `step - 1` (the last step done) to `lookahead_steps` ahead (the prefetched ones), then the
    meta and test sets, then all training files (only when there are at most
    `full_scan_limit`: Clothing1M's million would take the better part of an hour).
    `data` is the data the failing dataset was made from (a method's `stage_data`).
    """
    decode = file_decoder(data)
    near = training_paths(data, seed=seed, epoch=epoch, batch_size=batch_size,
                          first_step=max(step - 1, 0), num_steps=lookahead_steps + 2)
    rest = data.train_x if len(data.train_x) <= full_scan_limit else data.train_x[:0]
    for paths in (near, data.meta_x, data.test_x, rest):
        found = find_undecodable(paths, decode)
        if found is not None:
            return f"{found[0]}: cannot be decoded ({found[1]})"
    return None


def center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """The middle `size` x `size` of a square [S, S, C] image."""
    offset = (image.shape[0] - size) // 2
    return image[offset:offset + size, offset:offset + size, :]


def _file_eval_map(data: BiasedData):
    decode = file_decoder(data)

    def fn(element):
        element = dict(element)
        element["x"] = decode(element["x"])
        return element
    return fn


def _train_map(data: BiasedData, base_seed: int, meta: bool = False):
    """(element index, element) -> element with `x` read (data from files) and augmented,
    seeded by [base_seed, element index]; None when nothing is to be done."""
    base = tf.constant(base_seed, tf.int64)
    if data.from_files and data.resize_crop:
        if meta:  # Clothing1M's meta images: center-cropped, not augmented
            return lambda index, element: _file_eval_map(data)(element)
        resize, size = resize_for(data.image_size), data.image_size

        def jpeg(index, element):
            element = dict(element)
            crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(
                tf.stack([base, index]), num=2))
            image = tf.image.stateless_random_crop(decode_jpeg(element["x"], resize),
                                                   [size, size, 3], seed=crop_seed)
            element["x"] = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
            return element
        return jpeg
    if not data.from_files and not data.augment:
        return None
    decode = file_decoder(data) if data.from_files else None
    pad = max(1, data.image_size // 8) if data.from_files else 4

    def fn(index, element):
        element = dict(element)
        if decode is not None:
            element["x"] = decode(element["x"])
        if data.augment:
            element["x"] = augment(element["x"], tf.stack([base, index]), pad)
        return element
    return fn


def _indexed_map(ds: tf.data.Dataset, fn, shard: tuple[int, int] | None) -> tf.data.Dataset:
    """Applies `fn(element index, element)` (None: identity) to the elements of `ds` kept by
    `shard` = (number of shards, this shard), the index counting all elements of `ds`."""
    if fn is None and shard is None:
        return ds
    indexed = ds.enumerate()
    if shard is not None:
        indexed = indexed.shard(*shard)
    return indexed.map(fn or (lambda index, element: element),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def eval_images(data: BiasedData, x: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Batches of uint8 images of `x` as the test set gets them: in-memory images as they are,
    paths (data from files) decoded (and center-cropped: Clothing1M)."""
    ds = tf.data.Dataset.from_tensor_slices({"x": x})
    if data.from_files:
        ds = ds.map(_file_eval_map(data), num_parallel_calls=tf.data.AUTOTUNE,
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


def _normalize_map(mean: Sequence[float], std: Sequence[float]):
    """dict batch -> the same batch with `x` normalized."""
    def fn(batch):
        batch = dict(batch)
        batch["x"] = normalize(batch["x"], mean, std)
        return batch
    return fn


def _sharding(input_context: tf.distribute.InputContext | None, batch_size: int
              ) -> tuple[tuple[int, int] | None, int]:
    """(shard, batch size of one pipeline's batches) of a global batch size."""
    if input_context is None:
        return None, batch_size
    shard = (input_context.num_input_pipelines, input_context.input_pipeline_id)
    return shard, input_context.get_per_replica_batch_size(batch_size)


def _meta_stream(data: BiasedData, meta_batch_size: int, seed: int, epoch: int,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Endless meta batches: a fresh seeded permutation of the meta set per pass."""
    m = len(data.meta_y)
    batches_per_pass = m // meta_batch_size  # whole batches only: none spans two passes
    images = tf.constant(data.meta_x)
    labels = tf.constant(data.meta_y.astype(np.int32))
    order_seed = tf.constant(_seed(seed, epoch, _META_ORDER), tf.int64)
    shard, local_batch = _sharding(input_context, meta_batch_size)

    def permutation(pass_index):
        keys = tf.random.stateless_uniform([m], seed=tf.stack([order_seed, pass_index]))
        order = tf.argsort(keys)[:batches_per_pass * meta_batch_size]
        return tf.reshape(order, [batches_per_pass, meta_batch_size])

    def gather(i):
        return {"x": tf.gather(images, i), "y": tf.gather(labels, i)}

    index_batches = tf.data.Dataset.counter().map(permutation).unbatch()
    fn = _train_map(data, _seed(seed, epoch, _META_AUGMENT), meta=True)
    if fn is None and shard is None:
        meta = index_batches.map(gather)
    else:  # per image, so that each one gets its own seed
        meta = _indexed_map(index_batches.unbatch().map(gather), fn, shard)
        meta = meta.batch(local_batch, drop_remainder=True)
    return meta.map(_normalize_map(data.mean, data.std), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)


def check_meta_batch(meta_size: int, meta_batch_size: int, per_class: str = "meta_per_class"
                     ) -> None:
    """A `ValueError` when a meta set of `meta_size` images cannot fill one meta batch
    (`per_class`: the flag that sets its size per class)."""
    if meta_size < meta_batch_size:
        raise ValueError(f"the meta set ({meta_size} images) is smaller than one meta batch "
                         f"({meta_batch_size}): lower the meta batch size or raise "
                         f"{per_class}")


def make_train_dataset(data: BiasedData, *, batch_size: int, meta_batch_size: int, seed: int,
                       epoch: int, with_meta: bool = True,
                       input_context: tf.distribute.InputContext | None = None,
                       skip_steps: int = 0) -> tf.data.Dataset:
    """One epoch of training batches, each zipped with a batch of the endless meta stream.

    The training set is shuffled with a seed derived from (seed, epoch) and batched with the
    global `batch_size` (incomplete last batch dropped); images are augmented (when
    `data.augment`) with stateless ops seeded from (seed, epoch, element index), then
    normalized.

    With `input_context` (the argument of `strategy.distribute_datasets_from_function`'s
    function) the dataset is this input pipeline's part: batches of the per-replica size,
    holding the elements of the global batches whose index modulo the number of pipelines is
    this pipeline's id, chosen before any image is read. `skip_steps` skips the batches of
    that many global steps (a run resumed inside the epoch).

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
    if with_meta:
        check_meta_batch(m, meta_batch_size)
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, _TRAIN_ORDER]))
    order = rng.permutation(n)
    shard, local_batch = _sharding(input_context, batch_size)
    if shard is not None:  # whole global batches only, so that every pipeline has as many
        order = order[:n // batch_size * batch_size]
    train = tf.data.Dataset.from_tensor_slices({
        "x": data.train_x[order],
        "y": data.train_y[order].astype(np.int32),
        "y_clean": data.train_clean_y[order].astype(np.int32),
        "corrupted": data.corrupted[order],
    })
    train = _indexed_map(train, _train_map(data, _seed(seed, epoch, _TRAIN_AUGMENT)), shard)
    train = (train.batch(local_batch, drop_remainder=True)
             .map(_normalize_map(data.mean, data.std), num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True))
    per_step = batch_size // (local_batch * (shard[0] if shard else 1))  # replicas per pipeline
    if not with_meta:
        train = train.map(lambda batch: (batch,))
    else:
        meta = _meta_stream(data, meta_batch_size, seed, epoch, input_context)
        train = tf.data.Dataset.zip((train, meta))
    if skip_steps:
        train = train.skip(skip_steps * per_step)
    return train.prefetch(tf.data.AUTOTUNE)


def make_test_dataset(data: BiasedData, *, batch_size: int) -> tf.data.Dataset:
    """The test set in order, normalized, not augmented: `{"x": float32, "y": int32}`."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    ds = tf.data.Dataset.from_tensor_slices({"x": data.test_x,
                                             "y": data.test_y.astype(np.int32)})
    if data.from_files:
        ds = ds.map(_file_eval_map(data), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
    return (ds.batch(batch_size)
            .map(_normalize_map(data.mean, data.std), num_parallel_calls=tf.data.AUTOTUNE,
                 deterministic=True)
            .prefetch(tf.data.AUTOTUNE))
