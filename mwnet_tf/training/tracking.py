"""Per-epoch figures of a run: tracked training samples, TensorBoard images and histograms,
and the per-epoch history kept in `results.json`.

`Tracker` follows `diagnostics.TRACKED` seeded training samples (`TRACKED_FROM_FILES`
center crops for data read from files): after each epoch it computes
their losses (inference mode, against the labels they are trained on) and the method's
weights of those samples (`Method.sample_weights`: for most methods the weight function of
the loss, `Method.weight_of`; for L2RW its meta-gradient weights in batches of the run's
size), writes TensorBoard summaries (chief only) and appends a row to the history, which is
saved atomically to `history.json` so that a resumed run keeps the epochs before it.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import tensorflow as tf

from mwnet_tf import files
from mwnet_tf.data import BiasedData
from mwnet_tf.data.pipeline import load_images, normalize
from mwnet_tf.methods import steps
from mwnet_tf.reporting import figures
from mwnet_tf.training import diagnostics

_IMAGE_METADATA = None  # TensorBoard's image plugin metadata, made once
# Data read from files (Clothing1M) follows fewer samples, decoded once as center crops like
# the test set's: 2,000 crops of 224x224 would hold 1.2 GB as float32.
TRACKED_FROM_FILES = 256


def _image_summary(tag: str, rgba: np.ndarray) -> None:
    """`tf.summary.image(tag, rgba[None])` in two eager ops instead of about twenty (the
    same summary: width, height and the PNG, with the image plugin's metadata), the PNG
    compressed at zlib level 1 (about 10% larger than the default's)."""
    global _IMAGE_METADATA
    if _IMAGE_METADATA is None:
        from tensorboard.plugins.image import metadata
        _IMAGE_METADATA = metadata.create_summary_metadata(display_name=None,
                                                           description=None)
    height, width = rgba.shape[:2]
    png = tf.image.encode_png(rgba, compression=1).numpy()  # 2/3 of the default's time
    tf.summary.write(tag, tf.constant([str(width).encode(), str(height).encode(), png]),
                     metadata=_IMAGE_METADATA)


class Tracker:
    """The run's figures; `chief` alone writes files and summaries, and renders the images
    only with `images` (the numbers behind them are kept either way)."""

    def __init__(self, data: BiasedData, method, *, seed: int, batch_size: int, workdir: str,
                 chief: bool, write, images: bool = True):
        self.method, self.chief, self.workdir, self.write = method, chief, workdir, write
        self.images = images
        index = diagnostics.tracked_indices(
            len(data.train_y), seed,
            TRACKED_FROM_FILES if data.from_files else diagnostics.TRACKED)
        self.corrupted = np.asarray(data.corrupted[index], bool)
        self.corruption_known = data.corruption_known
        self.test_name = data.test_name  # "test", or "heldout_noisy" (`BiasedData.test_name`)
        self.x = normalize(load_images(data, data.train_x[index]), data.mean, data.std)
        self.y = tf.constant(data.train_y[index], tf.int32)
        self.batches = [(self.x[i:i + batch_size], self.y[i:i + batch_size])
                        for i in range(0, len(index), batch_size)]
        model = method.eval_model()
        self._losses = tf.function(
            lambda x, y: steps.per_sample_ce(model(x, training=False), y))
        self.history: list[dict] = []
        self.previous: np.ndarray | None = None
        # the tracked weights at the end of the last epoch, checkpointed with the run
        # (`trackables`), so that a run resumed inside an epoch measures its weight change
        # from the same point as an uninterrupted one
        self._previous = tf.Variable(np.zeros(len(index)), dtype=tf.float64, trainable=False,
                                     name="tracked_weights")
        self._has_previous = tf.Variable(False, trainable=False, name="has_tracked_weights")
        self.last: dict = {}
        self.seconds = 0.0
        self.figures = figures.EpochFigures()  # built on first use, drawn again each epoch

    def trackables(self) -> dict:
        """The tracker's state to checkpoint beside the model."""
        return {"tracked_weights": self._previous, "has_tracked_weights": self._has_previous}

    def losses(self) -> np.ndarray:
        return np.concatenate([self._losses(x, y).numpy() for x, y in self.batches]).astype(
            np.float64)

    def start(self, epoch: int) -> None:
        """Before the first epoch of this session (`epoch` epochs already done, the checkpoint
        restored): the history of a resumed run, and its tracked weights as they were at the
        end of its last complete epoch."""
        path = os.path.join(self.workdir, files.HISTORY)
        if epoch > 0 and self.chief and os.path.exists(path):
            with open(path) as f:
                self.history = [row for row in json.load(f) if row["epoch"] <= epoch]
        if bool(self._has_previous.numpy()):
            self.previous = self._previous.numpy()

    def end_epoch(self, epoch: int, lr: float, train: dict, test: dict, writers: dict,
                  extra: dict | None = None) -> None:
        """After epoch `epoch` (1-based): the tracked samples' figures and a history row.
        `extra`: more entries of the row, each also a scalar of the training summaries
        (a selected meta set's `meta_clean_fraction`, as `meta_set/clean_fraction`)."""
        t0 = time.time()
        losses = self.losses()
        weights = self.method.sample_weights(self.x, self.y, losses)
        summary = diagnostics.epoch_summary(losses, self.corrupted, weights, self.previous)
        self.previous = weights
        if weights is not None:
            self._previous.assign(weights)
            self._has_previous.assign(True)
        name = self.test_name
        row = {"epoch": epoch, "lr": lr, "train_loss": train["loss"],
               "train_accuracy": train["accuracy"], f"{name}_loss": test["loss"],
               f"{name}_accuracy": test["accuracy"], "train": dict(train), **(extra or {})}
        row.update({k: summary[k] for k in ("weight_clean", "weight_corrupted",
                                            "weight_variation_mean", "weight_variation_std")
                    if k in summary})
        if weights is not None and not self.corruption_known:  # no truth to split by
            row.pop("weight_clean", None)
            row.pop("weight_corrupted", None)
            row["weight_mean"] = float(np.mean(weights))
        self.history.append(row)
        self._set_last(losses, weights, summary, test)
        if self.chief:
            self._summaries(epoch, losses, weights, summary, writers)
            with writers["train"].as_default(step=epoch):
                for k, v in (extra or {}).items():
                    tf.summary.scalar(k.replace("meta_", "meta_set/", 1), v)
            self.write(os.path.join(self.workdir, files.HISTORY), self.history)
        self.seconds += time.time() - t0

    def _set_last(self, losses, weights, summary, test) -> None:
        self.last = {"loss_histogram": summary["loss_histogram"]}
        if weights is not None:
            self.last["weight_histogram"] = summary["weight_histogram"]
        grid = diagnostics.loss_grid(losses)
        on_grid = self.method.weight_of(grid)
        if on_grid is not None:
            self.last["weight_function"] = {
                "losses": [round(float(v), 6) for v in grid],
                "weights": [round(float(v), 6) for v in on_grid]}
        if "confusion_matrix" in test:
            self.last["confusion_matrix"] = test["confusion_matrix"]

    def final(self, test: dict) -> dict:
        """For a run that had nothing left to train this session: the last epoch's figures'
        data recomputed from the restored model (no history row, no summaries); returns the
        last epoch's training metrics from the history."""
        losses = self.losses()
        weights = self.method.sample_weights(self.x, self.y, losses)
        self._set_last(losses, weights,
                       diagnostics.epoch_summary(losses, self.corrupted, weights, None), test)
        return dict(self.history[-1]["train"]) if self.history else {}

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
        if self.images:
            self._images(epoch, weights is not None, summary, writers)

    def _images(self, epoch, weighted, summary, writers) -> None:
        """The epoch's figures as TensorBoard images (matplotlib, `figures.EpochFigures`)."""
        if weighted:
            with writers["train"].as_default(step=epoch):
                if "weight_function" in self.last:
                    wf = self.last["weight_function"]
                    _image_summary("weight_function", self.figures.weight_function(
                        wf["losses"], wf["weights"], summary["loss_histogram"],
                        f"weight function, epoch {epoch}"))
                _image_summary("weights_clean_corrupted", self.figures.weight_histograms(
                    summary["weight_histogram"], f"weights of tracked samples, epoch {epoch}"))
        if "confusion_matrix" in self.last:
            with writers["test"].as_default(step=epoch):
                _image_summary("confusion_matrix", self.figures.confusion_matrix(
                    self.last["confusion_matrix"], f"test confusion matrix, epoch {epoch}"))

    def results(self) -> dict:
        """Entries of results.json: the history, the last epoch's figures' data and the
        time the figures took."""
        return {"history": self.history, **self.last,
                "figure_seconds_this_session": round(self.seconds, 2)}
