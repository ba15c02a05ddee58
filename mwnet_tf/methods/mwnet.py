"""Meta-Weight-Net (Shu et al., NeurIPS 2019): a weight net learned through a virtual step."""

from __future__ import annotations

import os

from mwnet_tf import export, meta
from mwnet_tf.methods.base import Method
from mwnet_tf.models import build_weight_net


class MetaWeightNet(Method):
    """Shu et al., "Meta-Weight-Net: Learning an Explicit Mapping For Sample Weighting",
    NeurIPS 2019. The step is `meta.mwnet_step` (Algorithm 1); the weight net (1-100-1 MLP,
    sigmoid) is trained by the run's weight-net optimizer (`--meta_optimizer`, `--meta_lr`,
    `--meta_weight_decay`) and exported as a SavedModel in `weight_fn/`."""

    name = "mwnet"
    uses_meta = True
    reference = "Shu et al. 2019"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.weight_net = build_weight_net(seed=ctx.config.seed + 1)
        self.meta_optimizer = ctx.new_optimizer("meta")
        self.meta_optimizer.build(self.weight_net.trainable_variables)

    def trackables(self):
        return {"weight_net": self.weight_net, "meta_optimizer": self.meta_optimizer}

    def replica_step(self, stage):
        ctx = self.ctx

        def step(batch, meta_batch):
            return meta.mwnet_step(ctx.classifier, self.weight_net, ctx.optimizer,
                                   self.meta_optimizer, batch, meta_batch, ctx.options)
        return step

    def results(self):
        return {"weight_curve": export.weight_curve(self.weight_net)}

    def export(self, workdir):
        export.export_weight_fn(self.weight_net, os.path.join(workdir, "weight_fn"))


METHOD = MetaWeightNet
