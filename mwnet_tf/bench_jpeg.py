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

import json
import os
import tempfile

from absl import flags

from mwnet_tf.cli import commandline

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_integer("images", 400, "JPEGs written and read per pass.", lower_bound=1)
    flags.DEFINE_integer("width", 300, "Width of each JPEG (pixels).", lower_bound=1)
    flags.DEFINE_integer("height", 400, "Height of each JPEG (pixels).", lower_bound=1)
    flags.DEFINE_integer("image_size", 224, "Side of the square crops.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 32, "Batch size.", lower_bound=1)
    flags.DEFINE_integer("passes", 3, "Timed passes (after one of warm-up).", lower_bound=1)
    flags.DEFINE_bool("json", False, "Print the result as JSON.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        commandline.fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
    if FLAGS.images < FLAGS.batch_size:
        commandline.fail("--images must be at least --batch_size", 2)
    with commandline.quiet_stderr():
        from mwnet_tf.benchmarking import jpeg
    with tempfile.TemporaryDirectory(prefix="bench-jpeg-") as folder:
        paths = jpeg.write_jpegs(folder, FLAGS.images, FLAGS.width, FLAGS.height)
        kb = sum(os.path.getsize(p) for p in paths) / len(paths) / 1024
        result = jpeg.measure(paths, image_size=FLAGS.image_size, batch_size=FLAGS.batch_size,
                              passes=FLAGS.passes)
    result["mean_file_kb"] = round(kb, 1)
    if FLAGS.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['images']} JPEGs of {FLAGS.width}x{FLAGS.height} ({kb:.0f} KB on average), "
          f"crops of {FLAGS.image_size}, batch {FLAGS.batch_size}, {result['cpus']} CPUs: "
          f"training pipeline {result['train_images_per_second']:.0f} images/s, test pipeline "
          f"{result['test_images_per_second']:.0f} images/s")


def run() -> None:
    """The entry point of `python -m mwnet_tf.bench_jpeg` and of the `mwnet-bench-jpeg`
    script."""
    commandline.run(main, define_flags, __doc__)


if __name__ == "__main__":
    run()
