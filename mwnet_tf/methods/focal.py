"""Focal loss (Lin et al., ICCV 2017) on the softmax outputs: `-(1 - p_y)^gamma log p_y`."""

from __future__ import annotations

import tensorflow as tf

from mwnet_tf.methods import steps
from mwnet_tf.methods.base import Method


def focal_loss(logits: tf.Tensor, labels: tf.Tensor, gamma: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-sample focal loss [n] and its factor `(1 - p_y)^gamma` [n] (constant).

    Computed from logits without forming `p_y`: `-log p_y` is the sparse softmax cross-entropy
    and `log(1 - p_y) = logsumexp_{c != y} z_c - logsumexp_c z_c`, which stays finite (and so
    does its gradient) even when `p_y` rounds to 1, so `(1 - p_y)^gamma = exp(gamma *
    log(1 - p_y))` is smooth for every gamma >= 0 and exactly 1 for gamma = 0.
    """
    labels = tf.cast(labels, tf.int32)
    ce = steps.per_sample_ce(logits, labels)
    own = tf.one_hot(labels, tf.shape(logits)[-1], on_value=True, off_value=False)
    others = tf.where(own, tf.constant(-float("inf"), logits.dtype), logits)
    log_rest = tf.reduce_logsumexp(others, -1) - tf.reduce_logsumexp(logits, -1)
    factor = tf.exp(tf.constant(gamma, logits.dtype) * log_rest)
    return factor * ce, tf.stop_gradient(factor)


class Focal(Method):
    """Lin, Goyal, Girshick, He and Dollar, "Focal Loss for Dense Object Detection", ICCV 2017.

    Each sample's cross-entropy is scaled by `(1 - p_y)^gamma`, `p_y` the softmax probability
    of its (noisy) training label, so that well-classified samples count less; the objective is
    `sum_i FL_i / n` with n the global batch size (`steps.loss_step`). gamma = 0 is plain
    cross-entropy; the paper's default gamma is 2 (`--focal_gamma`).

    The paper's alpha-balanced form `-alpha_t (1 - p_t)^gamma log p_t` (alpha = 0.25) is for
    RetinaNet's per-class sigmoid heads, where alpha weighs foreground against background; a
    softmax classifier has no such split, and a constant alpha only rescales the learning rate,
    so it is left out (the multi-class form used as a baseline by Shu et al. 2019).

    `keras.losses.CategoricalFocalCrossentropy` is not used: it multiplies by alpha (0.25 by
    default, so it would quarter the effective learning rate unless set to 1), and it takes the
    log of softmax probabilities clipped to [1e-7, 1 - 1e-7], which zeroes the gradient of
    samples whose `p_y` is clipped and is not exact in float64. Here the loss is computed from
    log-softmax (see `focal_loss`).

    The logged "weights" are the focal factors `(1 - p_y)^gamma`: how much each sample's
    cross-entropy counts (the gradient also differentiates the factor itself).
    """

    reference = "Lin et al. 2017"

    def replica_step(self, stage):
        clf, opt, options = self.ctx.classifier, self.ctx.optimizer, self.ctx.options
        gamma = float(self.hp["focal_gamma"])

        def loss_fn(logits, batch):
            return focal_loss(logits, batch["y"], gamma)

        def step(batch, meta_batch=None):
            return steps.loss_step(clf, opt, batch, options, loss_fn)
        return step


METHOD = Focal
