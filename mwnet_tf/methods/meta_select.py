"""The meta set selected from the training set (`--meta_source=selected`): its rule, in NumPy.

The rule of CMW-Net-SL (Shu et al., "CMW-Net: Learning a Class-Aware Sample Weighting Mapping
for Robust Deep Learning", TPAMI 2023; code xjtushujun/CMW-Net,
`section4/Feature-independent_Label_Noise/dataloader_cifar.py`, mode "meta"): for every class
of the given (possibly noisy) training labels, the k samples of that label with the lowest
loss (`torch.topk(losses, 10, largest=False)`), their given labels kept. The authors rebuild the
set every epoch after the warm-up from the losses of their EMA model in eval mode on the
unaugmented training images (`cmwn.py`, `eval_train(net_ema)`); which model ranks is the
caller's choice here (`Method.ranking_model`).

The set is a subset of the training set chosen by the method, not a set held out: its labels
are as noisy as the rule lets through (`history.json`'s `meta_clean_fraction` says how clean,
where the truth is known).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def lowest_loss_per_class(losses: np.ndarray, labels: np.ndarray, k: int, num_classes: int, *,
                          class_names: Sequence[str] | None = None) -> np.ndarray:
    """The indices of the `k` lowest-loss samples of every class, sorted.

    Args:
        losses: float [N] the loss of each sample (NaN counts as +inf: never preferred).
        labels: int [N] its label, in 0..num_classes - 1.
        k: samples per class, >= 1.
        num_classes: the classes; every one gives k samples.
        class_names: names for the error message (default: the class indices).

    Returns:
        int64 [k * num_classes] indices into `labels`, ascending. Equal losses within a class
        go to the lower index (a stable sort), so the choice is a function of the arrays alone.

    Raises:
        ValueError: shapes that differ, `k` < 1, a label outside the classes, or a class with
            fewer than `k` samples.
    """
    losses = np.asarray(losses, np.float64)
    labels = np.asarray(labels)
    if losses.ndim != 1 or losses.shape != labels.shape:
        raise ValueError(f"losses {losses.shape} and labels {labels.shape} must be two arrays "
                         "[N] of the same length")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes)
    short = np.flatnonzero(counts < k)
    if short.size:
        c = int(short[0])
        name = repr(str(class_names[c])) if class_names is not None else str(c)
        raise ValueError(f"class {name} has {int(counts[c])} training samples, fewer than the "
                         f"{k} per class a selected meta set takes: lower --select_per_class")
    keys = np.where(np.isnan(losses), np.inf, losses)
    order = np.lexsort((keys, labels))  # by label, then loss; stable: ties by index
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    chosen = order[(starts[:, None] + np.arange(k)[None, :]).ravel()]
    return np.sort(chosen).astype(np.int64)
