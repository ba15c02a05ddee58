"""Biased training data: clean meta split, then long-tail cut, then label noise (NumPy)."""

from __future__ import annotations

import dataclasses

import numpy as np

from mwnet_tf.data.datasets import Dataset
from mwnet_tf.data.imbalance import long_tail_indices
from mwnet_tf.data.instance_noise import instance_noisy_labels
from mwnet_tf.data.noise import coarse_map, corrupt_labels, empirical_transition, transition_matrix
from mwnet_tf.data.split import meta_split


@dataclasses.dataclass(frozen=True, eq=False)
class BiasedData:
    """A biased training set, its clean meta set and the clean test set.

    Attributes:
        train_x: uint8 [N, H, W, C] training images.
        train_y: int64 [N] training labels after corruption.
        train_clean_y: int64 [N] their true labels.
        meta_x: uint8 [K, H, W, C] clean, balanced meta images (disjoint from training).
        meta_y: int64 [K] their labels.
        test_x: uint8 [M, H, W, C] test images.
        test_y: int64 [M] test labels.
        num_classes: Number of classes.
        mean: Per-channel mean in [0, 1] pixel units.
        std: Per-channel standard deviation in [0, 1] pixel units.
        augment: Whether the paper's training augmentation applies.
        transition: float64 [C, C] label transition matrix used for the corruption (human
            and instance-dependent noise: the one their labels realize on the training set).
        realized_noise_rate: Fraction of training labels that differ from the true ones.
        train_index: int64 [N] indices of the training images in `Dataset.train_x`.
        meta_index: int64 [K] indices of the meta images in `Dataset.train_x`.
        image_size: None for images held in memory (the arrays above); for a data set read
            from files (Clothing1M), `train_x`, `meta_x` and `test_x` hold image paths (str
            [N]) and `image_size` is the side of the square crops the pipeline decodes.
        channels: Channels of the decoded images of a data set read from files (3 for
            Clothing1M; 1 for an own image folder whose images are all grayscale).
        resize_crop: For a data set read from files: True decodes as for Clothing1M (JPEG
            only, resize to `resize_for(image_size)`, random / center crop of `image_size`);
            False decodes JPEG, PNG, BMP or GIF and resizes straight to `image_size`, then
            augments (reflect-pad, crop, flip) as the in-memory images when `augment`.
        corruption_known: Whether `corrupted` tells the truth of every training label: False
            when the true labels are unknown (own data with its labels as given, Clothing1M
            outside its clean overlap), and then no figure splits clean from corrupted.
        test_name: The name of the evaluation set's metrics: "test", or "heldout_noisy" for a
            part of own training data held out with its given, possibly wrong, labels (no
            trusted set, no test split): `heldout_noisy_accuracy`, never a test accuracy.
        meta_true_y: The true labels of a meta set selected from the training set
            (`--meta_source=selected`, whose labels `meta_y` are the given ones and may be
            wrong); None for a trusted meta set, whose labels are taken as true.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    train_clean_y: np.ndarray
    meta_x: np.ndarray
    meta_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    transition: np.ndarray
    realized_noise_rate: float
    train_index: np.ndarray
    meta_index: np.ndarray
    image_size: int | None = None
    channels: int = 3
    resize_crop: bool = True
    corruption_known: bool = True
    test_name: str = "test"
    meta_true_y: np.ndarray | None = None

    @property
    def from_files(self) -> bool:
        """Whether the x arrays hold image paths that `pipeline` decodes."""
        return self.image_size is not None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one image as the model sees it."""
        if self.from_files:
            return (self.image_size, self.image_size, self.channels)
        return tuple(self.train_x.shape[1:])

    @property
    def corrupted(self) -> np.ndarray:
        """bool [N]: whether each training label differs from the true one."""
        return self.train_y != self.train_clean_y


def part_rngs(seed: int, meta_seed: int | None = None, noise_seed: int | None = None):
    """The generators of the meta draw, the long-tail cut and the noise, spawned from `seed`;
    a part's own seed (None: `seed`) in place of `seed`'s for the meta draw and the noise."""
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
    for part, own_seed in ((0, meta_seed), (2, noise_seed)):
        if own_seed is not None and own_seed != seed:
            rngs[part] = np.random.default_rng(np.random.SeedSequence(own_seed).spawn(3)[part])
    return rngs


