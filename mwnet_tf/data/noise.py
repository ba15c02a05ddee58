"""Label noise: transition matrices of the published settings and seeded corruption (NumPy)."""

from __future__ import annotations

import numpy as np

# Synthetic noise, drawn from a transition matrix.
NOISE_TYPES = ("none", "uniform", "flip", "flip1", "hierarchical")
# Every value of --noise: the transition-matrix types, "instance" (instance-dependent,
# `instance_noise`) and "human" (the labels of a file, CIFAR-N).
LABEL_NOISES = NOISE_TYPES + ("instance", "human")


def transition_matrix(kind: str, rate: float, num_classes: int, rng: np.random.Generator,
                      coarse_of_fine: np.ndarray | None = None) -> np.ndarray:
    """The label transition matrix T (a noisy label is drawn from row T[true label]).

    Args:
        kind: "none" (identity); "uniform" (`rate * ones / C + (1 - rate) * I`, so a corrupted
            label may land on the true class); "flip" (diagonal `1 - rate`, two other classes
            picked at random per row get `rate / 2` each: the official "flip2"); "flip1"
            (diagonal `1 - rate`, one other class picked at random per row gets `rate`);
            "hierarchical" (diagonal `1 - rate`, `rate` spread evenly over the other fine
            classes of the same coarse class).
        rate: Corruption probability p in [0, 1].
        num_classes: Number of classes C.
        rng: Picks the target classes of "flip" and "flip1".
        coarse_of_fine: [C] coarse class of each fine class; required for "hierarchical".

    Returns:
        float64 [C, C], rows summing to 1.
    """
    if kind not in NOISE_TYPES:
        raise ValueError(f"unknown noise type {kind!r}; expected one of {NOISE_TYPES}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate must lie in [0, 1], got {rate}")
    c = int(num_classes)
    if c < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    p = float(rate)
    eye = np.eye(c, dtype=np.float64)
    if kind == "none":
        return eye
    if kind == "uniform":
        return p * np.full((c, c), 1.0 / c) + (1.0 - p) * eye
    t = (1.0 - p) * eye
    if kind in ("flip", "flip1"):
        targets = 2 if kind == "flip" else 1
        if c < targets + 1:
            raise ValueError(f"{kind} noise needs at least {targets + 1} classes, got {c}")
        classes = np.arange(c)
        for i in range(c):
            others = rng.choice(classes[classes != i], targets, replace=False)
            t[i, others] += p / targets
        return t
    # hierarchical
    if coarse_of_fine is None:
        raise ValueError("hierarchical noise needs coarse_of_fine (the coarse class of each "
                         "fine class): only CIFAR-100 has coarse labels")
    coarse = np.asarray(coarse_of_fine)
    if coarse.shape != (c,):
        raise ValueError(f"coarse_of_fine must have shape ({c},), got {coarse.shape}")
    for i in range(c):
        siblings = np.flatnonzero((coarse == coarse[i]) & (np.arange(c) != i))
        if siblings.size == 0:
            if p > 0:
                raise ValueError(f"fine class {i} is alone in coarse class {coarse[i]}: "
                                 "hierarchical noise has nowhere to send its labels")
            t[i, i] = 1.0
            continue
        t[i, siblings] += p / siblings.size
    return t


def corrupt_labels(labels: np.ndarray, transition: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Draws each label from row `transition[label]`, one uniform number per sample.

    Args:
        labels: int [N] clean labels in [0, C).
        transition: [C, C] row-stochastic matrix.
        rng: Source of the N uniform numbers (drawn in sample order).

    Returns:
        [N] noisy labels, same dtype as `labels`.
    """
    labels = np.asarray(labels)
    t = np.asarray(transition, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"transition must be a square matrix, got shape {t.shape}")
    if np.any(t < 0) or not np.allclose(t.sum(axis=1), 1.0, atol=1e-9):
        raise ValueError("transition rows must be non-negative and sum to 1")
    if labels.size and (labels.min() < 0 or labels.max() >= t.shape[0]):
        raise ValueError(f"labels must lie in [0, {t.shape[0]})")
    cum = np.cumsum(t, axis=1)
    cum /= cum[:, -1:]  # the last entry becomes exactly 1, so u in [0, 1) always finds a class
    u = rng.random(labels.shape[0])
    noisy = np.empty_like(labels)
    for c in np.unique(labels):
        where = labels == c
        noisy[where] = np.searchsorted(cum[c], u[where], side="right")
    return noisy


def coarse_map(fine: np.ndarray, coarse: np.ndarray, num_classes: int) -> np.ndarray:
    """The coarse class of each fine class, read off paired labels.

    Raises:
        ValueError: a fine class is missing or appears with two coarse classes.
    """
    fine = np.asarray(fine).astype(np.int64)
    coarse = np.asarray(coarse).astype(np.int64)
    if fine.shape != coarse.shape:
        raise ValueError("fine and coarse labels must have the same shape")
    pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0)
    if len(pairs) != num_classes or not np.array_equal(pairs[:, 0], np.arange(num_classes)):
        raise ValueError(f"every fine class in [0, {num_classes}) must appear with exactly one "
                         "coarse class")
    return pairs[:, 1]


def empirical_transition(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """The transition matrix realized by given labels: row i is the distribution of the noisy
    labels of the images of true class i (a class without images gets the identity row)."""
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (np.asarray(clean, np.int64), np.asarray(noisy, np.int64)), 1)
    rows = counts.sum(axis=1, keepdims=True)
    return np.where(rows > 0, counts / np.maximum(rows, 1), np.eye(num_classes))
