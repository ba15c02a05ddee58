"""Co-teaching (Han et al., NeurIPS 2018): two networks, each trained on the small-loss samples
picked by the other.

Han, Yao, Yu, Niu, Xu, Hu, Tsang and Sugiyama, "Co-teaching: Robust Training of Deep Neural
Networks with Extremely Noisy Labels", NeurIPS 2018. Taken from the official code
(`bhanML/Co-teaching`, `main.py` and `loss.py`):

- the forget-rate schedule `rate_schedule = ones(n_epoch) * forget_rate;
  rate_schedule[:num_gradual] = linspace(0, forget_rate ** exponent, num_gradual)`, with
  `forget_rate = noise_rate` unless given, `num_gradual = 10`, `exponent = 1`. The official
  loop evaluates the untrained nets as "epoch 0" and trains epochs 1, 2, ... with
  `rate_schedule[epoch]`, so its first training epoch already forgets
  `forget_rate ** exponent / (num_gradual - 1)`; our epoch e (0-based) likewise uses
  `rate_schedule[e + 1]`;
- per batch, both nets see the same samples; each ranks them by its own cross-entropy and keeps
  the smallest-loss ones; net 1 is updated on the samples net 2 kept and vice versa, both
  selections made from the losses before either update.

Differences, chosen:

- the kept count is `round((1 - rate) * n)` (at least one sample) per replica; the official
  `int(...)` truncates, which differs by one sample when the product is not an integer (and
  can lose one to floating point, e.g. `int(0.57 * 100) = 56`);
- each net's loss is the sum of its cross-entropy over the kept samples divided by the number
  kept over all replicas (a mean over the kept samples). The official code divides a mean by
  the kept count once more (`F.cross_entropy(...)` is already a mean), harmless under its Adam
  but a learning-rate change under SGD;
- both nets use the run's SGD schedule (the trainer's `--lr`, `--lr_decay_epochs`), not the
  official Adam with its linear decay from epoch 80: the same optimizer as every other method,
  for a fair comparison.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mwnet_tf.methods import steps
from mwnet_tf.methods.base import Method


def rate_schedule(forget_rate: float, num_gradual: int, exponent: float,
                  length: int) -> np.ndarray:
    """The official forget-rate schedule, `length` entries (indexed by the official epoch)."""
    schedule = np.ones(max(length, num_gradual)) * forget_rate
    schedule[:num_gradual] = np.linspace(0, forget_rate ** exponent, num_gradual)
    return schedule[:length]


def small_loss_mask(losses: tf.Tensor, keep: tf.Tensor) -> tf.Tensor:
    """float mask [n] of the `keep` smallest `losses` (ties broken by position)."""
    ranks = tf.argsort(tf.argsort(losses, stable=True), stable=True)
    return tf.cast(ranks < tf.cast(keep, ranks.dtype), losses.dtype)


class CoTeaching(Method):
    """Han et al., "Co-teaching: Robust Training of Deep Neural Networks with Extremely Noisy
    Labels", NeurIPS 2018 (official code `bhanML/Co-teaching`).

    The trainer's classifier (net 1, evaluated and reported) and a peer (net 2, seed + 7, its
    own optimizer like the classifier's, the same learning rate each epoch) are trained
    together; in epoch e each keeps the `round((1 - R_e) * n)` samples of smallest loss of the
    batch and the other net is updated on them (see the module docstring). The logged weights
    are the mask applied to net 1's loss (the samples net 2 kept), so `weight_clean` and
    `weight_corrupted` are the fractions of clean and corrupted samples it trains on.
    """

    uses_meta = False
    reference = "Han et al. 2018"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.peer = ctx.new_classifier(ctx.config.part_seed("init") + 7)
        self.peer_optimizer = ctx.new_optimizer("classifier")
        self.peer_optimizer.build(self.peer.trainable_variables)
        self.forget_rate = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                       name="forget_rate")

    def final_forget_rate(self) -> float:
        if self.hp["ct_forget_rate"] is not None:
            return float(self.hp["ct_forget_rate"])
        return 0.0 if self.config.noise == "none" else float(self.config.rate)

    def schedule(self) -> np.ndarray:
        """Forget rate of each epoch (0-based) of the run: official `rate_schedule[e + 1]`."""
        epochs = sum(s.epochs for s in self.stages())
        return rate_schedule(self.final_forget_rate(), self.hp["ct_num_gradual"],
                             self.hp["ct_exponent"], epochs + 1)[1:]

    def trackables(self):
        return {"peer": self.peer, "peer_optimizer": self.peer_optimizer}

    def begin_epoch(self, stage, epoch):
        self.forget_rate.assign(self.schedule()[epoch])
        self.peer_optimizer.learning_rate = float(self.ctx.optimizer.learning_rate)

    def objectives(self, logits1, logits2, labels):
        """(net 1's loss, net 2's loss, mask net 1 trains on, mask net 2 trains on)."""
        loss1 = steps.per_sample_ce(logits1, labels)
        loss2 = steps.per_sample_ce(logits2, labels)
        n = tf.cast(tf.size(loss1), tf.float64)
        keep = tf.maximum(tf.round((1.0 - self.forget_rate) * n), 1.0)
        kept_by_1 = small_loss_mask(tf.stop_gradient(loss1), keep)
        kept_by_2 = small_loss_mask(tf.stop_gradient(loss2), keep)
        total = steps.replica_sum(tf.cast(keep, loss1.dtype))
        return (tf.reduce_sum(loss1 * tf.cast(kept_by_2, loss1.dtype)) / total,
                tf.reduce_sum(loss2 * tf.cast(kept_by_1, loss2.dtype)) / total,
                kept_by_2, kept_by_1)

    def replica_step(self, stage):
        clf, opt = self.ctx.classifier, self.ctx.optimizer
        peer, peer_opt = self.peer, self.peer_optimizer

        def step(batch, meta_batch=None):
            with tf.GradientTape(persistent=True) as tape:
                logits1 = clf(batch["x"], training=True)
                logits2 = peer(batch["x"], training=True)
                obj1, obj2, mask1, _ = self.objectives(logits1, logits2, batch["y"])
            opt.apply(tape.gradient(obj1, clf.trainable_variables), clf.trainable_variables)
            peer_opt.apply(tape.gradient(obj2, peer.trainable_variables),
                           peer.trainable_variables)
            del tape
            return {"loss_sum": tf.reduce_sum(steps.per_sample_ce(logits1, batch["y"])),
                    "correct": steps.num_correct(logits1, batch["y"]),
                    **steps.weight_stats(tf.cast(mask1, tf.float32), batch)}
        return step

    def label_scores(self, losses, probabilities, labels):
        """The small-loss selection over the whole training set at the final forget rate:
        the `round((1 - rate) * N)` samples of smallest loss (of the evaluated net) are kept
        (weight 1), the others flagged (weight 0); ranked by loss."""
        losses = np.asarray(losses, np.float64)
        n = len(losses)
        keep = max(round((1.0 - self.final_forget_rate()) * n), 1) if n else 0
        ranks = np.argsort(np.argsort(losses, kind="stable"), kind="stable")
        kept = ranks < keep
        return {"suspicion": losses, "weight": kept.astype(np.float64), "flagged": ~kept}


METHOD = CoTeaching
