"""A meta set selected from the training set: the k lowest-loss samples of each class."""

from __future__ import annotations

import numpy as np


def lowest_loss_per_class(losses, labels, k: int, num_classes: int) -> np.ndarray:
    """Sorted indices of the `k` samples of lowest loss of each class of `labels` (the
    training labels as given), as CMW-Net-SL's meta set (`dataloader_cifar.py`, mode "meta":
    `torch.topk(losses[class], k, largest=False)` per class). Equal losses are taken in index
    order. A class with fewer than `k` samples is a `ValueError` (a class without any is
    skipped)."""
    losses = np.asarray(losses, np.float64).reshape(-1)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if losses.shape != labels.shape:
        raise ValueError("losses and labels differ in length")
    rows = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) == 0:
            continue
        if len(members) < k:
            raise ValueError(f"class {c} has {len(members)} training samples, fewer than the "
                             f"{k} lowest-loss samples per class the meta set takes")
        rows.append(members[np.argsort(losses[members], kind="stable")[:k]])
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)
