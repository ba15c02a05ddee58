"""Your own data: the object every own-data loader returns, and the run's biased data from it.

The loaders (`from_files.load_image_folder`, `from_files.load_csv_table`,
`from_npz.load_npz_arrays`, `from_tfds.load_tfds_dataset`) return an `OwnData`: a training set
with its labels as given (possibly noisy, the point of the exercise), a trusted set (`meta_x`,
`meta_y`; None for a tfds set, whose trusted set is carved from its training split like
CIFAR's) and a test set. `make_own_biased_data` turns it into the `BiasedData` of one run, like
`bias.make_biased_data` for the built-in sets: a trusted subset of `meta_per_class` per class
(if asked), an optional long-tail cut and optional synthetic label noise on top of the given
labels (default: none, the labels as given).

"Clean" labels of the training set: the `true_label` column of a table (`y_train_true` of an
.npz) when there is one, else the labels as given; then the realized noise rate is unknown
(NaN) unless synthetic noise was added, and is then measured against the given labels.

Every problem with the data is a one-line `DataUnavailableError` naming the file, class or
label; problems with the arguments are `ValueError`s.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mwnet_tf.data.bias import BiasedData, part_rngs
from mwnet_tf.data.imbalance import long_tail_indices
from mwnet_tf.data.instance_noise import instance_noisy_labels
from mwnet_tf.data.noise import corrupt_labels, empirical_transition, transition_matrix
from mwnet_tf.errors import data_error

# The part of the trusted set held out for testing when the data has no test split: half,
# because the test accuracy is the number a run reports, and the trusted sets this is made for
# are small (tens of images per class): a 20% hold-out would leave a test set too small to
# tell methods apart. Give a test split (or a smaller fraction) when the trusted set is large.
DEFAULT_TEST_FRACTION = 0.5
DEFAULT_SPLIT_SEED = 0  # fixed, not the run seed: every run of a data set tests on the same set
# What a run without a trusted set takes, for the messages that refuse one.
NO_TRUSTED_WAY = ("without a trusted set, train with --meta_source=selected (a meta set chosen "
                  "from the training set each epoch)")
# Data with neither a trusted set nor a test split (`--meta_source=selected`): the part of the
# training split held out, with its given labels, to evaluate on (as tfds' 0.1 of "train"):
# the training set is the larger one here, and every held-out image is one fewer to learn from.
DEFAULT_HELDOUT_FRACTION = 0.1
OWN_NOISES = ("none", "uniform", "flip", "flip1", "instance")

# the most classes own data may have: labels are class indices 0..C-1, and every class gets a
# name, a logit and a row of the noise-transition matrices, so a label of 10^12 is a mistake
MAX_CLASSES = 100_000


@dataclasses.dataclass(frozen=True, eq=False)
class OwnData:
    """A user's data set as loaded, before the run's choices (trusted subset, noise, cut).

    Attributes:
        name: "folder", "csv", "npz" or "tfds:NAME".
        source: The folder, file or tfds data_dir it was read from.
        class_names: The class names: label k is `class_names[k]`.
        train_x: Image paths (str [N], `image_size` set) or an array [N, ...] (uint8 images
            [N, H, W, C] or any numeric features, e.g. tabular [N, D]).
        train_y: int64 [N] training labels as given.
        meta_x: The trusted set's x (None: carve it from the training set, `meta_per_class`).
        meta_y: int64 [K] its labels (None with `meta_x`).
        test_x: The test set's x.
        test_y: int64 [M] its labels.
        mean: Normalization mean in x / 255 units (per channel, per feature, or one value:
            `pipeline.normalize` computes `(x / 255 - mean) / std`).
        std: Normalization standard deviation, the same units.
        augment: Whether training (and trusted) images are augmented (crop + flip).
        train_true_y: int64 [N] the true labels of the training set, when known.
        image_size: Side of the square images decoded from files (None: arrays in memory).
        channels: Channels the images are decoded to (files: 3 if any image has color, else 1).
        test_held_out: The fraction of the trusted set (tfds, and data without a trusted set:
            of the training split) held out, stratified, as the test set because the data has
            none; None when it has one.
        verified: Whether every image file was decoded once at load time.
        test_labels_given: The test set is a part of the training set held out with its given
            labels (data with neither a trusted set nor a test split, `--meta_source=selected`):
            its accuracy is against labels that may be wrong, and is reported as
            `heldout_noisy_accuracy`, never as a test accuracy.

    `meta_x` None means no trusted set: a tfds set's is carved from its training split
    (`carves_trusted`); folder, csv and npz data without one train only with a meta set
    selected from the training set (`--meta_source=selected`).
    """

    name: str
    source: str
    class_names: tuple[str, ...]
    train_x: np.ndarray
    train_y: np.ndarray
    meta_x: np.ndarray | None
    meta_y: np.ndarray | None
    test_x: np.ndarray
    test_y: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    train_true_y: np.ndarray | None = None
    image_size: int | None = None
    channels: int | None = None
    test_held_out: float | None = None
    verified: bool = False
    test_labels_given: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def carves_trusted(self) -> bool:
        """Whether its trusted set is carved from its training split (tfds:NAME)."""
        return self.name.startswith("tfds:")

    @property
    def from_files(self) -> bool:
        return self.image_size is not None

    def summary(self) -> dict:
        """What results.json should record about the data."""
        return {
            "dataset": self.name, "source": self.source, "classes": list(self.class_names),
            "train": int(len(self.train_y)),
            "trusted": None if self.meta_y is None else int(len(self.meta_y)),
            "test": int(len(self.test_y)), "test_held_out": self.test_held_out,
            "clean_labels_known": self.train_true_y is not None,
            "image_size": self.image_size, "channels": self.channels,
            "augment": self.augment, "verified": self.verified,
            "test_labels_given": self.test_labels_given,
        }

    def describe(self) -> str:
        """One line for the log."""
        trusted = (f"{len(self.meta_y)} trusted" if self.meta_y is not None
                   else "carved from training" if self.carves_trusted else "no trusted set")
        if self.test_held_out is None:
            test = f"{len(self.test_y)} test"
        elif self.test_labels_given:
            test = (f"{len(self.test_y)} held out ({self.test_held_out:g} of the training "
                    "split, stratified, with their given labels: heldout_noisy_accuracy, not "
                    "a test accuracy)")
        else:
            part = "trusted set" if self.meta_y is not None else "training split"
            test = (f"{len(self.test_y)} test (held out: {self.test_held_out:g} of the "
                    f"{part}, stratified)")
        shape = (f"images {self.image_size}x{self.image_size}x{self.channels}" if self.from_files
                 else "x " + "x".join(map(str, self.train_x.shape[1:])))
        return (f"{self.name} {self.source}: {self.num_classes} classes, {len(self.train_y)} "
                f"training, {trusted}, {test}; {shape}")


def hold_out(labels: np.ndarray, fraction: float, seed: int, class_names,
             what: str) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, stratified split of `labels`: (kept, held_out) sorted int64 indices.

    Each class gives `round(fraction * n)` images, at least 1 and at most n - 1.

    Raises:
        ValueError: `fraction` outside (0, 1).
        DataUnavailableError: a class of `what` has fewer than 2 images.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the test fraction must lie strictly between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    held = []
    for c, name in enumerate(class_names):
        idx = np.flatnonzero(labels == c)
        if idx.size < 2:
            raise data_error(what, f"class {name!r} has {idx.size} image(s), too few to hold out a "
                        "test part (at least 2 per class): add a test split")
        k = int(np.clip(round(fraction * idx.size), 1, idx.size - 1))
        held.append(rng.choice(idx, k, replace=False))
    test = np.sort(np.concatenate(held)).astype(np.int64) if held else np.zeros(0, np.int64)
    keep = np.setdiff1d(np.arange(labels.size), test).astype(np.int64)
    return keep, test


def hold_out_training(train_x: np.ndarray, train_y: np.ndarray, true_y: np.ndarray | None,
                      fraction: float | None, seed: int, class_names, source: str):
    """Data with neither a trusted set nor a test split: a seeded, stratified part of the
    training split (`fraction`, None: `DEFAULT_HELDOUT_FRACTION`) held out, with its given
    labels, as the set to evaluate on. Returns (train_x, train_y, true_y, test_x, test_y,
    fraction)."""
    fraction = DEFAULT_HELDOUT_FRACTION if fraction is None else float(fraction)
    keep, test = hold_out(train_y, fraction, seed, class_names, f"{source} training split")
    return (train_x[keep], train_y[keep], None if true_y is None else true_y[keep],
            train_x[test], train_y[test], fraction)


def _per_class(labels: np.ndarray, meta_per_class: int, class_names, rng: np.random.Generator,
               what: str) -> np.ndarray:
    """Sorted indices of `meta_per_class` random images of every class."""
    if meta_per_class < 1:
        raise ValueError(f"meta_per_class must be >= 1, got {meta_per_class}")
    chosen = []
    for c, name in enumerate(class_names):
        idx = np.flatnonzero(labels == c)
        if idx.size < meta_per_class:
            raise data_error(what, f"class {name!r} has only {idx.size} images, fewer than "
                        f"meta_per_class={meta_per_class}")
        chosen.append(rng.choice(idx, meta_per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _trusted_part(own: OwnData, meta_per_class: int | None, meta_rng: np.random.Generator):
    """(training pool, meta_index, meta_x, meta_y) of `make_own_biased_data`'s first stage: the
    trusted set drawn, carved from the training split (tfds), or empty (no trusted set)."""
    names = own.class_names
    if own.meta_x is None and not own.carves_trusted:  # the trainer selects the meta set
        if meta_per_class is not None:
            raise ValueError(f"--meta_per_class={meta_per_class} draws trusted images per "
                             f"class, and {own.source} has no trusted set: the meta set is "
                             "selected from the training set (--select_per_class sets its "
                             "size)")
        pool = np.arange(len(own.train_y), dtype=np.int64)
        meta_index = np.zeros(0, np.int64)
        meta_x, meta_y = own.train_x[:0], np.zeros(0, np.int64)
    elif own.meta_x is None:
        if meta_per_class is None:
            raise ValueError(f"{own.name} has no trusted set of its own: give meta_per_class, "
                             "the clean images per class taken out of its training split")
        meta_index = _per_class(own.train_y, meta_per_class, names, meta_rng,
                                f"{own.name} training split")
        pool = np.setdiff1d(np.arange(len(own.train_y)), meta_index).astype(np.int64)
        meta_x, meta_y = own.train_x[meta_index], own.train_y[meta_index]
    else:
        pool = np.arange(len(own.train_y), dtype=np.int64)
        meta_index = np.arange(len(own.meta_y), dtype=np.int64)
        if meta_per_class is not None:
            meta_index = _per_class(own.meta_y, meta_per_class, names, meta_rng,
                                    f"{own.source} trusted set")
        meta_x, meta_y = own.meta_x[meta_index], own.meta_y[meta_index]
    return pool, meta_index, meta_x, meta_y


def make_own_biased_data(own: OwnData, *, noise: str = "none", rate: float = 0.0,
                         imbalance: float = 1.0, meta_per_class: int | None = None,
                         seed: int = 0, meta_seed: int | None = None,
                         noise_seed: int | None = None) -> BiasedData:
    """The `BiasedData` of one run on own data.

    Order, each stage with its own generator spawned from `seed` (as `make_biased_data`):
    the trusted set (`meta_per_class` random images per class of the given trusted set, or
    all of it when None; a tfds set: `meta_per_class` per class taken out of the training
    split, required; folder, csv or npz data without a trusted set: an empty one, for the
    trainer to select from the training set, `--meta_source=selected`), then the long-tail
    cut of the training set (`imbalance`, 1: none), then label noise on the given training
    labels (`noise`: "none" keeps them as given; "uniform", "flip", "flip1" draw from the
    transition matrix of `rate`; "instance" needs data in memory). Data read from files keeps
    its paths: the pipeline decodes them. `meta_seed` and `noise_seed` (None: `seed`) seed
    the trusted-set draw and the noise alone, as in `make_biased_data`.

    Raises:
        ValueError: a noise this data cannot take, a tfds set without `meta_per_class`, or
            `meta_per_class` for data without a trusted set.
        DataUnavailableError: a class with fewer trusted images than `meta_per_class`.
    """
    if noise not in OWN_NOISES:
        why = {"human": "own labels are used as given: --noise=none is the labels of your data",
               "hierarchical": "own data has no coarse classes"}.get(noise, "unknown noise")
        raise ValueError(f"noise {noise!r} does not apply to own data ({why}); expected one of "
                         f"{OWN_NOISES}")
    if noise == "instance" and own.from_files:
        raise ValueError("instance-dependent noise needs the images in memory; own image "
                         "folders and tables are read from files: use uniform, flip or flip1")
    meta_rng, tail_rng, noise_rng = part_rngs(seed, meta_seed, noise_seed)
    pool, meta_index, meta_x, meta_y = _trusted_part(own, meta_per_class, meta_rng)
    train_index = pool[long_tail_indices(own.train_y[pool], imbalance, tail_rng)]
    given = own.train_y[train_index].astype(np.int64)
    known = own.train_true_y is not None
    clean = own.train_true_y[train_index].astype(np.int64) if known else given
    c = own.num_classes
    if noise == "none":
        noisy = given
        transition = (empirical_transition(clean, noisy, c) if known
                      else np.full((c, c), np.nan))
    elif noise == "instance":
        pixels = own.train_x[train_index].astype(np.float32) / 255.0
        features = (pixels - np.float32(own.mean)) / np.float32(own.std)
        noisy = instance_noisy_labels(features.reshape(len(given), -1), given, rate, c,
                                      noise_rng)
        transition = empirical_transition(clean, noisy, c)
    else:
        transition = transition_matrix(noise, rate, c, noise_rng)
        noisy = corrupt_labels(given, transition, noise_rng)
        if known:
            transition = empirical_transition(clean, noisy, c)
    if clean.size and (known or noise != "none"):
        realized = float(np.mean(noisy != clean))
    else:
        realized = float("nan") if clean.size else 0.0
    return BiasedData(
        train_x=own.train_x[train_index], train_y=noisy.astype(np.int64), train_clean_y=clean,
        meta_x=meta_x, meta_y=meta_y.astype(np.int64), test_x=own.test_x,
        test_y=own.test_y.astype(np.int64), num_classes=c, mean=tuple(own.mean),
        std=tuple(own.std), augment=own.augment, transition=transition,
        realized_noise_rate=realized, train_index=train_index, meta_index=meta_index,
        image_size=own.image_size, channels=own.channels or 3, resize_crop=False,
        corruption_known=known or noise != "none",
        test_name="heldout_noisy" if own.test_labels_given else "test")
