"""What a run shows of its weighting each epoch: the weight function over the epoch's losses,
the weights and losses of clean and corrupted samples, their change between epochs (Fig. 6),
the test confusion matrix (Fig. 3).

A fixed, seeded set of training samples is tracked (`tracked_indices`); after each epoch
their losses are computed in inference mode and the method's weights of them are taken
(`Method.sample_weights`; MW-Net: the weight net of the loss, L2RW: its meta-gradient
weights). Everything here is NumPy on those arrays; the trainer computes the losses and
writes what `epoch_summary` returns.
"""

from __future__ import annotations

import numpy as np

TRACKED = 2000  # training samples followed through the run
WEIGHT_BINS = np.linspace(0.0, 1.0, 21)
GRID_POINTS = 101


def tracked_indices(n: int, seed: int, size: int = TRACKED) -> np.ndarray:
    """`min(size, n)` distinct training indices, sorted, the same for a seed."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A4C]))
    return np.sort(rng.choice(n, size=min(size, n), replace=False))


def loss_bins(losses: np.ndarray, bins: int = 30) -> np.ndarray:
    """Histogram edges from 0 to the largest loss (at least 1)."""
    return np.linspace(0.0, max(1.0, float(np.max(losses)) if len(losses) else 1.0), bins + 1)


def loss_grid(losses: np.ndarray) -> np.ndarray:
    """Losses at which the weight function is drawn: 0 to the epoch's largest loss."""
    return np.linspace(0.0, float(loss_bins(losses)[-1]), GRID_POINTS)


TREND_TOLERANCE = 0.01  # weight differences below this are noise of the grid


def weight_trend(losses, weights) -> dict:
    """Whether a learned weight function falls with the loss over `losses` (an increasing
    grid; the range the training losses covered): {"weight_function_decreasing": bool,
    "weight_function_trend": "falls" | "rises" | "flat" | "not monotone"}. It falls when the
    weight at the largest loss is below the weight at loss 0 by more than `TREND_TOLERANCE`
    and no loss weighs more than a smaller one by more than that; it rises in the mirror
    case. A function that does not fall weights clean and wrong labels alike or the wrong
    ones up: its weights are no ranking of suspect labels."""
    w = np.asarray(weights, np.float64)
    rise = float(np.max(w - np.minimum.accumulate(w))) if len(w) else 0.0
    fall = float(np.max(np.maximum.accumulate(w) - w)) if len(w) else 0.0
    if len(w) and w[-1] < w[0] - TREND_TOLERANCE and rise <= TREND_TOLERANCE:
        trend = "falls"
    elif len(w) and w[-1] > w[0] + TREND_TOLERANCE and fall <= TREND_TOLERANCE:
        trend = "rises"
    elif rise <= TREND_TOLERANCE and fall <= TREND_TOLERANCE:
        trend = "flat"
    else:
        trend = "not monotone"
    return {"weight_function_decreasing": trend == "falls", "weight_function_trend": trend}


def weight_bins(weights: np.ndarray) -> np.ndarray:
    """Histogram edges of weights: `WEIGHT_BINS` (0 to 1), or as many bins from 0 to the next
    whole number above the largest weight when weights exceed 1 (L2RW's `n * w_i`)."""
    top = float(np.max(weights)) if len(weights) else 0.0
    if top <= 1.0:
        return WEIGHT_BINS
    return np.linspace(0.0, float(np.ceil(top)), len(WEIGHT_BINS))


def epoch_summary(losses: np.ndarray, corrupted: np.ndarray, weights: np.ndarray | None,
                  previous_weights: np.ndarray | None) -> dict:
    """Per-epoch figures of the tracked samples (JSON-ready lists and floats).

    Keys: `loss_histogram` {bins, clean, corrupted}; with weights also `weight_histogram`
    {bins, clean, corrupted}, `weight_clean`, `weight_corrupted` (means), and with the
    previous epoch's weights `weight_variation_mean` (mean |change|) and
    `weight_variation_std` (standard deviation of the change).
    """
    corrupted = np.asarray(corrupted, bool)
    edges = loss_bins(losses)
    out = {"loss_histogram": {
        "bins": edges.tolist(),
        "clean": np.histogram(losses[~corrupted], edges)[0].tolist(),
        "corrupted": np.histogram(losses[corrupted], edges)[0].tolist()}}
    if weights is None:
        return out
    weights = np.asarray(weights, np.float64)
    edges = weight_bins(weights)
    out["weight_histogram"] = {
        "bins": edges.tolist(),
        "clean": np.histogram(weights[~corrupted], edges)[0].tolist(),
        "corrupted": np.histogram(weights[corrupted], edges)[0].tolist()}
    out["weight_clean"] = float(weights[~corrupted].mean()) if (~corrupted).any() else None
    out["weight_corrupted"] = float(weights[corrupted].mean()) if corrupted.any() else None
    if previous_weights is not None:
        change = weights - np.asarray(previous_weights, np.float64)
        out["weight_variation_mean"] = float(np.abs(change).mean())
        out["weight_variation_std"] = float(change.std())
    return out
