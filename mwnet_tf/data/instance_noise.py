"""Instance-dependent label noise: a sample's noisy label depends on its image, not only on its
class (Xia et al., "Part-dependent Label Noise: Towards Instance-dependent Label Noise",
NeurIPS 2020, the instance-dependent generator of its appendix and of the code later work
reuses, e.g. `get_instance_noisy_label` in the CAL and PES repositories).

For noise rate tau and C classes, with x_i the i-th image normalized per channel and flattened
to S features:
1. per-sample flip rates q_i from a normal N(tau, 0.1^2) truncated to [0, 1];
2. C projections W_c in R^{S x C}, entries N(0, 1);
3. p = x_i W_{y_i}; p[y_i] = -inf; p = q_i * softmax(p); p[y_i] = 1 - q_i;
4. the noisy label is drawn from p.

So each sample keeps its label with probability 1 - q_i (about 1 - tau on average) and,
when it flips, flips towards the classes its own pixels score highest under its class's
projection: images that look alike get alike wrong labels. Seeded: the same generator state
gives the same labels. NumPy only; memory grows as S * C * C floats (CIFAR-100: 3072 * 100 *
100 = 30.7M, 246 MB in float64, so W is drawn in float32 one class at a time).
"""

from __future__ import annotations

import numpy as np

FLIP_RATE_STD = 0.1


def truncated_normal(mean: float, std: float, size: int, rng: np.random.Generator,
                     low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """`size` draws of N(mean, std^2) restricted to [low, high] (rejection: redraw the ones
    outside until none is left)."""
    out = rng.normal(mean, std, size)
    bad = (out < low) | (out > high)
    while bad.any():
        out[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (out < low) | (out > high)
    return out


def instance_noisy_labels(features: np.ndarray, labels: np.ndarray, rate: float,
                          num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Noisy labels [N] drawn by the instance-dependent generator (module docstring).

    Args:
        features: float [N, S] normalized, flattened images.
        labels: int [N] true labels in [0, num_classes).
        rate: mean flip rate tau in [0, 1].
        num_classes: C.
        rng: the run's noise generator.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate must lie in [0, 1], got {rate}")
    labels = np.asarray(labels, np.int64)
    features = np.asarray(features, np.float32).reshape(len(labels), -1)
    n, c = len(labels), int(num_classes)
    if n == 0:
        return labels.copy()
    flip = truncated_normal(rate, FLIP_RATE_STD, n, rng)
    noisy = np.empty(n, np.int64)
    u = rng.random(n)
    for k in range(c):
        w = rng.standard_normal((features.shape[1], c), dtype=np.float32)
        rows = np.flatnonzero(labels == k)
        if not len(rows):
            continue
        scores = (features[rows] @ w).astype(np.float64)
        scores[:, k] = -np.inf
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        p *= flip[rows, None]
        p[:, k] = 1.0 - flip[rows]
        cum = np.cumsum(p, axis=1)
        cum /= cum[:, -1:]
        noisy[rows] = np.minimum((cum < u[rows, None]).sum(axis=1), c - 1)
    return noisy
