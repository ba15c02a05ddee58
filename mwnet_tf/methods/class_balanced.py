"""Class-balanced loss (Cui et al., CVPR 2019): cross-entropy weighted by inverse effective
class sizes."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mwnet_tf.methods import steps
from mwnet_tf.methods.base import Method


def class_balanced_weights(counts, beta: float) -> np.ndarray:
    """Class weights [C] (float64): `(1 - beta) / (1 - beta^n_c)`, scaled to sum to C.

    A class without samples (n_c = 0, weight 1/0) gets weight 0 and the other classes' weights
    sum to C; no training label names such a class, so its weight is never used. beta = 0 gives
    1 for every class present; beta = 1 is the limit beta -> 1, `1 / n_c` (inverse class
    frequency), as the paper notes.
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    if not present.any():
        raise ValueError("class_balanced needs at least one labelled training sample")
    weights = np.zeros_like(counts)
    if beta == 1.0:
        weights[present] = 1.0 / counts[present]
    else:
        # 1 - beta^n as -expm1(n log beta): accurate for beta near 1, exact 1 for beta = 0.
        with np.errstate(divide="ignore"):
            log_beta = np.log(beta) if beta > 0 else -np.inf
        weights[present] = (1.0 - beta) / -np.expm1(counts[present] * log_beta)
    return weights / weights.sum() * len(counts)


class ClassBalanced(Method):
    """Cui, Jia, Lin, Song and Belongie, "Class-Balanced Loss Based on Effective Number of
    Samples", CVPR 2019.

    A sample labelled c weighs `w_c = (1 - beta) / (1 - beta^n_c)`, the inverse of the class's
    effective number of samples, with `n_c` the number of training samples *labelled* c (the
    noisy labels: the method sees nothing else); the weights are scaled to sum to the number of
    classes C, as in the official code (`richardaecn/class-balanced-loss`,
    `src/cifar_main.py`: `weights / np.sum(weights) * num_classes`). The objective is the
    softmax cross-entropy weighted by the label's class weight, `sum_i w_{y_i} CE_i / n`, n the
    global batch size: the official softmax loss (`tf.losses.softmax_cross_entropy` with
    per-sample weights, averaged over the batch's samples). The default beta 0.9999 is the
    official long-tailed CIFAR script's (`cifar_im_trainval_cb.sh`). beta = 1, outside the
paper's [0, 1), is accepted as the limit the paper names: inverse class frequency `1 / n_c`.

    Only the softmax variant is offered. The official focal and sigmoid variants use per-class
    sigmoid outputs (and a last-layer bias initialized to a prior), which this project's
    softmax classifiers do not have; focal loss on softmax is the separate method `focal`.

    A class with no labelled training sample gets weight 0 (see `class_balanced_weights`). The
    weights are computed once from the training labels and are reported in results.json
    (`class_balanced_weights`); each sample's class weight is logged as its weight.
    """

    reference = "Cui et al. 2019"

    def __init__(self, ctx):
        super().__init__(ctx)
        data = ctx.data
        self.counts = np.bincount(np.asarray(data.train_y, np.int64),
                                  minlength=data.num_classes)
        self.class_weights = class_balanced_weights(self.counts, float(self.hp["cb_beta"]))

    def replica_step(self, stage):
        clf, opt, options = self.ctx.classifier, self.ctx.optimizer, self.ctx.options
        class_weights = self.class_weights

        def loss_fn(logits, batch):
            labels = tf.cast(batch["y"], tf.int32)
            w = tf.gather(tf.constant(class_weights, logits.dtype), labels)
            return w * steps.per_sample_ce(logits, labels), w

        def step(batch, meta_batch=None):
            return steps.loss_step(clf, opt, batch, options, loss_fn)
        return step

    def results(self):
        return {"class_balanced_weights": [float(w) for w in self.class_weights]}


METHOD = ClassBalanced
