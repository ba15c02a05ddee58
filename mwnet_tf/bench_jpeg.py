"""Images per second of the JPEG input pipeline (Clothing1M's), on JPEGs written for the purpose.

    python -m mwnet_tf.bench_jpeg --images=400 --width=300 --height=400

Writes `--images` JPEGs of `--width` x `--height` pixels (smooth random content, quality 90,
about the size of Clothing1M's images) into a temporary folder, then times whole passes of the
training pipeline (`pipeline.make_train_dataset`: read, decode, resize to 256x256, random crop
224, flip, batch, normalize; without the meta stream) and of the test pipeline (center crop)
after one pass of warm-up, and prints the median images per second. Nothing trains: this is
the rate at which the input side can feed a model on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def write_jpegs(folder: str, n: int, width: int, height: int, seed: int = 0) -> list[str]:
    """`n` JPEGs of smooth random content (upsampled noise, so they compress like photos)."""
    from PIL import Image

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
    import tensorflow as tf

    from mwnet_tf.data.bias import BiasedData
    from mwnet_tf.data.clothing1m import IMAGENET_MEAN, IMAGENET_STD
    from mwnet_tf.data.pipeline import make_test_dataset, make_train_dataset

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--width", type=int, default=300)
    parser.add_argument("--height", type=int, default=400)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if min(args.images, args.width, args.height, args.batch_size, args.passes) < 1:
        parser.error("--images, --width, --height, --batch_size and --passes must be >= 1")
    if args.images < args.batch_size:
        parser.error("--images must be at least --batch_size")
    with tempfile.TemporaryDirectory(prefix="bench-jpeg-") as folder:
        paths = write_jpegs(folder, args.images, args.width, args.height)
        kb = sum(os.path.getsize(p) for p in paths) / len(paths) / 1024
        result = measure(paths, image_size=args.image_size, batch_size=args.batch_size,
                         passes=args.passes)
    result["mean_file_kb"] = round(kb, 1)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['images']} JPEGs of {args.width}x{args.height} ({kb:.0f} KB on average), "
          f"crops of {args.image_size}, batch {args.batch_size}, {result['cpus']} CPUs: "
          f"training pipeline {result['train_images_per_second']:.0f} images/s, test pipeline "
          f"{result['test_images_per_second']:.0f} images/s")


if __name__ == "__main__":
    main()
