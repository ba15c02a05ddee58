"""The clean, balanced meta set taken out of the training set (NumPy)."""

from __future__ import annotations

import numpy as np


def meta_split(labels: np.ndarray, meta_per_class: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Picks `meta_per_class` random images of every class.

    Args:
        labels: int [N] labels, classes 0..max(labels).
        meta_per_class: Images per class in the meta set, >= 1.
        rng: Picks the images.

    Returns:
        (meta_idx, rest_idx): sorted, disjoint int64 indices into `labels` covering all of it.

    Raises:
        ValueError: a class has fewer than `meta_per_class` images.
    """
    labels = np.asarray(labels)
    if meta_per_class < 1:
        raise ValueError(f"meta_per_class must be >= 1, got {meta_per_class}")
    counts = np.bincount(labels) if labels.size else np.zeros(0, dtype=np.int64)
    short = np.flatnonzero(counts < meta_per_class)
    if counts.size == 0 or short.size:
        c = int(short[0]) if short.size else 0
        n = int(counts[c]) if counts.size else 0
        raise ValueError(f"class {c} has only {n} training images, fewer than "
                         f"meta_per_class={meta_per_class}")
    meta = np.concatenate([rng.choice(np.flatnonzero(labels == c), meta_per_class,
                                      replace=False) for c in range(counts.size)])
    meta = np.sort(meta).astype(np.int64)
    in_meta = np.zeros(labels.shape[0], dtype=bool)
    in_meta[meta] = True
    return meta, np.flatnonzero(~in_meta).astype(np.int64)
