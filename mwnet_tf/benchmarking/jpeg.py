"""Images per second of the JPEG input pipeline (Clothing1M's), on JPEGs written for the
purpose: the logic of `python -m mwnet_tf.bench_jpeg`."""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import tensorflow as tf
from PIL import Image

from mwnet_tf.data.bias import BiasedData
from mwnet_tf.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from mwnet_tf.data.pipeline import make_test_dataset, make_train_dataset


def write_jpegs(folder: str, n: int, width: int, height: int, seed: int = 0) -> list[str]:
    """`n` JPEGs of smooth random content (upsampled noise, so they compress like photos)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
        path = os.path.join(folder, f"{i:06d}.jpg")
        image.save(path, quality=90)
        paths.append(path)
    return paths


def measure(paths: list[str], *, image_size: int = 224, batch_size: int = 32,
            passes: int = 3) -> dict:
    """Median images/s over `passes` timed passes (after one of warm-up), train and test."""
    n = len(paths)
    x, y = np.array(paths), np.arange(n, dtype=np.int64) % 14
    data = BiasedData(train_x=x, train_y=y, train_clean_y=y, meta_x=x, meta_y=y, test_x=x,
                      test_y=y, num_classes=14, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      augment=True, transition=np.eye(14), realized_noise_rate=0.0,
                      train_index=np.arange(n), meta_index=np.arange(n),
                      image_size=image_size)
    out = {"images": n, "image_size": image_size, "batch_size": batch_size,
           "cpus": os.cpu_count(), "tensorflow": tf.__version__}
    for name in ("train", "test"):
        rates = []
        for p in range(passes + 1):
            if name == "train":
                ds = make_train_dataset(data, batch_size=batch_size, meta_batch_size=1, seed=0,
                                        epoch=p, with_meta=False)
            else:
                ds = make_test_dataset(data, batch_size=batch_size)
            t0, count = time.perf_counter(), 0
            for batch in ds:
                element = batch[0] if isinstance(batch, tuple) else batch
                count += int(element["x"].shape[0])
            if p:  # the first pass warms up (tracing, thread pools, file cache)
                rates.append(count / (time.perf_counter() - t0))
        out[f"{name}_images_per_second"] = round(statistics.median(rates), 1)
    return out
