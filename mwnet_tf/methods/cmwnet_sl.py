"""CMW-Net-SL: CMW-Net with soft pseudo-labels of an EMA classifier, mixup, and a meta set
selected from the training set each epoch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mwnet_tf.methods import steps
from mwnet_tf.methods.base import predict_probabilities, reinitialize, split_run
from mwnet_tf.methods.cmwnet import ClassAwareMetaWeightNet

META_ALPHA = 1.0  # cmwn.py mixes the meta batch with Beta(1, 1) whatever --alpha is


def mix_lambda(alpha: float, seed: tf.Tensor) -> tf.Tensor:
    """`max(l, 1 - l)` for `l ~ Beta(alpha, alpha)` (as cmwn.py), drawn statelessly from
    `seed` [2] as g1 / (g1 + g2) of two Gamma(alpha) draws."""
    g1 = tf.random.stateless_gamma([], seed=seed, alpha=alpha, dtype=tf.float32)
    g2 = tf.random.stateless_gamma([], seed=seed + tf.constant([0, 1], seed.dtype),
                                   alpha=alpha, dtype=tf.float32)
    lam = g1 / (g1 + g2)
    return tf.maximum(lam, 1.0 - lam)


def mixup(batch: dict, lam: tf.Tensor, seed: tf.Tensor) -> dict:
    """The batch with images `lam * x + (1 - lam) * x[perm]` and `lam`, `perm` (a seeded
    permutation of this replica's part of the batch) added for the objective."""
    x = batch["x"]
    perm = tf.argsort(tf.random.stateless_uniform(tf.shape(batch["y"])[:1], seed=seed))
    lam_x = tf.cast(lam, x.dtype)
    return {**batch, "x": lam_x * x + (1 - lam_x) * tf.gather(x, perm), "lam": lam,
            "perm": perm}


def _terms(logits, batch, losses):
    """[CE(y), CE(pseudo), CE(y[perm]), CE(pseudo[perm])] of the mixed batch's logits."""
    logp = tf.nn.log_softmax(logits)
    pseudo = tf.cast(batch["pseudo"], logp.dtype)
    perm = batch["perm"]
    return tf.stack([losses, -tf.reduce_sum(logp * pseudo, 1),
                     steps.per_sample_ce(logits, tf.gather(batch["y"], perm)),
                     -tf.reduce_sum(logp * tf.gather(pseudo, perm), 1)], 1)


def _coefficients(v, batch, options):
    """cmwn.py's mean of `lam (v CE(y) + (1 - v) CE(pseudo)) + (1 - lam) (v' CE(y[perm]) +
    (1 - v') CE(pseudo[perm]))`, `v' = v[perm]`: no normalization of the weights."""
    lam = tf.cast(batch["lam"], v.dtype)
    vb = tf.gather(v, batch["perm"])
    n = tf.cast(options.global_batch_size, v.dtype)
    return tf.stack([lam * v, lam * (1 - v), (1 - lam) * vb, (1 - lam) * (1 - vb)], 1) / n


def _meta_losses(logits, batch):
    lam = tf.cast(batch["lam"], logits.dtype)
    return (lam * steps.per_sample_ce(logits, batch["y"])
            + (1 - lam) * steps.per_sample_ce(logits, tf.gather(batch["y"], batch["perm"])))


OBJECTIVE = steps.Objective(terms=_terms, coefficients=_coefficients, meta_losses=_meta_losses)


class ClassAwareMetaWeightNetSL(ClassAwareMetaWeightNet):
    """CMW-Net-SL of Shu et al., TPAMI 2023, as `section4/Feature-independent_Label_Noise/
    cmwn.py` and `table2.sh` of xjtushujun/CMW-Net:

    - an EMA copy of the classifier (`--sl_ema`, 0.997 per step, trainable variables; its
      batch-norm statistics are its own, from its train-mode forward of each batch), whose
      softmax on each (unmixed) training batch is the samples' soft pseudo-label;
    - the loss `w CE(y) + (1 - w) CE(pseudo)`, `w` the class-aware weight of the sample's loss,
      averaged over the batch (no normalization of the weights);
    - mixup: `lam = max(l, 1 - l)`, `l ~ Beta(--sl_alpha)`, on the training batch and
      (Beta(1, 1), as the code) on the meta batch;
    - `--sl_warmup_epochs` of plain cross-entropy first (the EMA follows);
    - the meta step on every `--sl_meta_interval`-th step (10), the others the real step with
      the current weight net;
    - the meta set rebuilt at each epoch of the meta stage from the `--select_per_class` (10)
      lowest-loss training samples of each class, ranked by the EMA model in inference mode
      against the training labels: `--meta_source=selected` (this method's default and only
      source, `mwnet_tf.training.meta_set`) with the EMA copy as the ranking model. A subset
      of the training set chosen by the method, not held out; the trusted set is not read.

    `test_accuracy` is the live classifier's (the one the trainer evaluates and checkpoints);
    `ema_test_accuracy` in results.json is the EMA copy's, both as cmwn.py prints them."""

    uses_meta = True  # the meta set selected from the training set (--meta_source=selected)
    reference = "Shu et al. 2023 (CMW-Net-SL)"
    ranked_by = "EMA copy of the classifier"

    def __init__(self, ctx):
        if ctx.config.meta_source != "selected":
            raise ValueError("--method=cmwnet_sl selects its meta set from the training set: "
                             "it goes with --meta_source=selected (its default)")
        super().__init__(ctx)
        warmup = self.warmup_epochs()
        if warmup >= ctx.config.epochs:
            raise ValueError(f"--sl_warmup_epochs={warmup} leaves no meta stage in a run of "
                             f"--epochs={ctx.config.epochs}")
        self.ema = ctx.new_classifier(ctx.config.part_seed("init"))
        reinitialize(self.ema, ctx.classifier)
        self.seed = int(ctx.config.part_seed("order"))

    def plain_epochs(self) -> int:
        return 0  # its first stage is the warm-up (`stages`)

    def warmup_epochs(self) -> int:
        value = self.hp["sl_warmup_epochs"]
        if value is not None:
            return int(value)
        c = self.config
        # cmwn.py: 10 of 300 epochs on CIFAR-10, 30 of 300 on CIFAR-100
        share = 10 / 300 if self.ctx.data.num_classes <= 10 else 30 / 300
        return min(max(1, int(round(share * c.epochs))), c.epochs - 1)

    def stages(self):
        return split_run(self.config, "warm-up", self.warmup_epochs(), "meta")

    def trackables(self):
        return {**super().trackables(), "ema": self.ema}

    def meta_batches(self, stage):
        return stage.name == "meta"

    def ranking_model(self):
        """The EMA copy ranks the training samples for the meta set (cmwn.py's
        `eval_train(net_ema)`), as the previous epoch left it."""
        return self.ema

    # --- the steps -----------------------------------------------------------------------
    def _seed(self, part: int) -> tf.Tensor:
        return tf.stack([tf.constant(self.seed * 8 + part, tf.int64),
                         tf.cast(self.step_count, tf.int64)])

    def _pseudo_labels(self, x) -> tf.Tensor:
        """The EMA model's softmax of the unmixed images (train mode, as cmwn.py); its
        batch-norm statistics updated from them."""
        ema = self.ema
        tv = [v.value for v in ema.trainable_variables]
        ntv = [v.value for v in ema.non_trainable_variables]
        logits, new_ntv = ema.stateless_call(tv, ntv, x, training=True)
        for var, value in zip(ema.non_trainable_variables, new_ntv):
            var.assign(value)
        return tf.stop_gradient(tf.nn.softmax(tf.cast(logits, tf.float32)))

    def _update_ema(self) -> None:
        decay = float(self.hp["sl_ema"])
        for e, w in zip(self.ema.trainable_variables, self.ctx.classifier.trainable_variables):
            e.assign(decay * e + (1.0 - decay) * tf.cast(w, e.dtype))

    def replica_step(self, stage):
        ctx = self.ctx
        if stage.name == "warm-up":
            def warm(batch):
                self._pseudo_labels(batch["x"])  # the EMA's batch-norm statistics
                out = steps.ce_step(ctx.classifier, ctx.optimizer, batch, ctx.options)
                self._update_ema()
                return out
            return warm
        alpha = float(self.hp["sl_alpha"])
        share = 1.0 / ctx.num_replicas

        def prepared(batch):
            pseudo = self._pseudo_labels(batch["x"])
            mixed = mixup(batch, mix_lambda(alpha, self._seed(0)), self._seed(1))
            return {**mixed, "pseudo": pseudo}

        def meta(batch, meta_batch):
            mixed_meta = mixup(meta_batch, mix_lambda(META_ALPHA, self._seed(2)), self._seed(3))
            out = steps.mwnet_step(ctx.classifier, self.weight_net, ctx.optimizer,
                                   self.meta_optimizer, prepared(batch), mixed_meta,
                                   ctx.options, objective=OBJECTIVE)
            self._update_ema()
            return {**out, "meta_steps": tf.constant(share)}

        def plain(batch, meta_batch):
            out = steps.weighted_step(ctx.classifier, self.weight_net, ctx.optimizer,
                                      prepared(batch), ctx.options, objective=OBJECTIVE)
            self._update_ema()
            return {**out, "meta_steps": tf.constant(0.0)}

        # Alternating counts the steps (the seed of each step's mixup) even when every step
        # is a meta step
        return steps.Alternating(meta, plain, int(self.hp["sl_meta_interval"]),
                                 self.step_count)

    def results(self):
        data = self.ctx.data
        p = predict_probabilities(self.ema, data, data.test_x)
        ema_accuracy = 100.0 * float(np.mean(np.argmax(p, 1) == np.asarray(data.test_y)))
        return {**super().results(), "ema_test_accuracy": ema_accuracy,
                "test_accuracy_model": "live"}


METHOD = ClassAwareMetaWeightNetSL