def make_biased_data(ds: Dataset, *, noise: str, rate: float, imbalance: float = 1.0,
                     meta_per_class: int, seed: int, meta_seed: int | None = None,
                     noise_seed: int | None = None,
                     human_labels: np.ndarray | None = None) -> BiasedData:
    """Builds the biased training set of one run.

    Order: `meta_per_class` clean images per class are taken out first (before the long-tail
    cut and before corruption), the rest is cut to a long tail (`n_max` = its largest class),
    and the labels of what is left are corrupted. Each stage draws from its own generator
    spawned from `seed`, so e.g. changing the noise rate leaves the meta split unchanged.
    Instance-dependent noise (`noise="instance"`, `instance_noise`) draws each label from
    the image's own flip distribution; its `transition` is the one the labels realize. Human
    noise (`noise="human"`) corrupts nothing at random: the training images left after
    the split and the cut take their labels from `human_labels`, indexed by their position in
    `ds` (`train_index`); the meta set keeps its clean labels.

    Args:
        ds: The clean data set.
        noise: One of `LABEL_NOISES`.
        rate: Corruption probability in [0, 1] (not used by human noise).
        imbalance: Largest / smallest class ratio of the training set (1: no cut).
        meta_per_class: Clean meta images per class.
        seed: Non-negative run seed.
        meta_seed: The meta split's own seed (None: `seed`); the long-tail cut and the noise
            keep `seed`'s generators, drawn over what the split leaves.
        noise_seed: The label noise's own seed (None: `seed`).
        human_labels: int [len(ds.train_y)] noisy label of every training image of `ds`, in
            its order; required by, and only by, `noise="human"`.
    """
    meta_rng, tail_rng, noise_rng = part_rngs(seed, meta_seed, noise_seed)
    meta_index, rest = meta_split(ds.train_y, meta_per_class, meta_rng)
    train_index = rest[long_tail_indices(ds.train_y[rest], imbalance, tail_rng)]
    clean = ds.train_y[train_index].astype(np.int64)
    if (noise == "human") != (human_labels is not None):
        raise ValueError("human_labels go with noise='human', and only with it")
    if noise == "human":
        human_labels = np.asarray(human_labels)
        if human_labels.shape != ds.train_y.shape:
            raise ValueError(f"human_labels has shape {human_labels.shape}; the training set "
                             f"has {len(ds.train_y)} images")
        noisy = human_labels[train_index].astype(np.int64)
        transition = empirical_transition(clean, noisy, ds.num_classes)
    elif noise == "instance":
        pixels = ds.train_x[train_index].astype(np.float32) / 255.0
        features = (pixels - np.float32(ds.mean)) / np.float32(ds.std)
        noisy = instance_noisy_labels(features.reshape(len(clean), -1), clean, rate,
                                      ds.num_classes, noise_rng)
        transition = empirical_transition(clean, noisy, ds.num_classes)
    else:
        transition, noisy = _synthetic(ds, noise, rate, clean, noise_rng)
    return BiasedData(
        train_x=ds.train_x[train_index], train_y=noisy, train_clean_y=clean,
        meta_x=ds.train_x[meta_index], meta_y=ds.train_y[meta_index].astype(np.int64),
        test_x=ds.test_x, test_y=ds.test_y.astype(np.int64), num_classes=ds.num_classes,
        mean=tuple(ds.mean), std=tuple(ds.std), augment=ds.augment, transition=transition,
        realized_noise_rate=float(np.mean(noisy != clean)) if clean.size else 0.0,
        train_index=train_index, meta_index=meta_index)


def _synthetic(ds: Dataset, noise: str, rate: float, clean: np.ndarray,
               noise_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(transition matrix, noisy labels) of a synthetic noise type."""
    coarse_of_fine = None
    if noise == "hierarchical":
        if ds.train_coarse is None:
            raise ValueError(f"hierarchical noise needs coarse labels, which {ds.name} lacks "
                             "(only cifar100 has them)")
        coarse_of_fine = coarse_map(ds.train_y, ds.train_coarse, ds.num_classes)
    transition = transition_matrix(noise, rate, ds.num_classes, noise_rng, coarse_of_fine)
    return transition, corrupt_labels(clean, transition, noise_rng)
