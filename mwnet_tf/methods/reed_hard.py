"""Hard bootstrapping (Reed et al., ICLR 2015 workshop): cross-entropy against a mix of the
training label and the classifier's own prediction."""

from __future__ import annotations

import tensorflow as tf

from mwnet_tf.methods import steps
from mwnet_tf.methods.base import Method


def hard_bootstrap_loss(logits: tf.Tensor, labels: tf.Tensor, beta: float) -> tf.Tensor:
    """Per-sample `-sum_k t_k log p_k` [n] for `t = beta onehot(y) + (1 - beta) onehot(argmax p)`.

    The prediction `argmax p` is a constant (no gradient flows through the target), so the loss
    is `beta CE(y) + (1 - beta) CE(argmax p)`; beta = 1 is plain cross-entropy.
    """
    predicted = tf.stop_gradient(tf.argmax(logits, -1, output_type=tf.int32))
    beta = tf.constant(beta, logits.dtype)  # not via float32
    return (beta * steps.per_sample_ce(logits, labels)
            + (1 - beta) * steps.per_sample_ce(logits, predicted))


class ReedHard(Method):
    """Reed, Lee, Anguelov, Szegedy, Erhan and Rabinovich, "Training Deep Neural Networks on
    Noisy Labels with Bootstrapping", ICLR 2015 workshop (arXiv:1412.6596).

    Hard bootstrapping: the target of each sample is `beta onehot(y) + (1 - beta) onehot(argmax
    p)`, with `y` its (noisy) training label and `p` the classifier's softmax output on the
    same training-mode forward pass, treated as a constant; the objective is the cross-entropy
    against that target averaged over the global batch (`steps.loss_step`). The default
    beta = 0.8 is the paper's for hard bootstrapping (`--reed_beta`; the paper's soft variant,
    not implemented here, uses 0.95). There is no official code; the formula is the paper's.
    No per-sample weights are logged.
    """

    reference = "Reed et al. 2015"

    def replica_step(self, stage):
        clf, opt, options = self.ctx.classifier, self.ctx.optimizer, self.ctx.options
        beta = float(self.hp["reed_beta"])

        def loss_fn(logits, batch):
            return hard_bootstrap_loss(logits, batch["y"], beta), None

        def step(batch, meta_batch=None):
            return steps.loss_step(clf, opt, batch, options, loss_fn)
        return step


METHOD = ReedHard
