"""Per-epoch figures of a run: tracked training samples, TensorBoard images and histograms,
and the per-epoch history kept in `results.json`.

`Tracker` follows `diagnostics.TRACKED` seeded training samples: after each epoch it computes
their losses (inference mode, against the labels they are trained on) and the method's
weights of those losses (`Method.weight_of`), writes TensorBoard summaries (chief only) and
appends a row to the history, which is saved atomically to `history.json` so that a resumed
run keeps the epochs before it.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import tensorflow as tf

from mwnet_tf import diagnostics, figures, meta
from mwnet_tf.data import BiasedData
from mwnet_tf.data.pipeline import normalize

HISTORY = "history.json"


def _image(png: bytes) -> tf.Tensor:
    return tf.image.decode_png(png, channels=4)[None]


class Tracker:
    """The run's figures; `chief` alone writes files and summaries."""

    def __init__(self, data: BiasedData, method, *, seed: int, batch_size: int, workdir: str,
                 chief: bool, write):
        self.method, self.chief, self.workdir, self.write = method, chief, workdir, write
        index = diagnostics.tracked_indices(len(data.train_y), seed)
        self.corrupted = np.asarray(data.corrupted[index], bool)
        x = normalize(tf.constant(data.train_x[index]), data.mean, data.std)
        self.batches = [(x[i:i + batch_size], tf.constant(data.train_y[index][i:i + batch_size],
                                                          tf.int32))
                        for i in range(0, len(index), batch_size)]
        model = method.eval_model()
        self._losses = tf.function(
            lambda x, y: meta.per_sample_ce(model(x, training=False), y))
        self.history: list[dict] = []
        self.previous: np.ndarray | None = None
        self.last: dict = {}
        self.seconds = 0.0

    def losses(self) -> np.ndarray:
        return np.concatenate([self._losses(x, y).numpy() for x, y in self.batches]).astype(
            np.float64)

    def start(self, epoch: int) -> None:
        """Before the first epoch of this session (`epoch` epochs already done): the history
        of a resumed run, and its tracked weights as they were at the end of that epoch."""
        path = os.path.join(self.workdir, HISTORY)
        if epoch > 0 and self.chief and os.path.exists(path):
            with open(path) as f:
                self.history = [row for row in json.load(f) if row["epoch"] <= epoch]
        if epoch > 0:
            self.previous = self.method.weight_of(self.losses())

    def end_epoch(self, epoch: int, lr: float, train: dict, test: dict, writers: dict) -> None:
        """After epoch `epoch` (1-based): the tracked samples' figures and a history row."""
        t0 = time.time()
        losses = self.losses()
        weights = self.method.weight_of(losses)
        summary = diagnostics.epoch_summary(losses, self.corrupted, weights, self.previous)
        self.previous = weights
        row = {"epoch": epoch, "lr": lr, "train_loss": train["loss"],
               "train_accuracy": train["accuracy"], "test_loss": test["loss"],
               "test_accuracy": test["accuracy"]}
        row.update({k: summary[k] for k in ("weight_clean", "weight_corrupted",
                                            "weight_variation_mean", "weight_variation_std")
                    if k in summary})
        self.history.append(row)
        self.last = {"loss_histogram": summary["loss_histogram"]}
        if weights is not None:
            grid = diagnostics.loss_grid(losses)
            self.last["weight_histogram"] = summary["weight_histogram"]
            self.last["weight_function"] = {
                "losses": [round(float(v), 6) for v in grid],
                "weights": [round(float(v), 6) for v in self.method.weight_of(grid)]}
        if "confusion_matrix" in test:
            self.last["confusion_matrix"] = test["confusion_matrix"]
        if self.chief:
            self._summaries(epoch, losses, weights, summary, writers)
            self.write(os.path.join(self.workdir, HISTORY), self.history)
        self.seconds += time.time() - t0

    def _summaries(self, epoch, losses, weights, summary, writers) -> None:
        bad = self.corrupted
        with writers["train"].as_default(step=epoch):
            tf.summary.histogram("losses/clean", losses[~bad])
            if bad.any():
                tf.summary.histogram("losses/corrupted", losses[bad])
            if weights is not None:
                tf.summary.histogram("weights/clean", weights[~bad])
                if bad.any():
                    tf.summary.histogram("weights/corrupted", weights[bad])
                for k in ("weight_variation_mean", "weight_variation_std"):
                    if k in summary:
                        tf.summary.scalar(f"weight_variation/{k.rsplit('_', 1)[1]}", summary[k])
                wf = self.last["weight_function"]
                tf.summary.image("weight_function", _image(figures.to_png(
                    figures.weight_function(wf["losses"], wf["weights"],
                                            summary["loss_histogram"],
                                            f"weight function, epoch {epoch}"))))
                tf.summary.image("weights_clean_corrupted", _image(figures.to_png(
                    figures.weight_histograms(summary["weight_histogram"],
                                              f"weights of tracked samples, epoch {epoch}"))))
        if "confusion_matrix" in self.last:
            with writers["test"].as_default(step=epoch):
                tf.summary.image("confusion_matrix", _image(figures.to_png(
                    figures.confusion_matrix(self.last["confusion_matrix"],
                                             f"test confusion matrix, epoch {epoch}"))))

    def results(self) -> dict:
        """Entries of results.json: the history, the last epoch's figures' data and the
        time the figures took."""
        return {"history": self.history, **self.last,
                "figure_seconds_this_session": round(self.seconds, 2)}
