"""Long-tailed class imbalance as in the MW-Net class-imbalance experiments (NumPy)."""

from __future__ import annotations

import numpy as np


def long_tail_counts(n_max: int, num_classes: int, imbalance: float) -> np.ndarray:
    """Images kept per class: class c keeps `int(n_max * (1/imbalance)**(c / (C-1)))`.

    Args:
        n_max: Images of the largest (first) class.
        num_classes: Number of classes C.
        imbalance: Ratio of the largest to the smallest class, >= 1 (1 keeps everything).

    Returns:
        int64 [C] counts, non-increasing, from n_max down to about n_max / imbalance.
    """
    if imbalance < 1:
        raise ValueError(f"imbalance must be >= 1 (1 = balanced), got {imbalance}")
    if n_max < 0 or num_classes < 1:
        raise ValueError(f"need n_max >= 0 and num_classes >= 1, got {n_max}, {num_classes}")
    if num_classes == 1:
        return np.array([n_max], dtype=np.int64)
    factor = 1.0 / imbalance
    return np.array([int(n_max * factor ** (c / (num_classes - 1.0)))
                     for c in range(num_classes)], dtype=np.int64)


def long_tail_indices(labels: np.ndarray, imbalance: float,
                      rng: np.random.Generator) -> np.ndarray:
    """Indices of a random long-tailed subset of `labels`.

    `n_max` is the largest class count of `labels`; class c keeps
    `min(long_tail_counts(n_max, C, imbalance)[c], available)` images picked by `rng`.

    Returns:
        Sorted int64 indices into `labels`.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    available = np.bincount(labels)
    targets = long_tail_counts(int(available.max()), len(available), imbalance)
    kept = []
    for c, n in enumerate(targets):
        idx = np.flatnonzero(labels == c)
        kept.append(rng.permutation(idx)[:n] if n < idx.size else idx)
    return np.sort(np.concatenate(kept)).astype(np.int64)
