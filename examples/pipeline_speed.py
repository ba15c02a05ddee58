"""Images per second of the training pipeline (`mwnet_tf.data.pipeline.make_train_dataset`,
training batches zipped with meta batches, as a run reads them) on own data: PNG files decoded
in tf.data (`--dataset=folder` or `csv`) beside arrays in memory (`--dataset=npz`).

    python examples/pipeline_speed.py --dataset=folder --data_dir=/tmp/fashion-s0 --image_size=28
    python examples/pipeline_speed.py --dataset=npz --data_dir=/tmp/fashion-s0/fashion.npz

One untimed pass warms up (tracing, thread pools, the file cache), then the median of
`--passes` full passes over the training set.
"""

from __future__ import annotations

import statistics
import time

from absl import flags

from mwnet_tf.cli import commandline

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("dataset", "folder", ["folder", "csv", "npz"], "Own data format.")
    flags.DEFINE_string("data_dir", None, "The folder, .csv or .npz.")
    flags.DEFINE_integer("image_size", None, "Side images are resized to (folder, csv).")
    flags.DEFINE_integer("batch_size", 100, "Training batch size.", lower_bound=1)
    flags.DEFINE_integer("meta_batch_size", 100, "Meta batch size.", lower_bound=1)
    flags.DEFINE_integer("passes", 2, "Timed passes.", lower_bound=1)


def measure(dataset: str, data_dir: str, *, image_size: int | None, batch_size: int,
            meta_batch_size: int, passes: int) -> dict:
    from mwnet_tf.data.custom.biased import make_own_biased_data
    from mwnet_tf.data.custom.load import load_own_data
    from mwnet_tf.data.pipeline import make_train_dataset

    own = load_own_data(dataset, data_dir, image_size=image_size, augment=False, verify=False)
    data = make_own_biased_data(own)
    rates = []
    for p in range(passes + 1):
        ds = make_train_dataset(data, batch_size=batch_size, meta_batch_size=meta_batch_size,
                                seed=0, epoch=p)
        t0, count = time.perf_counter(), 0
        for batch, _meta in ds:
            count += int(batch["x"].shape[0])
        if p:
            rates.append(count / (time.perf_counter() - t0))
    return {"dataset": dataset, "images": count, "images_per_second": statistics.median(rates)}


def main(argv: list[str]) -> None:
    if len(argv) > 1 or not FLAGS.data_dir:
        commandline.fail("usage: --dataset=folder|csv|npz --data_dir=PATH", 2)
    with commandline.quiet_stderr():
        r = measure(FLAGS.dataset, FLAGS.data_dir, image_size=FLAGS.image_size,
                    batch_size=FLAGS.batch_size, meta_batch_size=FLAGS.meta_batch_size,
                    passes=FLAGS.passes)
    print(f"{r['dataset']}: {r['images']} training images per pass, "
          f"{r['images_per_second']:.0f} images/s")


if __name__ == "__main__":
    commandline.run(main, define_flags, __doc__)
