"""Self-paced learning (Kumar et al., NeurIPS 2010): train on the samples whose loss is below a
growing threshold."""

from __future__ import annotations

import tensorflow as tf

from mwnet_tf.methods import steps
from mwnet_tf.methods.base import Method


def admitted_count(fraction: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """How many of `n` samples a fraction admits: `round(fraction * n)`, at least 1 (int32)."""
    n = tf.cast(n, tf.int32)
    k = tf.cast(tf.floor(tf.cast(fraction, tf.float64) * tf.cast(n, tf.float64) + 0.5), tf.int32)
    return tf.clip_by_value(k, 1, n)


def self_paced_weights(losses: tf.Tensor, fraction: tf.Tensor) -> tf.Tensor:
    """Hard self-paced weights [n]: 1 for the `round(fraction * N)` smallest of the global
    batch's N losses (at least one), else 0, in the losses' dtype (no gradient).

    That is `v_i = 1[l_i < lambda]` with lambda the (k+1)-th smallest loss of the global batch
    (lambda = inf when all are admitted); ties at lambda are broken by position in the global
    batch so that exactly k samples are admitted. Under a multi-replica strategy the losses of
    all replicas are gathered, so the selection is the one of the global batch.
    """
    losses = tf.stop_gradient(losses)
    n_local = tf.shape(losses)[0]
    if steps.num_replicas() > 1:
        context = tf.distribute.get_replica_context()
        everyone = context.all_gather(losses, axis=0)
        offset = tf.cast(context.replica_id_in_sync_group, tf.int32) * n_local
    else:
        everyone, offset = losses, 0
    k = admitted_count(fraction, tf.shape(everyone)[0])
    ranks = tf.math.invert_permutation(tf.argsort(everyone, stable=True))
    return tf.cast(ranks[offset:offset + n_local] < k, losses.dtype)


class SelfPaced(Method):
    """Kumar, Packer and Koller, "Self-Paced Learning for Latent Variable Models", NeurIPS 2010.

    Self-paced learning minimizes `sum_i v_i l_i - lambda sum_i v_i` over the model and hard
    weights `v_i` in {0, 1}; for a fixed model the weights are `v_i = 1[l_i < lambda]`
    (the "easy" samples), and lambda (1/K in the paper) grows so that harder samples join
    until all are in. Kumar et al. multiply it by mu = 1.3 per outer iteration, from an initial
    value that admits about half the samples. There is no official code for deep networks; the
    alternation here is per step: the weights are computed from the step's own losses (the
    cross-entropy against the noisy labels, train-mode forward), then the model takes an SGD
    step on `sum_i v_i l_i / n`.

    Schedule. An absolute lambda depends on the loss scale (about ln C at the start, then on
    the dataset, model and noise) and would need tuning for each setting, and multiplying it by
    1.3 per epoch admits everything within a few epochs of a 40-100-epoch run. Lambda is
    therefore set as a quantile: each step admits the `round(q N)` smallest losses of the
    global batch of N (lambda = the next loss), where the admitted fraction `q` starts at
    `--spl_start` (0.5, Kumar's "about half") and grows by `--spl_growth` per epoch up to 1;
    by default the growth is derived from the stage's length, `(1 - spl_start) / (epochs - 1)`,
    so that the last epoch trains on every sample (the end of Kumar's algorithm) whatever the
    run's length. The per-batch selection is also Co-teaching's small-loss rule with its
    forget rate. `q` lives in a `tf.Variable` set in `begin_epoch` (no retrace) and saved with
    the checkpoints.

    Normalization: by the global batch size n, not by `sum(v)`. This is Kumar's objective (a
    sum over admitted samples; the `lambda sum v` term is constant for the model), each admitted
    sample's gradient has the same scale as under plain cross-entropy, and the learning rate is
    not silently multiplied by `1 / q` (2x at the start). `--weight_norm`, MW-Net's option for
    learned weights, is not applied.

    The 0/1 weights are returned as the step's weights, so the mean weights of clean and
    corrupted samples (the fraction of each that is admitted) are logged.
    """

    reference = "Kumar et al. 2010"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.fraction = tf.Variable(float(self.hp["spl_start"]), dtype=tf.float64,
                                    trainable=False, name="spl_fraction")

    def growth(self, epochs: int) -> float:
        """The admitted fraction's increase per epoch in a stage of `epochs` epochs."""
        if self.hp["spl_growth"] is not None:
            return float(self.hp["spl_growth"])
        return (1.0 - float(self.hp["spl_start"])) / max(epochs - 1, 1)

    def fraction_at(self, epoch: int, epochs: int) -> float:
        """The admitted fraction in epoch `epoch` (0-based) of a stage of `epochs` epochs."""
        return min(1.0, float(self.hp["spl_start"]) + self.growth(epochs) * epoch)

    def begin_epoch(self, stage, epoch):
        self.fraction.assign(self.fraction_at(epoch, stage.epochs))

    def trackables(self):
        return {"spl_fraction": self.fraction}

    def replica_step(self, stage):
        clf, opt, options = self.ctx.classifier, self.ctx.optimizer, self.ctx.options
        fraction = self.fraction

        def loss_fn(logits, batch):
            losses = steps.per_sample_ce(logits, batch["y"])
            v = self_paced_weights(losses, fraction)
            return v * losses, v

        def step(batch, meta_batch=None):
            return steps.loss_step(clf, opt, batch, options, loss_fn)
        return step

    def results(self):
        return {"self_paced_final_fraction": float(self.fraction.numpy())}


METHOD = SelfPaced
