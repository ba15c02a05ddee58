"""Figures of a run's weighting, drawn with matplotlib's Agg backend (no display needed).

Each function returns a `matplotlib.figure.Figure`; `to_png` renders and closes it. The
trainer writes them to TensorBoard each epoch, `mwnet_tf.plot` to PNG files.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

CLEAN, CORRUPTED = "tab:blue", "tab:red"


def to_png(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _bars(ax, hist: dict, label: str) -> None:
    edges = np.asarray(hist["bins"])
    width = np.diff(edges)
    clean, bad = np.asarray(hist["clean"]), np.asarray(hist["corrupted"])
    ax.bar(edges[:-1], clean, width, align="edge", color=CLEAN, alpha=0.8, label="clean")
    if bad.sum():
        ax.bar(edges[:-1], bad, width, align="edge", bottom=clean, color=CORRUPTED, alpha=0.8,
               label="corrupted")
    ax.set_xlabel(label)
    ax.set_ylabel("tracked samples")
    ax.legend(loc="upper right", fontsize="small")


def weight_function(grid, weights, loss_histogram: dict, title: str):
    """The weight function over the epoch's range of losses, the histogram of the tracked
    samples' losses (clean and corrupted stacked) beneath it."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    top.plot(grid, weights, color="black")
    top.set_ylabel("weight")
    top.set_ylim(0, max(1.0, float(np.max(weights)) * 1.05))
    top.set_title(title)
    top.grid(alpha=0.3)
    _bars(bottom, loss_histogram, "training loss")
    fig.tight_layout()
    return fig


def weight_histograms(weight_histogram: dict, title: str):
    """Weights of clean and of corrupted tracked samples (the paper's Fig. 5)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    _bars(ax, weight_histogram, "weight")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _confusion(ax, matrix, title: str):
    m = np.asarray(matrix, np.float64)
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    c = len(m)
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if c <= 20:
        for i in range(c):
            for j in range(c):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(range(c))
    ax.set_yticks(range(c))
    ax.set_title(title, fontsize="medium")
    return image


def confusion_matrices(panels):
    """Test confusion matrices `(title, matrix)` side by side, rows normalized to the true
    class (the paper's Fig. 3)."""
    c = len(panels[0][1])
    size = 1.2 + 0.45 * c
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels) + 0.8, size),
                             squeeze=False)
    for ax, (title, matrix) in zip(axes[0], panels):
        image = _confusion(ax, matrix, title)
    fig.colorbar(image, ax=list(axes[0]), fraction=0.046 / len(panels))
    return fig


def confusion_matrix(matrix, title: str):
    """One test confusion matrix (`confusion_matrices` with one panel)."""
    return confusion_matrices([(title, matrix)])


def curves(series, xlabel: str, ylabel: str, title: str, spread=None):
    """Lines `(label, x, y)` on one axis; `spread[i]`, when given, a band of +- it around
    line i."""
    return curve_panels([(series, xlabel, ylabel, title, spread)])


def curve_panels(panels):
    """Panels side by side, each `(series, xlabel, ylabel, title, spread)` as in `curves`."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4), squeeze=False)
    for ax, (series, xlabel, ylabel, title, spread) in zip(axes[0], panels):
        for i, (label, x, y) in enumerate(series):
            line, = ax.plot(x, y, label=label, marker="o" if len(x) <= 30 else None,
                            markersize=3)
            if spread is not None and spread[i] is not None:
                y, s = np.asarray(y, float), np.asarray(spread[i], float)
                ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def histogram_panels(panels, xlabel: str):
    """Clean/corrupted histograms `(title, {bins, clean, corrupted})`, one panel each."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (title, hist) in zip(axes[0], panels):
        _bars(ax, hist, xlabel)
        ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    return fig
