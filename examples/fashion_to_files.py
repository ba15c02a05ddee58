"""Writes Fashion-MNIST with 40% flip noise as files of your own data: a folder tree, a CSV and
an npz, all three holding the same split as the built-in run with the same seed.

    python examples/fashion_to_files.py --out=/tmp/fashion-s0 --seed=0

OUT/train/<class>/NNNNN.png   the training images under their noisy labels
OUT/meta/<class>/NNNNN.png    `--meta_per_class` clean images per class (the trusted set)
OUT/test/<class>/NNNNN.png    the test set
OUT/fashion.csv               path,label,split,true_label (paths relative to OUT)
OUT/fashion.npz               x_train,y_train,x_meta,y_meta,x_test,y_test,y_train_true,class_names
                              (images uint8 [N, 28, 28, 1]: `--dataset=npz` reads them as images)

The split and the noisy labels are those of `python -m mwnet_tf.train --dataset=fashion_mnist
--noise=flip --rate=0.4 --meta_per_class=100 --seed=SEED` (`mwnet_tf.data.make_biased_data`).
`--train_per_class=N` keeps a seeded subset of N training images per noisy class for a quick try.
"""

from __future__ import annotations

import csv
import os

import numpy as np
from absl import flags

from mwnet_tf.cli import commandline

FLAGS = flags.FLAGS

# Fashion-MNIST's classes in label order, made safe as folder names.
CLASS_NAMES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
               "sneaker", "bag", "ankle_boot")


def define_flags() -> None:
    flags.DEFINE_string("out", None, "Folder to write (created).")
    flags.DEFINE_integer("seed", 0, "Split and noise seed (the run's --seed).", lower_bound=0)
    flags.DEFINE_string("noise", "flip", "Label noise (mwnet_tf.data.LABEL_NOISES).")
    flags.DEFINE_float("rate", 0.4, "Noise rate.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("meta_per_class", 100, "Clean meta images per class.", lower_bound=1)
    flags.DEFINE_integer("train_per_class", None, "Keep only this many training images per "
                         "(noisy) class, seeded (default: all).", lower_bound=1)
    flags.DEFINE_string("data_dir", None, "Folder with the four IDX files (default: found).")


def biased_split(seed: int, *, noise: str = "flip", rate: float = 0.4, meta_per_class: int = 100,
                 train_per_class: int | None = None, data_dir: str | None = None) -> dict:
    """The arrays of the split: images [N, 28, 28] uint8, labels int64."""
    from mwnet_tf.data import load_dataset, make_biased_data

    ds = load_dataset("fashion_mnist", data_dir)
    b = make_biased_data(ds, noise=noise, rate=rate, meta_per_class=meta_per_class, seed=seed)
    keep = np.arange(len(b.train_y))
    if train_per_class is not None:
        rng = np.random.default_rng(seed)
        keep = np.sort(np.concatenate([
            rng.permutation(np.flatnonzero(b.train_y == c))[:train_per_class]
            for c in range(len(CLASS_NAMES))]))
    squeeze = lambda x: np.asarray(x).reshape(len(x), 28, 28).astype(np.uint8)
    return {"x_train": squeeze(b.train_x[keep]), "y_train": b.train_y[keep].astype(np.int64),
            "y_train_true": b.train_clean_y[keep].astype(np.int64),
            "x_meta": squeeze(b.meta_x), "y_meta": b.meta_y.astype(np.int64),
            "x_test": squeeze(b.test_x), "y_test": b.test_y.astype(np.int64)}


def write_files(out: str, arrays: dict) -> None:
    """Writes the folder tree, OUT/fashion.csv and OUT/fashion.npz."""
    from PIL import Image

    os.makedirs(out, exist_ok=True)
    rows = []
    for split in ("train", "meta", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        true = arrays["y_train_true"] if split == "train" else y
        for name in CLASS_NAMES:
            os.makedirs(os.path.join(out, split, name), exist_ok=True)
        for i in range(len(y)):
            rel = f"{split}/{CLASS_NAMES[y[i]]}/{i:05d}.png"
            Image.fromarray(x[i], mode="L").save(os.path.join(out, rel))
            rows.append((rel, CLASS_NAMES[y[i]], split, CLASS_NAMES[true[i]]))
    with open(os.path.join(out, "fashion.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("path", "label", "split", "true_label"))
        w.writerows(rows)
    # a channel axis: `--dataset=npz` takes uint8 [N, H, W, C] as images ([N, 28, 28] would be
    # feature vectors, which the CNN cannot take)
    channels = {k: v[..., None] if k.startswith("x_") else v for k, v in arrays.items()}
    np.savez_compressed(os.path.join(out, "fashion.npz"), class_names=np.array(CLASS_NAMES),
                        **channels)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        commandline.fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
    if not FLAGS.out:
        commandline.fail("--out is required", 2)
    arrays = biased_split(FLAGS.seed, noise=FLAGS.noise, rate=FLAGS.rate,
                          meta_per_class=FLAGS.meta_per_class,
                          train_per_class=FLAGS.train_per_class, data_dir=FLAGS.data_dir)
    write_files(FLAGS.out, arrays)
    noisy = float(np.mean(arrays["y_train"] != arrays["y_train_true"]))
    print(f"{FLAGS.out}: train {len(arrays['y_train'])} (noise {noisy:.4f}), "
          f"meta {len(arrays['y_meta'])}, test {len(arrays['y_test'])}")


if __name__ == "__main__":
    commandline.run(main, define_flags, __doc__)
