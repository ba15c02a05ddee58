"""Gold Loss Correction (Hendrycks et al., NeurIPS 2018): a corruption matrix estimated on the
trusted (meta) set, then training with the forward-corrected loss.

Hendrycks, Mazeika, Wilson and Gimpel, "Using Trusted Data to Train Deep Networks on Labels
Corrupted by Severe Noise", NeurIPS 2018. Taken from the official code (`mmazeika/glc`,
`CIFAR/train_ours.py`):

- phase 1 trains on the untrusted (noisy) data alone with cross-entropy;
- the estimator `get_C_hat_transpose`: the phase-1 network in eval mode on the trusted images
  without augmentation, `C_hat[i] = mean of softmax(f(x))` over the trusted samples whose true
  label is `i` (so `C_hat[i, j]` estimates `p(noisy = j | true = i)`);
- phase 2 restarts the network and trains on the union of trusted and untrusted data: untrusted
  samples with `-log sum_i softmax(f(x))_i C_hat[i, y]` (`= -log (softmax(f(x)) @ C_hat)[y]`),
  trusted samples with plain cross-entropy, both summed and divided by the batch size.

Differences, forced by the trainer or chosen:

- our batches are an untrusted training batch (size B) with a trusted meta batch (size Bm)
  beside it, not batches drawn from the union. Each step minimises
  `S / (S + G) * mean_B(corrected) + G / (S + G) * mean_Bm(CE)` (S untrusted, G trusted
  samples), an unbiased estimate of the official objective, the mean over the union; an epoch
  is still S / B steps (the trainer's), not (S + G) / B;
- the two parts go through the network in two forward passes, as in the official code (batch
  norm sees each part's statistics);
- phase 2 starts from the trainer's fresh initialization (another seed) with a reset optimizer;
  the official code reloads phase 1's initial weights and keeps the optimizer's momentum;
- both phases use the run's SGD schedule (the official code uses a cosine cycle per phase);
- the log is guarded: `C_hat` entries are floored at 1e-12 inside `log`, so the loss is at most
  -log(1e-12) ~ 27.6 and its gradient finite even where a column of `C_hat` is zero;
- a class with no trusted sample (impossible with the meta split, which takes
  `meta_per_class >= 1` per class) gets an identity row (no correction) instead of NaN;
- the official `--adjust` variant (base-rate adjustment of `C_hat`) is not implemented.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mwnet_tf.methods import steps
from mwnet_tf.methods.base import Method, Stage, predict_probabilities
from mwnet_tf.protocols import scaled_decay_epochs

LOG_FLOOR = 1e-12


def estimate_corruption_matrix(probs: np.ndarray, true_labels: np.ndarray,
                               num_classes: int) -> np.ndarray:
    """`C_hat[i] = mean of probs[k]` over the trusted samples k with true label i.

    Args:
        probs: [K, C] predicted distributions of the noisy label on the trusted samples.
        true_labels: [K] their true labels.
        num_classes: C.

    Returns:
        float64 [C, C]; a class without trusted samples gets the identity row.
    """
    probs = np.asarray(probs, np.float64)
    true_labels = np.asarray(true_labels)
    c_hat = np.eye(num_classes)
    for label in range(num_classes):
        rows = true_labels == label
        if rows.any():
            c_hat[label] = probs[rows].mean(axis=0)
    return c_hat


def corrected_loss(logits: tf.Tensor, labels: tf.Tensor, c_hat: tf.Tensor) -> tf.Tensor:
    """Per-sample `-log (softmax(logits) @ c_hat)[label]`, [n], computed in log space.

    `c_hat` is floored at `LOG_FLOOR` inside the log (guards zeros).
    """
    log_p = tf.nn.log_softmax(logits)                                      # [n, C]
    log_c = tf.math.log(tf.maximum(tf.cast(c_hat, log_p.dtype), LOG_FLOOR))
    columns = tf.gather(tf.transpose(log_c), tf.cast(labels, tf.int32))   # [n, C]: C[:, y]
    return -tf.reduce_logsumexp(log_p + columns, axis=-1)


class GoldLossCorrection(Method):
    """Hendrycks, Mazeika, Wilson and Gimpel, "Using Trusted Data to Train Deep Networks on
    Labels Corrupted by Severe Noise", NeurIPS 2018 (GLC; official code `mmazeika/glc`).

    Stage "estimate" (not reported): cross-entropy on the noisy training set for
    `--glc_estimate_epochs` epochs; at its end the corruption matrix is estimated on the meta
    (trusted) set. Stage "corrected" (fresh classifier, the run's epochs and schedule): the
    corrected loss on training batches and cross-entropy on meta batches, weighted by the sizes
    of the two sets (see the module docstring). The matrix is in results.json
    (`corruption_matrix`, rows: true class, columns: noisy label).
    """

    uses_meta = True
    reference = "Hendrycks et al. 2018"

    def __init__(self, ctx):
        super().__init__(ctx)
        c = ctx.data.num_classes
        self.corruption = tf.Variable(tf.eye(c), trainable=False, name="corruption_matrix")
        untrusted, trusted = len(ctx.data.train_y), len(ctx.data.meta_y)
        self.untrusted_share = untrusted / (untrusted + trusted)

    def stages(self):
        c = self.config
        first = self.hp["glc_estimate_epochs"] or c.epochs
        return [
            Stage("estimate", first, scaled_decay_epochs(c.lr_decay_epochs, c.epochs, first),
                  reported=False),
            Stage("corrected", c.epochs, tuple(c.lr_decay_epochs), fresh=True),
        ]

    def meta_batches(self, stage):
        return stage.name == "corrected"

    def trackables(self):
        return {"corruption_matrix": self.corruption}

    def reads_meta_at_end(self, stage):
        return stage.name == "estimate"  # the corruption matrix

    def estimate(self) -> np.ndarray:
        """The corruption matrix of the current classifier on the meta set."""
        data = self.ctx.data
        probs = predict_probabilities(self.ctx.classifier, data, data.meta_x)
        return estimate_corruption_matrix(probs, data.meta_y, data.num_classes)

    def end_stage(self, stage):
        if stage.name == "estimate":
            self.corruption.assign(self.estimate().astype(np.float32))

    def results(self):
        return {"corruption_matrix": self.corruption.numpy().astype(float).tolist()}

    def replica_step(self, stage):
        clf, opt, options = self.ctx.classifier, self.ctx.optimizer, self.ctx.options
        if stage.name == "estimate":
            def step(batch, meta_batch=None):
                return steps.ce_step(clf, opt, batch, options)
            return step

        share = self.untrusted_share

        def corrected_step(batch, meta_batch):
            trainable = clf.trainable_variables
            with tf.GradientTape() as tape:
                logits = clf(batch["x"], training=True)
                meta_logits = clf(meta_batch["x"], training=True)
                untrusted = corrected_loss(logits, batch["y"], self.corruption)
                trusted = steps.per_sample_ce(meta_logits, meta_batch["y"])
                loss = (share * tf.reduce_sum(untrusted)
                        / tf.cast(options.global_batch_size, untrusted.dtype)
                        + (1.0 - share) * tf.reduce_sum(trusted)
                        / tf.cast(options.global_meta_batch_size, trusted.dtype))
            opt.apply(tape.gradient(loss, trainable), trainable)
            return {"loss_sum": tf.reduce_sum(steps.per_sample_ce(logits, batch["y"])),
                    "correct": steps.num_correct(logits, batch["y"])}
        return corrected_step


METHOD = GoldLossCorrection
