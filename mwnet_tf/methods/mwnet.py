"""Meta-Weight-Net (Shu et al., NeurIPS 2019): a weight net learned through a virtual step."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from mwnet_tf import files
from mwnet_tf.methods import layer_gates, steps
from mwnet_tf.methods.base import Method
from mwnet_tf.models import build_weight_net, weight_function


class MetaWeightNet(Method):
    """Shu et al., "Meta-Weight-Net: Learning an Explicit Mapping For Sample Weighting",
    NeurIPS 2019. The step is `steps.mwnet_step` (Algorithm 1); the weight net (1-100-1 MLP,
    sigmoid) is trained by the run's weight-net optimizer (`--meta_optimizer`, `--meta_lr`,
    `--meta_weight_decay`) and exported as a SavedModel in `weight_fn/`.

    Opt-in approximations trade exactness for speed (the exact step is the default):
    `--meta_scope=head` takes the virtual step on the classifier's last layer only;
    `--meta_scope=last` lets only the last `--meta_layers` variables carry the meta-gradient,
    `--meta_scope=sampled` those of them FaMUS's learned sampler draws (Xu et al. 2021,
    `layer_gates`); `--meta_interval=K` updates the weight net on every K-th step only, the
    other steps being the real step with the current weight net (`steps.weighted_step`); the
    interval combines with any scope.

    `--weight_fn=PATH` trains with a frozen weight function (a `weight_fn/` this project
    exported): `steps.weighted_step` on every step, about the cost of cross-entropy. Its
    variables are read as data (`weight_function.read_weight_net`), its graph is never run."""

    uses_meta = True
    reference = "Shu et al. 2019"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.weight_net = self._build_weight_net(ctx.config.part_seed("init") + 1)
        self.meta_optimizer = ctx.new_optimizer("meta")
        self.meta_optimizer.build(self.weight_net.trainable_variables)
        self.frozen = bool(self.hp.get("weight_fn"))
        scope, interval = self.hp.get("meta_scope", "full"), self.hp.get("meta_interval", 1)
        if self.frozen:
            if scope != "full" or interval != 1:
                raise ValueError("--weight_fn trains with a frozen weight function: "
                                 "--meta_scope and --meta_interval do not apply")
            loaded = self._read_frozen(self.hp["weight_fn"])
            for var, value in zip(self.weight_net.trainable_variables,
                                  loaded.trainable_variables):
                var.assign(tf.cast(value, var.dtype))
        self.head = steps.split_head(ctx.classifier) if scope == "head" else None
        self.gates = self._gates(scope, ctx)
        self.step_count = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_count")

    def _gates(self, scope: str, ctx):
        """`--meta_scope=last|sampled`'s gates (`layer_gates`), else None."""
        if scope == "last":
            return layer_gates.LastGates(int(self.hp["meta_layers"]))
        if scope != "sampled":
            return None
        return layer_gates.SampledGates(
            ctx.classifier.trainable_variables, int(self.hp["meta_layers"]),
            expected=self.hp["famus_k"], count_factor=self.hp["famus_count_factor"],
            match_factor=self.hp["famus_match_factor"], lr=self.hp["famus_lr"],
            seed=ctx.config.part_seed("init") + 7)

    def _build_weight_net(self, seed: int):
        """The weight net this method learns (MW-Net's 1-100-1 net of the loss)."""
        return build_weight_net(seed=seed)

    def _read_frozen(self, path: str):
        """`--weight_fn`'s weight net, its variables read as data."""
        return weight_function.read_weight_net(path)

    def trackables(self):
        return {"weight_net": self.weight_net, "meta_optimizer": self.meta_optimizer,
                "step_count": self.step_count, **layer_gates.trackables(self.gates)}

    def meta_batches(self, stage):
        return not self.frozen

    def replica_step(self, stage):
        ctx = self.ctx
        if self.frozen:
            def frozen(batch):
                return steps.weighted_step(ctx.classifier, self.weight_net, ctx.optimizer,
                                          batch, ctx.options)
            return frozen
        share = 1.0 / ctx.num_replicas  # "meta_steps" sums to 1 over the replicas

        def step(batch, meta_batch):
            out = steps.mwnet_step(ctx.classifier, self.weight_net, ctx.optimizer,
                                  self.meta_optimizer, batch, meta_batch, ctx.options,
                                  head=self.head, gates=self.gates)
            return {**out, "meta_steps": tf.constant(share)}

        interval = int(self.hp.get("meta_interval", 1))
        if interval == 1:
            return step

        def plain(batch, meta_batch):
            out = steps.weighted_step(ctx.classifier, self.weight_net, ctx.optimizer, batch,
                                     ctx.options)
            if self.gates is not None:
                out["meta_layers"] = tf.constant(0.0)
            return {**out, "meta_steps": tf.constant(0.0)}
        return steps.Alternating(step, plain, interval, self.step_count)

    def weight_of(self, losses):
        x = np.asarray(losses, np.float32).reshape(-1, 1)
        return self.weight_net(x, training=False).numpy()[:, 0].astype(np.float64)

    def results(self):
        return {"weight_curve": weight_function.weight_curve(self.weight_net)}

    def export(self, workdir):
        weight_function.export_weight_fn(self.weight_net, os.path.join(workdir, files.WEIGHT_FN))

    def label_scores(self, losses, probabilities, labels):
        """The learned weight function's weight of each sample's loss; a low weight is
        suspect (suspicion = 1 - weight, equal weights ranked by loss)."""
        weight = self.weight_of(np.asarray(losses, np.float64))
        return {"suspicion": 1.0 - weight, "weight": weight}


METHOD = MetaWeightNet
