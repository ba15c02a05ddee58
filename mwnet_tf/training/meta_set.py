"""`--meta_source=selected`: the run's meta set chosen from its training set, epoch by epoch.

Where a method reads the meta set (`Method.reads_meta(stage)`: at the start of each epoch whose
steps get meta batches or train on the meta set; `Method.reads_meta_at_end(stage)`: before an
end-of-stage hook that reads it, GLC's corruption matrix), the method's ranking model
(`Method.ranking_model()`: by default the classifier as the previous epoch left it, before a
fresh stage re-initializes it) scores every training sample: the cross-entropy of its logits
(float64) against the sample's given label, in inference mode, on the image as the test set
gets it (no augmentation), as the authors' `eval_train` does. The `select_per_class`
lowest-loss samples of every class (`meta_select.lowest_loss_per_class`) are then the meta set,
with their given labels, until the next selection.

The first selection of a run ranks by the classifier as initialized: there is no warm-up (a
method of its own may have one, CMW-Net-SL's plain epochs). Before any ranking (the run's
start, for the checks and the methods' set-up) the set is the first `select_per_class`
training samples of every class by index (`lowest_loss_per_class` of equal losses); it is
never trained on, the first epoch that reads the meta set selects first.

The selected indices are a variable of the checkpoint (`trackables`): a run resumed inside an
epoch trains on the set that epoch began with, and at an epoch's start the restored model ranks
the samples as the uninterrupted run's did, so a resumed run is the uninterrupted one, bitwise.

Where the true labels are known (`BiasedData.corruption_known`), each epoch's record holds the
fraction of the selected samples whose given label is the true one (`meta_clean_fraction`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from mwnet_tf.data import BiasedData
from mwnet_tf.data.pipeline import eval_images, normalize
from mwnet_tf.methods.meta_select import lowest_loss_per_class

VARIABLE = "selected_meta"  # the checkpoint's name of the selected indices


def with_meta(data: BiasedData, rows: np.ndarray) -> BiasedData:
    """`data` with the training samples `rows` as its meta set (their given labels, and their
    true labels as `meta_true_y`)."""
    rows = np.asarray(rows, np.int64)
    return dataclasses.replace(data, meta_x=data.train_x[rows], meta_y=data.train_y[rows],
                               meta_true_y=data.train_clean_y[rows],
                               meta_index=data.train_index[rows])


def first_selection(data: BiasedData, k: int, class_names: Sequence[str] | None = None
                    ) -> np.ndarray:
    """The set before any ranking: the first `k` training samples of every class by index.
    A class with fewer than `k` is a one-line `ValueError` naming it."""
    return lowest_loss_per_class(np.zeros(len(data.train_y)), data.train_y, k,
                                 data.num_classes, class_names=class_names)


class SelectedMeta:
    """The selected meta set of a run over `data` (its own meta set, if any, is not used):
    `k` samples per class, chosen again by `select(model)`. Create it inside the strategy's
    scope (its variable goes into the checkpoint)."""

    def __init__(self, data: BiasedData, k: int, *, batch_size: int,
                 class_names: Sequence[str] | None = None):
        self.base, self.k, self.batch_size = data, int(k), int(batch_size)
        self.class_names = class_names
        first = first_selection(data, self.k, class_names)
        self.indices = tf.Variable(first, dtype=tf.int64, trainable=False, name=VARIABLE)
        self._logits: dict[int, tuple[keras.Model, object]] = {}

    def trackables(self) -> dict:
        return {VARIABLE: self.indices}

    def rows(self) -> np.ndarray:
        return self.indices.numpy()

    def data(self) -> BiasedData:
        """The run's data with the current selection as its meta set."""
        return with_meta(self.base, self.rows())

    def losses(self, model: keras.Model) -> np.ndarray:
        """float64 [N]: the cross-entropy of `model` (inference mode) on every training sample
        against its given label, the images as the test set gets them."""
        data = self.base
        key = id(model)
        if key not in self._logits:
            self._logits[key] = (model, tf.function(lambda x: model(x, training=False)))
        logits_of = self._logits[key][1]
        n = len(data.train_y)
        batches = (eval_images(data, data.train_x, self.batch_size) if data.from_files else
                   (data.train_x[i:i + self.batch_size] for i in range(0, n, self.batch_size)))
        out, start = [], 0
        for images in batches:
            logits = tf.cast(logits_of(normalize(images, data.mean, data.std)), tf.float64)
            logits = logits.numpy()
            labels = data.train_y[start:start + len(logits)]
            top = logits.max(axis=-1)
            lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=-1))
            out.append(lse - logits[np.arange(len(labels)), labels])
            start += len(logits)
        return np.concatenate(out) if out else np.zeros(0)

    def select(self, model: keras.Model) -> np.ndarray:
        """Ranks the training samples by `model`'s losses and keeps the `k` lowest of every
        class; returns the indices (also the variable's value)."""
        rows = lowest_loss_per_class(self.losses(model), self.base.train_y, self.k,
                                     self.base.num_classes, class_names=self.class_names)
        self.indices.assign(rows)
        return rows

    def record(self) -> dict[str, float]:
        """The current set's entries of the epoch's history row: `meta_clean_fraction`, the
        fraction of its given labels that are the true ones, where the truth is known."""
        if not self.base.corruption_known:
            return {}
        rows = self.rows()
        clean = self.base.train_y[rows] == self.base.train_clean_y[rows]
        return {"meta_clean_fraction": float(np.mean(clean))}

    def summary(self, ranked_by: str) -> dict:
        """results.json's `meta_selection`."""
        return {"rule": "lowest loss per class", "per_class": self.k,
                "size": int(self.k * self.base.num_classes), "ranked_by": ranked_by,
                "from": "the training set (a subset chosen by the method, not held out)",
                **self.record()}
